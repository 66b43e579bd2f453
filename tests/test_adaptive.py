"""Adaptive stopping: the pure rules against hand-computed values, the adaptive sampling graphs with
scripted engines (stops, calls per wave, usage, seeds, options, the CLI), and the early stop of beam
search and particle filtering."""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import random
from types import SimpleNamespace
from typing import Any

import mpmath
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.stopping import (
    _leader_integral,
    check_threshold,
    dirichlet_stop,
    gamma_cdf,
    leader_probability,
    pseudo_counts,
    stop_decision,
    supermajority_stop,
    vote_settled,
    weighted_stop_decision,
)
from langchain_ttc.core.types import Candidate, TTCResult
from langchain_ttc.strategies import (
    create_adaptive_majority_vote_graph,
    create_adaptive_weighted_best_of_n_graph,
    create_beam_search_graph,
    create_particle_filtering_graph,
)
from langchain_ttc.strategies.registry import STRATEGIES, create_strategy_graph
from langchain_ttc.strategies.sampling.adaptive import (
    AdaptiveMajorityVoteConfig,
    AdaptiveWeightedBestOfNConfig,
    adaptive_n,
)
from tests.fakes import ScriptedPolicy, ScriptedPRM, StepTreePolicy, assert_disjoint_streams, last_step_prm

FOUR, FIVE = "Add.\n\n\\boxed{4}", "Add.\n\n\\boxed{5}"


def boxed(answer: str, score: float | None = None, finish: str = "eos") -> Candidate:
    text = f"\\boxed{{{answer}}}"
    return Candidate(text=text, steps=[text], answer=answer, finish_reason=finish, score=score)  # type: ignore[arg-type]


def exact_probability(counts: list[float]) -> float:
    """P(the leader's share is the largest) under Dirichlet(counts + 1), as a 30-digit integral."""
    with mpmath.workdps(30):
        alphas = [mpmath.mpf(c) + 1 for c in counts]
        leader = max(range(len(alphas)), key=lambda i: (alphas[i], -i))
        rivals = alphas[:leader] + alphas[leader + 1 :]

        def f(x: Any) -> Any:
            density = mpmath.exp((alphas[leader] - 1) * mpmath.log(x) - x - mpmath.loggamma(alphas[leader]))
            return density * mpmath.fprod(mpmath.gammainc(a, 0, x, regularized=True) for a in rivals)

        mode = alphas[leader] - 1
        points = sorted({mpmath.mpf(0), *(p for p in (mode / 2, mode, mode * 2) if p > 0), mpmath.inf})
        return float(mpmath.quad(f, points))


# --- the pure rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([1], 3 / 4),  # Beta(2, 1): P(p > 1/2) = 1 - (1/2)^2
        ([3], 15 / 16),  # Beta(4, 1): 1 - (1/2)^4
        ([4], 31 / 32),
        ([3, 0], 15 / 16),  # a seen answer with no votes is the zero-count rival
        ([3, 1], 13 / 16),  # Beta(4, 2): 1 - P(Bin(5, 1/2) >= 4) = 1 - 6/32
        ([1, 3], 13 / 16),  # the leader is the larger count wherever it stands
        ([4, 1], 57 / 64),  # Beta(5, 2): 1 - 7/64
        ([2, 2], 1 / 2),  # a tie is never settled
        ([1, 0, 0], 11 / 18),  # Dirichlet(2, 1, 1): int x e^-x (1 - e^-x)^2 dx = 1 - 2/4 + 1/9
        ([2, 1, 1], 347 / 648),  # Dirichlet(3, 2, 2): 1 - 5/8 + 13/81
        ([1, 1, 1], 1 / 3),  # symmetric
        ([0, 0, 0, 0], 0.0),  # no votes: no leader
        ([], 0.0),
    ],
)
def test_leader_probability_hand_computed(counts: list[float], expected: float) -> None:
    assert leader_probability(counts) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "counts", [[2.5, 0.5], [3.6, 0.4], [7, 5], [40, 38], [3, 2, 1], [20, 5, 3, 2, 1], [3.2, 2.9, 0.6, 0.3], [60, 59, 2]]
)
def test_leader_probability_matches_a_30_digit_integral(counts: list[float]) -> None:
    assert leader_probability(counts) == pytest.approx(exact_probability(counts), abs=1e-10)


