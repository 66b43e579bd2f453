"""The search tree as data: every partial solution a step-level search wrote, with its parent and fate.

In: the beams of a search (each with an id and its parent's id). Out: :class:`TreeNode` records,
plain data in ``result.metadata["tree"]`` when a search is asked to record its tree
(``record_tree=True``); a drawing of it is a view of this data.

Fates: ``kept`` (survived its iteration and went on), ``pruned`` (dropped by the PRM's ranking),
``finished`` (a complete solution), ``truncated`` (cut off by ``max_tokens``), ``chosen`` (the
finished solution the search returned).

Example:
    >>> from langchain_ttc.core.search import Beam
    >>> TreeNode.of(Beam(id=3, parent=0, step="1+1=2", score=0.9), "kept").model_dump()["parent"]
    0

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from langchain_ttc.core.search import Beam

Fate = Literal["kept", "pruned", "finished", "truncated", "chosen"]


class TreeNode(BaseModel):
    """One node of a search tree.

    Attributes:
        id: The node's id (unique within the search; roots are the empty solutions).
        parent: Its parent's id (``None`` for a root).
        iteration: The iteration that wrote it (-1 for a root).
        step: The step it added to its parent's text.
        score: The PRM's aggregated score of its whole text (``None`` if unscored).
        fate: What became of it.

    """

    model_config = ConfigDict(extra="forbid")

    id: int
    parent: int | None
    iteration: int = -1
    step: str = ""
    score: float | None = None
    fate: Fate

    @classmethod
    def of(cls, beam: Beam, fate: Fate) -> TreeNode:
        """The node of ``beam`` with ``fate``."""
        return cls(id=beam.id, parent=beam.parent, iteration=beam.iteration, step=beam.step, score=beam.score,
                   fate=fate)  # fmt: skip
