"""Majority voting (self-consistency) as a LangGraph graph.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}`` where ``result``
is a :class:`~langchain_ttc.core.types.TTCResult` as data. The graph samples ``n`` whole solutions in one
policy call (``generate``) and returns the most frequent answer, answers compared by mathematical
equivalence (``select``). No PRM.

Example:
    >>> from langchain_ttc.arith.checkpoints import arith_checkpoint
    >>> from langchain_ttc.engines.transformers_policy import TransformersPolicy
    >>> graph = create_majority_vote_graph(TransformersPolicy.from_pretrained(arith_checkpoint("small")), n=4)
    >>> out = graph.invoke({"problem": "Keep only the last digit after each step. What is 2+3?"})
    >>> sorted(out)
    ['answer', 'result']

"""

from __future__ import annotations

import time
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Checkpointer

from langchain_ttc.core.types import Candidate
from langchain_ttc.core.voting import majority_vote
from langchain_ttc.strategies.common import (
    DEFAULT_STEP_DELIMITER,
    SelectionState,
    StrategyGraph,
    StrategyInput,
    StrategyOutput,
    check_policy,
    check_sampling_options,
    elapsed_since,
    make_generate_node,
    selection_output,
    usage_of,
)
from langchain_ttc.strategies.context import TTCContext


def create_majority_vote_graph(
    policy: Any,
    *,
    n: int,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = DEFAULT_STEP_DELIMITER,
    checkpointer: Checkpointer = None,
    name: str = "majority_vote",
) -> StrategyGraph:
    """Build the majority-vote graph: ``generate`` then ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        n: Number of solutions to sample (>= 1).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        max_tokens: Most tokens per solution; a solution cut off here is not finished and does not vote.
        seed: Seed for reproducible sampling.
        system_prompt: Optional system message put before the problem.
        step_delimiter: Splits solutions into steps (for the result's ``steps``).
        checkpointer: Optional LangGraph checkpointer.
        name: The compiled graph's name.

    Raises:
        ValueError: If ``n``, ``temperature``, ``top_p`` or ``max_tokens`` is out of range.
        TypeError: If ``policy`` is not a policy engine.

    """
    check_policy(policy)
    options = {"n": n, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
    check_sampling_options(options)

    def select(state: SelectionState) -> dict[str, Any]:
        started = time.perf_counter()
        candidates = [Candidate.model_validate(c) for c in state["candidates"]]
        return selection_output(name, candidates, majority_vote(candidates), usage_of(state) + elapsed_since(started))

    builder = StateGraph(
        SelectionState, context_schema=TTCContext, input_schema=StrategyInput, output_schema=StrategyOutput
    )
    builder.add_node(
        "generate", make_generate_node(policy, options, system_prompt=system_prompt, step_delimiter=step_delimiter)
    )
    builder.add_node("select", select)
    builder.add_edge(START, "generate")
    builder.add_edge("generate", "select")
    builder.add_edge("select", END)
    return builder.compile(checkpointer=checkpointer, name=name)
