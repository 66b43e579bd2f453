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
from langchain_ttc.core.errors import format_validation_error
from langchain_ttc.core.prompts import resolve_system_prompt
from langchain_ttc.core.stopping import check_threshold

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

    @field_validator("system_prompt")
    @classmethod
    def _preset(cls, value: str | None) -> str | None:
        return resolve_system_prompt(value)

    @model_validator(mode="after")
    def _within_limits(self) -> Self:
        bounds = limits()
        if self.n > bounds.max_n:
            raise _over("n", self.n, bounds.max_n, "TTC_MAX_N")
        if self.max_tokens > bounds.max_tokens:
            raise _over("max_tokens", self.max_tokens, bounds.max_tokens, "TTC_MAX_TOKENS")
        return self

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