def test_the_quadrature_agrees_with_the_closed_form_on_two_answers() -> None:
    for a, b in [(4.0, 2.0), (4.6, 1.4), (31.0, 12.5), (1.5, 1.0)]:
        assert _leader_integral([a, b], 0) == pytest.approx(leader_probability([a - 1, b - 1]), abs=1e-12)


def test_leader_probability_agrees_with_a_seeded_monte_carlo() -> None:
    counts, draws, rng = [3, 2, 1], 20_000, random.Random(0)
    wins = 0
    for _ in range(draws):
        g = [rng.gammavariate(c + 1, 1.0) for c in counts]
        wins += g[0] > max(g[1:])
    p = leader_probability(counts)
    assert abs(wins / draws - p) < 4 * math.sqrt(p * (1 - p) / draws)  # 4 standard errors


def test_gamma_cdf_matches_mpmath() -> None:
    for a in (1.0, 1.5, 2.0, 7.3, 40.0, 300.5):
        for x in (0.01, 0.5 * a, a, a + 1.0, 2.0 * a + 3.0):
            with mpmath.workdps(30):
                expected = float(mpmath.gammainc(a, 0, x, regularized=True))
            assert gamma_cdf(a, x) == pytest.approx(expected, abs=1e-12), (a, x)
    assert gamma_cdf(2.0, 0.0) == 0.0


def test_dirichlet_rule_decisions() -> None:
    assert not dirichlet_stop([3], threshold=0.95).stop  # 15/16 < 0.95
    settled = dirichlet_stop([4], threshold=0.95)  # 31/32 >= 0.95
    assert settled.stop and settled.leader == 0 and settled.posterior == pytest.approx(31 / 32)
    assert settled.share == 1.0 and settled.votes == 4 and settled.rule == "dirichlet"
    assert dirichlet_stop([3, 1], threshold=0.8).stop and not dirichlet_stop([3, 1], threshold=0.85).stop
    assert not dirichlet_stop([50, 50], threshold=0.51).stop
    assert not dirichlet_stop([], threshold=0.9).stop and dirichlet_stop([], threshold=0.9).leader is None
    assert not dirichlet_stop([30], threshold=1.0).stop  # certainty is never reached
    with pytest.raises(ValueError, match=r"counts=\[-1\.0\] must be finite and >= 0"):
        dirichlet_stop([-1.0], threshold=0.9)


def test_supermajority_rule_decisions() -> None:
    decision = supermajority_stop([3, 1], threshold=0.75)
    assert decision.stop and decision.share == 0.75 and decision.posterior is None and decision.leader == 0
    assert not supermajority_stop([2, 1], threshold=0.75).stop  # 2/3
    assert supermajority_stop([1, 2], threshold=0.6).leader == 1
    assert not supermajority_stop([1], threshold=0.75).stop  # one vote is no supermajority
    assert supermajority_stop([2], threshold=1.0).stop
    assert not supermajority_stop([0, 0], threshold=0.75).stop and supermajority_stop([], threshold=0.75).share == 0
    assert stop_decision([3, 1], rule="supermajority").threshold == 0.75  # the rule's default
    assert stop_decision([3, 1], rule="dirichlet").threshold == 0.95
    with pytest.raises(ValueError, match="stop_rule='vote' is not known"):
        stop_decision([1], rule="vote")  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0.5, 0.3, 1.01, -1.0])
def test_thresholds_outside_one_half_to_one_are_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match=rf"threshold={threshold} is outside \(0\.5, 1\]"):
        check_threshold(threshold)
    with pytest.raises(ValueError, match="is outside"):
        dirichlet_stop([3], threshold=threshold)
    with pytest.raises(ValueError, match="is outside"):
        supermajority_stop([3], threshold=threshold)


