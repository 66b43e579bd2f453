"""Self-refinement bookkeeping: critiques, revision prefixes and stop rules (pure functions on plain data).

In: drafts (whole solutions) and critiques of them. Out: where a revision restarts, and whether a
chain of drafts stops. The graph is :mod:`langchain_ttc.strategies.refine.self_refine`.

A critique names the first wrong step (0-based ``step``) or none (``step=None``: no error found).
It comes from a verifier's step scores (:func:`critique_from_scores`) or from a critic's text
(:func:`parse_critique`). A chain stops when

- ``"no_error"``: the critique of its last draft finds no error;
- ``"unchanged"``: a revision gave the same answer as the draft before it;
- ``"budget"``: it holds ``max_revisions`` revisions.

Example:
    >>> critique_from_scores(["2+2=4.", "4*3=11."], [0.9, 0.2], threshold=0.5).step
    1
    >>> parse_critique("Step 2 is wrong: 4*3=12.", num_steps=2).step
    1
    >>> revision_prefix(["2+2=4.", "4*3=11."], 1, "\\n\\n")
    '2+2=4.\\n\\n'

"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey
from langchain_ttc.core.types import Candidate

StopReason = Literal["no_error", "unchanged", "budget"]
_STEP = re.compile(r"\bstep\s*(\d+)", re.IGNORECASE)
_NO_ERROR = re.compile(r"\bno (error|mistake)s?\b|\ball (the )?steps are (right|correct)\b", re.IGNORECASE)


class Critique(BaseModel):
    """A critique of one draft: the first wrong step (``None``: no error found) and its text."""

    model_config = ConfigDict(extra="forbid")

    step: int | None
    text: str


class Draft(BaseModel):
    """One draft of a chain: the solution, its revision number, and the critique it received."""

    model_config = ConfigDict(extra="forbid")

    chain: int
    revision: int
    candidate: Candidate
    critique: Critique | None = None


def critique_from_scores(steps: Sequence[str], scores: Sequence[float], *, threshold: float) -> Critique:
    """Flag the first step a verifier scores below ``threshold``."""
    for index, score in enumerate(scores):
        if score < threshold:
            return Critique(
                step=index, text=f"Step {index + 1} looks wrong (verifier score {score:.2f}): {steps[index]}"
            )
    return Critique(step=None, text="No error.")


def parse_critique(text: str, *, num_steps: int) -> Critique:
    """Read a critic's reply: ``Step K ...`` flags step K; "no error" or anything unreadable flags none."""
    match = _STEP.search(text)
    if match and not _NO_ERROR.search(text[: match.start()]):
        step = int(match.group(1)) - 1
        if 0 <= step < num_steps:
            return Critique(step=step, text=text.strip())
    return Critique(step=None, text=text.strip() or "No error.")


def revision_prefix(steps: Sequence[str], step: int, delimiter: str) -> str:
    """The partial solution a revision continues: the steps before the flagged one, delimiter kept."""
    return "".join(f"{s}{delimiter}" for s in steps[:step])


def stop_reason(drafts: Sequence[Draft], *, max_revisions: int, key: AnswerKey = MATH_ANSWERS) -> StopReason | None:
    """Why a chain (its drafts in order) stops now, or ``None`` if it goes on to another revision.

    "unchanged" compares the last two drafts' answers with ``key`` (the run's answer key).
    """
    last = drafts[-1]
    if len(drafts) >= 2:
        before, after = drafts[-2].candidate.answer, last.candidate.answer
        if before is not None and after is not None and key.equivalent(before, after):
            return "unchanged"
    if last.revision >= max_revisions:
        return "budget"
    if last.critique is not None and last.critique.step is None:
        return "no_error"
    return None
