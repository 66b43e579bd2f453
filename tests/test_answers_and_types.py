import json
import threading

import pytest

from langchain_ttc.core.answers import answers_equivalent, extract_boxed, group_equivalent
from langchain_ttc.core.types import Candidate, Completion, GenerationRequest, TTCResult, Usage


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1}, then \\boxed{{2}+{3}}", "{2}+{3}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("no box here", None),
        ("\\boxed{unclosed", None),
        ("\\fbox{7}", "7"),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_equivalence_is_mathematical() -> None:
    assert answers_equivalent("\\frac{1}{2}", "0.5")
    assert answers_equivalent("2", "2.0")
    assert not answers_equivalent("2", "3")
    assert group_equivalent(["2", None, "3", "2.0"]) == [[0, 3], [2]]


def test_equivalence_works_outside_the_main_thread() -> None:
    # math-verify's default timeouts use signal.alarm, which fails in threads (LangGraph runs nodes there).
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(answers_equivalent("\\frac{3}{4}", "0.75")))
    thread.start()
    thread.join()
    assert results == [True]


def test_truncated_completion_is_not_finished() -> None:
    assert not Completion(text="1+1=", num_tokens=4, finish_reason="length").finished
    assert Completion(text="x\n\n", num_tokens=3, finish_reason="stop", stop_string="\n\n").finished
    assert Completion(text="x", num_tokens=1, finish_reason="eos").finished
    assert not Candidate(text="x", steps=["x"], answer="1", finish_reason="length").finished


def test_result_round_trips_through_json() -> None:
    result = TTCResult(
        strategy="best_of_n",
        answer="3",
        solution="\\boxed{3}",
        chosen_index=0,
        candidates=[
            Candidate(
                text="\\boxed{3}", steps=["\\boxed{3}"], answer="3", finish_reason="eos", step_scores=[0.5], score=0.5
            )
        ],
        usage=Usage(policy_calls=1, completion_tokens=9, prm_calls=1, prm_tokens=12, wall_time_s=0.1),
    )
    assert TTCResult.model_validate(json.loads(result.model_dump_json())) == result


def test_usage_adds_fieldwise() -> None:
    total = Usage(policy_calls=1, completion_tokens=5, wall_time_s=0.5) + Usage(
        prm_calls=2, prm_tokens=7, wall_time_s=0.25
    )
    assert total == Usage(policy_calls=1, completion_tokens=5, prm_calls=2, prm_tokens=7, wall_time_s=0.75)


def test_request_needs_exactly_one_input() -> None:
    with pytest.raises(ValueError, match="exactly one of messages= or prompt="):
        GenerationRequest()
    with pytest.raises(ValueError, match="exactly one"):
        GenerationRequest(prompt="a", messages=[{"role": "user", "content": "b"}])
    with pytest.raises(ValueError, match="n"):
        GenerationRequest(prompt="a", n=0)


def test_boxed_without_braces_takes_the_word_after_it_not_a_later_brace() -> None:
    from langchain_ttc.core.answers import extract_boxed

    assert extract_boxed("so $\\boxed 5$. Then {x} and {y}") == "5"
    assert extract_boxed("\\boxed 12.") == "12"
    assert extract_boxed("\\boxedx {3}") is None
    assert extract_boxed("\\boxed{1} and \\fbox{2}") == "2"