def test_pseudo_counts_scale_the_summed_scores_to_the_samples() -> None:
    assert pseudo_counts([0.9, 0.3], samples=4) == pytest.approx([3.0, 1.0])
    assert pseudo_counts([2.7, 0.3], samples=4) == pytest.approx([3.6, 0.4])
    assert pseudo_counts([0.0, 0.0], samples=2) == [0.0, 0.0]
    with pytest.raises(ValueError, match="probabilities of correctness"):
        pseudo_counts([0.5, -0.1], samples=2)


def test_the_weighted_rule_hand_computed() -> None:
    # Answer 4: three samples scored 0.9 (2.7); answer 5: one scored 0.3. Pseudo-counts 3.6 and 0.4:
    # Beta(4.6, 1.4), P(p > 1/2) = I_{1/2}(1.4, 4.6); share 0.9.
    decision = weighted_stop_decision([2.7, 0.3], samples=4, rule="dirichlet", threshold=0.9)
    with mpmath.workdps(30):
        expected = float(mpmath.betainc(1.4, 4.6, 0, 0.5, regularized=True))
    assert decision.posterior == pytest.approx(expected, abs=1e-12) and decision.share == pytest.approx(0.9)
    assert decision.stop == (expected >= 0.9) and decision.votes == pytest.approx(4.0)
    assert weighted_stop_decision([2.7, 0.3], samples=4, rule="supermajority", threshold=0.9).stop


def test_equal_scores_give_the_plain_decision_and_scale_does_not_matter() -> None:
    answers = ["4", "4", "5", "4", "6"]
    for rule in ("dirichlet", "supermajority"):
        plain = vote_settled([boxed(a) for a in answers], rule=rule, threshold=0.6)
        for score in (0.2, 0.7, 1.0):
            weighted = vote_settled([boxed(a, score) for a in answers], rule=rule, threshold=0.6, weighted=True)
            assert weighted.stop == plain.stop and weighted.answer == plain.answer == "4"
            assert weighted.share == pytest.approx(plain.share) and weighted.votes == pytest.approx(plain.votes)
            if rule == "dirichlet":
                assert weighted.posterior == pytest.approx(plain.posterior, abs=1e-12)


def test_the_vote_reads_only_finished_answered_and_scored_candidates() -> None:
    pool = [boxed("4", 0.9), boxed("4", 0.9), boxed("5", 0.9, finish="length"), boxed("5", None)]
    pool.append(Candidate(text="no answer", steps=["no answer"], answer=None, finish_reason="eos", score=0.9))
    plain = vote_settled(pool, rule="supermajority", threshold=0.75)
    assert plain.votes == 3 and plain.share == pytest.approx(2 / 3)  # truncated and unanswered left out
    weighted = vote_settled(pool, rule="supermajority", threshold=0.75, weighted=True)
    assert weighted.votes == 2 and weighted.stop and weighted.answer == "4"  # the unscored one left out too
    assert vote_settled([], rule="dirichlet").answer is None


# --- the adaptive sampling graphs ----------------------------------------------------------------


def test_stops_early_when_every_sample_agrees() -> None:
    policy = ScriptedPolicy([FOUR])
    graph = create_adaptive_majority_vote_graph(policy, n=16, wave_size=2)
    result = TTCResult.model_validate(graph.invoke({"problem": "What is 2+2?"})["result"])
    assert result.answer == "4" and len(result.candidates) == 4  # 2 agree: 7/8 < 0.95; 4 agree: 31/32
    assert [[r.n for r in call] for call in policy.calls] == [[2], [2]]
    stop = result.metadata["stop"]
    assert stop["reason"] == "settled" and stop["waves"] == 2 and stop["samples"] == 4
    assert stop["posterior"] == pytest.approx(31 / 32) and stop["answer"] == "4" and stop["share"] == 1.0
    assert [w["posterior"] for w in result.metadata["waves"]] == pytest.approx([7 / 8, 31 / 32])
    assert [w["sampled"] for w in result.metadata["waves"]] == [2, 2]


