"""Typed strategy settings: one pydantic config per strategy, validated once, stored in the graph state.

In: the keyword options a factory takes (or a run's :class:`~langchain_ttc.strategies.context.TTCContext`
on top of them). Out: a frozen, JSON-serialisable config. An invalid value raises a ``ValueError``
that names the parameter, the value and the fix, at construction (and again for a run whose
context overrides a setting).

Each strategy module defines its config by extending these bases; the registry
(:mod:`langchain_ttc.strategies.registry`) records it, so the CLI, the Studio context and the router
table read a strategy's options from one place.

Example:
    >>> SearchConfig(n=16, beam_width=4).beam_width
    4
    >>> validated(SearchConfig, n=6, beam_width=4)
    Traceback (most recent call last):
    ...
    ValueError: beam_width=4 does not divide n=6; pass a beam_width that divides n, e.g. 1, 2, 3, 6.
    >>> validated(SearchConfig, n=8, lookahead=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: lookahead=-1 is invalid: input should be greater than or equal to 0 (Greedy steps rolled out...).

"""

from __future__ import annotations

import functools
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from langchain_ttc.core.aggregation import Aggregation
from langchain_ttc.core.answers import (
    MATH_ANSWERS,
    MULTIPLE_CHOICE_ANSWERS,
    NUMBER_ANSWERS,
    REFERENCE_MATH_ANSWERS,
    SHORT_ANSWERS,
    AnswerKey,
    multiple_choice_answers,
)
from langchain_ttc.core.errors import format_validation_error
from langchain_ttc.core.prompts import resolve_system_prompt
from langchain_ttc.core.stopping import check_threshold
from langchain_ttc.core.tool_calls import TOOL_CALL_ANSWERS

# ---- answer keys by name: the ``answers`` option of every strategy ----

CUSTOM_ANSWERS_PREFIX = "custom:"
"""How a strategy's ``answers`` setting records a key object given as ``answer_key=`` (``custom:<its name>``)."""
ANSWER_KEY_NAMES = ("math", "reference-math", "number", "short", "multiple-choice", "tool_calls")
"""The shipped answer keys a setting can name (``answers="reference-math"``); ``multiple-choice:<LETTERS>`` too."""


def answer_key_named(name: str, *, parameter: str = "answers", objects: bool = True) -> AnswerKey:
    """The shipped answer key called ``name`` (one of :data:`ANSWER_KEY_NAMES`).

    ``math``: :data:`MATH_ANSWERS` (the default); ``reference-math``: :data:`REFERENCE_MATH_ANSWERS`
    (search-and-learn's); ``number``, ``short``, ``multiple-choice`` (or ``multiple-choice:ABCD`` for
    other option letters); ``tool_calls``: :data:`~langchain_ttc.core.tool_calls.TOOL_CALL_ANSWERS`
    (the keys of :mod:`langchain_ttc.core.answers` and :mod:`langchain_ttc.core.tool_calls`).

    Args:
        name: The key's name.
        parameter: The setting's name, for the error message.
        objects: Whether the error message may suggest a key object (``answer_key=``): not on the
            command line or over HTTP, where only names travel.

    Raises:
        ValueError: If no shipped key has that name (the message lists the names).

    Example:
        >>> answer_key_named("reference-math") is REFERENCE_MATH_ANSWERS
        True
        >>> answer_key_named("multiple-choice:ABCD").answer_of("Answer: d")
        'D'
        >>> answer_key_named("maths")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: answers='maths' names no answer key; pass one of 'math', 'reference-math', 'number', ...

    """
    shipped = {
        "math": MATH_ANSWERS,
        "reference-math": REFERENCE_MATH_ANSWERS,
        "number": NUMBER_ANSWERS,
        "short": SHORT_ANSWERS,
        "multiple-choice": MULTIPLE_CHOICE_ANSWERS,
        "tool_calls": TOOL_CALL_ANSWERS,
    }
    if isinstance(name, str) and name in shipped:
        return shipped[name]
    letters = name.removeprefix("multiple-choice:") if isinstance(name, str) else ""
    if isinstance(name, str) and name.startswith("multiple-choice:") and letters.isalpha() and letters.isupper():
        return multiple_choice_answers(letters)
    known = ", ".join(repr(n) for n in ANSWER_KEY_NAMES)
    own = ", or build the graph with answer_key=<an AnswerKey> for a key of your own" if objects else ""
    raise ValueError(
        f"{parameter}={_shown(name)} names no answer key; pass one of {known} (or 'multiple-choice:<LETTERS>', "
        f"e.g. 'multiple-choice:ABCD'){own}."
    )


