"""Shared nodes of the step-level search graphs (beam search and DVTS).

In: the search state (a frontier of partial solutions). Out: the next iteration's candidates,
written one step further by one batched policy call (plus one greedy call per lookahead step) and
scored by one batched PRM call. The graphs differ only in how they prune (see
:mod:`.beam_search` and :mod:`.dvts`).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from langchain_ttc.aggregation import aggregate, check_aggregation
from langchain_ttc.beams import Beam, split_steps
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.selection import Selection, best_of_n, weighted_best_of_n
from langchain_ttc.strategies.common import (
    StrategyInput,
    StrategyOutput,
    check_policy,
    check_positive,
    check_prm,
    check_sampling,
    conversation_from_input,
    elapsed_since,
    selection_output,
    usage_of,
)
from langchain_ttc.types import Candidate, GenerationRequest, Message, ScoreRequest, Usage

FinalSelection = Literal["best", "weighted"]


class SearchState(StrategyInput, total=False):
    """State of a step-level search (plain data, checkpointable)."""

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


def check_search_options(
    policy: Any,
    prm: Any,
    *,
    n: int,
    beam_width: int,
    max_iterations: int,
    lookahead: int,
    step_delimiter: str,
    aggregation: str,
    final_selection: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
) -> None:
    """Validate the options shared by beam search and DVTS, at graph construction.

    Raises:
        ValueError: If a number is out of range, ``beam_width`` does not divide ``n``, the step
            delimiter is empty, or the aggregation or final selection is unknown.
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
    check_positive(n, "n")
    check_positive(beam_width, "beam_width")
    check_positive(max_iterations, "max_iterations")
    if n < beam_width:
        raise ValueError(
            f"n={n} is smaller than beam_width={beam_width}; pass n >= beam_width, e.g. n={beam_width * 4}."
        )
    if n % beam_width:
        raise ValueError(
            f"beam_width={beam_width} does not divide n={n}; pass a beam_width that divides n, e.g. "
            f"{', '.join(str(w) for w in range(1, n + 1) if n % w == 0)}."
        )
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise ValueError(f"lookahead={lookahead!r} must be an integer >= 0.")
    if not step_delimiter:
        raise ValueError("step_delimiter='' is empty; pass the text between steps, for example '\\n\\n'.")
    check_aggregation(aggregation)
    if final_selection not in ("best", "weighted"):
        raise ValueError(f"final_selection={final_selection!r} is not supported; pass 'best' or 'weighted'.")
    check_sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens)


def beams_of(state: SearchState, key: str) -> list[Beam]:
    """The beams stored under ``key`` in the state."""
    stored: list[dict[str, Any]] = state.get(key) or []  # type: ignore[assignment]
    return [Beam.model_validate(b) for b in stored]