def test_runs_to_n_on_a_split_vote() -> None:
    policy = ScriptedPolicy([FOUR, FIVE])
    graph = create_adaptive_majority_vote_graph(policy, n=8, wave_size=2)
    result = TTCResult.model_validate(graph.invoke({"problem": "What is 2+2?"})["result"])
    assert len(policy.calls) == 4 and len(result.candidates) == 8 and result.answer == "4"  # a tie: the first
    stop = result.metadata["stop"]
    assert stop["reason"] == "budget" and not stop["stop"] and stop["posterior"] == pytest.approx(0.5)
    assert [w["samples"] for w in result.metadata["waves"]] == [2, 4, 6, 8]


def test_the_last_wave_is_cut_to_the_budget() -> None:
    policy = ScriptedPolicy([FOUR, FIVE, "\\boxed{6}"])
    graph = create_adaptive_majority_vote_graph(policy, n=5, wave_size=2)
    graph.invoke({"problem": "p"})
    assert [call[0].n for call in policy.calls] == [2, 2, 1]


def test_supermajority_rule_stops_at_its_share() -> None:
    policy = ScriptedPolicy([FOUR, FOUR, FOUR, FIVE])
    dirichlet = create_adaptive_majority_vote_graph(policy, n=8, wave_size=4)
    assert dirichlet.invoke({"problem": "p"})["result"]["metadata"]["stop"]["reason"] == "budget"  # 3:1 is 13/16
    graph = create_adaptive_majority_vote_graph(ScriptedPolicy([FOUR, FOUR, FOUR, FIVE]), n=8, wave_size=4,
                                                stop_rule="supermajority")  # fmt: skip
    stop = graph.invoke({"problem": "p"})["result"]["metadata"]["stop"]
    assert stop["reason"] == "settled" and stop["samples"] == 4 and stop["share"] == 0.75 and stop["posterior"] is None


def test_weighted_one_policy_call_and_one_prm_call_per_wave_and_usage_summed() -> None:
    policy = ScriptedPolicy([FOUR, FIVE])
    prm = ScriptedPRM(lambda _problem, _step: 0.5)
    graph = create_adaptive_weighted_best_of_n_graph(policy, prm, n=6, wave_size=2, aggregation="min")
    result = TTCResult.model_validate(graph.invoke({"problem": "What is 2+2?"})["result"])
    waves = result.metadata["waves"]
    assert len(waves) == 3 and len(policy.calls) == 3 and len(prm.calls) == 3
    assert [len(call) for call in prm.calls] == [2, 2, 2]  # each PRM call scores only its wave
    assert result.usage.policy_calls == 3 and result.usage.prm_calls == 3
    assert result.usage.completion_tokens == sum(c.num_tokens for c in result.candidates)
    assert result.usage.prm_tokens == sum(len(s) for call in prm.calls for r in call for s in r.steps)
    assert result.usage.prompt_tokens == 30 and result.usage.wall_time_s > 0
    assert all(c.score == 0.5 and c.step_scores == [0.5, 0.5] for c in result.candidates)


def test_weighted_scores_settle_what_plain_counts_do_not() -> None:
    scores = {"\\boxed{4}": 0.95, "\\boxed{5}": 0.05}
    prm = ScriptedPRM(lambda _problem, step: scores.get(step, 0.9))
    weighted = create_adaptive_weighted_best_of_n_graph(ScriptedPolicy([FOUR, FIVE]), prm, n=16, wave_size=4)
    result = weighted.invoke({"problem": "p"})["result"]
    # 2 x 0.95 and 2 x 0.05 over 4 samples: pseudo-counts 3.8 and 0.2, Beta(4.8, 1.2)
    with mpmath.workdps(30):
        expected = float(mpmath.betainc(1.2, 4.8, 0, 0.5, regularized=True))
    stop = result["metadata"]["stop"]
    assert stop["reason"] == "settled" and stop["samples"] == 4 and stop["posterior"] == pytest.approx(expected)
    assert result["answer"] == "4" and stop["share"] == pytest.approx(0.95)
    plain = create_adaptive_majority_vote_graph(ScriptedPolicy([FOUR, FIVE]), n=16, wave_size=4)
    assert plain.invoke({"problem": "p"})["result"]["metadata"]["stop"]["samples"] == 16


