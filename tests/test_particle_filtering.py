"""Particle filtering with scripted engines: resampling, kept finished particles, events, the tree,
and bad options. (Its conformance to the paper's algorithm: tests/test_conformance.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from langchain_ttc import TTCResult, create_particle_filtering_graph, create_strategy_graph
from langchain_ttc.core.search import particle_weights, resample
from tests.fakes import StepTreePolicy, assert_disjoint_streams, last_step_prm

S, E, L = "stop", "eos", "length"


def test_weights_follow_the_score_logits_and_the_temperature() -> None:
    cold, warm = particle_weights([0.2, 0.8], 0.5), particle_weights([0.2, 0.8], 2.0)
    assert cold[1] > warm[1] > 0.5 and abs(sum(cold) - 1) < 1e-9
    assert particle_weights([None, 0.3], 1.0) == [0.0, 1.0]  # a truncated particle is never drawn
    import random

    counts = [resample([0.25, 0.75], 4, random.Random(s), method="systematic").count(1) for s in range(20)]
    assert set(counts) == {3}  # systematic: exactly n * w copies when n * w is whole


def test_likely_particles_multiply_and_finished_ones_stay_in_the_population() -> None:
    # "good" scores .99, "bad" .01: after the first resampling (almost) every particle is "good";
    # one first step ends the solution at once and is kept among the particles while it is drawn.
    tree = {"": [("good\n\n", S), ("bad\n\n", S), ("\\boxed{7}", E)], "good\n\n": [("\\boxed{1}", E)]}
    tree["bad\n\n"] = [("\\boxed{2}", E)]
    prm = last_step_prm({"good": 0.99, "bad": 0.01, "\\boxed{7}": 0.5, "\\boxed{1}": 0.9, "\\boxed{2}": 0.9})
    policy = StepTreePolicy(tree)
    events: list[dict[str, Any]] = []
    output: dict[str, Any] = {}
    graph = create_particle_filtering_graph(policy, prm, n=6, seed=3, record_tree=True)
    for mode, chunk in graph.stream({"problem": "p"}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            output = chunk
    result = TTCResult.model_validate(output["result"])
    assert [r.n for r in policy.calls[0]] == [6]  # n first steps, one request
    assert all(r.partial != "bad\n\n" for r in policy.calls[1])  # the unlikely particle died out
    assert result.answer == "1" and result.usage.policy_calls == len(policy.calls) == 2
    assert [e["type"] for e in events].count("ttc.iteration") == 2
    fates = {n["step"]: n["fate"] for n in result.metadata["tree"]}
    assert fates["bad\n\n"] == "pruned" and fates["good\n\n"] == "kept"


def test_particle_filtering_is_a_registered_strategy() -> None:
    graph = create_strategy_graph(
        "particle_filtering", StepTreePolicy({"": [("\\boxed{3}", E)]}), last_step_prm({}), n=4, seed=0
    )
    assert graph.invoke({"problem": "p"})["answer"] == "3"


def test_particle_gibbs_continues_the_reference_from_its_first_steps() -> None:
    # Sweep 1 (3 particles) finds "good" then \boxed{1}; that solution becomes the reference. Sweep 2's
    # two fresh particles only write "bad", so resampling draws the reference, cut back to its first
    # step, and the search goes on from there (conditional SMC), not from scratch.
    tree = {"": [("good\n\n", S)] + [("bad\n\n", S)] * 4, "good\n\n": [("\\boxed{1}", E)]}
    tree["bad\n\n"] = [("\\boxed{2}", E)]
    prm = last_step_prm({"good": 0.99, "bad": 0.001, "\\boxed{1}": 0.9, "\\boxed{2}": 0.9})
    policy = StepTreePolicy(tree)
    graph = create_particle_filtering_graph(policy, prm, n=6, rounds=2, reference_particles=1, seed=5, record_tree=True)
    result = TTCResult.model_validate(graph.invoke({"problem": "p"})["result"])
    sweep_1, sweep_2 = policy.calls[:2], policy.calls[2:]
    assert [[(r.partial, r.n) for r in call] for call in sweep_1] == [[("", 3)], [("good\n\n", 1)] * 3]
    assert [[(r.partial, r.n) for r in call] for call in sweep_2] == [[("", 2)], [("good\n\n", 1)] * 2]
    assert_disjoint_streams(policy.calls)  # each sweep samples its own random streams
    assert result.answer == "1" and result.usage.policy_calls == 4
    nodes = result.metadata["tree"]
    roots = [n["id"] for n in nodes if n["parent"] is None]
    first_good = next(n["id"] for n in nodes if n["step"] == "good\n\n")
    assert len(roots) == 2  # one per sweep
    # Sweep 2's continuations hang off sweep 1's "good" node: the reference's own first step.
    assert [n["parent"] for n in nodes if n["step"] == "\\boxed{1}" and n["iteration"] == 1][-2:] == [first_good] * 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, r"n=0 is invalid: input should be greater than or equal to 1"),
        (
            {"n": 4, "resampling_temperature": 0.0},
            r"resampling_temperature=0.0 is invalid: input should be greater than 0",
        ),
        (
            {"n": 4, "resampling": "residual"},
            r"resampling='residual' is invalid: input should be 'multinomial' or 'systematic'",
        ),
        ({"n": 4, "max_iterations": 0}, r"max_iterations=0 is invalid"),
        ({"n": 10, "rounds": 3}, r"rounds=3 does not divide n=10; pass a multiple of rounds as n, e.g. n=9"),
        ({"n": 4, "rounds": 2, "reference_particles": 2}, r"reference_particles=2 leaves no fresh particle"),
        ({"n": 4, "rounds": 0}, r"rounds=0 is invalid: input should be greater than or equal to 1"),
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_particle_filtering_graph(StepTreePolicy({}), last_step_prm({}), **kwargs)


def test_a_run_context_turns_particle_filtering_into_particle_gibbs() -> None:
    from langchain_ttc.strategies.context import TTCContext

    policy = StepTreePolicy({"": [("\\boxed{3}", E)]})
    graph = create_particle_filtering_graph(policy, last_step_prm({}), n=4, seed=0)
    assert graph.invoke({"problem": "p"}, context=TTCContext(rounds=2))["answer"] == "3"
    assert [[r.n for r in call] for call in policy.calls] == [[2], [1]]  # sweeps of 2: 2 fresh, then 1 + the reference
    with pytest.raises(ValueError, match="rounds=3 does not divide n=4"):
        graph.invoke({"problem": "p"}, context=TTCContext(rounds=3))


# ---- its_hub's stop rule: stop_at ----

BOXED = "so \\boxed{7}\n\n"  # a step that states the answer and stops at the delimiter (the solution could go on)


def test_a_step_holding_the_stop_text_finishes_its_particle() -> None:
    tree = {"": [(BOXED, S)], BOXED: [("more \\boxed{8}", E)]}
    ours = StepTreePolicy(tree)
    result = TTCResult.model_validate(
        create_particle_filtering_graph(ours, last_step_prm({}), n=3, seed=1).invoke({"problem": "p"})["result"]
    )
    assert len(ours.calls) == 2 and result.answer == "8"  # by default a boxed step does not stop a particle
    its_hub = StepTreePolicy(tree)
    graph = create_particle_filtering_graph(its_hub, last_step_prm({}), n=3, seed=1, stop_at="\\boxed")
    result = TTCResult.model_validate(graph.invoke({"problem": "p"})["result"])
    assert len(its_hub.calls) == 1  # every particle finished with its first step
    assert result.answer == "7" and {c.finish_reason for c in result.candidates} == {"eos"}
    assert [c.text for c in result.candidates] == [BOXED] * 3


def test_a_stopped_particle_is_scored_as_written_without_its_lookahead() -> None:
    # The rollout runs before the rule (it is part of generate); its text is dropped, not scored.
    tree = {"": [(BOXED, S)], BOXED: [("after\n\n", S)]}
    policy, prm = StepTreePolicy(tree), last_step_prm({"after": 0.0})
    graph = create_particle_filtering_graph(policy, prm, n=2, seed=0, stop_at="\\boxed", lookahead=1)
    result = TTCResult.model_validate(graph.invoke({"problem": "p"})["result"])
    assert [[r.partial for r in call] for call in policy.calls] == [[""], [BOXED, BOXED]]  # the rollout was written
    assert [r.steps for r in prm.calls[0]] == [["so \\boxed{7}"]] * 2  # but not scored
    assert result.usage.policy_calls == 2 and [c.step_scores for c in result.candidates] == [[0.5], [0.5]]


def test_the_stop_rule_leaves_truncated_and_ended_steps_alone() -> None:
    tree = {"": [("cut \\boxed{1", L), ("\\boxed{2}", E), ("plain\n\n", S)], "plain\n\n": [("\\boxed{3}", E)]}
    graph = create_particle_filtering_graph(StepTreePolicy(tree), last_step_prm({}), n=3, seed=2, stop_at="\\boxed")
    result = TTCResult.model_validate(graph.invoke({"problem": "p"})["result"])
    reasons = {c.text: c.finish_reason for c in result.candidates}
    assert reasons["cut \\boxed{1"] == "length"  # a cut-off step never finishes, whatever it holds
    assert all(reasons[t] == "eos" for t in reasons if t != "cut \\boxed{1")


def test_the_stop_text_is_read_without_the_closing_delimiter() -> None:
    # its_hub's steps leave the delimiter out, so a stop text inside the delimiter never fires.
    from langchain_ttc.core.search import Beam, stopped_at

    step = Beam(text="a\n\n", step="a\n\n")
    assert stopped_at(step, "\n", "\n\n").active and stopped_at(step, None, "\n\n").active
    assert stopped_at(Beam(step="a\nb\n\n"), "\n", "\n\n").complete
    ended = Beam(step="\\boxed{1}", finish_reason="length", lookahead="x")
    assert stopped_at(ended, "\\boxed", "\n\n") == ended


def test_a_run_context_sets_the_stop_text() -> None:
    from langchain_ttc.strategies.context import TTCContext

    policy = StepTreePolicy({"": [(BOXED, S)], BOXED: [("\\boxed{8}", E)]})
    graph = create_particle_filtering_graph(policy, last_step_prm({}), n=2, seed=0)
    assert graph.invoke({"problem": "p"}, context=TTCContext(stop_at="\\boxed"))["answer"] == "7"
    assert len(policy.calls) == 1
    with pytest.raises(ValueError, match="stop_at='' is invalid"):
        create_particle_filtering_graph(policy, last_step_prm({}), n=2, stop_at="")


def test_particle_gibbs_carries_a_stopped_particle_as_its_reference() -> None:
    # Sweep 1 stops at a boxed step; the reference, drawn back at step 1, is finished as it is (it
    # keeps its weight and is never continued), and sweep 2's fresh particle writes one step.
    tree = {"": [(BOXED, S)], BOXED: [("never\n\n", S)]}
    policy = StepTreePolicy(tree)
    graph = create_particle_filtering_graph(
        policy, last_step_prm({}), n=4, rounds=2, reference_particles=1, seed=0, stop_at="\\boxed"
    )
    result = TTCResult.model_validate(graph.invoke({"problem": "p"})["result"])
    assert [[(r.partial, r.n) for r in call] for call in policy.calls] == [[("", 2)], [("", 1)]]
    assert result.answer == "7" and all(c.finish_reason == "eos" for c in result.candidates)
