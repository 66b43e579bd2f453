"""What a compiled strategy graph was built from, for the surfaces that must check it before a run.

In: a compiled graph and, from its builder, the policy it samples from and the answer key it votes
with. Out: :func:`parts_of` gives them back (``None`` for a graph no builder recorded), so the
chat-model facade can refuse ``bind_tools`` early when the graph cannot vote over tool calls.
Records are weak: they go when the graph goes. The graph itself is left as LangGraph built it.

Example:
    >>> graph = record_parts(build_pipeline(...), policy=policy, answer_key=key)  # doctest: +SKIP
    >>> parts_of(graph).answer_key.name  # doctest: +SKIP
    'tool_calls'

"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.engines.base import PolicyEngine

G = TypeVar("G")
_PARTS: weakref.WeakKeyDictionary[Any, GraphParts] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class GraphParts:
    """The collaborators a strategy graph was built with.

    Attributes:
        strategy: The compiled graph's name.
        policy: The policy engine it samples from.
        answer_key: The answer key its vote reads answers with.

    """

    strategy: str
    policy: PolicyEngine
    answer_key: AnswerKey


def record_parts(graph: G, *, policy: PolicyEngine, answer_key: AnswerKey) -> G:
    """Remember what ``graph`` was built from; returns ``graph`` unchanged."""
    _PARTS[graph] = GraphParts(strategy=str(getattr(graph, "name", "")), policy=policy, answer_key=answer_key)
    return graph


def parts_of(graph: Any) -> GraphParts | None:
    """What ``graph`` was built from, or ``None`` if its builder recorded nothing (or it is not weakly referable)."""
    try:
        return _PARTS.get(graph)
    except TypeError:
        return None