def test_each_wave_has_its_own_seed_and_a_seeded_run_repeats() -> None:
    policy = ScriptedPolicy([FOUR, FIVE])
    graph = create_adaptive_majority_vote_graph(policy, n=12, wave_size=4, seed=7)
    first = graph.invoke({"problem": "p"})["result"]
    seeds = [call[0].seed for call in policy.calls]
    assert seeds == [derive_seed(7, "wave", w) for w in range(3)] and len(set(seeds)) == 3
    assert_disjoint_streams(policy.calls)  # no two samples of the run share a random stream
    again = ScriptedPolicy([FOUR, FIVE])
    second = create_adaptive_majority_vote_graph(again, n=12, wave_size=4, seed=7).invoke({"problem": "p"})["result"]
    assert [call[0].seed for call in again.calls] == seeds and second["candidates"] == first["candidates"]
    unseeded = ScriptedPolicy([FOUR])
    create_adaptive_majority_vote_graph(unseeded, n=8, wave_size=4).invoke({"problem": "p"})
    assert all(r.seed is None for call in unseeded.calls for r in call)


def test_pilots_are_the_first_samples() -> None:
    pilots = [boxed("4").model_dump() for _ in range(4)]
    policy = ScriptedPolicy([FOUR])
    graph = create_adaptive_majority_vote_graph(policy, n=8, wave_size=4)
    result = graph.invoke({"problem": "p", "pilots": pilots})["result"]
    assert policy.calls == [] and result["metadata"]["stop"]["reason"] == "settled"  # the pilots settle it
    assert result["usage"]["policy_calls"] == 0 and result["metadata"]["waves"][0]["sampled"] == 0
    some = ScriptedPolicy([FOUR])
    create_adaptive_majority_vote_graph(some, n=8, wave_size=4).invoke({"problem": "p", "pilots": pilots[:1]})
    assert [call[0].n for call in some.calls] == [3]  # the pilot and 3 samples fill the first wave


def test_events_per_wave_then_the_selection() -> None:
    graph = create_adaptive_majority_vote_graph(ScriptedPolicy([FOUR]), n=16, wave_size=2)
    events = list(graph.stream({"problem": "p"}, stream_mode="custom"))
    assert [e["type"] for e in events] == ["ttc.wave", "ttc.wave", "ttc.selected"]
    assert events[1]["stop"] and events[1]["samples"] == 4 and events[1]["answer"] == "4"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"n": 4, "wave_size": 8},
            r"wave_size=8 is larger than n=4, the most samples a run draws; pass wave_size <= n",
        ),
        ({"n": 4, "wave_size": 0}, r"wave_size=0 is invalid: input should be greater than or equal to 1"),
        ({"n": 4, "threshold": 0.5}, r"threshold=0.5 is outside \(0\.5, 1\]: at or below 0\.5 a tied vote"),
        ({"n": 4, "threshold": 1.5}, r"threshold=1\.5 is outside \(0\.5, 1\]"),
        ({"n": 4, "stop_rule": "vote"}, r"stop_rule='vote' is invalid"),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_adaptive_majority_vote_graph(ScriptedPolicy([FOUR]), **options)
    with pytest.raises(ValueError, match=message):
        create_adaptive_weighted_best_of_n_graph(ScriptedPolicy([FOUR]), ScriptedPRM(lambda _p, _s: 1.0), **options)
    with pytest.raises(ValueError, match=message):
        create_strategy_graph("adaptive_majority_vote", ScriptedPolicy([FOUR]), **options)


