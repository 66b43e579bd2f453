"""Selection without an answer key: universal self-consistency and the knockout tournament, on scripted policies and
chat models as judges (the choice, the batching, both orders, byes, ties, fallbacks, usage, events, the registry)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from langchain_ttc.core.answers import SHORT_ANSWERS
from langchain_ttc.core.judging import JudgePrompts, consistency_query
from langchain_ttc.core.types import GenerationRequest, GenerationResult
from langchain_ttc.engines.judge import JudgePRM, LLMJudge
from langchain_ttc.strategies import create_tournament_graph, create_usc_graph
from langchain_ttc.wiring import STRATEGIES, create_strategy_graph
from tests.fakes import ScriptedChatModel, ScriptedPolicy
from tests.test_judge import LogprobChatModel, RunNames, user_text

ESSAYS = ["Rain is wet. good", "Rain falls from clouds. good", "Cats are mammals.", "Rain is water falling. good"]


def choice(number: int, reason: str = "they agree") -> dict[str, Any]:
    return {"name": "Choice", "args": {"response": number, "reason": reason}}


def preference(winner: str) -> dict[str, Any]:
    return {"name": "Preference", "args": {"winner": winner, "reason": "r"}}


class PreferGood(ScriptedChatModel):
    """A pairwise judge that picks the response with more "good" in it (a tie when equal); records each pair."""

    pairs: list[tuple[str, str]] = Field(default_factory=list)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
        question = user_text(messages)
        first = question.split("Response A:\n")[1].split("\n\nResponse B:")[0]
        second = question.split("Response B:\n")[1].split("\n\nWhich response")[0]
        self.pairs.append((first, second))
        score = first.count("good") - second.count("good")
        winner = "A" if score > 0 else "B" if score < 0 else "tie"
        call = {"name": "Preference", "args": {"winner": winner, "reason": "r"}, "id": "c", "type": "tool_call"}
        message = AIMessage(content="", tool_calls=[call])
        message.usage_metadata = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
        return ChatResult(generations=[ChatGeneration(message=message)])


class NoSamples(ScriptedPolicy):
    """A policy that returns no completions at all."""

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [GenerationResult(completions=[], prompt_tokens=3) for _ in requests]


# ---------------------------------------------------------------- universal self-consistency


def test_usc_returns_the_response_the_judge_names_with_its_usage_trace_and_events() -> None:
    judge = ScriptedChatModel(replies=[choice(4)])
    policy = ScriptedPolicy(ESSAYS, finish_reasons=["eos", "length", "eos", "eos"])
    graph = create_usc_graph(policy, n=4, judge=judge, answer_key=SHORT_ANSWERS)
    handler = RunNames()
    events = list(graph.stream({"problem": "What is rain?"}, stream_mode="custom", config={"callbacks": [handler]}))
    assert [e["type"] for e in events] == ["ttc.generated", "ttc.judged", "ttc.selected"]
    out = create_usc_graph(ScriptedPolicy(ESSAYS, ["eos", "length", "eos", "eos"]), n=4, judge=judge).invoke(
        {"problem": "What is rain?"}
    )
    (question,) = {user_text(c[0]) for c in judge.calls}
    # The truncated response is not shown; the three others are numbered 1..3 in sampling order.
    assert "Response 1:\nRain is wet. good" in question and "Response 2:\nCats are mammals." in question
    assert "Response 3:\nRain is water falling. good" in question and "Rain falls from clouds" not in question
    assert "Select the most consistent response based on majority consensus." in question
    # Response 4 does not exist among the three shown: the judge's reply names none, so the fallback decides.
    metadata = out["result"]["metadata"]["judge"]
    assert metadata["shown"] == [0, 2, 3] and metadata["fallback"].startswith("the judge's reply names none of the 3")
    assert out["result"]["usage"]["judge_fallbacks"] == 1 and out["result"]["chosen_index"] == 0  # first shown
    assert "ttc:judge:consistency" in handler.chains


def test_usc_picks_the_judges_choice_and_counts_one_judge_call() -> None:
    judge = ScriptedChatModel(replies=[choice(3, "1, 3 and 4 are about rain")])
    out = create_usc_graph(ScriptedPolicy(ESSAYS), n=4, judge=judge).invoke({"problem": "What is rain?"})
    result = out["result"]
    assert result["chosen_index"] == 2 and result["solution"] == "Cats are mammals."
    judged = result["metadata"]["judge"]
    assert judged == {"shown": [0, 1, 2, 3], "choice": 2, "reason": "1, 3 and 4 are about rain",
                      "method": "structured", "fallback": None}  # fmt: skip
    usage = result["usage"]
    assert (usage["policy_calls"], usage["judge_calls"], usage["judge_tokens"], usage["judge_fallbacks"]) == (
        1,
        1,
        10,
        0,
    )


def test_usc_with_the_policy_as_its_own_judge_reads_the_papers_answer_format() -> None:
    policy = ScriptedPolicy([*ESSAYS, "The most consistent response is Response 4, as it matches 1 and 2."])
    out = create_usc_graph(policy, n=4).invoke({"problem": "What is rain?"})
    assert out["result"]["chosen_index"] == 3 and out["result"]["metadata"]["judge"]["method"] == "text"
    judged = policy.calls[1][0]  # the second policy call: the judge's, greedy
    assert judged.temperature == 0.0 and "Response 4:\nRain is water falling. good" in judged.messages[-1]["content"]


def test_usc_falls_back_to_the_majority_vote_when_the_reply_names_no_response() -> None:
    answers = ["so \\boxed{1}", "so \\boxed{2}", "so \\boxed{2}"]
    out = create_usc_graph(ScriptedPolicy(answers), n=3, judge=ScriptedChatModel(replies=["I cannot decide."])).invoke(
        {"problem": "p"}
    )
    result = out["result"]
    assert out["answer"] == "2" and result["chosen_index"] == 1 and result["usage"]["judge_fallbacks"] == 1
    assert "majority vote under the math key" in result["metadata"]["judge"]["fallback"]


def test_usc_needs_no_judge_for_one_finished_candidate_and_gives_no_answer_for_none() -> None:
    judge = ScriptedChatModel(replies=[choice(1)])
    one = create_usc_graph(ScriptedPolicy(["a", "b"], ["eos", "length"]), n=2, judge=judge).invoke({"problem": "p"})
    assert one["result"]["chosen_index"] == 0 and one["result"]["usage"]["judge_calls"] == 0 and judge.calls == []
    none = create_usc_graph(NoSamples(["x"]), n=3, judge=judge).invoke({"problem": "p"})
    assert none["answer"] is None and none["result"]["chosen_index"] is None and none["result"]["candidates"] == []
    truncated = create_usc_graph(ScriptedPolicy(["a"], ["length"]), n=2, judge=judge).invoke({"problem": "p"})
    assert truncated["result"]["chosen_index"] is None and judge.calls == []
    with pytest.raises(ValueError, match="responses=\\[\\] is empty"):
        consistency_query(JudgePrompts(), "p", [])


def test_a_consistency_judge_answers_many_problems_in_one_batched_call() -> None:
    chat = ScriptedChatModel(replies=[choice(2)])
    judge = LLMJudge(chat)
    queries = [consistency_query(judge.prompts, f"problem {k}", ["x", "y", "z"]) for k in range(3)]
    verdicts = judge.invoke(queries)
    assert [v.choice for v in verdicts] == [1, 1, 1] and len(chat.calls) == 3 and judge.stats.calls == 1


# ---------------------------------------------------------------- the tournament


def test_the_tournament_plays_n_minus_1_matches_in_both_orders_one_judge_call_per_round() -> None:
    judge = PreferGood(replies=[preference("tie")])
    texts = ["plain 0", "good 1", "plain 2", "good good 3", "plain 4"]
    graph = create_tournament_graph(ScriptedPolicy(texts), n=5, judge=judge)
    events = list(graph.stream({"problem": "p"}, stream_mode="custom"))
    assert [e["type"] for e in events] == ["ttc.generated", "ttc.round", "ttc.round", "ttc.round", "ttc.selected"]
    out = create_tournament_graph(ScriptedPolicy(texts), n=5, judge=PreferGood(replies=[preference("tie")])).invoke(
        {"problem": "p"}
    )
    result = out["result"]
    rounds = result["metadata"]["rounds"]
    assert result["solution"] == "good good 3" and result["metadata"]["champion"] == 3
    # Round 1: (0, 1), (2, 3), 4 has a bye; round 2: the bye opens it: (4, 1), 3 has a bye; the final: (3, 1).
    assert [[(m["first"], m["second"]) for m in r["matches"]] for r in rounds] == [[(0, 1), (2, 3)], [(4, 1)], [(3, 1)]]
    assert [r["bye"] for r in rounds] == [4, 3, None]
    assert sum(len(r["matches"]) for r in rounds) == 4  # N - 1
    usage = result["usage"]
    assert (
        usage["judge_calls"] == 3 == len(rounds) and usage["judge_tokens"] == 8 * 10 and usage["judge_fallbacks"] == 0
    )
    asked = judge.pairs[-8:]  # the second run's: each match asked A-B and B-A
    assert sorted(asked) == sorted((b, a) for a, b in asked) and len(set(asked)) == 8


def test_position_bias_cancels_and_ties_go_to_the_answer_more_candidates_share() -> None:
    biased = ScriptedChatModel(replies=[preference("A")])  # always prefers the first response shown
    answers = ["so \\boxed{1}", "so \\boxed{2}", "so \\boxed{2}", "so \\boxed{3}"]
    out = create_tournament_graph(ScriptedPolicy(answers), n=4, judge=biased).invoke({"problem": "p"})
    matches = [m for r in out["result"]["metadata"]["rounds"] for m in r["matches"]]
    assert all(m["tie"] and m["preference"] == 0.5 for m in matches)  # A-B says A, B-A says B: a tie
    assert out["answer"] == "2" and out["result"]["chosen_index"] == 1  # support 2 beats 1; then the earlier one
    once = create_tournament_graph(ScriptedPolicy(answers), n=4, judge=biased, both_orders=False).invoke(
        {"problem": "p"}
    )
    assert once["result"]["chosen_index"] == 0 and once["result"]["usage"]["judge_tokens"] == 3 * 10  # bias wins


def test_unreadable_match_replies_count_as_no_preference_and_are_counted() -> None:
    out = create_tournament_graph(
        ScriptedPolicy(["a", "b", "c"]), n=3, judge=ScriptedChatModel(replies=["hmm"])
    ).invoke({"problem": "p"})
    matches = [m for r in out["result"]["metadata"]["rounds"] for m in r["matches"]]
    assert [m["unreadable"] for m in matches] == [2, 2] and out["result"]["usage"]["judge_fallbacks"] == 4
    assert all(m["tie"] for m in matches) and out["result"]["chosen_index"] == 0  # ties: the one sampled first


def test_a_logprob_judge_gives_graded_preferences_from_both_orders() -> None:
    def p_first(question: str) -> float:
        first = question.split("Response A:\n")[1].split("\n\n")[0]
        return 0.8 if "good" in first else 0.4  # prefers "good", and leans to position A

    judge = LogprobChatModel(replies=[preference("tie")], p_yes=p_first)
    out = create_tournament_graph(ScriptedPolicy(["bad", "good"]), n=2, judge=judge).invoke({"problem": "p"})
    (match,) = out["result"]["metadata"]["rounds"][0]["matches"]
    assert match["preference"] == pytest.approx((0.4 + (1 - 0.8)) / 2) and match["winner"] == 1
    assert math.isclose(out["result"]["usage"]["judge_tokens"], 2 * 31)


# ---------------------------------------------------------------- the registry, the context, async, checkpoints


def test_both_strategies_are_in_the_catalog_and_run_from_it_with_the_policy_as_judge() -> None:
    assert {"usc", "tournament"} <= set(STRATEGIES)
    assert not STRATEGIES["usc"].needs_prm and STRATEGIES["tournament"].options()[-1] == "both_orders"
    texts = ["so \\boxed{1}", "so \\boxed{1}", "Response 1 is the most consistent one."]
    graph = create_strategy_graph("tournament", ScriptedPolicy(texts), None, n=2)
    out = graph.invoke({"problem": "p"}, context={"both_orders": False, "n": 3})
    assert len(out["result"]["candidates"]) == 3 and out["result"]["usage"]["judge_calls"] == 2
    # A judge PRM given to the registry is the judge the selection asks.
    chat = ScriptedChatModel(replies=[choice(2)])
    usc = create_strategy_graph("usc", ScriptedPolicy(["a", "b"]), JudgePRM(chat), n=2)
    assert usc.invoke({"problem": "p"})["result"]["chosen_index"] == 1 and len(chat.calls) == 1


def test_async_runs_give_what_sync_runs_give_and_a_checkpointer_keeps_the_bracket() -> None:
    texts = ["plain 0", "good 1", "good good 2"]

    def build(**options: Any) -> Any:
        return create_tournament_graph(
            ScriptedPolicy(texts), n=3, judge=PreferGood(replies=[preference("tie")]), **options
        )

    sync = build().invoke({"problem": "p"})
    asynchronous = asyncio.run(build().ainvoke({"problem": "p"}))
    assert sync["result"]["chosen_index"] == asynchronous["result"]["chosen_index"] == 2
    saver = InMemorySaver()
    graph = build(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "t"}}
    graph.invoke({"problem": "p"}, config)
    state = graph.get_state(config).values
    assert state["entrants"] == [2] and len(state["rounds"]) == 2
    graph.invoke({"problem": "p"}, config)  # a second run on the thread starts a fresh bracket
    assert len(graph.get_state(config).values["rounds"]) == 2
    usc = create_usc_graph(ScriptedPolicy(ESSAYS), n=4, judge=ScriptedChatModel(replies=[choice(2)]))
    assert asyncio.run(usc.ainvoke({"problem": "p"}))["result"]["chosen_index"] == 1


def test_bad_collaborators_are_refused() -> None:
    with pytest.raises(TypeError, match="is neither a LangChain chat model nor a PolicyEngine"):
        create_usc_graph(ScriptedPolicy(["a"]), n=2, judge="gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not a PolicyEngine"):
        create_tournament_graph("policy", n=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n=0 is invalid"):
        create_tournament_graph(ScriptedPolicy(["a"]), n=0)
    with pytest.raises(TypeError, match="cannot be set on a judge already built"):
        from langchain_ttc.engines.judge import as_judge

        as_judge(LLMJudge(ScriptedChatModel(replies=["x"])), method="structured")
