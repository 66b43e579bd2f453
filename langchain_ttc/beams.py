"""Beam bookkeeping for step-level search (beam search and DVTS): pure functions on plain data.

In: beams (partial solutions with their PRM scores) and the search settings. Out: which beams
finish, which survive pruning, and how survivors expand. No models, no LangGraph.

A :class:`Beam` is a partial assistant text written one step at a time. After each step it is

- *finished* when the policy ended it (end of sequence): a complete solution;
- *truncated* when it ran out of tokens: never finished, never chosen (the reference counted it);
- *active* otherwise (it stopped at the step delimiter) and goes on to the next iteration.

Example:
    >>> beams = [Beam(text="a", score=0.2), Beam(text="b", score=0.9), Beam(text="a", score=0.2)]
    >>> [b.text for b in prune(beams, keep=2, filter_duplicates=True)]
    ['b', 'a']

"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from langchain_ttc.answers import extract_boxed
from langchain_ttc.types import Candidate, FinishReason


class Beam(BaseModel):
    """One partial solution in a search.

    Attributes:
        text: The assistant text so far (step delimiters kept, so continuing it is exact).
        finish_reason: How its last step ended (``"stop"`` while active).
        num_tokens: Tokens generated for it so far (its ancestors' included).
        lookahead: Text rolled out past ``text`` at temperature 0 for scoring (never kept).
        step_scores: PRM scores of the steps of ``text + lookahead``.
        score: The aggregated score.
        subtree: Its DVTS subtree (0 in beam search).
        iteration: The iteration that wrote its last step.

    """

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    finish_reason: FinishReason = "stop"
    num_tokens: int = 0
    lookahead: str = ""
    step_scores: list[float] = Field(default_factory=list)
    score: float | None = None
    subtree: int = 0
    iteration: int = 0

    @property
    def finished(self) -> bool:
        """Whether the policy ended this solution (not truncated, not still active)."""
        return self.finish_reason == "eos"

    @property
    def active(self) -> bool:
        """Whether the search goes on from this beam."""
        return self.finish_reason == "stop"

    def to_candidate(self, delimiter: str) -> Candidate:
        """The beam as a result candidate."""
        return Candidate(
            text=self.text,
            steps=split_steps(self.text, delimiter),
            answer=extract_boxed(self.text),
            finish_reason=self.finish_reason,
            num_tokens=self.num_tokens,
            step_scores=self.step_scores or None,
            score=self.score,
        )


def split_steps(text: str, delimiter: str) -> list[str]:
    """Split a (partial) solution into its non-empty steps."""
    return [step.strip() for step in text.split(delimiter) if step.strip()]


def _rank_key(indexed: tuple[int, Beam]) -> tuple[float, int]:
    index, beam = indexed
    return (-(beam.score if beam.score is not None else float("-inf")), index)


def prune(beams: Sequence[Beam], *, keep: int, filter_duplicates: bool) -> list[Beam]:
    """Keep the ``keep`` best-scored beams (ties: the earlier beam), optionally dropping duplicates.

    Duplicates are beams with the same text; the first copy is kept.
    """
    if filter_duplicates:
        seen: set[str] = set()
        unique = []
        for beam in beams:
            if beam.text not in seen:
                seen.add(beam.text)
                unique.append(beam)
        beams = unique
    ranked = sorted(enumerate(beams), key=_rank_key)
    return [beam for _, beam in ranked[:keep]]


def best_per_subtree(candidates: Sequence[Beam]) -> list[Beam]:
    """DVTS: for each subtree, its best-scored candidate that is not truncated (ties: the earlier one).

    Subtrees whose candidates are all truncated get none: they end without a leaf.
    """
    best: dict[int, tuple[int, Beam]] = {}
    for index, beam in enumerate(candidates):
        if beam.finish_reason == "length":
            continue
        current = best.get(beam.subtree)
        if current is None or _rank_key((index, beam)) < _rank_key(current):
            best[beam.subtree] = (index, beam)
    return [best[subtree][1] for subtree in sorted(best)]
