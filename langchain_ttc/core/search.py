"""Beam bookkeeping for step-level search (beam search, DVTS, particle filtering and Gibbs): pure functions.

In: beams (partial solutions with their PRM scores) and the search settings. Out: which beams
finish, which survive pruning, and how survivors expand. No models, no LangGraph.

A :class:`Beam` is a partial assistant text written one step at a time. After each step it is

- *complete* when the policy ended it (end of sequence), or a search's stop rule says it is done
  (DVTS's :func:`answered`, particle filtering's :func:`stopped_at`): a complete solution;
- *truncated* when it ran out of tokens: never complete, never chosen (the reference counted it);
- *active* otherwise (it stopped at the step delimiter) and goes on to the next iteration.

A step that writes nothing but whitespace (the delimiter alone) makes no progress: it ends its beam
as end of sequence does (the reference ends a beam whose step is empty).

Example:
    >>> beams = [Beam(text="a", score=0.2), Beam(text="b", score=0.9), Beam(text="a", score=0.2)]
    >>> [b.text for b in prune(beams, keep=2, filter_duplicates=True)]
    ['a', 'b']
    >>> repeat_counts(3, 8)
    [3, 3, 2]

"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey, extract_boxed
from langchain_ttc.core.types import Candidate, Completion, FinishReason


class Beam(BaseModel):
    """One partial solution in a search.

    Attributes:
        id: The beam's id in its search (its node in the search tree).
        parent: The id of the beam it continues (``None`` for a root).
        text: The assistant text so far (step delimiters kept, so continuing it is exact).
        step: The text its last step added.
        finish_reason: How its last step ended (``"stop"`` while active).
        num_tokens: Tokens generated for it so far (its ancestors' included).
        lookahead: Text rolled out past ``text`` at temperature 0 for scoring (never kept).
        step_scores: PRM scores of the steps of ``text + lookahead``.
        score: The aggregated score.
        subtree: Its DVTS subtree (0 in beam search).
        iteration: The iteration that wrote its last step.

    """

    model_config = ConfigDict(extra="forbid")

    id: int = 0
    parent: int | None = None
    text: str = ""
    step: str = ""
    finish_reason: FinishReason = "stop"
    num_tokens: int = 0
    lookahead: str = ""
    step_scores: list[float] = Field(default_factory=list)
    score: float | None = None
    subtree: int = 0
    iteration: int = 0

    @property
    def complete(self) -> bool:
        """Whether the solution is finished: the policy (or a search's stop rule) ended it, not truncated."""
        return self.finish_reason == "eos"

    @property
    def truncated(self) -> bool:
        """Whether it ran out of ``max_tokens``: never complete, never chosen."""
        return self.finish_reason == "length"

    @property
    def active(self) -> bool:
        """Whether the search goes on from this beam."""
        return self.finish_reason == "stop"

    def to_candidate(self, delimiter: str, key: AnswerKey = MATH_ANSWERS) -> Candidate:
        """The beam as a result candidate, its answer read by ``key`` (by default the last ``\\boxed{}``)."""
        return Candidate(
            text=self.text,
            steps=split_steps(self.text, delimiter),
            answer=key.answer_of(self.text),
            finish_reason=self.finish_reason,
            num_tokens=self.num_tokens,
            step_scores=self.step_scores or None,
            score=self.score,
        )


def extend(parent: Beam, completion: Completion, *, iteration: int) -> Beam:
    """The child of ``parent`` that ``completion`` writes one step further.

    A step of only whitespace ends the beam (``"eos"``): it made no progress and would otherwise
    stay active forever.
    """
    reason = completion.finish_reason
    if reason == "stop" and not completion.text.strip():
        reason = "eos"
    return Beam(
        parent=parent.id,
        text=parent.text + completion.text,
        step=completion.text,
        finish_reason=reason,
        num_tokens=parent.num_tokens + completion.num_tokens,
        subtree=parent.subtree,
        iteration=iteration,
    )


def answered(beam: Beam) -> Beam:
    """DVTS: a step that states the answer (a complete ``\\boxed{}``) ends the solution like end of sequence.

    The rule reads ``\\boxed{}`` whatever answer key the search votes with (``answers=``), as the
    reference's does: search-and-learn ends a DVTS subtree once ``"boxed{"`` is in its text and only
    then reads the answer with its parser. The key decides how finished solutions vote, not when a
    subtree is done; a solution the key reads an answer from without a ``\\boxed{}`` (``the answer
    is 7``) goes on until end of sequence, as in the reference.

    Example:
        >>> answered(Beam(text="3+4=7\\n\\n\\\\boxed{7}\\n\\n")).finish_reason
        'eos'

    """
    if beam.active and extract_boxed(beam.text) is not None:
        return beam.model_copy(update={"finish_reason": "eos"})
    return beam


def stopped_at(beam: Beam, stop: str | None, delimiter: str = "") -> Beam:
    """its_hub's stop rule: an active beam whose last step contains ``stop`` is complete (``"eos"``).

    The step is read without its closing ``delimiter``, as its_hub reads it (its steps leave the delimiter
    out). A beam it ends loses the lookahead rolled past it: a finished solution is scored as written,
    as one that ended at end of sequence is. ``stop=None``: the beam as it is.

    Example:
        >>> stopped_at(Beam(step="so \\\\boxed{7}\\n\\n"), "\\\\boxed", "\\n\\n").finish_reason
        'eos'
        >>> stopped_at(Beam(step="so 7\\n\\n"), "\\\\boxed", "\\n\\n").finish_reason
        'stop'

    """
    if stop is not None and beam.active and stop in beam.step.removesuffix(delimiter):
        return beam.model_copy(update={"finish_reason": "eos", "lookahead": ""})
    return beam


def interleave(groups: Sequence[Sequence[Beam]]) -> list[Beam]:
    """The children of several parents in the reference's order: one of each parent in turn.

    Example:
        >>> [b.text for b in interleave([[Beam(text="a1"), Beam(text="a2")], [Beam(text="b1")]])]
        ['a1', 'b1', 'a2']

    """
    rounds = max((len(g) for g in groups), default=0)
    return [group[k] for k in range(rounds) for group in groups if k < len(group)]


def repeat_counts(active: int, n: int) -> list[int]:
    """How many of ``n`` continuations each of ``active`` beams writes: the beams repeated in turn up to ``n``.

    The reference lists the active beams again and again and cuts the list at ``n``, so every
    iteration spends ``n`` samples however few beams survive; the first ``n % active`` beams get one more.
    """
    if active < 1:
        return []
    return [n // active + (1 if i < n % active else 0) for i in range(active)]


def top_by_score(beams: Sequence[Beam], keep: int) -> list[Beam]:
    """The ``keep`` best-scored beams, best first (ties: the earlier beam)."""
    return [beam for _, beam in sorted(enumerate(beams), key=_rank_key)[:keep]]


def split_steps(text: str, delimiter: str) -> list[str]:
    """Split a (partial) solution into its non-empty steps."""
    return [step.strip() for step in text.split(delimiter) if step.strip()]


def _rank_key(indexed: tuple[int, Beam]) -> tuple[float, int]:
    index, beam = indexed
    return (-(beam.score if beam.score is not None else float("-inf")), index)


def prune(beams: Sequence[Beam], *, keep: int, filter_duplicates: bool) -> list[Beam]:
    """Keep the ``keep`` best-scored beams (ties: the earlier beam), optionally dropping duplicates.

    Duplicates are beams with the same text; the first copy is kept. Survivors keep their order
    (as the reference's, whose order decides which survivors write one more continuation).
    """
    if filter_duplicates:
        seen: set[str] = set()
        unique = []
        for beam in beams:
            if beam.text not in seen:
                seen.add(beam.text)
                unique.append(beam)
        beams = unique
    kept = {index for index, _ in sorted(enumerate(beams), key=_rank_key)[:keep]}
    return [beam for index, beam in enumerate(beams) if index in kept]


def best_per_subtree(candidates: Sequence[Beam]) -> list[Beam]:
    """DVTS: for each subtree, its best-scored candidate that is not truncated (ties: the earlier one).

    Subtrees whose candidates are all truncated get none: they end without a leaf.
    """
    best: dict[int, tuple[int, Beam]] = {}
    for index, beam in enumerate(candidates):
        if beam.truncated:
            continue
        current = best.get(beam.subtree)
        if current is None or _rank_key((index, beam)) < _rank_key(current):
            best[beam.subtree] = (index, beam)
    return [best[subtree][1] for subtree in sorted(best)]


def _logit(score: float) -> float:
    clipped = min(max(score, 1e-7), 1 - 1e-7)  # a score of exactly 0 or 1 stays finite
    return math.log(clipped / (1 - clipped))


def particle_weights(scores: Sequence[float | None], temperature: float) -> list[float]:
    """Resampling probabilities of particles from their PRM scores (Puri et al., 2025; its_hub).

    A score ``s`` in [0, 1] is read as a probability; its logit ``log(s / (1 - s))`` divided by the
    temperature goes through a softmax. An unscored particle (truncated, or with no step yet) gets 0.

    Example:
        >>> [round(w, 3) for w in particle_weights([0.5, 0.9, None], temperature=1.0)]
        [0.1, 0.9, 0.0]

    """
    logits = [None if s is None else _logit(s) / temperature for s in scores]
    top = max((x for x in logits if x is not None), default=None)
    if top is None:
        return [0.0] * len(scores)
    exps = [0.0 if x is None else math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def resample(weights: Sequence[float], k: int, rng: random.Random, *, method: str = "multinomial") -> list[int]:
    """Indices of ``k`` particles drawn with replacement in proportion to ``weights``.

    ``multinomial``: ``k`` independent draws. ``systematic``: one uniform offset, then ``k`` evenly
    spaced points on the cumulative weights (lower variance; each particle is drawn
    ``floor(k * w)`` or ``ceil(k * w)`` times).

    Example:
        >>> resample([0.0, 1.0, 0.0], 3, random.Random(0))
        [1, 1, 1]
        >>> sorted(resample([0.5, 0.5], 4, random.Random(0), method="systematic"))
        [0, 0, 1, 1]

    """
    if method == "multinomial":
        return rng.choices(range(len(weights)), weights=weights, k=k)
    total = sum(weights)
    offset = rng.random() / k
    chosen, cumulative, index = [], weights[0] / total, 0
    for i in range(k):
        point = offset + i / k
        while point > cumulative and index < len(weights) - 1:
            index += 1
            cumulative += weights[index] / total
        chosen.append(index)
    return chosen
