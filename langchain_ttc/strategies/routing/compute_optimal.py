"""Compute-optimal scaling as a LangGraph graph: estimate difficulty, then run the best strategy for the budget.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}``. The graph
samples ``pilots`` whole solutions (one policy call, one PRM call when the estimator or the routes
need scores), estimates the problem's difficulty from them (``route``), looks its bin up in the
strategy table at this budget, and hands the problem and the pilots to that strategy's subgraph
(majority vote, best-of-N, weighted best-of-N, beam search or DVTS; each a node, visible in Studio).

Budget accounting: the pilots count against the budget ``N`` and are reused, never wasted. A
sample-then-select strategy samples ``N - pilots`` more and selects among all ``N``; a step-level
search runs ``(N - pilots)`` beams rounded down to whole subtrees and its final selection also
considers the pilots. So pilots + strategy samples <= ``N``. A budget-choosing table (``ttc calibrate --max-budget`` or
``--tolerance``) lists under ``N`` a smaller budget per bin, and the router spends that instead (the
same accounting, with the bin's budget for ``N``): easy problems get little, hard ones up to ``N``.
The pilots and the strategy sample
from seeds derived apart (:mod:`langchain_ttc.core.seeds`), so the strategy's samples are new ones, not
copies of the pilots, on every backend.

The result's ``metadata["routing"]`` names the estimator, the difficulty, the bin, the strategy
and its options (its ``n``), the budget asked (``budget``) and the budget spent (``chosen_budget``);
a ``ttc.routed`` stream event announces the decision before the strategy runs (stream with
``subgraphs=True`` to see the strategy's own events too), and ``ttc.selected`` ends the run as in
every strategy graph. A run's context ``n`` picks another of the table's budgets.

Example:
    >>> from langchain_ttc.engines.loading import load_policy, load_prm
    >>> graph = create_compute_optimal_graph(load_policy("arith:small"), load_prm("arith:prm"), budget=16)
    >>> out = graph.invoke({"problem": "Keep only the last digit after each step. What is 2+3?"})
    >>> sorted(out["result"]["metadata"]["routing"])
    ['bin', 'budget', 'chosen_budget', 'difficulty', 'estimator', 'options', 'pilots', 'strategy']

"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from langgraph.graph import END, START
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer
from pydantic import Field

from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.types import Candidate, Message, TTCResult, Usage
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import StrategyConfig, validated
from langchain_ttc.strategies.context import OPTION_FIELDS, TTCContext, context_of, policy_for_run, prm_for_run
from langchain_ttc.strategies.driver import Calls, as_node, call, emit
from langchain_ttc.strategies.generation import (
    check_policy,
    check_prm,
    conversation_from_input,
    sample,
    sampling_request,
    score_candidates,
)
from langchain_ttc.strategies.graphs import (
    StrategyGraph,
    StrategyInput,
    UsageChannel,
    candidates_of,
    compile_loop,
    dumped,
    new_graph,
    run_config,
    usage_of,
)
from langchain_ttc.strategies.registry import create_strategy_graph, strategy_spec
from langchain_ttc.strategies.routing.difficulty import (
    ESTIMATORS,
    DifficultyEstimator,
    check_estimator,
    estimate_difficulty,
)
from langchain_ttc.strategies.routing.table import StrategyChoice, StrategyTable, load_table
from langchain_ttc.strategies.spec import StrategySpec


class ComputeOptimalConfig(StrategyConfig):
    """The router: ``n`` is the budget (pilots included); the table and estimator by path and name."""

    n: int = Field(ge=1, description="The budget N (pilots included); one of the table's budgets.")
    table: str | None = Field(None, description="A strategy table file (default: the shipped Arith table).")
    estimator: str | None = Field(None, description="The difficulty estimator (default: the table's).")


INHERITED_FIELDS = frozenset(StrategyConfig.model_fields) - {"n"} | {"record_tree"}
"""Context settings a routed strategy takes from the run: how to sample (temperature, seed, ...), and the tree."""
ROUTED_FIELDS = tuple(sorted(OPTION_FIELDS - INHERITED_FIELDS))
"""Context settings the table fixes for a routed strategy: every other option (the context's ``n`` is the
router's budget; a ``rounds`` or ``beam_width`` meant for a strategy run alone must not reach the routed one)."""


class RouterState(StrategyInput, total=False):
    """State of the compute-optimal graph (plain data, checkpointable)."""

    usage: UsageChannel
    routing: dict[str, Any]
    route: str
    answer: str | None
    result: dict[str, Any]


def route_nodes(table: StrategyTable) -> tuple[dict[str, tuple[StrategyChoice, int]], dict[tuple[int, str], str]]:
    """The strategy nodes (name -> choice and its ``n``) and the routes ((budget, bin) -> node name).

    A node per distinct choice and ``n`` over every budget, named ``<strategy>_n<n>`` (numbered
    when options differ), so a run may pick any of the table's budgets.
    """
    nodes: dict[str, tuple[StrategyChoice, int]] = {}
    routes: dict[tuple[int, str], str] = {}
    for budget in sorted(table.budgets):
        for bin_name, choice in table.budgets[budget].items():
            target = (choice, choice.n(budget, table.pilots))
            node = next((name for name, existing in nodes.items() if existing == target), None)
            if node is None:
                node = base = f"{choice.strategy}_n{target[1]}"
                count = 1
                while node in nodes:
                    count += 1
                    node = f"{base}_{count}"
                nodes[node] = target
            routes[budget, bin_name] = node
    return nodes, routes


def strategy_seed(seed: int | None) -> int | None:
    """The routed strategy's base seed: a stream of its own, apart from the pilots', so its samples are new."""
    return derive_seed(seed, "routed strategy")


def draw_pilots(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    problem: str,
    conversation: list[Message],
    *,
    count: int,
    config: StrategyConfig,
    aggregation: str,
) -> Calls[tuple[list[Candidate], Usage]]:
    """The pilot samples (one policy call) and, with a PRM, their step scores (one PRM call).

    The graph's ``pilots`` node and calibration both call it (calibration through
    :func:`~langchain_ttc.strategies.driver.run_calls`), so a table is calibrated on the router's own
    pilots. Their answers are read with the key ``config.answers`` names, the routed strategy's key
    (it reuses the pilots as they are).
    """
    request = sampling_request(config, conversation, n=count, seed=derive_seed(config.seed, "pilots"))
    candidates, usage = yield from sample(policy, request, delimiter=config.step_delimiter, key=config.answer_key())
    if prm is not None:
        candidates, scoring = yield from score_candidates(prm, problem, candidates, aggregation=aggregation)
        usage = usage + scoring
    return candidates, usage


def create_compute_optimal_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None = None,
    *,
    budget: int,
    table: str | os.PathLike[str] | dict[str, Any] | StrategyTable | None = None,
    estimator: str | DifficultyEstimator | None = None,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    checkpointer: Checkpointer = None,
    name: str = "compute_optimal",
) -> StrategyGraph:
    """Build the compute-optimal graph: ``pilots`` → ``route`` → one strategy subgraph → ``finish``.

    Args:
        policy: The policy engine.
        prm: The PRM engine; needed when the estimator or a strategy at this budget scores steps.
        budget: The compute budget ``N`` (whole-solution samples or beams, pilots included); it
            must be one of the table's budgets.
        table: A strategy table file (default: the shipped Arith table).
        estimator: The difficulty estimator (default: the table's).
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass, in (0, 1].
        max_tokens: Most tokens per solution (per step in the searches); a cut-off one is never picked.
        seed: Seed for reproducible sampling (each draw gets its own stream).
        system_prompt: Optional system message put before the problem, or preset:<name> (preset:search-and-learn).
        step_delimiter: The text between steps, e.g. '\\n\\n'.
        answers: The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math
            (search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls.
        checkpointer: Optional LangGraph checkpointer.
        name: The compiled graph's name.

    Raises:
        ValueError: A budget not in the table or smaller than the pilot count, an invalid table,
            an estimator other than the table's, or a missing PRM.
        TypeError: If ``policy`` or ``prm`` is not an engine.

    """
    config = validated(
        ComputeOptimalConfig, n=budget, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        system_prompt=system_prompt, step_delimiter=step_delimiter, answers=answers,
        table=os.fspath(table) if isinstance(table, (str, os.PathLike)) else None,
        estimator=estimator if isinstance(estimator, str) else None,
    )  # fmt: skip
    return build_compute_optimal_graph(
        policy, prm, config, table=table, estimator=estimator, checkpointer=checkpointer, name=name
    )