def _shown(value: object, most: int = 64) -> str:
    """A value as an error message quotes it: long ones cut short (a message never echoes a huge input)."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most]}..."


def answers_setting(key: AnswerKey) -> str:
    """The ``answers`` setting that stands for ``key``: a shipped key's name, else ``custom:<its name>``.

    Example:
        >>> answers_setting(REFERENCE_MATH_ANSWERS), answers_setting(multiple_choice_answers("ABCD"))
        ('reference-math', 'multiple-choice:ABCD')
        >>> answers_setting(AnswerKey(name="exact", extract=str.strip, equivalent=str.__eq__))
        'custom:exact'

    """
    try:
        named = answer_key_named(key.name)
    except ValueError:
        named = None
    return key.name if named is key else CUSTOM_ANSWERS_PREFIX + key.name


def check_answers(value: str, *, parameter: str = "answers") -> str:
    """Check an ``answers`` setting: a shipped key's name, or ``custom:<name>`` (a graph's own key object).

    Raises:
        ValueError: If ``value`` names no shipped key and is not ``custom:<name>``.

    """
    if isinstance(value, str) and value.startswith(CUSTOM_ANSWERS_PREFIX) and value != CUSTOM_ANSWERS_PREFIX:
        return value
    answer_key_named(value, parameter=parameter)
    return value


def choose_answers(answers: str, answer_key: AnswerKey | None, *, default: str = "math") -> str:
    """A factory's one ``answers`` setting from its two ways to give a key: by name, or as an object.

    Args:
        answers: The ``answers=`` name (``default`` when not given).
        answer_key: The ``answer_key=`` object, or ``None``.
        default: The default of ``answers``.

    Raises:
        TypeError: If ``answer_key`` is not an :class:`AnswerKey`.
        ValueError: If both are given and name different keys.

    Example:
        >>> choose_answers("reference-math", None), choose_answers("math", REFERENCE_MATH_ANSWERS)
        ('reference-math', 'reference-math')
        >>> choose_answers("number", REFERENCE_MATH_ANSWERS)
        Traceback (most recent call last):
        ...
        ValueError: answers='number' and answer_key=REFERENCE_MATH_ANSWERS name two answer keys; pass one of them \
