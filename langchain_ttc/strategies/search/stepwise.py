"""Shared machinery of the step-level search graphs (beam search, DVTS, particle filtering and Gibbs).

In: the search state (a frontier of partial solutions). Out: the next iteration's candidates,
written one step further by one batched policy call (plus one greedy call per lookahead step) and
scored by one batched PRM call, and the loop that wires them. The graphs differ only in their roots,
how many continuations each beam writes, how they prune (see :mod:`.beam_search`, :mod:`.dvts` and
:mod:`.particle_filtering`), an optional early stop, and, for particle Gibbs, a ``sweep`` node that
starts the next sweep (a second, visible loop).

The ``start`` node merges the graph's config with the run's
:class:`~langchain_ttc.strategies.context.TTCContext`, validates it and stores it in the state as
``config``, so a resumed search goes on with exactly the settings it started with.

Every beam has an id and its parent's id. With ``record_tree=True`` the search keeps every node it
wrote (step text, score, fate: kept, pruned, finished, truncated, chosen), returns the tree in
``result.metadata["tree"]`` and streams each iteration's new nodes as a ``ttc.tree`` custom event
(the last one names the chosen node); otherwise nothing of it is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from langgraph.graph import END, START
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer

from langchain_ttc.core.aggregation import aggregate
from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.search import Beam, extend, interleave, split_steps, top_by_score
from langchain_ttc.core.seeds import derive_seed, seed_requests
from langchain_ttc.core.stopping import vote_settled
from langchain_ttc.core.tree import Fate, TreeNode
from langchain_ttc.core.types import Candidate, Message, ScoreRequest, Usage
from langchain_ttc.core.voting import best_of_n, weighted_best_of_n
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import StepSearchConfig
from langchain_ttc.strategies.context import TTCContext, policy_for_run, prm_for_run
from langchain_ttc.strategies.driver import Calls, as_node, call, emit
from langchain_ttc.strategies.generation import (
    check_policy,
    check_prm,
    conversation_from_input,
    policy_call_usage,
    reaggregated,
    sampling_request,
    selection_output,
)
from langchain_ttc.strategies.graphs import (
    LoopingGraph,
    StrategyInput,
    UsageChannel,
    candidates_of,
    compile_loop,
    config_of,
    dumped,
    new_graph,
    run_config,
    usage_of,
)

S = TypeVar("S", bound=StepSearchConfig)


class SearchState(StrategyInput, total=False):
    """State of a step-level search (plain data, checkpointable)."""

    config: dict[str, Any]
    conversation: list[Message]
    iteration: int
    next_id: int
    frontier: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    finished: list[dict[str, Any]]
    truncated: list[dict[str, Any]]
    tree: list[dict[str, Any]]
    usage: UsageChannel
    iteration_start_usage: dict[str, Any]
    iterations: list[dict[str, Any]]
    answer: str | None
    result: dict[str, Any]


def check_engines(policy: object, prm: object) -> tuple[PolicyEngine, PRMEngine]:
    """Check the engines of a step-level search.

    Raises:
        TypeError: If ``policy`` or ``prm`` is not an engine, or the policy cannot continue a partial
            assistant message.

    """
    checked = check_policy(policy)
    if not checked.supports_partial:
        raise TypeError(
            f"policy={type(policy).__name__} cannot continue a partial assistant message, which step-level "
            "search needs; use best_of_n or majority_vote with it, or a policy that can (transformers, vLLM)."
        )
    return checked, check_prm(prm)


def beams_of(state: SearchState, key: str) -> list[Beam]:
    """The beams stored under ``key`` in the state (``frontier``, ``candidates``, ``finished``, ...)."""
    stored: list[dict[str, Any]] = state.get(key) or []  # type: ignore[assignment]
    return [Beam.model_validate(b) for b in stored]


Widths = Callable[[S, list[Beam], SearchState], list[int]]
"""How many continuations each frontier beam writes this iteration: ``(run config, frontier, state) -> counts``."""
SeedLabels = Callable[[SearchState], tuple[str | int, ...]]
"""What a search adds to its iterations' seed labels (particle Gibbs: its sweep after the first)."""