def test_defaults_and_types() -> None:
    assert AdaptiveMajorityVoteConfig(n=2).wave == 2 and AdaptiveMajorityVoteConfig(n=32).wave == 4
    assert AdaptiveWeightedBestOfNConfig(n=8, stop_rule="supermajority").stop_threshold == 0.75
    with pytest.raises(TypeError, match="is not a PRMEngine"):
        create_adaptive_weighted_best_of_n_graph(ScriptedPolicy([FOUR]), object(), n=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scores solutions with a PRM"):
        create_strategy_graph("adaptive_weighted_best_of_n", ScriptedPolicy([FOUR]), n=4)


def test_the_run_context_overrides_the_rule_and_is_checked() -> None:
    graph = create_adaptive_majority_vote_graph(ScriptedPolicy([FOUR, FOUR, FOUR, FIVE]), n=8, wave_size=4)
    stop = graph.invoke({"problem": "p"}, context={"stop_rule": "supermajority"})["result"]["metadata"]["stop"]
    assert stop["rule"] == "supermajority" and stop["reason"] == "settled"
    with pytest.raises(ValueError, match=r"threshold=0\.4 is outside"):
        graph.invoke({"problem": "p"}, context={"threshold": 0.4})
    with pytest.raises(ValueError, match="wave_size=16 is larger than n=8"):
        graph.invoke({"problem": "p"}, context={"wave_size": 16})


def test_registry_entries_and_their_traits() -> None:
    plain, weighted = STRATEGIES["adaptive_majority_vote"], STRATEGIES["adaptive_weighted_best_of_n"]
    assert plain.family == weighted.family == "sampling" and not plain.needs_prm and weighted.needs_prm
    assert plain.vote is None and weighted.vote is None  # a fixed sample set cannot replay where it stopped
    assert plain.routed_n is adaptive_n and adaptive_n({}, 16, 4) == 16 and adaptive_n({"wave_size": 32}, 16, 4) == 0
    graph = create_strategy_graph("adaptive_weighted_best_of_n", ScriptedPolicy([FOUR]),
                                  ScriptedPRM(lambda _p, _s: 0.9), n=8, wave_size=4)  # fmt: skip
    assert graph.invoke({"problem": "p"})["result"]["strategy"] == "adaptive_weighted_best_of_n"


def test_state_is_plain_data_and_async_gives_the_same_result() -> None:
    graph = create_adaptive_weighted_best_of_n_graph(
        ScriptedPolicy([FOUR, FIVE]), ScriptedPRM(lambda _p, _s: 0.7), n=6, wave_size=2, checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"problem": "p"}, config)
    json.dumps(graph.get_state(config).values)  # plain JSON data: any checkpointer can store it
    fresh = create_adaptive_weighted_best_of_n_graph(
        ScriptedPolicy([FOUR, FIVE]), ScriptedPRM(lambda _p, _s: 0.7), n=6, wave_size=2
    )
    awaited = asyncio.run(fresh.ainvoke({"problem": "p"}))["result"]
    assert awaited["metadata"]["waves"] == graph.get_state(config).values["result"]["metadata"]["waves"]