(answers= names a shipped key, answer_key= gives a key object).

    """
    if answer_key is None:
        return answers
    if not isinstance(answer_key, AnswerKey):
        raise TypeError(
            f"answer_key={answer_key!r} is not an AnswerKey; pass one (e.g. REFERENCE_MATH_ANSWERS), or name a "
            "shipped key with answers= instead."
        )
    setting = answers_setting(answer_key)
    if answers not in (default, setting):
        shown = _KEY_CONSTANTS.get(setting, repr(answer_key.name))
        raise ValueError(
            f"answers={answers!r} and answer_key={shown} name two answer keys; pass one of them (answers= names a "
            "shipped key, answer_key= gives a key object)."
        )
    return setting


_KEY_CONSTANTS = {
    "math": "MATH_ANSWERS",
    "reference-math": "REFERENCE_MATH_ANSWERS",
    "number": "NUMBER_ANSWERS",
    "short": "SHORT_ANSWERS",
    "multiple-choice": "MULTIPLE_CHOICE_ANSWERS",
    "tool_calls": "TOOL_CALL_ANSWERS",
}


def resolve_answer_key(answers: str, own: AnswerKey | None = None, *, parameter: str = "answers") -> AnswerKey:
    """The key an ``answers`` setting names: a shipped key, or ``own`` (the graph's ``answer_key=``) for ``custom:``.

    Args:
        answers: The setting (a run's, after its context).
        own: The key object the graph was built with, if any.
        parameter: The setting's name, for the error message.

    Raises:
        ValueError: If ``answers`` names no shipped key, or ``custom:<name>`` and the graph has no such key.

    Example:
        >>> exact = AnswerKey(name="exact", extract=str.strip, equivalent=str.__eq__)
        >>> resolve_answer_key("custom:exact", exact) is exact, resolve_answer_key("math", exact) is MATH_ANSWERS
        (True, True)

    """
    if isinstance(answers, str) and answers.startswith(CUSTOM_ANSWERS_PREFIX):
        if own is not None and answers_setting(own) == answers:
            return own
        has = "no key object" if own is None else f"the key {answers_setting(own)!r}"
        raise ValueError(
            f"{parameter}={answers!r} names the answer_key= object of another graph; this graph was built with "
            f"{has}. Pass a shipped key's name ({', '.join(repr(n) for n in ANSWER_KEY_NAMES)}), or build the "
            "graph with answer_key=."
        )
    return answer_key_named(answers, parameter=parameter)


ANSWERS = (
    "The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math "
    "(search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls."
)
"""The ``answers`` option's description (see :func:`~langchain_ttc.core.answers.answer_key_named`)."""

SelectionRule = Literal["best", "weighted"]
"""How a search picks its answer among finished solutions: the best one by score, or the weighted vote."""

C = TypeVar("C", bound="StrategyConfig")


class Limits(BaseSettings):
    """What one run may ask for, whoever builds it (a factory, the CLI, a Studio context, ``ttc serve``).

    Read from the environment (``TTC_MAX_N``, ``TTC_MAX_SEARCH_STEPS``, ``TTC_MAX_TOKENS``) when first
    needed; :func:`limits` returns them. A config beyond a limit is refused at validation, with the
    limit, the value and how to raise it.

    Example:
        >>> limits().max_n
        1024

    """

    model_config = SettingsConfigDict(env_prefix="TTC_", frozen=True)

    max_n: int = Field(1024, ge=1, description="The largest budget n of one run.")
    max_search_steps: int = Field(
        65536, ge=1, description="The most step writes a step-level search may plan: n x max_iterations."
    )
    max_tokens: int = Field(32768, ge=1, description="The largest max_tokens of one run.")


@functools.cache
def limits() -> Limits:
    """The limits in force (read from the environment once; ``limits.cache_clear()`` reads them again)."""
    return Limits.model_validate({})


def _over(option: str, value: int, limit: int, variable: str) -> ValueError:
    return ValueError(
        f"{option}={value} is over the limit of {limit}; pass a smaller {option}, or raise the limit with the "
        f"environment variable {variable} (e.g. {variable}={value})."
    )


class StrategyConfig(BaseModel):
    """Settings every strategy has: the budget and how the policy samples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=1, description="The budget: solutions sampled (or beams written per iteration).")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass, in (0, 1].")
    max_tokens: int = Field(
        2048, ge=1, description="Most tokens per solution (per step in the searches); a cut-off one is never picked."
    )
    seed: int | None = Field(None, description="Seed for reproducible sampling (each draw gets its own stream).")
    system_prompt: str | None = Field(
        None, description="Optional system message put before the problem, or preset:<name> (preset:search-and-learn)."
    )
    step_delimiter: str = Field("\n\n", min_length=1, description="The text between steps, e.g. '\\n\\n'.")
    answers: str = Field("math", description=ANSWERS)

    @field_validator("system_prompt")
    @classmethod
    def _preset(cls, value: str | None) -> str | None:
        return resolve_system_prompt(value)

    @field_validator("answers")
    @classmethod
    def _answer_key(cls, value: str) -> str:
        return check_answers(value)

    @model_validator(mode="after")
    def _within_limits(self) -> Self:
        bounds = limits()
        if self.n > bounds.max_n:
            raise _over("n", self.n, bounds.max_n, "TTC_MAX_N")
        if self.max_tokens > bounds.max_tokens:
            raise _over("max_tokens", self.max_tokens, bounds.max_tokens, "TTC_MAX_TOKENS")
        return self

    def answer_key(self, own: AnswerKey | None = None) -> AnswerKey:
        """The answer key ``answers`` names (``own``: the graph's ``answer_key=`` object, named ``custom:<name>``).

        Raises:
            ValueError: If ``answers`` is ``custom:<name>`` and ``own`` is not that key.

        Example:
            >>> StrategyConfig(n=1, answers="reference-math").answer_key().name
            'reference-math'

        """
        return resolve_answer_key(self.answers, own)

    def merged(self, overrides: dict[str, Any]) -> Self:
        """The config with ``overrides`` (only the fields it has, ``None`` ignored), validated again."""
        update = {k: v for k, v in overrides.items() if v is not None and k in type(self).model_fields}
        if not update:
            return self
        return validated(type(self), **{**self.model_dump(), **update})


class ScoredConfig(StrategyConfig):
    """Settings of a strategy that scores solutions with a PRM."""

    aggregation: Aggregation = Field("last", description="How step scores become one score: last, min, prod, mean.")


class StepSearchConfig(ScoredConfig):
    """Settings of every step-level search (beam search, DVTS, particle filtering)."""

    max_iterations: int = Field(40, ge=1, description="Most steps per solution; the last one writes to the end.")
    lookahead: int = Field(0, ge=0, description="Greedy steps rolled out past each candidate before scoring.")
    selection: SelectionRule = Field(
        "weighted", description="Final pick: weighted vote over finished solutions, or best."
    )
    record_tree: bool = Field(False, description="Keep the whole search tree in the result (metadata['tree']).")
    adaptive_threshold: float | None = Field(
        None,
        description="Stop early once the finished solutions' weighted vote is settled: P(its leader stays the "
        "leader) >= this, in (0.5, 1] (None: off).",
    )

    @model_validator(mode="after")
    def _adaptive_stop_reads_the_weighted_vote(self) -> Self:
        if self.adaptive_threshold is None:
            return self
        check_threshold(self.adaptive_threshold, parameter="adaptive_threshold")
        if self.selection != "weighted":
            raise ValueError(
                f"adaptive_threshold={self.adaptive_threshold} stops once the weighted vote is settled, but "
                f"selection={self.selection!r} picks the best-scored solution instead; pass selection='weighted', "
                "or adaptive_threshold=None."
            )
        return self

    @model_validator(mode="after")
    def _search_within_limits(self) -> Self:
        planned, limit = self.n * self.max_iterations, limits().max_search_steps
        if planned > limit:
            raise ValueError(
                f"n={self.n} x max_iterations={self.max_iterations} = {planned} step writes is over the limit of "
                f"{limit}; pass a smaller n or max_iterations, or raise the limit with the environment variable "
                f"TTC_MAX_SEARCH_STEPS (e.g. TTC_MAX_SEARCH_STEPS={planned})."
            )
        return self


class SearchConfig(StepSearchConfig):
    """Settings of a beam-based search (beam search, DVTS): ``n`` beams, ``beam_width`` per survivor or subtree."""

    beam_width: int = Field(4, ge=1, description="Continuations per beam (M); must divide n.")

    @model_validator(mode="after")
    def _width_divides_n(self) -> Self:
        if self.n < self.beam_width:
            raise ValueError(
                f"n={self.n} is smaller than beam_width={self.beam_width}; pass n >= beam_width, "
                f"e.g. n={self.beam_width * 4}."
            )
        if self.n % self.beam_width:
            divisors = ", ".join(str(w) for w in range(1, self.n + 1) if self.n % w == 0)
            raise ValueError(
                f"beam_width={self.beam_width} does not divide n={self.n}; pass a beam_width that divides n, "
                f"e.g. {divisors}."
            )
        return self


def validated(cls: type[C], /, **values: Any) -> C:
    """Build ``cls`` from keyword options; an invalid one raises a ``ValueError`` naming it, its value and the fix.

    Raises:
        ValueError: If an option is unknown, missing, or out of range.

    """
    try:
        return cls(**values)
    except ValidationError as error:
        raise ValueError(format_validation_error(error, cls)) from None
