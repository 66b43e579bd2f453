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
finished; or, with ``adaptive_threshold=t``, once the weighted vote over the finished beams is settled:
the Adaptive-Consistency rule of :mod:`langchain_ttc.core.stopping` on the summed scores, P(the
leader stays the leader) >= ``t``; the iteration it stops after records it under ``early_stop`` in
``metadata["iterations"]``. Beams that share a prefix are not independent samples, so read the
posterior as optimistic). The answer is the weighted vote over the ``n`` best-scored finished beams
(``selection="weighted"``, the papers' setting) or the best finished beam by aggregated score
(``"best"``). Each iteration emits a ``ttc.iteration`` custom stream event.

Example:
    >>> graph = create_beam_search_graph(policy, prm, n=16, beam_width=4)  # doctest: +SKIP
    >>> graph.invoke({"problem": "... What is 3+4*3-5?"})["answer"]  # doctest: +SKIP
    '9'

"""

from __future__ import annotations

from typing import Any

from langgraph.types import Checkpointer
from pydantic import Field

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.search import Beam, prune, repeat_counts
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import Aggregation, SearchConfig, SelectionRule, choose_answers, validated
from langchain_ttc.strategies.graphs import StrategyGraph, config_of
from langchain_ttc.strategies.search.stepwise import (
    SearchState,
    beams_of,
    build_search_graph,
    check_engines,
    close_iteration,
    make_search_nodes,
)
from langchain_ttc.strategies.spec import StrategySpec


class BeamSearchConfig(SearchConfig):
    """Beam search: the search settings plus duplicate filtering and early stopping."""

    filter_duplicates: bool = Field(
        False, description="Drop candidates whose text equals an earlier one before pruning."
    )
    stop_when_n_finished: bool = Field(
        False, description="Stop once n beams have finished (off: run until none is active)."
    )


def create_beam_search_graph(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    n: int,
    beam_width: int = 4,
    max_iterations: int = 40,
    lookahead: int = 0,
    step_delimiter: str = "\n\n",
    aggregation: Aggregation = "last",
    filter_duplicates: bool = False,
    selection: SelectionRule = "weighted",
    stop_when_n_finished: bool = False,
    adaptive_threshold: float | None = None,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    record_tree: bool = False,
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "beam_search",
) -> StrategyGraph:
    """Build the beam search graph: ``start``, then ``generate`` → ``score`` → ``prune`` in a loop, ``select``.

    Args:
        policy: The policy engine; it must continue partial assistant messages.
        prm: The PRM engine.
        n: The budget: solutions sampled (or beams written per iteration).
        beam_width: Continuations per beam (M); must divide n.
        max_iterations: Most steps per solution; the last one writes to the end.
        lookahead: Greedy steps rolled out past each candidate before scoring.
        step_delimiter: The text between steps, e.g. '\\n\\n'.
        aggregation: How step scores become one score: last, min, prod, mean.
        filter_duplicates: Drop candidates whose text equals an earlier one before pruning.
        selection: Final pick: weighted vote over finished solutions, or best.
        stop_when_n_finished: Stop once n beams have finished (off: run until none is active).
        adaptive_threshold: Stop early once the finished solutions' weighted vote is settled: P(its leader stays the
            leader) >= this, in (0.5, 1] (None: off).
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass, in (0, 1].
        max_tokens: Most tokens per solution (per step in the searches); a cut-off one is never picked.
        seed: Seed for reproducible sampling (each draw gets its own stream).
        system_prompt: Optional system message put before the problem, or preset:<name> (preset:search-and-learn).
        record_tree: Keep the whole search tree in the result (metadata['tree']).
        answers: The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math
            (search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls.
        answer_key: An answer key object of your own instead of a name (recorded as answers='custom:<its name>';
            leave answers at its default).
        checkpointer: Optional LangGraph checkpointer (a search can pause and resume).
        name: The compiled graph's name.

    Raises:
        ValueError: If ``beam_width`` does not divide ``n``, ``n < beam_width``, ``max_iterations < 1``,
            the step delimiter is empty, ``adaptive_threshold`` is outside (0.5, 1] or set with
            ``selection="best"``, or another option is out of range.
        TypeError: If an engine has the wrong type or the policy cannot continue partial messages.

    """
    config = validated(
        BeamSearchConfig, n=n, beam_width=beam_width, max_iterations=max_iterations, lookahead=lookahead,
        step_delimiter=step_delimiter, aggregation=aggregation, filter_duplicates=filter_duplicates,
        selection=selection, stop_when_n_finished=stop_when_n_finished, adaptive_threshold=adaptive_threshold,
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, system_prompt=system_prompt,
        record_tree=record_tree,
        answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_beam_search_graph(policy, prm, config, answer_key=answer_key, checkpointer=checkpointer, name=name)


def build_beam_search_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: BeamSearchConfig,
    *,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "beam_search",
) -> StrategyGraph:
    """The beam search graph for a validated config (the registry's builder)."""
    policy, prm = check_engines(policy, prm)
    config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here
    nodes = make_search_nodes(
        policy,
        prm,
        config,
        roots=lambda _: [Beam()],
        widths=lambda run, frontier, _: repeat_counts(len(frontier), run.n),
    )

    def prune_node(state: SearchState) -> dict[str, Any]:
        run = config_of(state, BeamSearchConfig)
        candidates = beams_of(state, "candidates")
        survivors = prune(
            [c for c in candidates if c.active], keep=run.n // run.beam_width, filter_duplicates=run.filter_duplicates
        )
        return close_iteration(
            state,
            frontier=survivors,
            finished=beams_of(state, "finished") + [c for c in candidates if c.complete],
            truncated=beams_of(state, "truncated") + [c for c in candidates if c.truncated],
        )

    def enough_finished(state: SearchState) -> bool:
        run = config_of(state, BeamSearchConfig)
        return run.stop_when_n_finished and len(state["finished"]) >= run.n

    return build_search_graph(
        nodes, prune=prune_node, stop=enough_finished, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def searched_beams(options: dict[str, Any], budget: int, pilots: int) -> int:
    """The beams a routed search runs with the pilots reused: what they leave, in whole subtrees (0: none)."""
    width = int(options.get("beam_width", 4))
    return (budget - pilots) // width * width


BEAM_SEARCH = StrategySpec(
    name="beam_search",
    description="PRM-guided beam search: N continuations per step, the best N/M survive.",
    config=BeamSearchConfig,
    build=build_beam_search_graph,
    needs_prm=True,
    family="search",
    routed_n=searched_beams,
)
