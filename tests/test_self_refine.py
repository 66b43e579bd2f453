"""Self-refinement: the loop's stop conditions, the draft history, revisions restarting at the flagged
step, the critics (callable, PRM, the policy's own words), parallel chains batched per round, and
bad input (scripted engines); the self-verification PRM on the real Arith policy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from langchain_ttc import TTCResult, make_problems
from langchain_ttc.arith import check_steps, split_steps
from langchain_ttc.cli import main
from langchain_ttc.core.refine import parse_critique
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.types import ScoreRequest
from langchain_ttc.engines.self_verification import SelfVerificationPRM, steps_agree
from langchain_ttc.strategies.refine.self_refine import create_self_refine_graph
from langchain_ttc.strategies.registry import create_strategy_graph
from tests.fakes import ScriptedPolicy, ScriptedPRM, assert_disjoint_streams


def solution(answer: int) -> str:
    return f"Start.\n\nThen {answer}.\n\nThe answer is \\boxed{{{answer}}}."


def run(graph: Any, **config: Any) -> tuple[TTCResult, list[dict[str, Any]]]:
    events, output = [], {}
    for mode, chunk in graph.stream({"problem": "p"}, stream_mode=["custom", "values"], **config):
        if mode == "custom":
            events.append(chunk)
        else:
            output = chunk
    return TTCResult.model_validate(output["result"]), events


def flag_step(step: int) -> Any:
    return lambda _problem, _steps: f"Step {step} is wrong."


def test_stops_when_the_critique_finds_no_error() -> None:
    policy = ScriptedPolicy([solution(1)])
    result, events = run(create_self_refine_graph(policy, lambda _p, _s: "No error.", max_revisions=3))
    assert result.metadata["stop_reasons"] == ["no_error"] and len(result.candidates) == 1
    assert [e["type"] for e in events] == ["ttc.draft", "ttc.critique", "ttc.selected"]
    assert len(policy.calls) == 1 and result.answer == "1"


def test_stops_at_the_revision_budget_keeping_every_draft() -> None:
    policy = ScriptedPolicy([solution(a) for a in (1, 2, 3, 4)])
    result, events = run(create_self_refine_graph(policy, flag_step(2), max_revisions=2))
    assert [c.answer for c in result.candidates] == ["1", "2", "3"]  # every draft, in order
    assert [(d["chain"], d["revision"]) for d in result.metadata["drafts"]] == [(0, 0), (0, 1), (0, 2)]
    assert [d["critique"]["step"] if d["critique"] else None for d in result.metadata["drafts"]] == [1, 1, None]
    assert result.metadata["stop_reasons"] == ["budget"] and result.answer == "3"  # "last": the final draft
    assert [e["type"] for e in events].count("ttc.draft") == 3 and result.usage.policy_calls == 3


def test_stops_when_the_answer_stops_changing() -> None:
    policy = ScriptedPolicy([solution(5), solution(5), solution(6)])
    result, _ = run(create_self_refine_graph(policy, flag_step(1), max_revisions=4))
    assert [c.answer for c in result.candidates] == ["5", "5"] and result.metadata["stop_reasons"] == ["unchanged"]


def test_a_revision_restarts_at_the_flagged_step() -> None:
    policy = ScriptedPolicy([solution(1), "Wrong end.\n\nThe answer is \\boxed{9}."])
    result, _ = run(create_self_refine_graph(policy, flag_step(2), max_revisions=1, seed=4))
    revise = policy.calls[1][0]
    assert revise.partial == "Start.\n\n"  # the steps before step 2 are kept
    assert revise.seed == derive_seed(4, "revision", 0) and policy.calls[0][0].seed == derive_seed(4, "drafts")
    assert result.candidates[1].text == "Start.\n\nWrong end.\n\nThe answer is \\boxed{9}."


def test_parallel_chains_never_share_a_random_stream() -> None:
    # vLLM samples completion k of a request with seed + k: drafts and every round of revisions of
    # every chain must draw from seeds no other sample of the problem uses.
    policy = ScriptedPolicy([solution(1), solution(2), solution(3)])
    run(create_self_refine_graph(policy, flag_step(2), max_revisions=3, chains=3, seed=0))
    assert [r.n for r in policy.calls[0]] == [3] and len(policy.calls[1]) == 3  # 3 drafts, 3 revisions
    assert_disjoint_streams(policy.calls)


def test_the_policy_can_critique_its_own_draft_in_words() -> None:
    policy = ScriptedPolicy([solution(1), "Step 2 is wrong: it should be 2.", solution(2), "No error."])
    result, _ = run(create_self_refine_graph(policy, "policy", max_revisions=3))
    critique_call = policy.calls[1][0]
    assert critique_call.temperature == 0 and "Step 2: Then 1." in critique_call.messages[-1]["content"]
    assert [c.answer for c in result.candidates] == ["1", "2"] and result.metadata["stop_reasons"] == ["no_error"]
    assert result.metadata["drafts"][0]["critique"]["text"] == "Step 2 is wrong: it should be 2."


def test_a_separate_chat_model_can_be_the_critic() -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    critic = GenericFakeChatModel(messages=iter([AIMessage("Step 2 is wrong."), AIMessage("No error.")]))
    policy = ScriptedPolicy([solution(1), solution(2)])
    result, _ = run(create_self_refine_graph(policy, critic, max_revisions=3))
    assert [c.answer for c in result.candidates] == ["1", "2"] and result.metadata["stop_reasons"] == ["no_error"]
    assert [d["critique"]["step"] for d in result.metadata["drafts"]] == [1, None]


def test_parallel_chains_share_one_policy_call_per_round_and_a_verifier_picks() -> None:
    policy = ScriptedPolicy([solution(a) for a in (1, 2, 3, 4, 5, 6, 7)])
    prm = ScriptedPRM(lambda _problem, step: 0.9 if "boxed{4}" in step else 0.3)
    graph = create_self_refine_graph(policy, prm, max_revisions=2, chains=3, verifier=prm, aggregation="last")
    result, _ = run(graph)
    assert [len(call) for call in policy.calls] == [1, 3, 3]  # drafts (n=3), then one batched call per round
    assert policy.calls[0][0].n == 3 and len(result.candidates) == 9
    assert result.metadata["stop_reasons"] == ["budget"] * 3 and result.metadata["selection"] == "verifier"
    assert result.answer == "4"  # the verifier's pick among every draft
    assert len(prm.calls) == 3  # two critique rounds, then only the drafts the critic never saw


def test_pilots_become_first_drafts() -> None:
    policy = ScriptedPolicy([solution(2)])
    graph = create_self_refine_graph(policy, lambda _p, _s: "No error.", max_revisions=1, chains=2)
    pilot = {"text": solution(7), "steps": split_steps(solution(7)), "answer": "7", "finish_reason": "eos",
             "step_scores": [0.1, 0.1, 0.1], "score": 0.1}  # fmt: skip
    result = TTCResult.model_validate(graph.invoke({"problem": "p", "pilots": [pilot]})["result"])
    assert [c.answer for c in result.candidates] == ["7", "2"] and policy.calls[0][0].n == 1
    assert result.candidates[0].score is None  # another verifier's scores are not the critic's


def test_state_is_plain_data_and_resumable_under_a_checkpointer() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    policy = ScriptedPolicy([solution(a) for a in (1, 2, 3)])
    graph = create_self_refine_graph(policy, flag_step(1), max_revisions=2, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "r"}}
    graph.invoke({"problem": "p"}, config)
    values = graph.get_state(config).values
    assert json.loads(json.dumps(values)) == values and len(values["chains"][0]) == 3
    assert [s.next for s in graph.get_state_history(config)].count(("critique",)) == 2


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_revisions": -1}, ValueError, r"max_revisions=-1 must be an integer >= 0"),
        ({"verifier": "arith:prm"}, TypeError, r"verifier=str is not a PRMEngine"),
        ({"critic": 42}, TypeError, r"critic=int is neither a PRMEngine, a Runnable \(e.g. a chat model\) nor"),
        ({"selection": "verifier"}, ValueError, r"selection='verifier' needs verifier="),
        ({"chains": 0}, ValueError, r"chains=0 must be an integer >= 1"),
        ({"critique_threshold": 1.5}, ValueError, r"critique_threshold=1.5 is invalid: input should be less than 1"),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], error: type, message: str) -> None:
    policy = ScriptedPolicy([solution(1)])
    with pytest.raises(error, match=message):
        create_self_refine_graph(policy, **options)
    assert policy.calls == []


def test_registry_splits_the_budget_into_chains() -> None:
    policy = ScriptedPolicy([solution(a) for a in range(1, 20)])
    prm = ScriptedPRM(lambda _problem, _step: 0.1)  # flags every draft: every chain runs to the budget
    graph = create_strategy_graph("self_refine", policy, prm, n=9, max_revisions=2, critic="prm")
    result = TTCResult.model_validate(graph.invoke({"problem": "p"})["result"])
    assert len(result.candidates) == 9 and {d["chain"] for d in result.metadata["drafts"]} == {0, 1, 2}
    with pytest.raises(ValueError, match=r"n=2 is below one chain of 3 drafts"):
        create_strategy_graph("self_refine", policy, prm, n=2, max_revisions=2)
    with pytest.raises(
        ValueError, match=r"critic='oracle' is invalid: input should be 'self', 'prm', 'policy' or 'custom'"
    ):
        create_strategy_graph("self_refine", policy, prm, n=4, critic="oracle")


def test_both_entry_points_build_the_same_graph() -> None:
    """Regression: the registry built critic='self' and the factory critic='policy' from the same defaults."""
    policies = [ScriptedPolicy([solution(1), solution(2)]) for _ in range(2)]
    from_factory = create_self_refine_graph(policies[0], max_revisions=2, seed=0)
    from_registry = create_strategy_graph("self_refine", policies[1], n=3, max_revisions=2, seed=0)
    assert from_factory.get_graph().draw_mermaid() == from_registry.get_graph().draw_mermaid()
    results = [TTCResult.model_validate(g.invoke({"problem": "p"})["result"]) for g in (from_factory, from_registry)]
    assert results[0].candidates == results[1].candidates and results[0].metadata == results[1].metadata
    # the self critic re-derives each step with the policy (continuations at temperature > 0), not a critique prompt
    assert policies[0].calls == policies[1].calls and any(r.partial for call in policies[0].calls for r in call)
    with pytest.raises(ValueError, match=r"critic='prm' needs the critic itself: pass prm="):
        create_strategy_graph("self_refine", policies[0], n=3, max_revisions=2, critic="prm")


def test_critique_parsing_and_step_agreement() -> None:
    assert parse_critique("No error. Step 2 is fine.", num_steps=3).step is None
    assert parse_critique("I think step 3 is wrong", num_steps=3).step == 2
    assert parse_critique("Step 7 is wrong", num_steps=3).step is None  # no such step: nothing to revise
    assert steps_agree("3+4=7, so 7*2", "3+4=7,  so 7*2") and not steps_agree("3+4=7", "3+4=8")


def test_self_verification_on_the_real_policy_flags_wrong_steps_more_than_right_ones(arith_policy: Any) -> None:
    verifier = SelfVerificationPRM(arith_policy, samples=4, seed=0)
    problems = make_problems(6, (5, 8), seed=61)
    requests = [ScoreRequest(problem=p.problem, steps=split_steps(p.solution)) for p in problems]
    wrong = [
        ScoreRequest(problem=r.problem, steps=[s.replace("=", "=1", 1) if i == 1 else s for i, s in enumerate(r.steps)])
        for r in requests
    ]  # a corrupted second step
    right_scores = [s for out in verifier.invoke(requests) for s in out.scores[1:2]]
    wrong_scores = [out.scores[1] for out in verifier.invoke(wrong)]
    assert all(not check_steps(r.problem, r.steps)[1] for r in wrong)
    assert sum(right_scores) / len(right_scores) > sum(wrong_scores) / len(wrong_scores) + 0.3
    with pytest.raises(TypeError, match="must be a PolicyEngine that continues partial"):
        SelfVerificationPRM("arith:small")  # type: ignore[arg-type]


@pytest.mark.integration
def test_cli_self_refine_shows_every_draft(capsys: pytest.CaptureFixture[str]) -> None:
    problem = "Keep only the last digit after each step. What is 9*3-9-9+9+3*7?"
    args = ["solve", problem, "--strategy", "self_refine", "--n", "6", "--max-revisions", "2", "--critic", "prm"]
    assert main([*args, "--seed", "0", "--max-tokens", "256", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    drafts = result["metadata"]["drafts"]
    assert result["strategy"] == "self_refine" and len(drafts) == len(result["candidates"]) >= 2
    assert {d["chain"] for d in drafts} == {0, 1} and "draft (chain 0, revision 0)" in captured.err


def test_the_evaluation_harness_runs_self_refinement_at_each_budget() -> None:
    from langchain_ttc.evaluation.run import EvalConfig, _graphs

    policy = ScriptedPolicy([solution(1)])
    graphs = _graphs(EvalConfig(dataset="arith", strategies=["self_refine"], n_max=8), policy, None)
    assert sorted(graphs) == ["self_refine@4", "self_refine@8"]