def make_search_nodes(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    roots: list[Beam],
    width: int,
    first_width: int,
    max_iterations: int,
    lookahead: int,
    step_delimiter: str,
    aggregation: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int | None,
    system_prompt: str | None,
) -> dict[str, Any]:
    """The ``start``, ``generate`` and ``score`` nodes of a step-level search.

    Args:
        policy: The policy engine.
        prm: The PRM engine.
        roots: The frontier at the first iteration (empty partial solutions).
        width: Continuations sampled from each frontier beam.
        first_width: Continuations sampled from each root at the first iteration.
        max_iterations: The last iteration writes to the end of the solution (no stop string).
        lookahead: Greedy steps rolled out past each active candidate before scoring.
        step_delimiter: The stop string that ends a step (kept in the text).
        aggregation: How step scores become one score.
        temperature: Sampling temperature of the steps.
        top_p: Nucleus sampling mass.
        max_tokens: Most tokens per step.
        seed: Base seed; iteration ``i`` samples with ``seed + i`` (so a resumed search replays exactly).
        system_prompt: Optional system message put before the problem.

    """

    def start(state: SearchState) -> dict[str, Any]:
        _, conversation = conversation_from_input(state, system_prompt=system_prompt)
        return {
            "conversation": conversation,
            "iteration": 0,
            "frontier": [b.model_dump() for b in roots],
            "finished": [],
            "truncated": [],
            "iterations": [],
        }

    def generate(state: SearchState, config: RunnableConfig) -> dict[str, Any]:
        started = time.perf_counter()
        iteration = state["iteration"]
        last = iteration == max_iterations - 1
        frontier = beams_of(state, "frontier")
        n = first_width if iteration == 0 else width
        request = GenerationRequest(
            messages=state["conversation"],
            n=n,
            stop=[] if last else [step_delimiter],
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=None if seed is None else seed + iteration,
        )
        results = policy.invoke([request.model_copy(update={"partial": b.text}) for b in frontier], config)
        children = [
            Beam(
                text=parent.text + c.text,
                finish_reason=c.finish_reason,
                num_tokens=parent.num_tokens + c.num_tokens,
                subtree=parent.subtree,
                iteration=iteration,
            )
            for parent, result in zip(frontier, results, strict=True)
            for c in result.completions
        ]
        usage = Usage(
            policy_calls=1,
            prompt_tokens=sum(r.prompt_tokens for r in results),
            completion_tokens=sum(c.num_tokens for r in results for c in r.completions),
        )
        if lookahead and not last:
            children, rollout_usage = _roll_out(children, state["conversation"], config)
            usage = usage + rollout_usage
        before = usage_of(state)
        return {
            "candidates": [c.model_dump() for c in children],
            "usage": (before + usage + elapsed_since(started)).model_dump(),
            "iteration_start_usage": before.model_dump(),
        }

    def _roll_out(
        children: list[Beam], conversation: list[Message], config: RunnableConfig
    ) -> tuple[list[Beam], Usage]:
        usage = Usage()
        rolling = [i for i, c in enumerate(children) if c.active]
        for _ in range(lookahead):
            if not rolling:
                break
            request = GenerationRequest(
                messages=conversation, stop=[step_delimiter], max_tokens=max_tokens, temperature=0.0
            )
            results = policy.invoke(
                [request.model_copy(update={"partial": children[i].text + children[i].lookahead}) for i in rolling],
                config,
            )
            still = []
            for i, result in zip(rolling, results, strict=True):
                (completion,) = result.completions
                children[i] = children[i].model_copy(update={"lookahead": children[i].lookahead + completion.text})
                usage = usage + Usage(prompt_tokens=result.prompt_tokens, completion_tokens=completion.num_tokens)
                if completion.finish_reason == "stop":
                    still.append(i)
            usage = usage + Usage(policy_calls=1)
            rolling = still
        return children, usage

    def score(state: SearchState, config: RunnableConfig) -> dict[str, Any]:
        started = time.perf_counter()
        problem = conversation_problem(state["conversation"])
        candidates = beams_of(state, "candidates")
        todo = [
            i for i, b in enumerate(candidates) if b.finish_reason != "length" and split_steps(b.text, step_delimiter)
        ]
        usage = Usage()
        if todo:
            requests = [
                ScoreRequest(
                    problem=problem, steps=split_steps(candidates[i].text + candidates[i].lookahead, step_delimiter)
                )
                for i in todo
            ]
            results = prm.invoke(requests, config)
            for i, result in zip(todo, results, strict=True):
                candidates[i] = candidates[i].model_copy(
                    update={"step_scores": result.scores, "score": aggregate(result.scores, aggregation)}
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
    get_stream_writer()(event)
    return {
        "iteration": iteration + 1,
        "frontier": [b.model_dump() for b in frontier],
        "finished": [b.model_dump() for b in finished],
        "truncated": [b.model_dump() for b in truncated],
        "candidates": [],
        "iterations": [*state.get("iterations", []), {"iteration": iteration, **spent.model_dump()}],
    }


def conversation_problem(conversation: list[Message]) -> str:
    """The problem: the last user message of the conversation."""
    return next(m["content"] for m in reversed(conversation) if m["role"] == "user")


def final_output(
    strategy: str, state: SearchState, *, final_selection: FinalSelection, delimiter: str, started: float
) -> dict[str, Any]:
    """The graph output: the best finished beam (or weighted vote over finished beams)."""
    beams = beams_of(state, "finished") + beams_of(state, "truncated")
    candidates: list[Candidate] = [b.to_candidate(delimiter) for b in beams]
    selection: Selection = (weighted_best_of_n if final_selection == "weighted" else best_of_n)(candidates)
    usage = usage_of(state) + elapsed_since(started)
    output = selection_output(strategy, candidates, selection, usage)
    output["result"]["metadata"] = {"iterations": state.get("iterations", [])}
    return output


def build_search_graph(
    nodes: dict[str, Any],
    *,
    prune: Any,
    route: Any,
    select: Any,
    checkpointer: Checkpointer,
    name: str,
) -> CompiledStateGraph:
    """Wire a step-level search: ``start`` → (``generate`` → ``score`` → ``prune``)* → ``select``."""
    builder = StateGraph(SearchState, input_schema=StrategyInput, output_schema=StrategyOutput)
    for node_name, node in {**nodes, "prune": prune, "select": select}.items():
        builder.add_node(node_name, node)
    builder.add_edge(START, "start")
    builder.add_edge("start", "generate")
    builder.add_edge("generate", "score")
    builder.add_edge("score", "prune")
    builder.add_conditional_edges("prune", route, ["generate", "select"])
    builder.add_edge("select", END)
    return builder.compile(checkpointer=checkpointer, name=name)
