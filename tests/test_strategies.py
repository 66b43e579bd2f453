"""The selection strategy graphs: with real engines (call counts, streaming, checkpointing) and
with scripted engines (hand-computed selections)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from langchain_ttc import (
    TTCResult,
    create_best_of_n_graph,
    create_majority_vote_graph,
    create_strategy_graph,
    create_weighted_best_of_n_graph,
    make_problems,
)
from tests.fakes import ScriptedPolicy, ScriptedPRM, last_step_prm

PROBLEM = make_problems(1, 3, seed=21)[0]


@pytest.mark.parametrize("strategy", ["majority_vote", "best_of_n", "weighted_best_of_n"])
def test_one_policy_call_and_one_prm_call_per_invocation(
    strategy: str, arith_policy: Any, arith_prm: Any, count_calls: Any
) -> None:
    policy_calls, prm_calls = count_calls(arith_policy), count_calls(arith_prm)
    graph = create_strategy_graph(strategy, arith_policy, arith_prm, n=8, seed=0, max_tokens=200)
    output = graph.invoke({"problem": PROBLEM.problem})
    result = TTCResult.model_validate(output["result"])
    assert policy_calls.batches == [1]  # one request asking for n=8 samples
    uses_prm = strategy != "majority_vote"
    assert prm_calls.batches == ([8] if uses_prm else [])
    assert len(result.candidates) == 8 and result.strategy == strategy
    assert result.usage.policy_calls == 1 and result.usage.prm_calls == int(uses_prm)
    assert result.usage.completion_tokens == sum(c.num_tokens for c in result.candidates) > 0
    assert (result.usage.prm_tokens > 0) == uses_prm and result.usage.wall_time_s > 0
    assert all((c.score is not None) == uses_prm for c in result.candidates)
    assert output["answer"] == result.answer
    if result.chosen_index is not None:
        assert result.solution == result.candidates[result.chosen_index].text


def test_stream_events_and_chat_message_input(arith_policy: Any, arith_prm: Any) -> None:
    graph = create_weighted_best_of_n_graph(arith_policy, arith_prm, n=4, seed=1, max_tokens=200)
    events = [chunk for chunk in graph.stream({"messages": [HumanMessage(PROBLEM.problem)]}, stream_mode="custom")]
    assert [e["type"] for e in events] == ["ttc.generated", "ttc.scored", "ttc.selected"]
    assert events[0]["candidates"] == 4 and events[0]["tokens"] > 0


def test_messages_input_keeps_system_prompt(count_calls: Any) -> None:
    policy = ScriptedPolicy(["\\boxed{1}"])
    graph = create_majority_vote_graph(policy, n=2)
    graph.invoke({"messages": [SystemMessage("Be careful."), {"role": "user", "content": "What is 0+1?"}]})
    (request,) = policy.calls[0]
    assert request.messages == [
        {"role": "system", "content": "Be careful."},
        {"role": "user", "content": "What is 0+1?"},
    ]


def test_same_seed_same_result(arith_policy: Any, arith_prm: Any) -> None:
    graph = create_best_of_n_graph(arith_policy, arith_prm, n=4, seed=7, max_tokens=200)
    first, second = (graph.invoke({"problem": PROBLEM.problem})["result"] for _ in range(2))
    assert first["candidates"] == second["candidates"]


def test_state_is_plain_data_under_a_checkpointer(arith_policy: Any, arith_prm: Any) -> None:
    graph = create_best_of_n_graph(arith_policy, arith_prm, n=2, seed=3, max_tokens=200, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    graph.invoke({"problem": PROBLEM.problem}, config)
    state = graph.get_state(config)
    json.dumps(state.values)  # plain JSON data: any checkpointer can store it
    assert TTCResult.model_validate(state.values["result"]).usage.prm_calls == 1


def test_graph_level_weighted_vs_naive_vs_majority() -> None:
    texts = [
        "a\n\n\\boxed{7}",
        "b\n\n\\boxed{2}",
        "c\n\n\\boxed{5}",
        "d\n\n\\boxed{7}",
        "e\n\n\\boxed{5}",
        "f\n\n\\boxed{7}",
    ]
    step_scores = {"a": 0.3, "b": 0.95, "c": 0.6, "d": 0.2, "e": 0.6, "f": 0.2}
    prm = ScriptedPRM(lambda _problem, step: step_scores.get(step, 1.0))
    options = {"n": 6, "aggregation": "min"}
    answers = {
        "majority": create_majority_vote_graph(ScriptedPolicy(texts), n=6).invoke({"problem": "p"})["answer"],
        "naive": create_best_of_n_graph(ScriptedPolicy(texts), prm, **options).invoke({"problem": "p"})["answer"],
        "weighted": create_weighted_best_of_n_graph(ScriptedPolicy(texts), prm, **options).invoke({"problem": "p"})[
            "answer"
        ],
    }
    assert answers == {"majority": "7", "naive": "2", "weighted": "5"}
    assert len(prm.calls) == 2 and all(len(batch) == 6 for batch in prm.calls)


def test_truncated_solution_is_never_chosen() -> None:
    policy = ScriptedPolicy(["x\n\n\\boxed{9}", "y\n\n\\boxed{4}"], finish_reasons=["length", "eos"])
    prm = ScriptedPRM(lambda _p, step: 0.99 if step.startswith("x") else 0.1)
    result = TTCResult.model_validate(create_best_of_n_graph(policy, prm, n=2).invoke({"problem": "p"})["result"])
    assert result.answer == "4" and result.chosen_index == 1
    assert [c.finished for c in result.candidates] == [False, True]


def test_no_finished_candidate_gives_no_answer() -> None:
    policy = ScriptedPolicy(["x = 4"], finish_reasons=["length"])
    output = create_majority_vote_graph(policy, n=3).invoke({"problem": "p"})
    assert output["answer"] is None and output["result"]["chosen_index"] is None


@pytest.mark.parametrize(
    ("factory", "kwargs", "error", "match"),
    [
        (
            create_majority_vote_graph,
            {"n": 0},
            ValueError,
            r"n=0 is invalid: input should be greater than or equal to 1",
        ),
        (create_majority_vote_graph, {"n": 2.5}, ValueError, r"n=2.5 is invalid: input should be a valid integer"),
        (create_best_of_n_graph, {"n": 4, "aggregation": "median"}, ValueError, r"aggregation='median'"),
        (
            create_best_of_n_graph,
            {"n": 4, "temperature": -1.0},
            ValueError,
            r"temperature=-1.0 is invalid: input should be greater than or equal to 0",
        ),
        (create_best_of_n_graph, {"n": 4, "max_tokens": 0}, ValueError, r"max_tokens=0"),
        (
            create_best_of_n_graph,
            {"n": 4, "step_delimiter": ""},
            ValueError,
            r"step_delimiter='' is invalid: string should have at least 1 character",
        ),
    ],
)
def test_bad_options_fail_at_construction(factory: Any, kwargs: dict[str, Any], error: type, match: str) -> None:
    engines = [ScriptedPolicy(["\\boxed{1}"])]
    if factory is create_best_of_n_graph:
        engines.append(ScriptedPRM(lambda _p, _s: 0.5))  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        factory(*engines, **kwargs)


def test_wrong_engine_types_and_unknown_strategy() -> None:
    with pytest.raises(TypeError, match="policy=str is not a PolicyEngine"):
        create_majority_vote_graph("gpt", n=2)
    with pytest.raises(TypeError, match="prm=function is not a PRMEngine"):
        create_best_of_n_graph(ScriptedPolicy(["x"]), lambda: 1, n=2)
    with pytest.raises(
        ValueError, match=r"strategy=.beam. is not known; pass one of adaptive_majority_vote, .*, beam_search, best_of"
    ):
        create_strategy_graph("beam", ScriptedPolicy(["x"]))
    with pytest.raises(ValueError, match=r"strategy='best_of_n' scores solutions with a PRM; pass prm="):
        create_strategy_graph("best_of_n", ScriptedPolicy(["x"]), n=2)


@pytest.mark.parametrize("state", [{"problem": "   "}, {"messages": []}, {}])
def test_empty_problem_is_refused_before_any_model_call(state: dict[str, Any]) -> None:
    policy = ScriptedPolicy(["\\boxed{1}"])
    with pytest.raises(ValueError, match=r"is empty|neither 'problem' nor 'messages'"):
        create_majority_vote_graph(policy, n=2).invoke(state)
    assert policy.calls == []


def test_a_budget_over_the_limits_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: n=100000 was accepted everywhere and ran for more than ten minutes."""
    from langchain_ttc.strategies.config import limits

    policy = ScriptedPolicy(["\\boxed{1}"])
    with pytest.raises(ValueError, match=r"n=100000 is over the limit of 1024; .* TTC_MAX_N"):
        create_majority_vote_graph(policy, n=100000)
    graph = create_majority_vote_graph(policy, n=2)
    with pytest.raises(ValueError, match=r"n=100000 is over the limit of 1024"):  # a Studio run's context
        graph.invoke({"problem": "p"}, context={"n": 100000})
    with pytest.raises(ValueError, match=r"max_tokens=10\*\*9|max_tokens=1000000000 is over the limit"):
        create_majority_vote_graph(policy, n=2, max_tokens=10**9)
    with pytest.raises(ValueError, match=r"= 409600 step writes is over the limit of 65536; .*TTC_MAX_SEARCH_STEPS"):
        create_strategy_graph("beam_search", policy, last_step_prm({}), n=1024, max_iterations=400)
    assert policy.calls == []
    monkeypatch.setenv("TTC_MAX_N", "200000")
    limits.cache_clear()
    try:
        assert create_majority_vote_graph(policy, n=100000).name == "majority_vote"
    finally:
        monkeypatch.delenv("TTC_MAX_N")
        limits.cache_clear()
