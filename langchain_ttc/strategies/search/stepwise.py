"""Shared machinery of the step-level search graphs (beam search and DVTS).

In: the search state (a frontier of partial solutions). Out: the next iteration's candidates,
written one step further by one batched policy call (plus one greedy call per lookahead step) and
scored by one batched PRM call. The graphs differ only in their roots and how they prune (see
:mod:`.beam_search` and :mod:`.dvts`).

The ``start`` node merges the graph's options with the run's
:class:`~langchain_ttc.strategies.context.TTCContext`, validates them and stores them in the state as
``settings``, so a resumed search goes on with exactly the settings it started with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import DEFAULT_RECURSION_LIMIT
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer

from langchain_ttc.core.aggregation import aggregate, check_aggregation
from langchain_ttc.core.search import Beam, extend, interleave, split_steps, top_by_score
from langchain_ttc.core.seeds import derive_seed, seed_requests
from langchain_ttc.core.types import Candidate, GenerationRequest, Message, ScoreRequest, Usage
from langchain_ttc.core.voting import best_of_n, weighted_best_of_n
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.common import (
    StrategyGraph,
    StrategyInput,
    StrategyOutput,
    check_policy,
    check_positive,
    check_prm,
    check_sampling,
    conversation_from_input,
    elapsed_since,
    emit,
    policy_call_usage,
    reaggregated,
    selection_output,
    usage_of,
)
from langchain_ttc.strategies.context import TTCContext, merged_options, policy_for_run, prm_for_run

FinalSelection = Literal["best", "weighted"]


class SearchState(StrategyInput, total=False):
    """State of a step-level search (plain data, checkpointable)."""

    settings: dict[str, Any]
    conversation: list[Message]
    iteration: int
    frontier: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    finished: list[dict[str, Any]]
    truncated: list[dict[str, Any]]
    usage: dict[str, Any]
    iteration_start_usage: dict[str, Any]
    iterations: list[dict[str, Any]]
    answer: str | None
    result: dict[str, Any]


def check_engines(policy: Any, prm: Any) -> None:
    """Check the engines of a step-level search.

    Raises:
        TypeError: If ``policy`` or ``prm`` is not an engine, or the policy cannot continue a partial
            assistant message.

    """
    check_policy(policy)
    check_prm(prm)
    if not policy.supports_partial:
        raise TypeError(
            f"policy={type(policy).__name__} cannot continue a partial assistant message, which step-level "
            "search needs; use best_of_n or majority_vote with it, or a policy that can (transformers, vLLM)."
        )


def check_search_options(options: dict[str, Any]) -> None:
    """Validate the options of a step-level search (at construction, and again for each run's context).

    Raises:
        ValueError: If a number is out of range, ``beam_width`` does not divide ``n``, the step
            delimiter is empty, or the aggregation or final selection is unknown.

    """
    n, beam_width = check_positive(options["n"], "n"), check_positive(options["beam_width"], "beam_width")
    check_positive(options["max_iterations"], "max_iterations")
    if n < beam_width:
        raise ValueError(
            f"n={n} is smaller than beam_width={beam_width}; pass n >= beam_width, e.g. n={beam_width * 4}."
        )
    if n % beam_width:
        divisors = ", ".join(str(w) for w in range(1, n + 1) if n % w == 0)
        raise ValueError(
            f"beam_width={beam_width} does not divide n={n}; pass a beam_width that divides n, e.g. {divisors}."
        )
    lookahead = options["lookahead"]
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise ValueError(f"lookahead={lookahead!r} must be an integer >= 0.")
    if not options["step_delimiter"]:
        raise ValueError("step_delimiter='' is empty; pass the text between steps, for example '\\n\\n'.")
    check_aggregation(options["aggregation"])
    if options["final_selection"] not in ("best", "weighted"):
        raise ValueError(f"final_selection={options['final_selection']!r} is not supported; pass 'best' or 'weighted'.")
    check_sampling(temperature=options["temperature"], top_p=options["top_p"], max_tokens=options["max_tokens"])


def beams_of(state: SearchState, key: str) -> list[Beam]:
    """The beams stored under ``key`` in the state."""
    stored: list[dict[str, Any]] = state.get(key) or []  # type: ignore[assignment]
    return [Beam.model_validate(b) for b in stored]


def _roll_out(
    policy: PolicyEngine,
    children: list[Beam],
    conversation: list[Message],
    settings: dict[str, Any],
) -> tuple[list[Beam], Usage]:
    """Roll each active child ``lookahead`` steps further at temperature 0 (one call per step)."""
    usage = Usage()
    rolling = [i for i, c in enumerate(children) if c.active]
    delimiter = settings["step_delimiter"]
    for _ in range(settings["lookahead"]):
        if not rolling:
            break
        request = GenerationRequest(
            messages=conversation, stop=[delimiter], max_tokens=settings["max_tokens"], temperature=0.0
        )
        results = policy.invoke(
            [request.model_copy(update={"partial": children[i].text + children[i].lookahead}) for i in rolling]
        )
        still = []
        for i, result in zip(rolling, results, strict=True):
            (completion,) = result.completions
            children[i] = children[i].model_copy(update={"lookahead": children[i].lookahead + completion.text})
            if completion.finish_reason == "stop":
                still.append(i)
        usage = usage + policy_call_usage(results)
        rolling = still
    return children, usage


def make_search_nodes(
    policy: PolicyEngine,
    prm: PRMEngine,
    options: dict[str, Any],
    *,
    roots: Callable[[dict[str, Any]], list[Beam]],
    widths: Callable[[dict[str, Any], list[Beam]], list[int]],
    system_prompt: str | None,
) -> dict[str, Any]:
    """The ``start``, ``generate`` and ``score`` nodes of a step-level search.

    Args:
        policy: The policy engine (the run's context may name another).
        prm: The PRM engine (the run's context may name another).
        options: The graph's options (see :func:`check_search_options`).
        roots: The first frontier (empty partial solutions) for the run's settings.
        widths: How many continuations each frontier beam writes this iteration.
        system_prompt: Optional system message put before the problem.

    """

    def start(state: SearchState, runtime: Runtime[TTCContext]) -> dict[str, Any]:
        settings = merged_options(options, runtime)
        check_search_options(settings)
        _, conversation = conversation_from_input(state, system_prompt=system_prompt)
        return {
            "settings": settings,
            "conversation": conversation,
            "iteration": 0,
            "frontier": [b.model_dump() for b in roots(settings)],
            "finished": [],
            "truncated": [],
            "iterations": [],
        }

    def generate(state: SearchState, runtime: Runtime[TTCContext]) -> dict[str, Any]:
        started = time.perf_counter()
        settings, iteration = state["settings"], state["iteration"]
        last = iteration == settings["max_iterations"] - 1
        frontier = beams_of(state, "frontier")
        request = GenerationRequest(
            messages=state["conversation"],
            stop=[] if last else [settings["step_delimiter"]],
            max_tokens=settings["max_tokens"],
            temperature=settings["temperature"],
            top_p=settings["top_p"],
        )
        parents = [(b, width) for b, width in zip(frontier, widths(settings, frontier), strict=True) if width]
        requests = [request.model_copy(update={"partial": b.text, "n": width}) for b, width in parents]
        run_policy = policy_for_run(policy, runtime)
        results = run_policy.invoke(seed_requests(requests, derive_seed(settings["seed"], "iteration", iteration)))
        children = interleave(
            [
                [extend(parent, c, iteration=iteration) for c in result.completions]
                for (parent, _), result in zip(parents, results, strict=True)
            ]
        )
        usage = policy_call_usage(results)
        if settings["lookahead"] and not last:
            children, rollout_usage = _roll_out(run_policy, children, state["conversation"], settings)
            usage = usage + rollout_usage
        before = usage_of(state)
        return {
            "candidates": [c.model_dump() for c in children],
            "usage": (before + usage + elapsed_since(started)).model_dump(),
            "iteration_start_usage": before.model_dump(),
        }

    def score(state: SearchState, runtime: Runtime[TTCContext]) -> dict[str, Any]:
        started = time.perf_counter()
        settings = state["settings"]
        delimiter = settings["step_delimiter"]
        problem = conversation_problem(state["conversation"])
        candidates = beams_of(state, "candidates")
        todo = [i for i, b in enumerate(candidates) if b.finish_reason != "length" and split_steps(b.text, delimiter)]
        usage = Usage()
        if todo:
            requests = [
                ScoreRequest(
                    problem=problem, steps=split_steps(candidates[i].text + candidates[i].lookahead, delimiter)
                )
                for i in todo
            ]
            results = prm_for_run(prm, runtime).invoke(requests)
            for i, result in zip(todo, results, strict=True):
                candidates[i] = candidates[i].model_copy(
                    update={"step_scores": result.scores, "score": aggregate(result.scores, settings["aggregation"])}
                )
            usage = Usage(prm_calls=1, prm_tokens=sum(r.num_tokens for r in results))
        return {
            "candidates": [c.model_dump() for c in candidates],
            "usage": (usage_of(state) + usage + elapsed_since(started)).model_dump(),
        }

    return {"start": start, "generate": generate, "score": score}


def close_iteration(
    state: SearchState, *, frontier: list[Beam], finished: list[Beam], truncated: list[Beam]
) -> dict[str, Any]:
    """The state update that ends an iteration; emits the ``ttc.iteration`` progress event.

    Records the iteration's own usage (calls and tokens since its ``generate`` began).
    """
    iteration = state["iteration"]
    usage = usage_of(state)
    spent = usage - Usage.model_validate(state["iteration_start_usage"])
    scores = [b.score for b in [*frontier, *finished] if b.score is not None]
    event = {
        "type": "ttc.iteration",
        "iteration": iteration,
        "active": len(frontier),
        "finished": len(finished),
        "best_score": max(scores, default=None),
        "tokens": usage.completion_tokens,
    }
    emit(event)
    return {
        "iteration": iteration + 1,
        "frontier": [b.model_copy(update={"lookahead": ""}).model_dump() for b in frontier],
        "finished": [b.model_dump() for b in finished],
        "truncated": [b.model_dump() for b in truncated],
        "candidates": [],
        "iterations": [*state.get("iterations", []), {"iteration": iteration, **spent.model_dump()}],
    }


def conversation_problem(conversation: list[Message]) -> str:
    """The problem: the last user message of the conversation."""
    return next(m["content"] for m in reversed(conversation) if m["role"] == "user")


def pilot_candidates(state: SearchState) -> list[Candidate]:
    """The input's pilots, their scores aggregated with the search's rule (unscored ones get no score)."""
    pilots = [Candidate.model_validate(c) for c in state.get("pilots") or []]
    return reaggregated(pilots, aggregation=state["settings"]["aggregation"])


def make_select_node(strategy: str) -> Callable[[SearchState], dict[str, Any]]:
    """The ``select`` node: the best finished beam, or the weighted vote over finished beams (and pilots).

    At most ``n`` finished beams take part, the best-scored ones (the reference keeps the first ``n``
    to finish); truncated beams are listed but never chosen.
    """

    def select(state: SearchState) -> dict[str, Any]:
        started = time.perf_counter()
        settings = state["settings"]
        beams = top_by_score(beams_of(state, "finished"), settings["n"]) + beams_of(state, "truncated")
        candidates = [b.to_candidate(settings["step_delimiter"]) for b in beams] + pilot_candidates(state)
        rule = weighted_best_of_n if settings["final_selection"] == "weighted" else best_of_n
        output = selection_output(strategy, candidates, rule(candidates), usage_of(state) + elapsed_since(started))
        output["result"]["metadata"] = {"iterations": state.get("iterations", [])}
        return output

    return select


class SearchGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """A compiled search graph whose default step budget fits its loop.

    Each iteration takes three LangGraph steps, so ``max_iterations=40`` needs about 123, more than
    LangChain's default ``recursion_limit`` of 25 that ``invoke``, ``batch`` and chains fill in. When
    a run's limit is missing or that default, it is raised to what the search can need; an explicit
    other limit is kept.
    """

    step_budget: int = 10_000

    def _budgeted(self, config: RunnableConfig | None) -> RunnableConfig:
        budgeted: RunnableConfig = {**(config or {})}
        if budgeted.get("recursion_limit") in (None, DEFAULT_RECURSION_LIMIT):
            budgeted["recursion_limit"] = self.step_budget
        return budgeted

    def stream(self, input: Any, config: RunnableConfig | None = None, *args: Any, **kwargs: Any) -> Any:
        """Stream a run (see ``CompiledStateGraph.stream``) with the step budget."""
        return super().stream(input, self._budgeted(config), *args, **kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None, *args: Any, **kwargs: Any) -> Any:
        """Stream a run asynchronously (see ``CompiledStateGraph.astream``) with the step budget."""
        return super().astream(input, self._budgeted(config), *args, **kwargs)


def build_search_graph(
    nodes: dict[str, Any],
    *,
    prune: Callable[[SearchState], dict[str, Any]],
    route: Callable[[SearchState], str],
    checkpointer: Checkpointer,
    name: str,
) -> StrategyGraph:
    """Wire a step-level search: ``start`` → (``generate`` → ``score`` → ``prune``)* → ``select``."""
    builder = StateGraph(
        SearchState, context_schema=TTCContext, input_schema=StrategyInput, output_schema=StrategyOutput
    )
    for node_name, node in {**nodes, "prune": prune, "select": make_select_node(name)}.items():
        builder.add_node(node_name, node)
    builder.add_edge(START, "start")
    builder.add_edge("start", "generate")
    builder.add_edge("generate", "score")
    builder.add_edge("score", "prune")
    builder.add_conditional_edges("prune", route, ["generate", "select"])
    builder.add_edge("select", END)
    graph = builder.compile(checkpointer=checkpointer, name=name)
    graph.__class__ = SearchGraph  # same object, with the step budget above (no state of its own)
    return graph