def build_compute_optimal_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: ComputeOptimalConfig,
    *,
    table: str | os.PathLike[str] | dict[str, Any] | StrategyTable | None = None,
    estimator: str | DifficultyEstimator | None = None,
    checkpointer: Checkpointer = None,
    name: str = "compute_optimal",
) -> StrategyGraph:
    """The router for a validated config; ``table`` and ``estimator`` objects override the config's names."""
    check_policy(policy)
    checked = load_table(table if table is not None else config.table)
    check_budget(config.n, checked, parameter="budget")
    estimator = estimator if estimator is not None else config.estimator
    estimate, estimator_name, needs_scores = _estimator(estimator, checked)
    needs_prm = needs_scores or any(
        strategy_spec(c.strategy).needs_prm for choices in checked.budgets.values() for c in choices.values()
    )
    if needs_prm:
        if prm is None:
            raise ValueError(
                f"the strategy table routes to strategies that score steps (or its estimator {estimator_name!r} "
                "does); pass prm=."
            )
        prm = check_prm(prm)
    score_pilots = needs_prm or (prm is not None and callable(estimator))
    nodes, routes = route_nodes(checked)

    def sample_pilots(state: RouterState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run = run_config(config, runtime)
        check_budget(run.n, checked, parameter="context n")
        problem, conversation = conversation_from_input(state, system_prompt=run.system_prompt)
        scorer = prm_for_run(prm, runtime) if score_pilots and prm is not None else None
        candidates, usage = yield from draw_pilots(
            policy_for_run(policy, runtime), scorer, problem, conversation, count=checked.pilots, config=run,
            aggregation=checked.aggregation,
        )  # fmt: skip
        emit({"type": "ttc.generated", "candidates": len(candidates), "tokens": usage.completion_tokens})
        return {
            "problem": problem,
            "pilots": dumped(candidates),
            "routing": {"budget": run.n},
            "usage": usage,
        }

    def route(state: RouterState, runtime: Runtime[TTCContext]) -> dict[str, Any]:
        run_budget = state["routing"]["budget"]
        key = run_config(config, runtime).answer_key()
        difficulty = estimate_difficulty(estimate, candidates_of(state, "pilots"), key=key)
        bin_name = checked.bin_of(difficulty)
        choice = checked.budgets[run_budget][bin_name]
        routing = {
            "estimator": estimator_name,
            "difficulty": difficulty,
            "bin": bin_name,
            "strategy": choice.strategy,
            "options": {**choice.options, "n": choice.n(run_budget, checked.pilots)},
            "budget": run_budget,
            "chosen_budget": choice.spends(run_budget),  # the bin's own budget in a budget-choosing table
            "pilots": checked.pilots,
        }
        emit({"type": "ttc.routed", **routing})
        node = routes[run_budget, bin_name]
        return {"routing": routing, "route": node}

    def finish(state: RouterState) -> dict[str, Any]:
        result = TTCResult.model_validate(state["result"])
        usage = usage_of(state)  # the pilots', the routing's and the strategy's (its calls, and its node's time)
        metadata = {**result.metadata, "routing": state["routing"]}
        result = result.model_copy(update={"strategy": name, "usage": usage, "metadata": metadata})
        emit({"type": "ttc.selected", "answer": result.answer, "chosen_index": result.chosen_index})
        return {"answer": result.answer, "result": result.model_dump()}

    builder = new_graph(RouterState)
    builder.add_node("pilots", as_node(sample_pilots, name="pilots"))
    builder.add_node("route", as_node(route))
    common = {name: getattr(config, name) for name in StrategyConfig.model_fields if name != "n"}
    common["seed"] = strategy_seed(config.seed)
    for node, (choice, n) in nodes.items():
        spec = strategy_spec(choice.strategy)
        scored = {"aggregation": checked.aggregation} if "aggregation" in spec.config.model_fields else {}
        options = {**common, **scored, **choice.options}  # the table's options win (aggregation included)
        subgraph = create_strategy_graph(choice.strategy, policy, prm, n=n, name=node, **options)
        builder.add_node(node, as_node(strategy_node(subgraph), name=node, subgraph=subgraph))
        builder.add_edge(node, "finish")
    builder.add_node("finish", as_node(finish))
    builder.add_edge(START, "pilots")
    builder.add_edge("pilots", "route")
    builder.add_conditional_edges("route", lambda state: state["route"], list(nodes))
    builder.add_edge("finish", END)
    return compile_loop(builder, checkpointer=checkpointer, name=name)  # a routed search loops


def check_budget(budget: object, table: StrategyTable, *, parameter: str) -> int:
    """Return ``budget`` if the table has it (an integer >= its pilots), else a ``ValueError`` with the fix."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < table.pilots:
        raise ValueError(
            f"{parameter}={budget!r} is smaller than the table's {table.pilots} pilot samples; pass a budget >= "
            f"{table.pilots} (the table's budgets: {', '.join(map(str, sorted(table.budgets)))})."
        )
    table.choices_at(budget)
    return budget


def strategy_node(subgraph: StrategyGraph) -> Any:
    """A node running a routed strategy's subgraph on the problem and the pilots.

    The run's context reaches the subgraph without the settings the table fixed for it (``n``,
    ``beam_width``, ``aggregation``, ...): a Studio "n" is the router's budget, not the subgraph's.
    """

    def run_strategy(state: RouterState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        context = context_of(runtime)
        if context is not None:
            cleared: dict[str, Any] = dict.fromkeys(ROUTED_FIELDS)
            context = replace(context, **cleared, seed=strategy_seed(context.seed))
        output = yield from call(subgraph, {"problem": state["problem"], "pilots": state["pilots"]}, context=context)
        calls = TTCResult.model_validate(output["result"]).usage.model_copy(update={"wall_time_s": 0.0})
        return {"answer": output["answer"], "result": output["result"], "usage": calls}  # the driver adds the time

    return run_strategy


def _estimator(
    estimator: str | DifficultyEstimator | None, table: StrategyTable
) -> tuple[DifficultyEstimator, str, bool]:
    """(estimate function, its name, whether pilots need PRM scores) for the graph's estimator option."""
    if estimator is None or isinstance(estimator, str):
        estimator_name = check_estimator(estimator or table.estimator)
        if estimator_name != table.estimator:
            raise ValueError(
                f"estimator={estimator_name!r} differs from the table's {table.estimator!r}: its thresholds "
                "are on the table's scale. Pass the table's estimator, or calibrate a table for this one "
                f"(ttc calibrate --estimator {estimator_name})."
            )
        function, needs_scores = ESTIMATORS[estimator_name]
        return function, estimator_name, needs_scores
    if not callable(estimator):
        raise TypeError(f"estimator={estimator!r} is neither an estimator name nor a callable (pilots) -> float.")
    return estimator, getattr(estimator, "__name__", "custom"), False


def _build_registered(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: ComputeOptimalConfig,
    *,
    checkpointer: Checkpointer = None,
    name: str = "compute_optimal",
) -> StrategyGraph:
    return build_compute_optimal_graph(policy, prm, config, checkpointer=checkpointer, name=name)


COMPUTE_OPTIMAL = StrategySpec(
    name="compute_optimal",
    description="Estimate difficulty from pilots, run the strategy the calibrated table names for it.",
    config=ComputeOptimalConfig,
    build=_build_registered,
    needs_prm=True,
    family="routing",
)
"""The router's spec: the composition root (:mod:`langchain_ttc.wiring`) adds it to the catalog."""