def _roll_out(
    policy: PolicyEngine, children: list[Beam], conversation: list[Message], config: StepSearchConfig
) -> Calls[tuple[list[Beam], Usage]]:
    """Roll each active child ``lookahead`` steps further at temperature 0 (one call per step)."""
    usage = Usage()
    rolling = [i for i, c in enumerate(children) if c.active]
    for _ in range(config.lookahead):
        if not rolling:
            break
        request = sampling_request(config, conversation, stop=[config.step_delimiter], temperature=0.0)
        results = yield from call(
            policy, [request.model_copy(update={"partial": children[i].text + children[i].lookahead}) for i in rolling]
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
    config: S,
    *,
    roots: Callable[[S], list[Beam]],
    widths: Widths[S],
    seed_labels: SeedLabels = lambda state: (),
) -> dict[str, Any]:
    """The ``start``, ``generate`` and ``score`` nodes of a step-level search.

    Args:
        policy: The policy engine (the run's context may name another).
        prm: The PRM engine (the run's context may name another).
        config: The graph's validated config (the run's context may override it).
        roots: The first frontier (empty partial solutions) for the run's config.
        widths: How many continuations each frontier beam writes this iteration.
        seed_labels: What the search adds to each iteration's seed label.

    """

    def start(state: SearchState, runtime: Runtime[TTCContext]) -> dict[str, Any]:
        run = run_config(config, runtime)
        _, conversation = conversation_from_input(state, system_prompt=run.system_prompt)
        frontier = [b.model_copy(update={"id": i}) for i, b in enumerate(roots(run))]
        return {
            "config": run.model_dump(),
            "conversation": conversation,
            "iteration": 0,
            "next_id": len(frontier),
            "frontier": dumped(frontier),
            "finished": [],
            "truncated": [],
            "tree": [TreeNode(id=b.id, parent=None, fate="kept").model_dump() for b in frontier]
            if run.record_tree
            else [],
            "iterations": [],
        }

    def generate(state: SearchState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run, iteration = config_of(state, type(config)), state["iteration"]
        last = iteration == run.max_iterations - 1
        frontier = beams_of(state, "frontier")
        parents = [(b, width) for b, width in zip(frontier, widths(run, frontier, state), strict=True) if width]
        step = sampling_request(run, state["conversation"], stop=[] if last else [run.step_delimiter])
        requests = [step.model_copy(update={"partial": b.text, "n": width}) for b, width in parents]
        run_policy = policy_for_run(policy, runtime)
        seed = derive_seed(run.seed, "iteration", iteration, *seed_labels(state))
        results = yield from call(run_policy, seed_requests(requests, seed))
        children = interleave(
            [
                [extend(parent, c, iteration=iteration) for c in result.completions]
                for (parent, _), result in zip(parents, results, strict=True)
            ]
        )
        first_id = state["next_id"]
        children = [c.model_copy(update={"id": first_id + i}) for i, c in enumerate(children)]
        usage = policy_call_usage(results)
        if run.lookahead and not last:
            children, rollout_usage = yield from _roll_out(run_policy, children, state["conversation"], run)
            usage = usage + rollout_usage
        return {
            "candidates": dumped(children),
            "next_id": first_id + len(children),
            "usage": usage,
            "iteration_start_usage": usage_of(state).model_dump(),
        }

    def score(state: SearchState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run = config_of(state, StepSearchConfig)
        delimiter = run.step_delimiter
        problem = conversation_problem(state["conversation"])
        candidates = beams_of(state, "candidates")
        todo = [i for i, b in enumerate(candidates) if not b.truncated and split_steps(b.text, delimiter)]
        usage = Usage()
        if todo:
            requests = [
                ScoreRequest(
                    problem=problem, steps=split_steps(candidates[i].text + candidates[i].lookahead, delimiter)
                )
                for i in todo
            ]
            results = yield from call(prm_for_run(prm, runtime), requests)
            for i, result in zip(todo, results, strict=True):
                candidates[i] = candidates[i].model_copy(
                    update={"step_scores": result.scores, "score": aggregate(result.scores, run.aggregation)}
                )
            usage = Usage.of_prm_call(results)
        return {"candidates": dumped(candidates), "usage": usage}

    return {"start": start, "generate": generate, "score": score}


def close_iteration(
    state: SearchState, *, frontier: list[Beam], finished: list[Beam], truncated: list[Beam]
) -> dict[str, Any]:
    """The state update that ends an iteration; emits the ``ttc.iteration`` progress event.

    ``finished`` and ``truncated`` are the whole lists after this iteration. Records the
    iteration's own usage (calls and tokens since its ``generate`` began) and, with ``record_tree``,
    every candidate of the iteration with its fate.
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
    update: dict[str, Any] = {
        "iteration": iteration + 1,
        "frontier": [b.model_copy(update={"lookahead": ""}).model_dump() for b in frontier],
        "finished": dumped(finished),
        "truncated": dumped(truncated),
        "candidates": [],
        "iterations": [*state.get("iterations", []), {"iteration": iteration, **spent.model_dump()}],
    }
    if config_of(state, StepSearchConfig).record_tree:
        fates: dict[int, Fate] = {}  # a candidate neither kept, finished nor truncated was pruned
        for fate, beams in (("kept", frontier), ("finished", finished), ("truncated", truncated)):
            fates |= dict.fromkeys((b.id for b in beams), cast(Fate, fate))
        nodes = [TreeNode.of(c, fates.get(c.id, "pruned")).model_dump() for c in beams_of(state, "candidates")]
        update["tree"] = [*state.get("tree", []), *nodes]
        emit({"type": "ttc.tree", "iteration": iteration, "nodes": nodes})
    return update


def conversation_problem(conversation: list[Message]) -> str:
    """The problem: the last user message of the conversation."""
    return next(m["content"] for m in reversed(conversation) if m["role"] == "user")


def pilot_candidates(state: SearchState, aggregation: str) -> list[Candidate]:
    """The input's pilots, their scores aggregated with the search's rule (unscored ones get no score)."""
    return reaggregated(candidates_of(state, "pilots"), aggregation=aggregation)


def make_select_node(strategy: str, answer_key: AnswerKey | None = None) -> Callable[[SearchState], dict[str, Any]]:
    """The ``select`` node: the weighted vote over finished beams (and pilots), or the best one.

    At most ``n`` finished beams take part, the best-scored ones (the reference keeps the first ``n``
    to finish); truncated beams are listed but never chosen. Each beam's answer is read, and the vote
    groups answers, with the key the run's ``answers`` names (``answer_key``: the graph's own key
    object, for ``custom:<name>``).
    """

    def select(state: SearchState) -> dict[str, Any]:
        run = config_of(state, StepSearchConfig)
        key = run.answer_key(answer_key)
        beams = top_by_score(beams_of(state, "finished"), run.n) + beams_of(state, "truncated")
        candidates = [b.to_candidate(run.step_delimiter, key) for b in beams]
        candidates += pilot_candidates(state, run.aggregation)
        selection = weighted_best_of_n(candidates, key=key) if run.selection == "weighted" else best_of_n(candidates)
        metadata: dict[str, Any] = {"iterations": state.get("iterations", [])}
        if run.record_tree:
            index = selection.chosen_index
            chosen = beams[index].id if index is not None and index < len(beams) else None  # not a pilot
            tree = [TreeNode.model_validate(n) for n in state.get("tree", [])]
            metadata["tree"] = [
                (n.model_copy(update={"fate": "chosen"}) if n.id == chosen else n).model_dump() for n in tree
            ]
            emit({"type": "ttc.tree", "iteration": state["iteration"], "chosen": chosen})
        output = selection_output(strategy, candidates, selection, usage_of(state))
        output["result"]["metadata"] = metadata
        return output

    return select


def record_early_stop(
    state: SearchState, update: dict[str, Any], answer_key: AnswerKey | None = None
) -> dict[str, Any]:
    """``update`` (an iteration's end) with an adaptive stop recorded in its iteration's record, if there is one.

    There is one when ``adaptive_threshold`` is set, the search would go on (a beam is active,
    iterations are left) and the weighted vote over the finished beams (the ``n`` best-scored, as
    ``select`` takes them, and the pilots) is settled by the Dirichlet rule
    (:func:`~langchain_ttc.core.stopping.vote_settled`). The record (``early_stop``: the reason and
    the decision) ends in ``metadata["iterations"]``. The vote reads answers with the run's key, as
    ``select`` does.
    """
    run = config_of(state, StepSearchConfig)
    threshold = run.adaptive_threshold
    if threshold is None or not update["frontier"] or update["iteration"] >= run.max_iterations:
        return update
    key = run.answer_key(answer_key)
    finished = top_by_score([Beam.model_validate(b) for b in update["finished"]], run.n)
    pool = [b.to_candidate(run.step_delimiter, key) for b in finished] + pilot_candidates(state, run.aggregation)
    decision = vote_settled(pool, rule="dirichlet", threshold=threshold, weighted=True, key=key)
    if decision.stop:
        update["iterations"][-1]["early_stop"] = {"reason": "settled", **decision.model_dump()}
    return update


def stopped_early(state: SearchState) -> bool:
    """Whether the iteration that just ended recorded an adaptive stop (:func:`record_early_stop`)."""
    iterations = state.get("iterations") or []
    return bool(iterations) and "early_stop" in iterations[-1]


def build_search_graph(
    nodes: dict[str, Any],
    *,
    prune: Callable[[SearchState], dict[str, Any]],
    checkpointer: Checkpointer,
    name: str,
    stop: Callable[[SearchState], bool] | None = None,
    sweep: Callable[[SearchState], dict[str, Any]] | None = None,
    state: type[SearchState] = SearchState,
    answer_key: AnswerKey | None = None,
) -> LoopingGraph:
    """Wire a step-level search: ``start`` → (``generate`` → ``score`` → ``prune``)* → ``select``.

    The loop goes on while a beam is active and fewer than ``max_iterations`` steps are written,
    unless ``stop(state)`` says the search is done early, or the run's ``adaptive_threshold`` finds the
    finished beams' weighted vote settled (:func:`record_early_stop`, applied to every ``prune``).
    With ``sweep`` (particle Gibbs), an ended
    sweep goes to the ``sweep`` node, which starts the next one (back to ``generate``) or, after the
    last, hands the population to ``select``: a second loop, drawn as such.

    ``state`` is the graph's state schema: :class:`SearchState` or a search's extension of it;
    ``answer_key`` the graph's own key object (the run's ``answers`` names the key the votes use).
    """

    def route(current: SearchState) -> str:
        run = config_of(current, StepSearchConfig)
        going_on = bool(current["frontier"]) and current["iteration"] < run.max_iterations
        if going_on and not stopped_early(current) and not (stop is not None and stop(current)):
            return "generate"
        return "select" if sweep is None else "sweep"

    builder = new_graph(state)

    def prune_and_check(current: SearchState) -> dict[str, Any]:
        return record_early_stop(current, prune(current), answer_key)

    select = make_select_node(name, answer_key)
    steps = {**nodes, "prune": prune_and_check, **({"sweep": sweep} if sweep else {}), "select": select}
    for node_name, node in steps.items():
        builder.add_node(node_name, as_node(node, name=node_name))
    builder.add_edge(START, "start")
    builder.add_edge("start", "generate")
    builder.add_edge("generate", "score")
    builder.add_edge("score", "prune")
    builder.add_conditional_edges("prune", route, ["generate", "sweep" if sweep else "select"])
    if sweep is not None:
        builder.add_conditional_edges("sweep", lambda current: "generate" if current["frontier"] else "select",
                                      ["generate", "select"])  # fmt: skip
    builder.add_edge("select", END)
    return compile_loop(builder, checkpointer=checkpointer, name=name)
