import json

import pytest

from langchain_ttc.core.aggregation import aggregate, check_aggregation
from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.types import Candidate
from langchain_ttc.core.voting import best_of_n, majority_vote, weighted_best_of_n
from langchain_ttc.strategies.sampling.majority_vote import create_majority_vote_graph
from tests.fakes import ScriptedPolicy


def cand(answer: str | None, score: float | None = None, finish: str = "eos") -> Candidate:
    return Candidate(text=f"x \\boxed{{{answer}}}", steps=["x"], answer=answer, finish_reason=finish, score=score)  # type: ignore[arg-type]


def test_weighted_differs_from_naive_and_majority() -> None:
    # Hand-computed: answer "7" wins majority (3 votes, summed 0.3+0.2+0.2 = 0.7),
    # "2" has the single best solution (0.95), "5" has the largest summed score (0.6+0.6 = 1.2).
    candidates = [
        cand("7", 0.3),
        cand("2", 0.95),
        cand("5", 0.6),
        cand("7", 0.2),
        cand("5", 0.6),
        cand("7", 0.2),
    ]
    assert majority_vote(candidates).chosen_index == 0
    assert best_of_n(candidates).chosen_index == 1
    weighted = weighted_best_of_n(candidates)
    assert candidates[weighted.chosen_index].answer == "5"  # type: ignore[index]
    weights = {g.answer: g.weight for g in weighted.groups}
    assert weights == pytest.approx({"7": 0.7, "2": 0.95, "5": 1.2})


def test_equivalent_answers_vote_together() -> None:
    candidates = [cand("1/2"), cand("3"), cand("0.5"), cand("3"), cand("\\frac{1}{2}")]
    selection = majority_vote(candidates)
    assert selection.chosen_index == 0
    assert [g.indices for g in selection.groups] == [[0, 2, 4], [1, 3]]


def test_majority_ties_break_toward_first_seen_answer() -> None:
    candidates = [cand("4"), cand("9"), cand("9"), cand("4")]
    assert majority_vote(candidates).chosen_index == 0
    assert majority_vote(list(reversed(candidates))).chosen_index == 0  # "4" first again
    assert majority_vote([cand("9"), cand("4"), cand("4"), cand("9")]).chosen_index == 0


def test_best_of_n_ties_break_toward_lower_index() -> None:
    assert best_of_n([cand("1", 0.5), cand("2", 0.9), cand("3", 0.9)]).chosen_index == 1


def test_truncated_and_answerless_candidates_never_win() -> None:
    candidates = [cand("8", 0.99, finish="length"), cand(None, 0.98), cand("3", 0.1), cand("8", 0.99, finish="length")]
    assert majority_vote(candidates).chosen_index == 2
    assert best_of_n(candidates).chosen_index == 2
    assert weighted_best_of_n(candidates).chosen_index == 2


def test_no_eligible_candidate_gives_no_answer() -> None:
    candidates = [cand("8", 0.9, finish="length"), cand(None, 0.5)]
    assert majority_vote(candidates).chosen_index is None
    assert best_of_n(candidates).chosen_index is None
    assert weighted_best_of_n(candidates).chosen_index is None


def test_weighted_returns_best_scored_member_of_winning_group() -> None:
    candidates = [cand("5", 0.2), cand("5", 0.7), cand("6", 0.8)]
    assert weighted_best_of_n(candidates).chosen_index == 1


@pytest.mark.parametrize(
    ("how", "expected"), [("last", 0.8), ("min", 0.5), ("prod", 0.9 * 0.5 * 0.8), ("mean", (0.9 + 0.5 + 0.8) / 3)]
)
def test_aggregations(how: str, expected: float) -> None:
    assert aggregate([0.9, 0.5, 0.8], how) == pytest.approx(expected)


def test_aggregation_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"aggregation='median'.*last, min, prod, mean"):
        check_aggregation("median")
    with pytest.raises(ValueError, match=r"scores=\[\] is empty"):
        aggregate([], "last")


def _json_key() -> AnswerKey:
    """A key for answers that are JSON objects: equal after normalising (key order, spacing)."""

    def extract(text: str) -> str | None:
        try:
            return json.dumps(json.loads(text), sort_keys=True)
        except ValueError:
            return None

    return AnswerKey(name="json", extract=extract, equivalent=lambda a, b: json.loads(a) == json.loads(b))


def test_voting_takes_an_answer_key_for_other_answer_kinds() -> None:
    key = _json_key()
    texts = ['{"tool": "add", "args": [1, 2]}', '{"args": [1, 2],  "tool": "add"}', '{"tool": "mul", "args": [1, 2]}']
    candidates = [
        Candidate(text=t, steps=[t], answer=key.extract(t), finish_reason="eos", score=s)
        for t, s in zip(texts, [0.3, 0.3, 0.5], strict=True)
    ]
    assert majority_vote(candidates, key=key).chosen_index == 0  # two spellings of one call outvote the third
    assert weighted_best_of_n(candidates, key=key).chosen_index == 0  # 0.6 > 0.5
    # The same key through a strategy graph: answers read by the key, grouped by it.
    policy = ScriptedPolicy(texts)
    output = create_majority_vote_graph(policy, n=3, answer_key=key).invoke({"problem": "which tool?"})
    assert json.loads(output["answer"]) == {"tool": "add", "args": [1, 2]}
    assert [len(g["indices"]) for g in output["result"]["groups"]] == [2, 1]
