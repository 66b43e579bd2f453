"""Best-of-N and weighted best-of-N as LangGraph graphs.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}`` where ``result``
is a :class:`~langchain_ttc.core.types.TTCResult` as data. The graph samples ``n`` whole solutions in one
policy call (``generate``), scores every step of every solution in one PRM call (``score``), and
picks (``select``):

- naive best-of-N: the solution with the highest aggregated score;
- weighted best-of-N: the answer whose equivalent solutions have the largest summed score.

Example:
    >>> from langchain_ttc.arith.checkpoints import arith_checkpoint
    >>> from langchain_ttc.engines.transformers_policy import TransformersPolicy
    >>> from langchain_ttc.engines.transformers_prm import MathShepherdPRM
    >>> graph = create_weighted_best_of_n_graph(
    ...     TransformersPolicy.from_pretrained(arith_checkpoint("small")),
    ...     MathShepherdPRM.from_pretrained(arith_checkpoint("prm")), n=4)
    >>> out = graph.invoke({"problem": "Keep only the last digit after each step. What is 2+3?"})
    >>> out["result"]["usage"]["prm_calls"]
    1

"""

from __future__ import annotations

import time
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer

from langchain_ttc.core.aggregation import check_aggregation
from langchain_ttc.core.types import Candidate
from langchain_ttc.core.voting import best_of_n, weighted_best_of_n
from langchain_ttc.strategies.common import (
    DEFAULT_STEP_DELIMITER,
    SelectionState,
    StrategyGraph,
    StrategyInput,
    StrategyOutput,
    check_policy,
    check_prm,
    check_sampling_options,
    elapsed_since,
    emit,
    make_generate_node,
    score_candidates,
    selection_output,
    usage_of,
)
from langchain_ttc.strategies.context import TTCContext, merged_options, prm_for_run


def create_best_of_n_graph(
    policy: Any,
    prm: Any,
    *,
    n: int,
    aggregation: str = "last",
    weighted: bool = False,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = DEFAULT_STEP_DELIMITER,
    checkpointer: Checkpointer = None,
    name: str | None = None,
) -> StrategyGraph:
    """Build the best-of-N graph: ``generate``, ``score``, ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        prm: The PRM engine (a :class:`~langchain_ttc.engines.base.PRMEngine`).
        n: Number of solutions to sample (>= 1).
        aggregation: How step scores become one score: ``"last"``, ``"min"``, ``"prod"``, ``"mean"``.
        weighted: Pick the answer with the largest summed score instead of the best single solution.
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        max_tokens: Most tokens per solution; a solution cut off here is never picked.
        seed: Seed for reproducible sampling.
        system_prompt: Optional system message put before the problem.
        step_delimiter: Splits solutions into the steps the PRM scores.
        checkpointer: Optional LangGraph checkpointer.
        name: The compiled graph's name (default ``"best_of_n"`` or ``"weighted_best_of_n"``).

    Raises:
        ValueError: If ``n``, ``aggregation`` or a sampling setting is invalid.
        TypeError: If ``policy`` or ``prm`` is not an engine.

    """
    check_policy(policy)
    check_prm(prm)
    options = {
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "seed": seed,
        "aggregation": aggregation,
    }
    check_sampling_options(options)
    check_aggregation(aggregation)
    if not step_delimiter:
        raise ValueError("step_delimiter='' is empty; pass the text between steps, for example '\\n\\n'.")
    strategy = name or ("weighted_best_of_n" if weighted else "best_of_n")
    rule = weighted_best_of_n if weighted else best_of_n

    def score(state: SelectionState, runtime: Runtime[TTCContext]) -> dict[str, Any]:
        started = time.perf_counter()
        run_aggregation = check_aggregation(merged_options(options, runtime)["aggregation"])
        candidates = [Candidate.model_validate(c) for c in state["candidates"]]
        scored, usage = score_candidates(
            prm_for_run(prm, runtime), state["problem"], candidates, aggregation=run_aggregation
        )
        best = max((c.score for c in scored if c.score is not None), default=None)
        emit({"type": "ttc.scored", "candidates": len(scored), "best_score": best})
        total = usage_of(state) + usage + elapsed_since(started)
        return {"candidates": [c.model_dump() for c in scored], "usage": total.model_dump()}

    def select(state: SelectionState) -> dict[str, Any]:
        started = time.perf_counter()
        candidates = [Candidate.model_validate(c) for c in state["candidates"]]
        return selection_output(strategy, candidates, rule(candidates), usage_of(state) + elapsed_since(started))

    builder = StateGraph(
        SelectionState, context_schema=TTCContext, input_schema=StrategyInput, output_schema=StrategyOutput
    )
    builder.add_node(
        "generate", make_generate_node(policy, options, system_prompt=system_prompt, step_delimiter=step_delimiter)
    )
    builder.add_node("score", score)
    builder.add_node("select", select)
    builder.add_edge(START, "generate")
    builder.add_edge("generate", "score")
    builder.add_edge("score", "select")
    builder.add_edge("select", END)
    return builder.compile(checkpointer=checkpointer, name=strategy)


def create_weighted_best_of_n_graph(policy: Any, prm: Any, *, n: int, **options: Any) -> StrategyGraph:
    """Build the weighted best-of-N graph; the same options as :func:`create_best_of_n_graph`.

    Example:
        >>> graph = create_weighted_best_of_n_graph(policy, prm, n=16, aggregation="min")  # doctest: +SKIP

    """
    return create_best_of_n_graph(policy, prm, n=n, weighted=True, **options)
