"""A knockout tournament of pairwise judge comparisons as a LangGraph graph: the last one standing is chosen.

In: ``{"problem": str}`` or ``{"messages": [...]}`` (optional ``pilots``). Out: ``{"answer",
"result"}`` where ``result`` is a :class:`~langchain_ttc.core.types.TTCResult` as data.

``generate`` samples ``n`` whole solutions in one policy call; ``bracket`` enters the finished ones
(a truncated solution never plays); then ``compare`` plays one round per pass, the loop a
conditional edge, until one candidate is left; ``select`` returns it.

- **A round is one batched judge call.** Its entrants are paired in order; each match asks the
  judge "which response answers the problem better?" **in both orders** (A-B and B-A), so a judge
  that favours the first (or the second) position cancels out (``both_orders=False`` asks once and
  halves the calls). Every query of the round goes in one call.
- **N - 1 matches**, in ceil(log2 N) rounds, for N finished candidates; one candidate needs no
  judge, none gives no answer.
- **Byes**: an odd entrant out (the last of the round) goes through unjudged and opens the next
  round, so it is never the odd one out twice in a row.
- **Ties** (the two orders cancel exactly, the judge says "tie", or both replies are unreadable):
  the candidate whose answer more candidates share (by ``answer_key``) wins, then the one sampled first.
- **Unreadable replies** count as "no preference" (0.5) in their match: the stated fallback, counted
  in ``usage.judge_fallbacks`` and in each match's record.

The rules are pure functions in :mod:`langchain_ttc.core.brackets`. The judge is any LangChain chat
model or policy engine (by default the policy itself); it reads P("A") from log-probabilities where
the model exposes them, else a ``{"winner": "A" | "B" | "tie"}`` object
(:mod:`langchain_ttc.engines.judge`). Usage: ``judge_calls`` (one per round, two when unreadable
log-probability replies are asked again) and ``judge_tokens``; each round is traced as the run
``ttc:judge:pairwise``.

``result.metadata``: ``rounds`` (per round: ``entrants``, ``bye`` and its ``matches``, each with
``first``, ``second``, ``preference`` = P(first is better), ``winner``, ``tie`` and ``unreadable``)
and ``champion``.

Example:
    >>> graph = create_tournament_graph(policy, n=8, judge=ChatOpenAI(model="gpt-4o-mini"))  # doctest: +SKIP
    >>> len(graph.invoke({"problem": "Write a haiku about rain."})["result"]["metadata"]["rounds"])  # doctest: +SKIP
    3

"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START
from langgraph.types import Checkpointer
from pydantic import Field

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.brackets import answer_support, decide, knockout_round, match_preference, next_entrants
from langchain_ttc.core.judging import pairwise_query
from langchain_ttc.core.types import Usage
from langchain_ttc.core.voting import Selection
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.judge import JudgeModel, LLMJudge, selection_judge
from langchain_ttc.strategies.config import StrategyConfig, choose_answers, validated
from langchain_ttc.strategies.driver import Calls, as_node, call, emit
from langchain_ttc.strategies.generation import check_policy, make_generate_node, selection_output
from langchain_ttc.strategies.graphs import (
    SelectionState,
    StrategyGraph,
    candidates_of,
    compile_loop,
    config_of,
    new_graph,
    usage_of,
)
from langchain_ttc.strategies.parts import record_parts
from langchain_ttc.strategies.spec import StrategySpec, sampling_n


class TournamentConfig(StrategyConfig):
    """A knockout tournament: ``n`` samples, pairwise judge comparisons until one is left."""

    both_orders: bool = Field(
        True,
        description="Ask each comparison in both orders (A-B and B-A) to cancel position bias; off: half the calls.",
    )


class TournamentState(SelectionState, total=False):
    """The sample-then-select state plus the bracket: who is still in, and every round played."""

    entrants: list[int]
    rounds: list[dict[str, Any]]


def create_tournament_graph(
    policy: PolicyEngine,
    *,
    n: int,
    judge: LLMJudge | JudgeModel | None = None,
    both_orders: bool = True,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "tournament",
) -> StrategyGraph:
    """Build the knockout-tournament graph: ``generate``, ``bracket``, ``compare`` (one round per pass), ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        n: The budget: solutions sampled (or beams written per iteration).
        judge: Who compares two responses: an :class:`~langchain_ttc.engines.judge.LLMJudge`, any
            LangChain chat model or policy engine (``None``: the policy itself).
        both_orders: Ask each comparison in both orders (A-B and B-A) to cancel position bias; off: half the calls.
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass, in (0, 1].
        max_tokens: Most tokens per solution (per step in the searches); a cut-off one is never picked.
        seed: Seed for reproducible sampling (each draw gets its own stream).
        system_prompt: Optional system message put before the problem, or preset:<name> (preset:search-and-learn).
        step_delimiter: The text between steps, e.g. '\\n\\n'.
        answers: The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math
            (search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls.
        answer_key: An answer key object of your own instead of a name (recorded as answers='custom:<its name>';
            leave answers at its default).
        checkpointer: Optional LangGraph checkpointer.
        name: The compiled graph's name.

    Raises:
        ValueError: If ``n`` or a sampling setting is out of range.
        TypeError: If ``policy`` is not a policy engine or ``judge`` cannot judge.

    Example:
        >>> graph = create_tournament_graph(policy, n=8, both_orders=False)  # doctest: +SKIP

    """
    config = validated(
        TournamentConfig, n=n, both_orders=both_orders, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        seed=seed, system_prompt=system_prompt, step_delimiter=step_delimiter,
        answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_tournament_graph(
        policy, None, config, judge=judge, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def build_tournament_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: StrategyConfig,
    *,
    judge: LLMJudge | JudgeModel | None = None,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "tournament",
) -> StrategyGraph:
    """The knockout-tournament graph for a validated config (the registry's builder).

    ``prm`` is used only when it is a :class:`~langchain_ttc.engines.judge.JudgePRM` and no ``judge``
    is given: its judge then plays the matches.
    """
    check_policy(policy)
    asked = selection_judge(policy, prm, judge)
    own = config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here

    def bracket(state: TournamentState) -> dict[str, Any]:
        entrants = [i for i, c in enumerate(candidates_of(state)) if c.finished]
        return {"entrants": entrants, "rounds": []}

    def compare(state: TournamentState) -> Calls[dict[str, Any]]:
        run = config_of(state, TournamentConfig)
        both = run.both_orders
        candidates = candidates_of(state)
        entrants = list(state["entrants"])
        pairs, bye = knockout_round(entrants)
        texts = [c.text for c in candidates]
        queries = []
        for first, second in pairs:
            queries.append(pairwise_query(asked.prompts, state["problem"], texts[first], texts[second]))
            if both:
                queries.append(pairwise_query(asked.prompts, state["problem"], texts[second], texts[first]))
        verdicts = yield from call(asked, queries)
        support = answer_support(candidates, key=run.answer_key(answer_key))
        per = 2 if both else 1
        matches: list[dict[str, Any]] = []
        winners: list[int] = []
        fallbacks = 0
        for m, (first, second) in enumerate(pairs):
            said = verdicts[m * per : (m + 1) * per]
            preference = match_preference(said[0].score, said[-1].score if both else None, both_orders=both)
            winner, tie = decide(first, second, preference, support=support)
            unreadable = sum(not v.readable for v in said)
            fallbacks += unreadable
            matches.append(
                {"first": first, "second": second, "preference": preference, "winner": winner, "tie": tie,
                 "unreadable": unreadable, "reasons": [v.reason for v in said]}
            )  # fmt: skip
            winners.append(winner)
        rounds = list(state.get("rounds") or [])
        record = {"round": len(rounds), "entrants": entrants, "bye": bye, "matches": matches}
        usage = Usage(
            judge_calls=(1 + any(v.escalated for v in verdicts)) if verdicts else 0,
            judge_tokens=sum(v.tokens for v in verdicts),
            judge_fallbacks=fallbacks,
        )
        emit({"type": "ttc.round", "round": record["round"], "matches": len(matches), "bye": bye, "left": len(winners)})
        return {"entrants": next_entrants(winners, bye), "rounds": [*rounds, record], "usage": usage}

    def route(state: TournamentState) -> Literal["compare", "select"]:
        return "compare" if len(state.get("entrants") or []) > 1 else "select"

    def select(state: TournamentState) -> dict[str, Any]:
        candidates = candidates_of(state)
        entrants = state.get("entrants") or []
        champion = entrants[0] if entrants else None
        output = selection_output(name, candidates, Selection(chosen_index=champion), usage_of(state))
        output["result"]["metadata"] = {"rounds": state.get("rounds") or [], "champion": champion}
        return output

    builder = new_graph(TournamentState)
    builder.add_node("generate", as_node(make_generate_node(policy, config, answer_key=answer_key), name="generate"))
    builder.add_node("bracket", as_node(bracket, name="bracket"))
    builder.add_node("compare", as_node(compare, name="compare"))
    builder.add_node("select", as_node(select, name="select"))
    builder.add_edge(START, "generate")
    builder.add_edge("generate", "bracket")
    builder.add_conditional_edges("bracket", route, ["compare", "select"])
    builder.add_conditional_edges("compare", route, ["compare", "select"])
    builder.add_edge("select", END)
    graph = compile_loop(builder, checkpointer=checkpointer, name=name)
    return record_parts(graph, policy=policy, answer_key=own)


TOURNAMENT = StrategySpec(
    name="tournament",
    description="N samples in a knockout of pairwise judge comparisons (both orders); no answer key needed.",
    config=TournamentConfig,
    build=build_tournament_graph,
    needs_prm=False,
    family="sampling",
    routed_n=sampling_n,
)
"""No ``vote``: every match is a judge's call, which a replay over a fixed sample set cannot make for free."""