def test_cli_solves_with_an_adaptive_strategy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")  # `ttc solve` silences its progress bars
    cli = importlib.import_module("langchain_ttc.cli.main")  # the module (the package exports its main())

    policy = ScriptedPolicy([FOUR])

    class Engines:
        policy = SimpleNamespace(model="scripted", on_server=False)  # not the Arith default: no warning

        def check(self, *, prm: bool) -> None:
            assert not prm

        def load_policy(self) -> ScriptedPolicy:
            return policy

    monkeypatch.setattr(cli, "engine_settings", lambda _args: Engines())
    argv = ["solve", "What is 2+2?", "--strategy", "adaptive_majority_vote", "--n", "16", "--wave-size", "2"]
    assert cli.main([*argv, "--stop-rule", "dirichlet", "--threshold", "0.95", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "4" and result["metadata"]["stop"]["samples"] == 4 and len(policy.calls) == 2
    assert cli.main([*argv, "--threshold", "0.5"]) == 2
    assert "threshold=0.5 is outside (0.5, 1]" in capsys.readouterr().err


@pytest.mark.integration
def test_cli_subprocess_with_the_shipped_models() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    problem = "Keep only the last digit after each step. What is 2+3?"
    args = ["solve", problem, "--strategy", "adaptive_weighted_best_of_n", "--n", "8", "--seed", "0", "--json"]
    run = subprocess.run([sys.executable, "-m", "langchain_ttc.cli", *args], capture_output=True, text=True,
                         env=env, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    waves = result["metadata"]["waves"]
    assert result["usage"]["policy_calls"] == result["usage"]["prm_calls"] == len(waves) >= 1
    assert len(result["candidates"]) == waves[-1]["samples"] <= 8


# --- adaptive step search ------------------------------------------------------------------------

SETTLED_TREE = {
    "": [("\\boxed{7}", "eos"), ("\\boxed{7}", "eos"), ("\\boxed{7}", "eos"), ("A\n\n", "stop")],
    "A\n\n": [("\\boxed{8}", "eos")],
}
SCORES = {"\\boxed{7}": 0.8, "A": 0.9, "\\boxed{8}": 0.9}


def test_beam_search_stops_once_the_finished_vote_is_settled() -> None:
    policy = StepTreePolicy(SETTLED_TREE)
    graph = create_beam_search_graph(policy, last_step_prm(SCORES), n=4, beam_width=2, adaptive_threshold=0.9)
    result = graph.invoke({"problem": "p"})["result"]
    iterations = result["metadata"]["iterations"]
    assert len(iterations) == 1 and len(policy.calls) == 1 and result["answer"] == "7"
    early = iterations[0]["early_stop"]  # three finished beams agree: Beta(4, 1), 15/16 >= 0.9
    assert early["reason"] == "settled" and early["posterior"] == pytest.approx(15 / 16) and early["answer"] == "7"
    strict = create_beam_search_graph(StepTreePolicy(SETTLED_TREE), last_step_prm(SCORES), n=4, beam_width=2,
                                      adaptive_threshold=0.95)  # fmt: skip
    assert len(strict.invoke({"problem": "p"})["result"]["metadata"]["iterations"]) == 2  # 15/16 < 0.95
    off = create_beam_search_graph(StepTreePolicy(SETTLED_TREE), last_step_prm(SCORES), n=4, beam_width=2)
    iterations = off.invoke({"problem": "p"})["result"]["metadata"]["iterations"]
    assert len(iterations) == 2 and all("early_stop" not in i for i in iterations)  # off by default


PARTICLE_TREE = {
    "": [("\\boxed{7}", "eos")] * 6 + [("A\n\n", "stop")] * 2,
    "A\n\n": [("\\boxed{8}", "eos")],
}


def test_particle_filtering_stops_once_the_finished_vote_is_settled() -> None:
    # Equal scores: systematic resampling draws every particle once, so six finished particles agree.
    scores = {"\\boxed{7}": 0.9, "A": 0.9, "\\boxed{8}": 0.9}
    policy = StepTreePolicy(PARTICLE_TREE)
    graph = create_particle_filtering_graph(policy, last_step_prm(scores), n=8, resampling="systematic", seed=0,
                                            adaptive_threshold=0.95)  # fmt: skip
    result = graph.invoke({"problem": "p"})["result"]
    iterations = result["metadata"]["iterations"]
    assert len(iterations) == 1 and len(policy.calls) == 1 and result["answer"] == "7"
    assert iterations[0]["early_stop"]["posterior"] == pytest.approx(1 - 2**-7)  # Beta(7, 1)
    off = create_particle_filtering_graph(StepTreePolicy(PARTICLE_TREE), last_step_prm(scores), n=8,
                                          resampling="systematic", seed=0)  # fmt: skip
    assert len(off.invoke({"problem": "p"})["result"]["metadata"]["iterations"]) == 2


@pytest.mark.parametrize("factory", [create_beam_search_graph, create_particle_filtering_graph])
def test_adaptive_search_options_are_checked(factory: Any) -> None:
    engines = (StepTreePolicy({}), last_step_prm({}))
    with pytest.raises(ValueError, match=r"adaptive_threshold=0\.5 is outside \(0\.5, 1\]"):
        factory(*engines, n=4, adaptive_threshold=0.5)
    with pytest.raises(ValueError, match="but selection='best' picks the best-scored solution"):
        factory(*engines, n=4, adaptive_threshold=0.9, selection="best")
