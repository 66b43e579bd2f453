"""Particle filtering with scripted engines: resampling, kept finished particles, events, the tree,
and bad options. (Its conformance to the paper's algorithm: tests/test_conformance.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from langchain_ttc import TTCResult, create_particle_filtering_graph, create_strategy_graph
from langchain_ttc.core.search import particle_weights, resample
from tests.fakes import StepTreePolicy, last_step_prm

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
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_particle_filtering_graph(StepTreePolicy({}), last_step_prm({}), **kwargs)
