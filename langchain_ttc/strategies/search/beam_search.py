"""PRM-guided beam search as a resumable, streaming LangGraph graph.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}`` where ``result``
is a :class:`~langchain_ttc.core.types.TTCResult` as data (its ``metadata["iterations"]`` holds each
iteration's usage).

Each iteration (``generate`` → ``score`` → ``prune``, looped by a conditional edge):

1. the active beams write ``n`` continuations of one step (stop at the delimiter, kept in the
   text), all in one policy call: ``n`` samples from the empty solution at the first iteration,
   then the survivors repeated in turn up to ``n`` (``n / beam_width`` survivors write
   ``beam_width`` each; fewer survivors, after duplicate filtering or finished beams, share the
   ``n`` samples), as the reference does; with ``lookahead=k`` each active candidate is rolled
   ``k`` more steps at temperature 0 (one greedy call per step);
2. the PRM scores every new candidate (its lookahead text included) in one call;
3. finished candidates (end of sequence, or a step with nothing but whitespace) are set aside,
   truncated ones (``max_tokens``) are never finished, and the best ``n / beam_width`` active
   candidates survive (after dropping duplicate texts, with ``filter_duplicates=True``).

The last iteration writes to the end of the solution. The search stops when no beam is active or
``max_iterations`` is reached (or, with ``stop_when_n_finished=True``, once ``n`` beams have
finished). The answer is the weighted vote over the ``n`` best-scored finished beams
(``final_selection="weighted"``, the papers' setting) or the best finished beam by aggregated score
(``"best"``). Each iteration emits a ``ttc.iteration`` custom stream event.

Example:
    >>> graph = create_beam_search_graph(policy, prm, n=16, beam_width=4)  # doctest: +SKIP
    >>> graph.invoke({"problem": "... What is 3+4*2-5?"})["answer"]  # doctest: +SKIP
    '9'

"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.types import Checkpointer

from langchain_ttc.core.search import Beam, prune, repeat_counts
from langchain_ttc.strategies.common import DEFAULT_STEP_DELIMITER, StrategyGraph
from langchain_ttc.strategies.search.stepwise import (
    FinalSelection,
    SearchState,
    beams_of,
    build_search_graph,
    check_engines,
    check_search_options,
    close_iteration,
    make_search_nodes,
)


def create_beam_search_graph(
    policy: Any,
    prm: Any,
    *,
    n: int,
    beam_width: int = 4,
    max_iterations: int = 40,
    lookahead: int = 0,
    step_delimiter: str = DEFAULT_STEP_DELIMITER,
    aggregation: str = "last",
    filter_duplicates: bool = False,
    final_selection: FinalSelection = "weighted",
    stop_when_n_finished: bool = False,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    checkpointer: Checkpointer = None,
    name: str = "beam_search",
) -> StrategyGraph:
    """Build the beam search graph: ``start``, then ``generate`` → ``score`` → ``prune`` in a loop, ``select``.

    Args:
        policy: The policy engine; it must continue partial assistant messages.
        prm: The PRM engine.
        n: Number of beams (the budget): candidates written per iteration.
        beam_width: Continuations per survivor (M); at most ``n / beam_width`` beams survive each
            iteration, and the survivors share ``n`` continuations.
        max_iterations: Most steps per solution; the last iteration writes to the end.
        lookahead: Greedy steps rolled out past each candidate before scoring (0: none).
        step_delimiter: The stop string that ends a step.
        aggregation: How step scores become one score, for pruning and for the final pick.
        filter_duplicates: Drop candidates whose text equals an earlier one before pruning.
        final_selection: ``"weighted"`` vote over the finished beams (default), or the ``"best"`` one by score.
        stop_when_n_finished: Stop as soon as ``n`` beams have finished (off: run until no beam is active,
            as the reference does).
        temperature: Sampling temperature of the steps.
        top_p: Nucleus sampling mass.
        max_tokens: Most tokens per step; a step cut off here truncates its beam.
        seed: Base seed; every iteration samples from its own seeds (:mod:`langchain_ttc.core.seeds`).
        system_prompt: Optional system message put before the problem.
        checkpointer: Optional LangGraph checkpointer (a search can pause and resume).
        name: The compiled graph's name.

    Raises:
        ValueError: If ``beam_width`` does not divide ``n``, ``n < beam_width``, ``max_iterations < 1``,
            the step delimiter is empty, or another option is out of range.
        TypeError: If an engine has the wrong type or the policy cannot continue partial messages.

    """
    check_engines(policy, prm)
    options: dict[str, Any] = {
        "n": n,
        "beam_width": beam_width,
        "max_iterations": max_iterations,
        "lookahead": lookahead,
        "step_delimiter": step_delimiter,
        "aggregation": aggregation,
        "filter_duplicates": filter_duplicates,
        "final_selection": final_selection,
        "stop_when_n_finished": stop_when_n_finished,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "seed": seed,
    }
    check_search_options(options)
    nodes = make_search_nodes(
        policy,
        prm,
        options,
        roots=lambda _: [Beam()],
        widths=lambda s, frontier: repeat_counts(len(frontier), s["n"]),
        system_prompt=system_prompt,
    )

    def prune_node(state: SearchState) -> dict[str, Any]:
        settings = state["settings"]
        candidates = beams_of(state, "candidates")
        survivors = prune(
            [c for c in candidates if c.active],
            keep=settings["n"] // settings["beam_width"],
            filter_duplicates=settings["filter_duplicates"],
        )
        return close_iteration(
            state,
            frontier=survivors,
            finished=beams_of(state, "finished") + [c for c in candidates if c.finished],
            truncated=beams_of(state, "truncated") + [c for c in candidates if c.finish_reason == "length"],
        )

    def route(state: SearchState) -> Literal["generate", "select"]:
        settings = state["settings"]
        done = (
            not state["frontier"]
            or state["iteration"] >= settings["max_iterations"]
            or (settings["stop_when_n_finished"] and len(state["finished"]) >= settings["n"])
        )
        return "select" if done else "generate"

    return build_search_graph(nodes, prune=prune_node, route=route, checkpointer=checkpointer, name=name)
