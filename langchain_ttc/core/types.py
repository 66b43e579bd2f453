"""The core data model: generation requests and completions, PRM requests, usage and results.

Everything here is plain pydantic data that round-trips through JSON, so a LangGraph checkpointer
can store a search in progress and ``ttc solve --json`` can print a result as it is.

Flow: a strategy sends :class:`GenerationRequest` objects to a policy engine and gets one
:class:`GenerationResult` (``n`` :class:`Completion` objects) per request; it sends
:class:`ScoreRequest` objects to a PRM engine and gets one :class:`StepScores` per request; it
returns a :class:`TTCResult` with every :class:`Candidate` and the :class:`Usage` it spent.

Example:
    >>> c = Completion(text="1+1=2", num_tokens=5, finish_reason="length")
    >>> c.finished
    False
    >>> (Usage(policy_calls=1) + Usage(prm_calls=1)).model_dump()["prm_calls"]
    1

"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FinishReason = Literal["stop", "eos", "length"]
"""Why a completion ended: a stop string matched (``"stop"``), the model ended its turn or emitted
end of sequence (``"eos"``), or it ran out of ``max_tokens`` (``"length"``, never finished)."""

Message = dict[str, Any]
"""A chat message as plain data: ``{"role": "user", "content": "..."}``.

An assistant message that called tools also has ``tool_calls`` (OpenAI chat format:
``[{"id", "type": "function", "function": {"name", "arguments"}}]``), a tool result has
``tool_call_id``; ``content`` is always a string.
"""


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationRequest(_Data):
    """One request to a policy engine: a conversation (or raw prompt) and sampling settings.

    Attributes:
        messages: The chat so far (rendered with the model's chat template).
        prompt: A raw text prompt, used instead of ``messages`` for base models.
        partial: Assistant text to continue (the final assistant message is continued, not a new
            turn opened), for step-by-step search.
        n: Number of completions to sample.
        stop: Stop strings; a matched stop string is kept at the end of the completion text.
        max_tokens: Most tokens to generate per completion.
        temperature: Sampling temperature; 0 means greedy.
        top_p: Nucleus sampling mass.
        seed: Seed for reproducible sampling.

    """

    messages: list[Message] | None = None
    prompt: str | None = None
    partial: str = ""
    n: int = Field(default=1, ge=1)
    stop: list[str] = Field(default_factory=list)
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("GenerationRequest needs exactly one of messages= or prompt=.")
        return self


class ToolCall(_Data):
    """A tool call an assistant turn made: the tool's name, its parsed arguments and the call's id.

    Example:
        >>> ToolCall(name="get_weather", args={"city": "Paris"}).args["city"]
        'Paris'

    """

    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class Completion(_Data):
    """One sampled continuation.

    Attributes:
        text: The generated text (a matched stop string included, end-of-sequence excluded).
        num_tokens: Tokens generated.
        finish_reason: ``"stop"``, ``"eos"`` or ``"length"``.
        stop_string: The stop string that matched, when ``finish_reason == "stop"``.
        tool_calls: The tools the turn called (only policies bound to tools produce them).

    """

    text: str
    num_tokens: int = Field(ge=0)
    finish_reason: FinishReason
    stop_string: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Whether the completion ended on its own (a truncated one never counts as finished)."""
        return self.finish_reason != "length"


class GenerationResult(_Data):
    """The ``n`` completions of one request and the prompt length in tokens."""

    completions: list[Completion]
    prompt_tokens: int = Field(ge=0)


class ScoreRequest(_Data):
    """One request to a PRM: a problem and the steps of a (partial) solution."""

    problem: str
    steps: list[str]


class StepScores(_Data):
    """The PRM's score for each step (in [0, 1]) and the tokens it read.

    Attributes:
        scores: One score per step.
        num_tokens: Tokens of the request the PRM read (its whole input, cached or not).
        cached_tokens: Of those, the tokens taken from the engine's prefix cache rather than computed.

    """

    scores: list[float]
    num_tokens: int = Field(ge=0)
    cached_tokens: int = Field(default=0, ge=0)


class Usage(_Data):
    """Compute spent: calls, tokens and wall time. Add two with ``+``.

    Attributes:
        policy_calls: Batched calls to the policy engine.
        prompt_tokens: Prompt tokens the policy read (counted once per request).
        completion_tokens: Tokens the policy generated.
        prm_calls: Batched calls to the PRM engine.
        prm_tokens: Tokens the PRM read (its whole inputs, cached or not).
        prm_cached_tokens: Of those, the tokens an engine took from its prefix cache instead of computing.
        judge_calls: Batched calls to an LLM judge that a strategy made itself (universal
            self-consistency, tournaments); a judge used as the PRM counts as the PRM.
        judge_tokens: Tokens those judge calls read and wrote.
        judge_fallbacks: Judge replies that could not be read, so the strategy's stated fallback was used.
        wall_time_s: Seconds spent in the strategy's nodes.

    """

    policy_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prm_calls: int = 0
    prm_tokens: int = 0
    prm_cached_tokens: int = 0
    judge_calls: int = 0
    judge_tokens: int = 0
    judge_fallbacks: int = 0
    wall_time_s: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) - getattr(other, name) for name in Usage.model_fields})

    @classmethod
    def of_prm_call(cls, results: list[StepScores]) -> Usage:
        """The usage of one batched PRM call that returned ``results``."""
        return cls(
            prm_calls=1,
            prm_tokens=sum(r.num_tokens for r in results),
            prm_cached_tokens=sum(r.cached_tokens for r in results),
        )


class Candidate(_Data):
    """One candidate solution with its answer and scores.

    Attributes:
        text: The full solution text.
        steps: The solution split at the step delimiter.
        answer: The extracted final answer (``None`` if there is none).
        finish_reason: How generation ended; ``"length"`` means truncated, never finished.
        num_tokens: Tokens generated for this candidate.
        step_scores: The PRM's score of each step, when a PRM scored it.
        score: The aggregated score, when a PRM scored it.
        tool_calls: The tools the turn called (an agent's action); empty for a plain answer.

    """

    text: str
    steps: list[str]
    answer: str | None
    finish_reason: FinishReason
    num_tokens: int = 0
    step_scores: list[float] | None = None
    score: float | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Whether the candidate ended on its own (not cut off by ``max_tokens``)."""
        return self.finish_reason != "length"


class AnswerGroup(_Data):
    """Candidates with equivalent answers and their total weight (votes or summed scores)."""

    answer: str
    indices: list[int]
    weight: float


class TTCResult(_Data):
    """What every strategy returns.

    Attributes:
        strategy: The strategy's name.
        answer: The chosen final answer (``None`` if no finished candidate had one).
        solution: The chosen candidate's text.
        chosen_index: Index of the chosen candidate in ``candidates``.
        candidates: Every candidate, with its scores.
        groups: Equivalent-answer groups with their weights, for voting strategies.
        usage: The compute spent.
        metadata: Strategy-specific extras (for example per-iteration usage).

    """

    strategy: str
    answer: str | None
    solution: str | None
    chosen_index: int | None
    candidates: list[Candidate]
    groups: list[AnswerGroup] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    metadata: dict[str, Any] = Field(default_factory=dict)
