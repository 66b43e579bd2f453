"""Beam search and DVTS with scripted engines: hand-worked survivors, the reference's bugs fixed,
events, and bad options. (Real-engine runs: tests/test_step_search_real.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from langchain_ttc import TTCResult, create_beam_search_graph, create_dvts_graph
from langchain_ttc.engines.base import PolicyEngine
from tests.fakes import ScriptedPolicy, StepTreePolicy, last_step_prm

S, E, L = "stop", "eos", "length"

# A hand-worked tree (n=4, beam_width=2, so 2 beams survive each iteration):
# iteration 0: "" -> A .9, B .2, C .7, D .5                 survivors A, C
# iteration 1: A -> A1 .3 (stop), A2 .4 (eos, finished)       C -> C1 .8, C2 .6
#              active A1 .3, C1 .8, C2 .6                     survivors C1, C2
# iteration 2 (last, writes to the end): C1 -> X .95 (eos), Y (length: truncated)
#                                        C2 -> Z .5 (eos), W .47 (eos)
# finished: A2 .4 (first to finish), X .95, Z .5, W .47
#   best by score: X (answer 2); weighted: answer 3 (.5 + .47 = .97) beats 2 (.95) and 1 (.4)
TREE = {
    "": [("A\n\n", S), ("B\n\n", S), ("C\n\n", S), ("D\n\n", S)],
    "A\n\n": [("A1\n\n", S), ("A2 \\boxed{1}", E)],
    "C\n\n": [("C1\n\n", S), ("C2\n\n", S)],
    "C\n\nC1\n\n": [("X \\boxed{2}", E), ("Y", L)],
    "C\n\nC2\n\n": [("Z \\boxed{3}", E), ("W \\boxed{3}", E)],
}
SCORES = {"A": 0.9, "B": 0.2, "C": 0.7, "D": 0.5, "A1": 0.3, "A2 \\boxed{1}": 0.4, "C1": 0.8, "C2": 0.6}
SCORES |= {"X \\boxed{2}": 0.95, "Z \\boxed{3}": 0.5, "W \\boxed{3}": 0.47}


def run(graph: Any, problem: str = "p") -> tuple[TTCResult, list[dict[str, Any]], list[dict[str, Any]]]:
    """Invoke with updates + custom streaming; return the result, the prune updates, the events."""
    prunes, events, output = [], [], {}
    for mode, chunk in graph.stream({"problem": problem}, stream_mode=["updates", "custom"]):
        if mode == "custom":
            events.append(chunk)
        elif "prune" in chunk:
            prunes.append(chunk["prune"])
        elif "select" in chunk:
            output = chunk["select"]
    return TTCResult.model_validate(output["result"]), prunes, events


def texts(beams: list[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in beams]


def test_beam_search_hand_worked_survivors_and_best_finished_beam() -> None:
    policy, prm = StepTreePolicy(TREE), last_step_prm(SCORES)
    graph = create_beam_search_graph(policy, prm, n=4, beam_width=2, max_iterations=3, selection="best")
    result, prunes, events = run(graph)
    assert [texts(p["frontier"]) for p in prunes] == [
        ["A\n\n", "C\n\n"],
        ["C\n\nC1\n\n", "C\n\nC2\n\n"],
        [],
    ]
    assert texts(prunes[1]["finished"]) == ["A\n\nA2 \\boxed{1}"]
    # Chosen by score, not by which beam finished first (the reference returned A2).
    assert result.answer == "2" and result.solution == "C\n\nC1\n\nX \\boxed{2}"
    # A truncated beam is never finished and never chosen.
    truncated = [c for c in result.candidates if c.finish_reason == "length"]
    assert [c.text for c in truncated] == ["C\n\nC1\n\nY"] and not truncated[0].finished
    # One policy call and one PRM call per iteration, covering every beam.
    assert [len(call) for call in policy.calls] == [1, 2, 2]
    assert [len(call) for call in prm.calls] == [4, 4, 3]  # the truncated beam is not scored
    # The last iteration writes to the end: no stop string.
    assert [call[0].stop for call in policy.calls] == [["\n\n"], ["\n\n"], []]
    iterations = result.metadata["iterations"]
    assert [(i["policy_calls"], i["prm_calls"]) for i in iterations] == [(1, 1), (1, 1), (1, 1)]
    assert sum(i["completion_tokens"] for i in iterations) == result.usage.completion_tokens > 0
    assert result.usage.policy_calls == 3 and result.usage.prm_calls == 3 and result.usage.prm_tokens > 0
    assert [e["type"] for e in events] == ["ttc.iteration"] * 3 + ["ttc.selected"]
    assert [(e["iteration"], e["active"], e["finished"]) for e in events[:3]] == [(0, 2, 0), (1, 2, 1), (2, 0, 4)]
    assert [e["best_score"] for e in events[:3]] == [0.9, 0.8, 0.95]
    assert events[0]["tokens"] < events[1]["tokens"] < events[2]["tokens"]


def test_beam_search_weighted_selection() -> None:
    graph = create_beam_search_graph(
        StepTreePolicy(TREE), last_step_prm(SCORES), n=4, beam_width=2, max_iterations=3
    )  # weighted is the default (the papers' setting)
    result, _, _ = run(graph)
    assert result.answer == "3"
    assert {g.answer: round(g.weight, 2) for g in result.groups} == {"1": 0.4, "2": 0.95, "3": 0.97}


def test_aggregation_is_used_for_pruning_and_the_final_pick() -> None:
    # With "min", C1's path scores min(.7, .8) = .7 and C2's min(.7, .6) = .6, A1's min(.9, .3) = .3:
    # the same survivors, but X's final score is min(.7, .8, .95) = .7 and Z's min(.7, .6, .5) = .5.
    graph = create_beam_search_graph(
        StepTreePolicy(TREE),
        last_step_prm(SCORES),
        n=4,
        beam_width=2,
        max_iterations=3,
        aggregation="min",
        selection="best",
    )
    result, prunes, _ = run(graph)
    assert [b["score"] for b in prunes[1]["frontier"]] == [0.7, 0.6]
    scored = {c.text: c.score for c in result.candidates if c.score is not None}
    assert scored["C\n\nC1\n\nX \\boxed{2}"] == 0.7 and scored["C\n\nC2\n\nZ \\boxed{3}"] == 0.5
    assert all(c.score == min(c.step_scores) for c in result.candidates if c.step_scores)


def test_lookahead_text_is_scored_and_changes_the_ranking() -> None:
    # Without lookahead B (.6) beats A (.5); rolled one greedy step further, A's next step scores .9
    # and B's .1, so with lookahead=1 A survives. The rolled-out text is not kept in the beam.
    tree = {
        "": [("A\n\n", S), ("B\n\n", S)],
        "A\n\n": [("A+\n\n", S)],
        "B\n\n": [("B-\n\n", S)],
        "A\n\nA+\n\n": [("\\boxed{1}", E)],
        "B\n\nB-\n\n": [("\\boxed{2}", E)],
    }
    scores = {"A": 0.5, "B": 0.6, "A+": 0.9, "B-": 0.1, "\\boxed{1}": 0.9, "\\boxed{2}": 0.1}
    plain, prunes_plain, _ = run(
        create_beam_search_graph(StepTreePolicy(tree), last_step_prm(scores), n=2, beam_width=2)
    )
    prm = last_step_prm(scores)
    policy = StepTreePolicy(tree)
    ahead, prunes_ahead, _ = run(create_beam_search_graph(policy, prm, n=2, beam_width=2, lookahead=1))
    assert texts(prunes_plain[0]["frontier"]) == ["B\n\n"]
    assert texts(prunes_ahead[0]["frontier"]) == ["A\n\n"]
    assert prunes_ahead[0]["frontier"][0]["lookahead"] == ""
    assert [r.steps for r in prm.calls[0]] == [["A", "A+"], ["B", "B-"]]  # the lookahead step is scored
    lookahead_calls = [call for call in policy.calls if call[0].temperature == 0.0]
    assert lookahead_calls and all(len(call) == 2 or len(call) == 1 for call in lookahead_calls)
    assert plain.answer != ahead.answer


def test_dvts_subtrees_extend_greedily_and_return_only_finished_leaves() -> None:
    # n=4, beam_width=2: subtrees 0 and 1 each sample 2 candidates per iteration from their own text.
    tree = {
        "": [("A\n\n", S), ("B\n\n", S), ("C\n\n", S), ("D\n\n", S)],
        "A\n\n": [("A1 \\boxed{4}", E), ("A2\n\n", S)],  # subtree 0: A1 (.7) finishes it
        "D\n\n": [("D1\n\n", S), ("D2\n\n", S)],  # subtree 1: D2 (.9) extends it
        "D\n\nD2\n\n": [("D3 \\boxed{5}", E), ("D4 \\boxed{4}", L)],
    }
    scores = {"A": 0.8, "B": 0.1, "C": 0.3, "D": 0.6, "A1 \\boxed{4}": 0.7, "A2": 0.2, "D1": 0.4, "D2": 0.9}
    scores |= {"D3 \\boxed{5}": 0.65}
    policy, prm = StepTreePolicy(tree), last_step_prm(scores)
    result, prunes, events = run(create_dvts_graph(policy, prm, n=4, beam_width=2, max_iterations=3))
    assert [texts(p["frontier"]) for p in prunes] == [["A\n\n", "D\n\n"], ["D\n\nD2\n\n"], []]
    assert [(b["subtree"], b["text"]) for b in prunes[0]["frontier"]] == [(0, "A\n\n"), (1, "D\n\n")]
    leaves = [c for c in result.candidates if c.finished]
    assert [c.text for c in leaves] == ["A\n\nA1 \\boxed{4}", "D\n\nD2\n\nD3 \\boxed{5}"]
    # The unfinished sibling A2 is never a candidate (the reference returned it).
    assert all("A2" not in c.text for c in result.candidates)
    assert result.answer == "4"  # weighted over leaves: 4 has .7 > 5 has .65
    assert [len(call) for call in policy.calls] == [2, 2, 1] and [len(c) for c in prm.calls] == [4, 4, 1]
    assert [e["type"] for e in events] == ["ttc.iteration"] * 3 + ["ttc.selected"]


def test_beam_search_runs_until_no_beam_is_active_unless_asked_to_stop_at_n_finished() -> None:
    # n=2, beam_width=1: each iteration one sample finishes early with a wrong answer and one goes on.
    tree = {"": [("\\boxed{1}", E), ("a\n\n", S)], "a\n\n": [("\\boxed{1}", E), ("b\n\n", S)]}
    tree["a\n\nb\n\n"] = [("\\boxed{2}", E)]
    scores = {"a": 0.9, "b": 0.9, "\\boxed{2}": 0.99, "\\boxed{1}": 0.1}
    policy = StepTreePolicy(tree)
    full, prunes, _ = run(create_beam_search_graph(policy, last_step_prm(scores), n=2, beam_width=1, max_iterations=9))
    assert len(prunes) == 3 and full.answer == "2"  # the reference runs on: the best beams finish last
    early, prunes, _ = run(
        create_beam_search_graph(StepTreePolicy(tree), last_step_prm(scores), n=2, beam_width=1, max_iterations=9,
                                 stop_when_n_finished=True)
    )  # fmt: skip
    assert len(prunes) == 2 and early.answer == "1"


def test_beam_search_spends_n_samples_every_iteration_when_every_first_step_is_the_same() -> None:
    # All 16 first steps are identical: duplicate filtering leaves one beam, which writes all 16
    # continuations of the next iteration (the reference repeats the active beams up to n).
    tree = {"": [("same\n\n", S)], "same\n\n": [("x\n\n", S), ("y\n\n", S), ("z\n\n", S)]}
    tree |= {f"same\n\n{s}\n\n": [(f"\\boxed{{{s}}}", E)] for s in "xyz"}
    policy = StepTreePolicy(tree)
    graph = create_beam_search_graph(policy, last_step_prm({"x": 0.9, "y": 0.5, "z": 0.1}), n=16, beam_width=4,
                                     filter_duplicates=True)  # fmt: skip
    result, prunes, _ = run(graph)
    assert [sum(r.n for r in call) for call in policy.calls] == [16, 16, 16]
    assert [[r.n for r in call] for call in policy.calls][:2] == [[16], [16]]
    assert [len(p["frontier"]) for p in prunes][:2] == [1, 3]  # 3 distinct survivors share the 16 next samples
    assert sorted(r.n for r in policy.calls[2]) == [5, 5, 6]
    assert result.answer == "x" and result.usage.policy_calls == 3


def test_a_step_of_only_whitespace_ends_its_beam() -> None:
    tree = {"": [("a\n\n", S)], "a\n\n": [("\n\n", S)]}
    policy = StepTreePolicy(tree)
    result, prunes, _ = run(create_beam_search_graph(policy, last_step_prm({}), n=2, beam_width=2, max_iterations=30))
    assert len(policy.calls) == 2 and prunes[-1]["frontier"] == []
    assert [c.text for c in result.candidates] == ["a\n\n\n\n"] * 2 and result.candidates[0].finished


def test_dvts_every_finished_sibling_of_the_last_expansion_votes() -> None:
    # n = beam_width = 4: one subtree. Its last expansion finishes 3 siblings (answers 7, 7, 8) and
    # truncates one: all 3 finished ones vote (the old code kept only the best one, 8).
    tree = {"": [("a\n\n", S)] * 4, "a\n\n": [("\\boxed{7}", E), ("\\boxed{8}", E), ("\\boxed{7}", E), ("cut", L)]}
    scores = {"a": 0.5, "\\boxed{8}": 0.9}
    result, _, _ = run(create_dvts_graph(StepTreePolicy(tree), last_step_prm(scores, default=0.6), n=4, beam_width=4))
    finished = [c for c in result.candidates if c.finished]
    assert sorted(c.answer or "" for c in finished) == ["7", "7", "8"]
    assert result.answer == "7"  # 0.6 + 0.6 beats 0.9
    assert not any(c.finished for c in result.candidates if c.text.endswith("cut"))


def test_dvts_a_subtree_ends_once_its_step_states_the_answer() -> None:
    tree = {"": [("\\boxed{3}\n\n", S), ("b\n\n", S)], "b\n\n": [("\\boxed{4}", E)]}
    policy = StepTreePolicy(tree)
    result, prunes, _ = run(create_dvts_graph(policy, last_step_prm({"\\boxed{3}": 0.9, "b": 0.1}), n=2, beam_width=2))
    assert len(policy.calls) == 1 and prunes[0]["frontier"] == []  # the reference stops at a boxed answer
    assert result.answer == "3" and [c.answer for c in result.candidates if c.finished] == ["3"]


@pytest.mark.parametrize("factory", [create_beam_search_graph, create_dvts_graph])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"n": 6, "beam_width": 4},
            r"beam_width=4 does not divide n=6; pass a beam_width that divides n, e.g. 1, 2, 3, 6",
        ),
        ({"n": 2, "beam_width": 4}, r"n=2 is smaller than beam_width=4"),
        (
            {"n": 4, "beam_width": 2, "max_iterations": 0},
            r"max_iterations=0 is invalid: input should be greater than or equal to 1",
        ),
        (
            {"n": 4, "beam_width": 2, "step_delimiter": ""},
            r"step_delimiter='' is invalid: string should have at least 1 character",
        ),
        (
            {"n": 4, "beam_width": 2, "lookahead": -1},
            r"lookahead=-1 is invalid: input should be greater than or equal to 0",
        ),
        (
            {"n": 4, "beam_width": 2, "aggregation": "sum"},
            r"aggregation='sum' is invalid: input should be 'last', 'min', 'prod' or 'mean'",
        ),
        (
            {"n": 4, "beam_width": 2, "selection": "vote"},
            r"selection='vote' is invalid: input should be 'best' or 'weighted'",
        ),
    ],
)
def test_bad_search_options_fail_at_construction(factory: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory(StepTreePolicy({}), last_step_prm({}), **kwargs)


def test_policy_that_cannot_continue_partial_messages_is_refused() -> None:
    class WholeOnly(ScriptedPolicy):
        supports_partial = False

    policy: PolicyEngine = WholeOnly(["x"])
    with pytest.raises(TypeError, match="cannot continue a partial assistant message"):
        create_beam_search_graph(policy, last_step_prm({}), n=4, beam_width=2)


def test_long_searches_run_under_default_configs() -> None:
    # 12 iterations = 36+ LangGraph steps, beyond LangChain's default recursion limit of 25.
    tree = {"": [("s0\n\n", S)]} | {
        "s0\n\n" + "".join(f"s{j}\n\n" for j in range(1, i + 1)): [(f"s{i + 1}\n\n", S)] for i in range(11)
    }
    tree["".join(f"s{j}\n\n" for j in range(12))] = [("\\boxed{1}", E)]
    graph = create_beam_search_graph(StepTreePolicy(tree), last_step_prm({}), n=2, beam_width=2, max_iterations=20)
    outputs = graph.batch([{"problem": "p"}, {"problem": "q"}])
    assert [o["answer"] for o in outputs] == ["1", "1"]
    assert len(outputs[0]["result"]["metadata"]["iterations"]) == 13
    with pytest.raises(Exception, match="Recursion limit of 10"):
        graph.invoke({"problem": "p"}, {"recursion_limit": 10})
