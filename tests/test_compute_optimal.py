"""The compute-optimal router: routing decisions for scripted difficulties, pilot reuse, budget
accounting, the table's schema and bad input (scripted engines); the shipped table and the CLI on
the real Arith checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langchain_ttc import TTCResult
from langchain_ttc.cli import main
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.types import Candidate
from langchain_ttc.evaluation.fit import fit_choices, held_out_accuracy, quantile_thresholds
from langchain_ttc.strategies.routing.compute_optimal import create_compute_optimal_graph
from langchain_ttc.strategies.routing.difficulty import agreement_difficulty, prm_score_difficulty
from langchain_ttc.strategies.routing.table import default_table_path, load_table, save_table
from tests.fakes import ScriptedPolicy, ScriptedPRM, assert_disjoint_streams

SOLUTIONS = ["2+2=4.\n\nThe answer is \\boxed{4}.", "2+2=5.\n\nThe answer is \\boxed{5}."]
LAST_STEP = {"easy problem": 0.9, "medium problem": 0.5, "hard problem": 0.1}  # difficulty 0.1 / 0.5 / 0.9
TABLE: dict[str, Any] = {
    "version": 1,
    "estimator": "prm_score",
    "pilots": 2,
    "aggregation": "last",
    "bins": [{"name": "easy", "upper": 0.3}, {"name": "medium", "upper": 0.7}, {"name": "hard"}],
    "budgets": {
        "4": {
            "easy": {"strategy": "majority_vote"},
            "medium": {"strategy": "weighted_best_of_n"},
            "hard": {"strategy": "best_of_n"},
        },
        "8": {
            "easy": {"strategy": "majority_vote"},
            "medium": {"strategy": "weighted_best_of_n"},
            "hard": {"strategy": "beam_search", "options": {"beam_width": 2}},
        },
    },
    "calibration": {"note": "written by hand for these tests"},
}


def engines() -> tuple[ScriptedPolicy, ScriptedPRM]:
    return ScriptedPolicy(SOLUTIONS), ScriptedPRM(lambda problem, _step: LAST_STEP[problem])


def run(graph: Any, problem: str) -> tuple[TTCResult, list[dict[str, Any]]]:
    events, output = [], {}  # subgraphs=True: the routed strategy's own events come too
    for namespace, mode, chunk in graph.stream({"problem": problem}, stream_mode=["custom", "values"], subgraphs=True):
        if mode == "custom":
            events.append(chunk)
        elif not namespace:
            output = chunk
    return TTCResult.model_validate(output["result"]), events


@pytest.mark.parametrize(
    ("problem", "bin_name", "strategy"),
    [("easy problem", "easy", "majority_vote"), ("medium problem", "medium", "weighted_best_of_n"),
     ("hard problem", "hard", "best_of_n")],
)  # fmt: skip
def test_routes_each_difficulty_to_its_bins_strategy(problem: str, bin_name: str, strategy: str) -> None:
    policy, prm = engines()
    result, events = run(create_compute_optimal_graph(policy, prm, budget=4, table=TABLE), problem)
    routing = result.metadata["routing"]
    assert (routing["bin"], routing["strategy"], routing["estimator"]) == (bin_name, strategy, "prm_score")
    assert routing["difficulty"] == pytest.approx(1 - LAST_STEP[problem])
    assert result.strategy == "compute_optimal" and result.answer in {"4", "5"}
    routed = [e for e in events if e["type"] == "ttc.routed"]
    assert len(routed) == 1 and routed[0]["strategy"] == strategy
    assert [e["type"] for e in events].index("ttc.routed") < [e["type"] for e in events].index("ttc.selected")


def test_pilots_are_reused_and_count_against_the_budget() -> None:
    policy, prm = engines()
    result, _ = run(create_compute_optimal_graph(policy, prm, budget=8, table=TABLE, seed=3), "medium problem")
    # One policy call for 2 pilots, one for the 6 more the strategy needs: 8 samples = the budget.
    assert [[r.n for r in call] for call in policy.calls] == [[2], [6]]
    # New samples, not copies of the pilots: under vLLM's seed + k rule no two samples share a stream.
    assert policy.calls[0][0].seed == derive_seed(3, "pilots")
    assert_disjoint_streams(policy.calls)
    assert [len(call) for call in prm.calls] == [2, 6]  # pilots keep their scores: no second PRM pass on them
    assert len(result.candidates) == 8 and all(c.score is not None for c in result.candidates)
    assert result.usage.policy_calls == 2 and result.usage.prm_calls == 2
    assert result.usage.completion_tokens == sum(c.num_tokens for c in result.candidates)


def test_a_routed_search_gets_what_the_pilots_leave_and_also_picks_among_them() -> None:
    policy, prm = engines()
    result, _ = run(create_compute_optimal_graph(policy, prm, budget=8, table=TABLE), "hard problem")
    assert result.metadata["routing"]["options"] == {"beam_width": 2, "n": 6}
    generated = sum(r.n for call in policy.calls for r in call)
    assert generated <= 8 and policy.calls[0][0].n == 2
    assert len(result.candidates) == 6 + 2  # the search's finished beams and the two pilots
    assert "iterations" in result.metadata


def test_a_routed_self_refinement_revises_the_pilots_within_the_budget() -> None:
    table = json.loads(json.dumps(TABLE))
    table["budgets"]["8"]["hard"] = {"strategy": "self_refine", "options": {"max_revisions": 1, "critic": "prm"}}
    policy, prm = engines()
    result, events = run(create_compute_optimal_graph(policy, prm, budget=8, table=table), "hard problem")
    assert result.metadata["routing"]["strategy"] == "self_refine"
    drafts = result.metadata["drafts"]
    assert len(drafts) == len(result.candidates) <= 8 and {d["chain"] for d in drafts} == {0, 1, 2, 3}
    assert [r.n for r in policy.calls[1]] == [2]  # 4 chains: the 2 pilots are first drafts, 2 more are sampled
    assert sum(r.n for call in policy.calls for r in call) <= 8
    assert any(e["type"] == "ttc.critique" for e in events)


def test_agreement_needs_no_prm_and_a_callable_estimator_plugs_in() -> None:
    table = {**TABLE, "estimator": "agreement", "budgets": {"4": {b: {"strategy": "majority_vote"} for b in
                                                                 ("easy", "medium", "hard")}}}  # fmt: skip
    policy = ScriptedPolicy(SOLUTIONS[:1])  # every pilot agrees: difficulty 0
    result, _ = run(create_compute_optimal_graph(policy, budget=4, table=table), "any")
    assert result.metadata["routing"]["difficulty"] == 0.0 and result.metadata["routing"]["bin"] == "easy"

    def always_hard(pilots: Any) -> float:
        return 0.95

    policy, prm = engines()
    graph = create_compute_optimal_graph(policy, prm, budget=4, table=TABLE, estimator=always_hard)
    result, _ = run(graph, "easy problem")
    assert result.metadata["routing"]["bin"] == "hard" and result.metadata["routing"]["estimator"] == "always_hard"


def test_router_state_is_plain_data_under_a_checkpointer() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    policy, prm = engines()
    graph = create_compute_optimal_graph(policy, prm, budget=8, table=TABLE, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"problem": "hard problem"}, config)
    values = graph.get_state(config).values
    assert json.loads(json.dumps(values)) == values
    assert values["route"] == "beam_search_n6" and len(values["pilots"]) == 2
    steps = [s.next for s in graph.get_state_history(config)]
    assert ("route",) in steps and ("beam_search_n6",) in steps  # each node a resumable checkpoint


def test_estimators() -> None:
    def pilot(answer: str | None, score: float | None, finish: str = "stop") -> Candidate:
        return Candidate(text="", steps=["s"], answer=answer, finish_reason=finish, score=score)  # type: ignore[arg-type]

    pilots = [pilot("4", 0.8), pilot("4.0", 0.6), pilot("5", 0.4), pilot("4", 0.9, "length")]
    assert prm_score_difficulty(pilots) == pytest.approx(1 - (0.8 + 0.6 + 0.4 + 0.0) / 4)
    assert agreement_difficulty(pilots) == pytest.approx(1 - 2 / 4)  # "4" and "4.0" agree; truncated ones do not vote
    with pytest.raises(ValueError, match="pilots=\\[\\] is empty"):
        agreement_difficulty([])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["budgets"]["4"].pop("hard"), r"budget 4: bins \['hard'\] have no choice"),
        (
            lambda t: t["budgets"]["4"].update(hard={"strategy": "tree_search"}),
            r"budgets\.4\.hard: .*strategy 'tree_search' cannot be routed to",
        ),
        (lambda t: t["bins"].reverse(), r"every bin but the last needs an upper bound"),
        (lambda t: t.update(estimator="vibes"), r"estimator 'vibes' is not known"),
        (
            lambda t: t["budgets"]["8"]["hard"]["options"].update(beam_width=8),
            r"beam_search\(beam_width=8\) does not fit after 2 pilots",
        ),
        (lambda t: t["budgets"]["4"]["easy"].update(options={"beam_width": 2}), r"do not apply to 'majority_vote'"),
        (
            lambda t: t["budgets"]["4"].update(hard={"strategy": "self_refine", "options": {"max_revisions": 3}}),
            r"self_refine\(max_revisions=3\) does not fit after 2 pilots",
        ),
    ],
)
def test_bad_tables_fail_at_construction_naming_the_rule(change: Any, message: str) -> None:
    table = json.loads(json.dumps(TABLE))
    change(table)
    policy, prm = engines()
    with pytest.raises(ValueError, match=message):
        create_compute_optimal_graph(policy, prm, budget=4, table=table)
    assert policy.calls == []


def test_bad_budgets_estimators_and_engines_fail_at_construction(tmp_path: Path) -> None:
    policy, prm = engines()
    with pytest.raises(ValueError, match=r"budget=16 is not in the strategy table \(budgets 4, 8\)"):
        create_compute_optimal_graph(policy, prm, budget=16, table=TABLE)
    with pytest.raises(ValueError, match=r"budget=1 is smaller than the table's 2 pilot samples"):
        create_compute_optimal_graph(policy, prm, budget=1, table=TABLE)
    with pytest.raises(ValueError, match=r"estimator='agreement' differs from the table's 'prm_score'"):
        create_compute_optimal_graph(policy, prm, budget=4, table=TABLE, estimator="agreement")
    with pytest.raises(ValueError, match=r"pass prm="):
        create_compute_optimal_graph(policy, budget=4, table=TABLE)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_compute_optimal_graph(policy, prm, budget=4, table=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json' is not JSON"):
        create_compute_optimal_graph(policy, prm, budget=4, table=tmp_path / "bad.json")


def test_the_graph_draws_its_strategy_subgraphs() -> None:
    policy, prm = engines()
    graph = create_compute_optimal_graph(policy, prm, budget=8, table=TABLE)
    nodes = set(graph.get_graph(xray=True).nodes)
    # One node per strategy the table can route to, at every budget, each drawn with its own nodes.
    assert {"pilots", "route", "finish", "majority_vote_n4:generate", "beam_search_n6:prune"} <= nodes
    assert {n.split(":")[0] for n in nodes if ":" in n} == {
        "majority_vote_n4", "weighted_best_of_n_n4", "best_of_n_n4", "majority_vote_n8", "weighted_best_of_n_n8",
        "beam_search_n6"}  # fmt: skip


def test_a_context_n_picks_another_budget_of_the_table_without_leaking_into_the_strategy() -> None:
    policy, prm = engines()
    graph = create_compute_optimal_graph(policy, prm, budget=4, table=TABLE)
    output = graph.invoke({"problem": "hard problem"}, context={"n": 8, "beam_width": 3, "seed": 10})
    routing = output["result"]["metadata"]["routing"]
    assert routing["budget"] == 8 and routing["options"] == {"beam_width": 2, "n": 6}  # the table's, not 3 or 8
    assert policy.calls[0][0].n == 2 and policy.calls[0][0].seed == derive_seed(10, "pilots")
    assert_disjoint_streams(policy.calls)
    assert sum(r.n for call in policy.calls for r in call) <= 8
    with pytest.raises(ValueError, match=r"budget=16 is not in the strategy table"):
        graph.invoke({"problem": "hard problem"}, context={"n": 16})


def test_a_context_meant_for_particle_gibbs_does_not_reach_a_routed_particle_filter() -> None:
    """Regression: ``rounds`` and ``resampling_temperature`` leaked into the routed strategy, so a Studio run with
    rounds=3 failed validation mid-run when the table sent budget 4 to particle filtering with n=2."""
    table = {**TABLE, "budgets": {"4": {b: {"strategy": "particle_filtering"} for b in ("easy", "medium", "hard")}}}
    policy, prm = engines()
    graph = create_compute_optimal_graph(policy, prm, budget=4, table=table)
    context = {"rounds": 3, "resampling_temperature": 0.01, "reference_particles": 5, "beam_width": 3}
    output = graph.invoke({"problem": "hard problem"}, context=context)
    routing = output["result"]["metadata"]["routing"]
    assert routing["strategy"] == "particle_filtering" and routing["options"] == {"n": 2}
    assert output["answer"] in {"4", "5"}


def test_fit_picks_per_bin_and_the_held_out_estimate_is_honest(tmp_path: Path) -> None:
    # Strategy "a" is right on easy problems, "b" on hard ones; "c" is always wrong.
    records = [
        {"id": str(i), "difficulty": {"prm_score": i / 20},
         "correct": {"4": {"a": i < 10, "b": i >= 10, "c": False}}}
        for i in range(20)
    ]  # fmt: skip
    fitted = fit_choices(records, estimator="prm_score", bin_count=2, labels=["c", "a", "b"])
    assert fitted.choices == {4: {"easy": "a", "hard": "b"}}
    # Each fold is routed by bins and picks fitted on the other fold: better than any fixed strategy
    # (0.5), but not the in-sample 1.0 unless the other fold's quantiles happen to split at 0.5.
    held_out = held_out_accuracy(records, estimator="prm_score", bin_count=2, labels=["a", "b", "c"], folds=2)
    assert set(held_out) == {4} and 0.5 < held_out[4] <= 1.0
    assert quantile_thresholds([0.0, 0.0, 0.0, 1.0], 2) == [pytest.approx(0.0, abs=1e-12)]  # no empty repeat bins
    # A tie inside a bin goes to the strategy more accurate over all problems, then to the candidates' order:
    # "m" (listed first) ties "b" on the easy problems but fails every hard one; "b" is always right.
    for r in records:
        r["correct"]["4"] |= {"m": r["correct"]["4"]["a"], "b": True}
    assert fit_choices(records, estimator="prm_score", bin_count=2, labels=["m", "b"]).choices[4]["easy"] == "b"
    assert fit_choices(records, estimator="prm_score", bin_count=2, labels=["m", "a"]).choices[4]["easy"] == "m"
    table = load_table(TABLE)
    save_table(table, tmp_path / "t.json")
    assert load_table(tmp_path / "t.json") == table


def test_the_shipped_arith_table_is_calibrated_and_complete() -> None:
    table = load_table(default_table_path())
    assert sorted(table.budgets) == [4, 16, 64]
    assert table.calibration["command"].startswith("ttc calibrate")
    assert table.calibration["problems"] >= 80 and set(table.calibration["held_out_router_accuracy"]) == {
        "4",
        "16",
        "64",
    }


@pytest.mark.integration
def test_cli_solves_with_the_router_offline_and_reports_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    problem = "Keep only the last digit after each step. What is 3+4*3-5+7*9?"
    assert main(["solve", problem, "--strategy", "compute_optimal", "--n", "16", "--seed", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    routing = result["metadata"]["routing"]
    assert result["strategy"] == "compute_optimal" and routing["budget"] == 16
    assert routing["bin"] in [b.name for b in load_table().bins] and routing["strategy"]
    assert result["usage"]["policy_calls"] >= 2


def test_cli_refuses_a_budget_the_table_lacks_before_loading_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "What is 1+1?", "--strategy", "compute_optimal", "--n", "8"]) == 2
    assert "budget=8 is not in the strategy table (budgets 4, 16, 64)" in capsys.readouterr().err


@pytest.mark.integration
def test_cli_calibrates_a_table_that_the_router_then_uses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "table.json"
    args = ["calibrate", "--count", "6", "--difficulty", "2-5", "--budgets", "4", "8", "--pilots", "2", "--bins", "2"]
    args += ["--strategies", "majority_vote", "weighted_best_of_n", "beam_search", "--beam-width", "2"]
    assert main([*args, "--max-tokens", "128", "--output", str(output)]) == 0
    table = load_table(output)
    assert sorted(table.budgets) == [4, 8] and [b.name for b in table.bins] == ["easy", "hard"]
    assert table.calibration["problems"] == 6 and table.calibration["command"].startswith("ttc calibrate --count 6")
    records = [json.loads(line) for line in output.with_suffix(".records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and set(records[0]["correct"]["8"]) == {
        "majority_vote", "weighted_best_of_n", "beam_search(beam_width=2)"}  # fmt: skip
    assert output.with_suffix(".png").stat().st_size > 0
    refit = tmp_path / "refit.json"  # refit from the records, no model runs, fewer candidates
    args = ["calibrate", "--from-records", str(output.with_suffix(".records.jsonl")), "--strategies", "majority_vote"]
    assert main([*args, "--pilots", "2", "--bins", "2", "--output", str(refit)]) == 0
    assert {c.strategy for choices in load_table(refit).budgets.values() for c in choices.values()} == {"majority_vote"}
    assert not refit.with_suffix(".records.jsonl").exists()  # the refit read the records in place, copied nothing
    from langchain_ttc.engines.loading import load_policy, load_prm

    graph = create_compute_optimal_graph(load_policy("arith:small"), load_prm("arith:prm"), budget=8, table=output,
                                         max_tokens=128)  # fmt: skip
    out = graph.invoke({"problem": "Keep only the last digit after each step. What is 2+3*7?"})
    assert out["result"]["metadata"]["routing"]["bin"] in {"easy", "hard"}


def test_the_evaluation_harness_runs_the_router_at_the_table_budgets() -> None:
    from langchain_ttc.evaluation.run import EvalConfig, _graphs

    policy, prm = engines()
    config = EvalConfig(dataset="arith", strategies=["majority_vote", "compute_optimal"], n_max=16)
    graphs = _graphs(config, policy, prm)
    assert {k for k in graphs if k.startswith("compute_optimal")} == {"compute_optimal@4", "compute_optimal@16"}


def test_a_table_choice_may_set_its_own_aggregation() -> None:
    table = json.loads(json.dumps(TABLE))
    table["budgets"]["4"]["medium"] = {"strategy": "weighted_best_of_n", "options": {"aggregation": "min"}}
    policy, prm = engines()
    result, _ = run(create_compute_optimal_graph(policy, prm, budget=4, table=table), "medium problem")
    assert result.metadata["routing"]["options"]["aggregation"] == "min"
    assert all(c.score == min(c.step_scores or [1.0]) for c in result.candidates if c.score is not None)


def test_calibration_pilots_get_the_system_prompt() -> None:
    from langchain_ttc.evaluation.calibrate import Calibration
    from langchain_ttc.evaluation.datasets import EvalProblem
    from langchain_ttc.strategies.routing.table import StrategyChoice

    policy, prm = engines()
    calibration = Calibration(
        policy, prm, budgets=[4], candidates=[StrategyChoice(strategy="majority_vote")], pilots=2, system_prompt="SYS"
    )
    calibration.run_problem(EvalProblem(id="p", problem="easy problem", answer="4", level="1"))
    assert all(r.messages and r.messages[0] == {"role": "system", "content": "SYS"} for c in policy.calls for r in c)


def _budget_records() -> list[dict[str, Any]]:
    """20 problems in two bins: easy ones are solved by "a" from budget 4, hard ones need 16 (one slip at 8)."""
    rows = []
    for i in range(20):
        hard = i >= 10
        correct = {
            "4": {"a": not hard, "b": False},
            "8": {"a": not hard, "b": hard and i != 10},  # 9 of 10 hard ones at 8
            "16": {"a": not hard, "b": hard},
        }
        rows.append({"id": str(i), "difficulty": {"prm_score": i / 20}, "correct": correct})
    return rows


def test_budget_fit_picks_the_smallest_budget_within_the_tolerance() -> None:
    from langchain_ttc.evaluation.fit import BudgetChoice, fit_budgets

    records = _budget_records()

    def fit(**choice: Any) -> dict[int, dict[str, tuple[int, str]]]:
        chosen = fit_budgets(
            records, estimator="prm_score", bin_count=2, labels=["a", "b"], choice=BudgetChoice(**choice)
        )
        return chosen.choices

    # easy: "a" is as good at 4 as at 16; hard: "b" is 90% at 8 against 100% at 16.
    assert fit(tolerance=0.1) == {4: {"easy": (4, "a"), "hard": (4, "a")}, 8: {"easy": (4, "a"), "hard": (8, "b")},
                                  16: {"easy": (4, "a"), "hard": (8, "b")}}  # fmt: skip
    assert fit(tolerance=0.05)[16] == {"easy": (4, "a"), "hard": (16, "b")}  # 10 points off is too far now
    assert fit(tolerance=0.0)[16] == {"easy": (4, "a"), "hard": (16, "b")}  # 0: only as accurate as the best
    assert fit(max_budget=8) == {4: {"easy": (4, "a"), "hard": (4, "a")}, 8: {"easy": (4, "a"), "hard": (8, "b")}}
    # A tie at the smallest budget goes as fit_choices' ties go: to the label more accurate over all, then the first.
    for r in records:
        r["correct"]["4"]["c"] = r["correct"]["4"]["a"]
        r["correct"]["8"]["c"] = r["correct"]["16"]["c"] = r["correct"]["4"]["a"]
    chosen = fit_budgets(records, estimator="prm_score", bin_count=2, labels=["c", "a", "b"], choice=BudgetChoice())
    assert chosen.choices[16]["easy"] == (4, "c")
    with pytest.raises(ValueError, match=r"--max-budget=32 is not a calibrated budget \(--budgets 4 8 16\)"):
        fit(max_budget=32)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"tolerance": -0.1}, "--tolerance=-0.1 is invalid: input should be greater than or equal to 0"),
     ({"tolerance": 1.0}, "--tolerance=1.0 is invalid: input should be less than 1"),
     ({"max_budget": 0}, "--max-budget=0 is invalid: input should be greater than or equal to 1")],
)  # fmt: skip
def test_bad_budget_options_are_refused_naming_the_flag(options: dict[str, Any], message: str) -> None:
    from langchain_ttc.evaluation.fit import budget_choice

    with pytest.raises(ValueError, match=message):
        budget_choice(**options)


def test_cli_refits_a_budget_choosing_table_and_refuses_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in _budget_records()))
    output = tmp_path / "table.json"
    args = ["calibrate", "--from-records", str(source), "--strategies", "majority_vote", "best_of_n"]
    args += ["--pilots", "2", "--bins", "2", "--output", str(output)]
    for bad, message in ((["--tolerance", "1.5"], "--tolerance=1.5 is invalid"),
                         (["--max-budget", "0"], "--max-budget=0 is invalid")):  # fmt: skip
        assert main([*args, *bad]) == 2 and message in capsys.readouterr().err
    records = [{**r, "correct": {b: {"majority_vote": c["a"], "best_of_n": c["b"]} for b, c in r["correct"].items()}}
               for r in _budget_records()]  # fmt: skip
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main([*args, "--tolerance", "0.1"]) == 0
    table = load_table(output)
    assert sorted(table.budgets) == [4, 8, 16]
    assert {n: c.budget for n, c in table.budgets[16].items()} == {"easy": 4, "hard": 8}
    assert table.budgets[16]["hard"].strategy == "best_of_n"
    held_out = table.calibration["budget_choice"]["held_out_router"]["16"]
    assert 4 <= held_out["mean_budget"] < 16 and 0 < held_out["accuracy"] <= 1
    assert table.calibration["budget_choice"]["tolerance"] == 0.1


def test_the_router_spends_the_bins_budget_of_a_budget_choosing_table() -> None:
    table = json.loads(json.dumps(TABLE))
    table["budgets"]["8"]["easy"] = {"strategy": "majority_vote", "budget": 2}  # the pilots settle it
    table["budgets"]["8"]["medium"] = {"strategy": "weighted_best_of_n", "budget": 4}
    for problem, chosen, drawn in (("easy problem", 2, [[2]]), ("medium problem", 4, [[2], [2]]),
                                   ("hard problem", 8, [[2], [6]])):  # fmt: skip
        policy, prm = engines()
        result, events = run(create_compute_optimal_graph(policy, prm, budget=8, table=table), problem)
        routing = result.metadata["routing"]
        assert (routing["budget"], routing["chosen_budget"]) == (8, chosen)
        assert [[r.n for r in call] for call in policy.calls] == drawn  # the policy samples the bin's budget
        assert sum(r.n for call in policy.calls for r in call) <= chosen
        assert next(e for e in events if e["type"] == "ttc.routed")["chosen_budget"] == chosen


def test_an_old_table_loads_and_spends_the_users_budget(tmp_path: Path) -> None:
    old = load_table(TABLE)  # written before budgets were chosen: no "budget" in any choice
    assert all(c.budget is None and c.spends(8) == 8 for choices in old.budgets.values() for c in choices.values())
    save_table(old, tmp_path / "old.json")
    assert '"budget": null' not in (tmp_path / "old.json").read_text()  # saved as it was written
    policy, prm = engines()
    result, _ = run(create_compute_optimal_graph(policy, prm, budget=8, table=TABLE), "medium problem")
    assert result.metadata["routing"]["chosen_budget"] == 8 and sum(r.n for c in policy.calls for r in c) == 8
    table = json.loads(json.dumps(TABLE))
    table["budgets"]["4"]["easy"] = {"strategy": "majority_vote", "budget": 8}
    with pytest.raises(ValueError, match=r"budget 4, bin 'easy': its budget 8 is outside \[2, 4\]"):
        load_table(table)
