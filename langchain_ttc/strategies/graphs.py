"""Graph schemas and compilation: the input, output and state of every strategy graph, and its wiring.

In: a strategy's nodes (bodies for :func:`~langchain_ttc.strategies.driver.as_node`). Out: compiled
graphs with the shared input schema (``{"problem"}`` or ``{"messages"}``, optional ``pilots``), the
shared output schema (``{"answer", "result"}``) and states of plain, checkpointable data. The state
is read through the typed accessors here (:func:`config_of`, :func:`candidates_of`, :func:`usage_of`),
never with ad hoc ``model_validate`` calls in nodes.

Example:
    >>> candidate = {"text": "x", "steps": ["x"], "answer": None, "finish_reason": "eos"}
    >>> state = {"usage": {"policy_calls": 2}, "candidates": [candidate]}
    >>> usage_of(state).policy_calls, candidates_of(state)[0].text
    (2, 'x')

"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypedDict, TypeVar

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import DEFAULT_RECURSION_LIMIT
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer

from langchain_ttc.core.types import Candidate, Message, Usage
from langchain_ttc.strategies.config import StrategyConfig
from langchain_ttc.strategies.context import TTCContext, context_options
from langchain_ttc.strategies.driver import add_usage, as_node, as_usage

C = TypeVar("C", bound=StrategyConfig)

StrategyGraph = CompiledStateGraph[Any, Any, Any, Any]
"""The type of every compiled strategy graph."""

UsageChannel = Annotated[dict[str, Any], add_usage]
"""The state's ``usage``: each node's usage (and wall time, added by the driver) summed by the reducer."""


class StrategyInput(TypedDict, total=False):
    """Graph input: a problem string, or a chat whose last user message is the problem.

    ``pilots`` (optional) are whole solutions already sampled for this problem, as
    :class:`~langchain_ttc.core.types.Candidate` data (the compute-optimal router passes the samples it
    estimated difficulty from). They are reused, not resampled: the sample-then-select graphs
    count them toward ``n`` (and keep their PRM scores), the step-level searches add them to the
    pool their final selection picks from.
    """

    problem: str
    messages: list[Any]
    pilots: list[dict[str, Any]]


class StrategyOutput(TypedDict):
    """Graph output: the chosen answer and the whole :class:`~langchain_ttc.core.types.TTCResult` as data."""

    answer: str | None
    result: dict[str, Any]


class SelectionState(StrategyInput, total=False):
    """State of the sample-then-select graphs (plain data, checkpointable)."""

    config: dict[str, Any]
    conversation: list[Message]
    candidates: list[dict[str, Any]]
    usage: UsageChannel
    answer: str | None
    result: dict[str, Any]


def run_config(config: C, runtime: Runtime[Any] | None) -> C:
    """The graph's config with the run's context settings on top, validated again.

    Raises:
        ValueError: If the context sets an invalid value (named, with the fix).

    """
    return config.merged(context_options(runtime))


def config_of(state: Mapping[str, Any], cls: type[C]) -> C:
    """The config a run validated and stored in its state (plain data, so checkpoints hold it).

    Read as ``cls`` or one of its bases (a shared node reads the fields it knows; no validation again).
    """
    return cls.model_construct(**state["config"])


def usage_of(state: Mapping[str, Any]) -> Usage:
    """The usage recorded in a graph state so far."""
    return as_usage(state.get("usage"))


def candidates_of(state: Mapping[str, Any], key: str = "candidates") -> list[Candidate]:
    """The candidates stored under ``key`` (``"candidates"``, or ``"pilots"``) in a graph state."""
    return [Candidate.model_validate(c) for c in state.get(key) or []]


def dumped(items: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic items as the plain data a state stores."""
    return [item.model_dump() for item in items]


LOOP_STEP_BUDGET = 10_000
"""The recursion limit a looping graph runs under when the caller sets none (or LangChain's default 25)."""


class LoopingGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """A compiled graph with a loop: its runs get a step budget that fits the loop.

    Each loop iteration takes a few LangGraph steps, so ``max_iterations=40`` needs about 123: more
    than LangChain's default ``recursion_limit`` of 25 that ``invoke``, ``batch`` and LCEL chains fill
    in. A run whose limit is missing or that default gets :data:`LOOP_STEP_BUDGET` (the loop bounds
    itself by its own ``max_iterations`` or ``max_revisions``); an explicit other limit is kept.
    Built by :func:`compile_loop`.
    """

    def stream(self, input: Any, config: RunnableConfig | None = None, *args: Any, **kwargs: Any) -> Any:
        """Stream a run (see ``CompiledStateGraph.stream``) under the loop's step budget."""
        return super().stream(input, _budgeted(config), *args, **kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None, *args: Any, **kwargs: Any) -> Any:
        """Stream a run asynchronously (see ``CompiledStateGraph.astream``) under the loop's step budget."""
        return super().astream(input, _budgeted(config), *args, **kwargs)


def _budgeted(config: RunnableConfig | None) -> RunnableConfig:
    budgeted: RunnableConfig = {**(config or {})}
    if budgeted.get("recursion_limit") in (None, DEFAULT_RECURSION_LIMIT):
        budgeted["recursion_limit"] = LOOP_STEP_BUDGET
    return budgeted


def new_graph(state: type[Any]) -> StateGraph[Any, Any, Any, Any]:
    """A graph builder over ``state`` with the shared context, input and output schemas."""
    return StateGraph(state, context_schema=TTCContext, input_schema=StrategyInput, output_schema=StrategyOutput)


def build_pipeline(
    nodes: Sequence[tuple[str, Any]], *, checkpointer: Checkpointer, name: str
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Wire a sample-then-select graph: its nodes one after the other, from start to end."""
    builder = new_graph(SelectionState)
    for node_name, node in nodes:
        builder.add_node(node_name, as_node(node, name=node_name))
    names = [START, *(node_name for node_name, _ in nodes), END]
    for first, second in itertools.pairwise(names):
        builder.add_edge(first, second)
    return builder.compile(checkpointer=checkpointer, name=name)


def compile_loop(builder: StateGraph[Any, Any, Any, Any], *, checkpointer: Checkpointer, name: str) -> LoopingGraph:
    """Compile a graph that loops into a :class:`LoopingGraph` (constructed as LangGraph's ``copy`` does)."""
    graph = builder.compile(checkpointer=checkpointer, name=name)
    return LoopingGraph(**{k: v for k, v in graph.__dict__.items() if k != "__orig_class__"})
