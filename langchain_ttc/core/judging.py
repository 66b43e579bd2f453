"""LLM-as-judge, the pure part: the rubric prompts, the questions a judge is asked and how its replies are read.

In: a problem and the solutions (or steps, or pairs of solutions) to judge, and a judge's replies:
its top log-probabilities for the first token, a structured object, or plain text. Out:
:class:`JudgeQuery` objects (what an engine sends) and :class:`JudgeVerdict` objects (what it
read back). No model is called here; :mod:`langchain_ttc.engines.judge` makes the calls.

Four questions, one template each in :class:`JudgePrompts` (a user replaces any of them):

- ``outcome``: is this solution correct and complete? (one score per solution)
- ``process``: is this step correct, given the steps before it? (one score per step)
- ``consistency``: which of these N responses is the most consistent with the others?
  (universal self-consistency, Chen et al., 2023)
- ``pairwise``: which of two responses is better? (a tournament's match, asked in both orders)

Two ways to read a score. With log-probabilities the judge is asked for one word (``yes``/``no``,
or the letter ``A``/``B``) and the score is the probability of the first option among the two,
read from the first generated token's top log-probabilities (:func:`option_probability`): a
calibrated score in [0, 1] from one generated token. Without them the judge fills a small
structured object (:class:`Rating`: a 0-10 ``score`` and a short ``reason``; :class:`Choice`;
:class:`Preference`), through the model's structured output or, for a plain text reply, read
leniently from the JSON in it (:func:`parse_rating`, :func:`parse_choice`, :func:`parse_preference`).
A reply that none of these can read gives a verdict without a value: the caller's stated fallback
takes over and is counted; no reader here invents a score.

Example:
    >>> query = outcome_query(JudgePrompts(), "What is 2+2?", "2+2=4, so the answer is 4.")
    >>> query.task, "Is this answer correct and complete?" in query.text
    ('outcome', True)
    >>> round(option_probability({" Yes": -0.105, "No": -2.303}, ("yes", "no")), 3)
    0.9
    >>> parse_rating('{"score": 7, "reason": "one slip in step 2"}')
    (0.7, 'one slip in step 2')

"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_ttc.core.answers import find_json_object
from langchain_ttc.core.types import Message

JudgeTask = Literal["outcome", "process", "consistency", "pairwise"]
"""What a judge is asked: grade a solution, grade a step, pick the most consistent response, or compare two."""

ReadMethod = Literal["logprobs", "structured", "text"]
"""How a verdict was read: first-token log-probabilities, a structured object, or JSON found in plain text."""

_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "outcome": frozenset({"problem", "solution"}),
    "process": frozenset({"problem", "previous_steps", "step"}),
    "consistency": frozenset({"problem", "responses"}),
    "pairwise": frozenset({"problem", "first", "second"}),
}


class JudgePrompts(BaseModel):
    """The rubric: one template per question, and the answer format each way of reading asks for.

    The four question templates are ``str.format`` templates with the placeholders named below (a
    literal brace is written ``{{`` or ``}}``); the format instructions are appended verbatim after
    the question (the reading decides which one: a one-word answer when log-probabilities are read,
    a JSON object otherwise). Replace any field: ``JudgePrompts(outcome="... {problem} ... {solution} ...")``.

    Attributes:
        system: The system message of every judge call (``None``: none).
        outcome: Grade a whole solution: ``{problem}``, ``{solution}``.
        process: Grade one step: ``{problem}``, ``{previous_steps}`` (``(none)`` for the first), ``{step}``.
        consistency: Pick the most consistent response: ``{problem}``, ``{responses}`` (numbered from 1).
        pairwise: Compare two responses: ``{problem}``, ``{first}`` (response A), ``{second}`` (response B).
        yes_no: Format of a graded question read by log-probabilities (one word, yes or no).
        rating: Format of a graded question read as an object (a 0-10 score and a reason).
        choice: Format of the consistency question (the number of the chosen response).
        letter: Format of a pairwise question read by log-probabilities (one letter, A or B).
        preference: Format of a pairwise question read as an object (A, B or tie, and a reason).

    Raises:
        ValueError: If a question template lacks one of its placeholders or has an unknown one (a
            pydantic ``ValidationError``, which is a ``ValueError``, naming the template and the fix).

    Example:
        >>> JudgePrompts(outcome="Grade {solution} for {problem}.").outcome
        'Grade {solution} for {problem}.'
        >>> JudgePrompts(outcome="Grade {answer}.")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for JudgePrompts
          Value error, outcome='Grade {answer}.' must use {problem} and {solution} (missing problem, solution; ...

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str | None = (
        "You are a strict, careful grader. Judge only what is written; a missing or wrong final answer "
        "makes a solution incorrect."
    )
    outcome: str = "Problem:\n{problem}\n\nProposed solution:\n{solution}\n\nIs this answer correct and complete?"
    process: str = (
        "Problem:\n{problem}\n\nSteps so far:\n{previous_steps}\n\nNext step:\n{step}\n\n"
        "Is this step correct, given the problem and the steps before it?"
    )
    consistency: str = (
        "I have generated the following responses to the question: {problem}\n\n{responses}\n\n"
        "Evaluate these responses. Select the most consistent response based on majority consensus."
    )
    pairwise: str = (
        "Problem:\n{problem}\n\nResponse A:\n{first}\n\nResponse B:\n{second}\n\n"
        "Which response answers the problem better: correct, complete and clear?"
    )
    yes_no: str = "Reply with one word: Yes or No."
    rating: str = (
        "Rate it from 0 (certainly not) to 10 (certainly yes). Reply with a JSON object only: "
        '{"score": <0-10>, "reason": "<one short sentence>"}'
    )
    choice: str = (
        'Start your answer with "The most consistent response is Response X" (without quotes), X its number, '
        'or reply with a JSON object only: {"response": <number>, "reason": "<one short sentence>"}'
    )
    letter: str = "Reply with one letter: A or B."
    preference: str = 'Reply with a JSON object only: {"winner": "A" or "B" or "tie", "reason": "<one short sentence>"}'

    @model_validator(mode="after")
    def _placeholders(self) -> Self:
        for task, expected in _PLACEHOLDERS.items():
            template = getattr(self, task)
            try:
                used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
            except ValueError as error:
                raise ValueError(f"{task}={template!r} is not a format template ({error}).") from None
            if used != expected:
                missing = ", ".join(sorted(expected - used)) or "none"
                unknown = ", ".join(sorted(used - expected)) or "none"
                wanted = " and ".join("{" + name + "}" for name in sorted(expected))
                raise ValueError(
                    f"{task}={template!r} must use {wanted} (missing {missing}; unknown {unknown}); write a "
                    "literal brace as {{ or }}."
                )
        return self

    def instruction(self, task: JudgeTask, method: Literal["logprobs", "structured"]) -> str:
        """The answer format appended to a ``task`` question read with ``method``."""
        if task == "consistency":
            return self.choice
        if task == "pairwise":
            return self.letter if method == "logprobs" else self.preference
        return self.yes_no if method == "logprobs" else self.rating

    def messages(self, query: JudgeQuery, method: Literal["logprobs", "structured"]) -> list[Message]:
        """The chat a judge is sent for ``query`` read with ``method`` (system message, question, format)."""
        system: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": f"{query.text}\n\n{self.instruction(query.task, method)}"}]


class JudgeQuery(BaseModel):
    """One question to a judge: its task, the question's text (a filled template) and, for a choice, how many options.

    Attributes:
        task: ``outcome``, ``process``, ``consistency`` or ``pairwise``.
        text: The question, the task's template filled in.
        options: The number of responses to choose from (``consistency`` only).

    """

    model_config = ConfigDict(extra="forbid")

    task: JudgeTask
    text: str
    options: int = Field(default=0, ge=0)


class JudgeVerdict(BaseModel):
    """What a judge answered to one query, as read.

    Attributes:
        score: For ``outcome``/``process``: the probability (or the rating / 10) that the answer or
            step is correct; for ``pairwise``: that response A is the better one (0.5: a tie).
            ``None`` when the reply could not be read.
        choice: For ``consistency``: the 0-based index of the chosen response (``None``: unreadable).
        method: How it was read (``None`` when it could not be).
        reason: The judge's short reason, when it gave one.
        reply: The start of the judge's reply (for reports of unreadable verdicts).
        input_tokens: Tokens the judge read for this query.
        output_tokens: Tokens it wrote.
        escalated: Whether the first reading failed and the query was asked again as a structured object.

    """

    model_config = ConfigDict(extra="forbid")

    score: float | None = None
    choice: int | None = None
    method: ReadMethod | None = None
    reason: str = ""
    reply: str = ""
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    escalated: bool = False

    @property
    def readable(self) -> bool:
        """Whether the verdict has a value (a score or a choice)."""
        return self.score is not None or self.choice is not None

    @property
    def tokens(self) -> int:
        """Tokens read and written for this verdict."""
        return self.input_tokens + self.output_tokens


class Rating(BaseModel):
    """The structured answer to a graded question."""

    score: float = Field(description="From 0 (certainly not) to 10 (certainly yes).")
    reason: str = Field(description="One short sentence.")


class Choice(BaseModel):
    """The structured answer to the consistency question."""

    response: int = Field(description="The number of the most consistent response.")
    reason: str = Field(description="One short sentence.")


class Preference(BaseModel):
    """The structured answer to a pairwise question."""

    winner: Literal["A", "B", "tie"] = Field(description="The better response: A, B, or tie.")
    reason: str = Field(description="One short sentence.")


SCHEMAS: dict[JudgeTask, type[BaseModel]] = {
    "outcome": Rating,
    "process": Rating,
    "consistency": Choice,
    "pairwise": Preference,
}
"""The structured answer each task asks for."""


# ---- the questions ----


def outcome_query(prompts: JudgePrompts, problem: str, solution: str) -> JudgeQuery:
    """The question whether ``solution`` answers ``problem`` correctly and completely."""
    return JudgeQuery(task="outcome", text=prompts.outcome.format(problem=problem, solution=solution))


def process_query(prompts: JudgePrompts, problem: str, steps: Sequence[str], index: int) -> JudgeQuery:
    """The question whether step ``index`` of ``steps`` is correct given the problem and the steps before it.

    Example:
        >>> process_query(JudgePrompts(), "p", ["a", "b"], 1).text.split("Steps so far:\\n")[1].split("\\n")[0]
        'Step 1: a'

    """
    before = "\n".join(f"Step {k + 1}: {s}" for k, s in enumerate(steps[:index])) or "(none)"
    return JudgeQuery(
        task="process", text=prompts.process.format(problem=problem, previous_steps=before, step=steps[index])
    )


def consistency_query(prompts: JudgePrompts, problem: str, responses: Sequence[str]) -> JudgeQuery:
    """The question which of ``responses`` (numbered from 1) is the most consistent with the others.

    Raises:
        ValueError: If there are no responses.

    """
    if not responses:
        raise ValueError("responses=[] is empty; universal self-consistency needs at least one response to pick.")
    listed = "\n\n".join(f"Response {k + 1}:\n{r}" for k, r in enumerate(responses))
    return JudgeQuery(
        task="consistency", text=prompts.consistency.format(problem=problem, responses=listed), options=len(responses)
    )


def pairwise_query(prompts: JudgePrompts, problem: str, first: str, second: str) -> JudgeQuery:
    """The question whether ``first`` (response A) or ``second`` (response B) answers ``problem`` better."""
    return JudgeQuery(task="pairwise", text=prompts.pairwise.format(problem=problem, first=first, second=second))


# ---- reading the replies ----


def _token_word(token: str) -> str:
    """A token as a bare word: byte-level and sentencepiece space markers, spaces, punctuation, case removed."""
    return token.replace("Ġ", " ").replace("▁", " ").strip().strip(".,:;!*\"'`()").lower()


def option_probability(top_logprobs: Mapping[str, float], options: tuple[str, str]) -> float | None:
    """P(the first option) among the two, from the first token's top log-probabilities; ``None`` if neither is there.

    Tokens are compared as bare lower-case words (``" Yes"``, ``"yes"``, ``"YES."`` are one option);
    the probabilities of every token that spells an option are summed, then the two are normalised.

    Example:
        >>> round(option_probability({"A": math.log(0.6), " B": math.log(0.2), "The": -1.6}, ("a", "b")), 6)
        0.75
        >>> option_probability({"Maybe": -0.1}, ("yes", "no")) is None
        True

    """
    mass = dict.fromkeys(options, 0.0)
    for token, logprob in top_logprobs.items():
        word = _token_word(token)
        if word in mass and logprob is not None and math.isfinite(logprob):
            mass[word] += math.exp(logprob)
    total = sum(mass.values())
    return mass[options[0]] / total if total > 0 else None


_SCORE_IN_TEXT = re.compile(r"score\W{0,4}(\d+(?:\.\d+)?)", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.IGNORECASE)


def rating_score(value: object) -> float | None:
    """A 0-10 rating as a score in [0, 1]; ``None`` when it is not a number in range.

    Example:
        >>> rating_score(8), rating_score("7.5"), rating_score(11), rating_score("high")
        (0.8, 0.75, None, None)

    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number / 10 if 0.0 <= number <= 10.0 else None


def parse_rating(text: str) -> tuple[float | None, str]:
    """A graded reply's score in [0, 1] and reason: from its JSON object, else ``score: 7`` or ``7/10`` in the text.

    Example:
        >>> parse_rating("Score: 9. Looks right."), parse_rating("I would say 3 out of 10")
        ((0.9, ''), (0.3, ''))
        >>> parse_rating("The solution is fine.")
        (None, '')

    """
    data = find_json_object(text)
    if data is not None and "score" in data:
        return rating_score(data["score"]), str(data.get("reason", ""))
    for pattern in (_SCORE_IN_TEXT, _OUT_OF_TEN):
        found = pattern.search(text)
        if found is not None:
            return rating_score(found.group(1)), ""
    return None, ""


_CONSISTENT = re.compile(r"most consistent response is\W*(?:response\W*)?(\d+)", re.IGNORECASE)
_RESPONSE_NUMBER = re.compile(r"\bresponse\W{0,3}(\d+)", re.IGNORECASE)


def parse_choice(text: str, options: int) -> tuple[int | None, str]:
    """The 0-based index a consistency reply names (responses are numbered from 1), and its reason.

    Read from "The most consistent response is Response X", else a JSON ``{"response": X}``, else the
    first "Response X". ``None`` when none of these names a response between 1 and ``options``.

    Example:
        >>> parse_choice("The most consistent response is Response 2, as 1 and 2 agree.", 3)
        (1, '')
        >>> parse_choice('{"response": 3, "reason": "majority"}', 3), parse_choice("Response 9", 3)
        ((2, 'majority'), (None, ''))

    """
    found = _CONSISTENT.search(text)
    reason = ""
    number: object = found.group(1) if found else None
    if number is None:
        data = find_json_object(text)
        if data is not None and "response" in data:
            number, reason = data["response"], str(data.get("reason", ""))
    if number is None:
        first = _RESPONSE_NUMBER.search(text)
        number = first.group(1) if first else None
    try:
        index = int(str(number)) - 1
    except ValueError:
        return None, reason
    return (index if 0 <= index < options else None), reason


_WINNERS = {"a": 1.0, "b": 0.0, "tie": 0.5}
_LEADING_LETTER = re.compile(r"^\W*(?:response\s+)?([AB])(?![A-Za-z])")
_NAMED_WINNER = re.compile(r"(?:winner|better(?: response)?|prefer)\W{0,4}(?:is\W+)?(?:response\s+)?([AB])\b", re.I)


def preference_score(winner: object) -> float | None:
    """A pairwise winner (``"A"``, ``"B"`` or ``"tie"``) as P(A is better): 1, 0 or 0.5; ``None`` otherwise."""
    return _WINNERS.get(str(winner).strip().lower()) if winner is not None else None


def parse_preference(text: str) -> tuple[float | None, str]:
    """A pairwise reply as P(response A is better) (1, 0 or 0.5 for a tie) and its reason.

    Read from a JSON ``{"winner": ...}``, else a reply that starts with the letter (``"B."``,
    ``"Response A ..."``), else "the winner is B" / "B is better" phrasing; ``None`` otherwise.

    Example:
        >>> parse_preference('{"winner": "B", "reason": "A skips a step"}'), parse_preference("A. It is complete.")
        ((0.0, 'A skips a step'), (1.0, ''))
        >>> parse_preference("It is a tie."), parse_preference("Both are fine.")
        ((0.5, ''), (None, ''))

    """
    data = find_json_object(text)
    if data is not None and "winner" in data:
        return preference_score(data["winner"]), str(data.get("reason", ""))
    for pattern in (_LEADING_LETTER, _NAMED_WINNER):
        found = pattern.search(text)
        if found is not None:
            return preference_score(found.group(1)), ""
    if re.search(r"\btie\b", text, re.IGNORECASE):
        return 0.5, ""
    return None, ""


def read_text_verdict(query: JudgeQuery, text: str) -> JudgeVerdict:
    """A plain-text reply to ``query`` read as its task's answer (``method="text"``; no value when unreadable).

    Example:
        >>> read_text_verdict(JudgeQuery(task="pairwise", text="..."), '{"winner": "tie", "reason": "same"}').score
        0.5

    """
    if query.task == "consistency":
        choice, reason = parse_choice(text, query.options)
        return JudgeVerdict(
            choice=choice, method="text" if choice is not None else None, reason=reason, reply=text[:500]
        )
    score, reason = parse_preference(text) if query.task == "pairwise" else parse_rating(text)
    return JudgeVerdict(score=score, method="text" if score is not None else None, reason=reason, reply=text[:500])


def read_structured_verdict(query: JudgeQuery, parsed: BaseModel | dict[str, object] | None) -> JudgeVerdict | None:
    """A structured answer to ``query`` as a verdict (``method="structured"``), or ``None`` when it does not fit.

    Example:
        >>> read_structured_verdict(JudgeQuery(task="outcome", text="..."), Rating(score=6, reason="ok")).score
        0.6

    """
    if parsed is None:
        return None
    data = parsed.model_dump() if isinstance(parsed, BaseModel) else dict(parsed)
    reason = str(data.get("reason", ""))
    if query.task == "consistency":
        try:
            index = int(data.get("response"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if not 1 <= index <= query.options:
            return None
        return JudgeVerdict(choice=index - 1, method="structured", reason=reason)
    score = preference_score(data.get("winner")) if query.task == "pairwise" else rating_score(data.get("score"))
    return None if score is None else JudgeVerdict(score=score, method="structured", reason=reason)


def logprob_verdict(query: JudgeQuery, top_logprobs: Mapping[str, float] | None) -> JudgeVerdict:
    """First-token top log-probabilities as a verdict (``method="logprobs"``; no value when neither option shows).

    Example:
        >>> round(logprob_verdict(JudgeQuery(task="pairwise", text="..."), {"B": -1.2, "A": -2.3}).score, 2)
        0.25

    """
    options = ("a", "b") if query.task == "pairwise" else ("yes", "no")
    score = option_probability(top_logprobs, options) if top_logprobs else None
    shown = ", ".join(f"{t!r}: {lp:.2f}" for t, lp in list((top_logprobs or {}).items())[:5])
    return JudgeVerdict(score=score, method="logprobs" if score is not None else None, reply=f"top tokens {{{shown}}}")
