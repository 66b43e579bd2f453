r"""Diverse verifier tree search (DVTS) as a resumable, streaming LangGraph graph.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}`` where ``result``
is a :class:`~langchain_ttc.core.types.TTCResult` as data (its ``metadata["iterations"]`` holds each
iteration's usage).

The budget ``n`` is split into ``n / beam_width`` independent subtrees. Each iteration every live
subtree samples ``beam_width`` candidate next steps (all subtrees in one policy call), the PRM
scores them (one call), and each subtree extends greedily with its best-scored candidate. A subtree
ends when that candidate ends the solution (end of sequence, or a step with nothing but
whitespace) or states its answer (a complete ``\boxed{}``, as the reference stops there), or when
none of its candidates survives truncation. Every finished candidate of a subtree's final
expansion (up to ``beam_width`` siblings) joins the final pool, as in the reference; unfinished and
truncated siblings never do (the reference returned them too). The answer is the weighted
best-of-N over that pool (``selection="weighted"``) or its best candidate (``"best"``).
Diversity across subtrees is what beats beam search at large ``n``.

Example:
    >>> graph = create_dvts_graph(policy, prm, n=16, beam_width=4)  # doctest: +SKIP

"""

from __future__ import annotations

from typing import Any

from langgraph.types import Checkpointer

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.search import Beam, answered, best_per_subtree
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import Aggregation, SearchConfig, SelectionRule, choose_answers, validated
from langchain_ttc.strategies.graphs import StrategyGraph, dumped
from langchain_ttc.strategies.search.beam_search import searched_beams
from langchain_ttc.strategies.search.stepwise import (
    SearchState,
    beams_of,
    build_search_graph,
    check_engines,
    close_iteration,
    make_search_nodes,
)
from langchain_ttc.strategies.spec import StrategySpec


class DVTSConfig(SearchConfig):
    """DVTS: the search settings (``n / beam_width`` independent subtrees)."""


def create_dvts_graph(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    n: int,
    beam_width: int = 4,
    max_iterations: int = 40,
    lookahead: int = 0,
    step_delimiter: str = "\n\n",
    aggregation: Aggregation = "last",
    selection: SelectionRule = "weighted",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    record_tree: bool = False,
    adaptive_threshold: float | None = None,
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "dvts",
) -> StrategyGraph:
    """Build the DVTS graph: ``start``, then ``generate`` → ``score`` → ``prune`` in a loop, ``select``.

    Args:
        policy: The policy engine; it must continue partial assistant messages.
        prm: The PRM engine.
        n: The budget: solutions sampled (or beams written per iteration).
        beam_width: Continuations per beam (M); must divide n.
        max_iterations: Most steps per solution; the last one writes to the end.
        lookahead: Greedy steps rolled out past each candidate before scoring.
        step_delimiter: The text between steps, e.g. '\\n\\n'.
        aggregation: How step scores become one score: last, min, prod, mean.
        selection: Final pick: weighted vote over finished solutions, or best.
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass, in (0, 1].
        max_tokens: Most tokens per solution (per step in the searches); a cut-off one is never picked.
        seed: Seed for reproducible sampling (each draw gets its own stream).
        system_prompt: Optional system message put before the problem, or preset:<name> (preset:search-and-learn).
        record_tree: Keep the whole search tree in the result (metadata['tree']).
        adaptive_threshold: Stop early once the finished solutions' weighted vote is settled: P(its leader stays the
            leader) >= this, in (0.5, 1] (None: off).
        answers: The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math
            (search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls.
        answer_key: An answer key object of your own instead of a name (recorded as answers='custom:<its name>';
            leave answers at its default).
        checkpointer: Optional LangGraph checkpointer (a search can pause and resume).
        name: The compiled graph's name.

    Raises:
        ValueError: If ``beam_width`` does not divide ``n``, ``n < beam_width``, ``max_iterations < 1``,
            the step delimiter is empty, or another option is out of range.
        TypeError: If an engine has the wrong type or the policy cannot continue partial messages.

    """
    config = validated(
        DVTSConfig, n=n, beam_width=beam_width, max_iterations=max_iterations, lookahead=lookahead,
        step_delimiter=step_delimiter, aggregation=aggregation, selection=selection, temperature=temperature,
        top_p=top_p, max_tokens=max_tokens, seed=seed, system_prompt=system_prompt, record_tree=record_tree,
        adaptive_threshold=adaptive_threshold,
        answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_dvts_graph(policy, prm, config, answer_key=answer_key, checkpointer=checkpointer, name=name)


def build_dvts_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: SearchConfig,
    *,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "dvts",
) -> StrategyGraph:
    """The DVTS graph for a validated config (the registry's builder)."""
    policy, prm = check_engines(policy, prm)
    config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here
    nodes = make_search_nodes(
        policy,
        prm,
        config,
        roots=lambda run: [Beam(subtree=i) for i in range(run.n // run.beam_width)],
        widths=lambda run, frontier, _: [run.beam_width] * len(frontier),
    )

    def prune_node(state: SearchState) -> dict[str, Any]:
        candidates = [answered(c) for c in beams_of(state, "candidates")]
        best = best_per_subtree(candidates)
        going_on = {b.subtree for b in best if b.active}
        ended = [c for c in candidates if c.subtree not in going_on]
        return close_iteration(
            {**state, "candidates": dumped(candidates)},
            frontier=[b for b in best if b.active],
            finished=beams_of(state, "finished") + [c for c in ended if c.complete],
            truncated=beams_of(state, "truncated") + [c for c in ended if c.truncated],
        )

    return build_search_graph(nodes, prune=prune_node, answer_key=answer_key, checkpointer=checkpointer, name=name)


DVTS = StrategySpec(
    name="dvts",
    description="Diverse verifier tree search: N/M independent subtrees, each extended greedily by the PRM.",
    config=DVTSConfig,
    build=build_dvts_graph,
    needs_prm=True,
    family="search",
    routed_n=searched_beams,
)
