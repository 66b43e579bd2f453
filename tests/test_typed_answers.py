"""Typed answers (langchain_ttc.core.answers): multiple choice, plain numbers, short strings and pydantic schemas,
read from replies, voted over by majority voting and weighted best-of-N, and the replies that do not vote reported."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from langchain_ttc import create_majority_vote_graph, create_weighted_best_of_n_graph
from langchain_ttc.core.answers import (
    MULTIPLE_CHOICE_ANSWERS,
    NUMBER_ANSWERS,
    SHORT_ANSWERS,
    canonical_number,
    find_json_object,
    invalid_answers,
    multiple_choice_answer,
    multiple_choice_answers,
    number_answer,
    schema_answers,
    short_answer,
)
from langchain_ttc.core.types import Candidate
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy
from tests.fakes import ScriptedChatModel, ScriptedPolicy, ScriptedPRM


class Invoice(BaseModel):
    vendor: str
    total: float = Field(ge=0)
    paid: bool = False


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (B).", "B"),
        ("Answer: **c**", "C"),
        ("I weighed A against D. Final answer: D) because...", "D"),
        ("\\boxed{A}", "A"),
        ("\\boxed{\\text{E}}", "E"),
        ("(C)", "C"),
        ("C.", "C"),
        ("A careful reading shows nothing.", None),  # a word, not a choice
        ("The answer is that it depends.", None),
        ("Answer: K", None),  # not an option
        ("", None),
    ],
)
def test_multiple_choice_letters(text: str, letter: str | None) -> None:
    assert multiple_choice_answer(text) == letter


def test_multiple_choice_keys_take_their_own_letters() -> None:
    assert multiple_choice_answers("ABCD").answer_of("Answer: E") is None
    assert MULTIPLE_CHOICE_ANSWERS.answer_of("Answer: E") == "E"
    with pytest.raises(ValueError, match="must be upper-case letters"):
        multiple_choice_answers("abc")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
        ("#### 1,234", "1234"),
        ("#### $18.00", "18"),
        ("So the answer is 0.50.", "0.5"),
        ("The answer is -3/4 of a cup", "-0.75"),
        ("The answer is 1/3", "1/3"),
        ("\\boxed{42}", "42"),
        ("She has 5 apples and eats 2.", None),  # no "last number" guess
        ("#### none", None),
    ],
)
def test_plain_numbers(text: str, number: str | None) -> None:
    assert number_answer(text) == number


def test_numbers_compare_as_exact_rationals() -> None:
    assert canonical_number("42") == canonical_number("42.0") == canonical_number("84/2") == "42"
    assert canonical_number("1e3") == "1"  # no scientific notation: the first number only
    assert canonical_number("2/0") is None


def test_short_strings_are_normalised() -> None:
    assert short_answer("The answer is: The Eiffel Tower.") == short_answer("eiffel tower") == "eiffel tower"
    assert short_answer("\\boxed{\\text{Paris}}") == "paris"
    assert short_answer("First line.\nSecond line.") is None  # a paragraph states no short answer
    assert short_answer("x" * 101) is None and short_answer("!!!") is None


def test_find_json_object_skips_what_is_not_json() -> None:
    assert find_json_object('So \\boxed{5}. Then ```json\n{"a": 1}\n```') == {"a": 1}
    assert find_json_object('{"a": "a } inside", "b": [1, {"c": 2}]}') == {"a": "a } inside", "b": [1, {"c": 2}]}
    assert find_json_object("[1, 2]") is None and find_json_object("{not json}") is None


def test_majority_vote_and_weighted_best_of_n_take_the_typed_keys() -> None:
    letters = ["The answer is (B).", "Answer: C", "I pick B.\nAnswer: B", "no idea"]
    voted = create_majority_vote_graph(ScriptedPolicy(letters), n=4, answer_key=MULTIPLE_CHOICE_ANSWERS)
    assert voted.invoke({"problem": "Which?"})["answer"] == "B"
    gsm8k = ["3 + 4 = 7.\n#### 7", "#### 7.0", "The answer is 8.", "#### 8"]
    prm = ScriptedPRM(lambda _p, step: 0.9 if "8" in step else 0.2)
    weighted = create_weighted_best_of_n_graph(ScriptedPolicy(gsm8k), prm, n=4, answer_key=NUMBER_ANSWERS)
    out = weighted.invoke({"problem": "How many?"})
    assert out["answer"] == "8" and {g["answer"]: len(g["indices"]) for g in out["result"]["groups"]} == {
        "7": 2,
        "8": 2,
    }
    capitals = ["The answer is Paris.", "paris", "Lyon", "The answer is: PARIS!"]
    assert (
        create_majority_vote_graph(ScriptedPolicy(capitals), n=4, answer_key=SHORT_ANSWERS).invoke({"problem": "?"})[
            "answer"
        ]
        == "paris"
    )


def test_a_schema_key_votes_equal_objects_together_and_reports_who_did_not_vote() -> None:
    key = schema_answers(Invoice)
    replies = [
        '{"vendor": "ACME", "total": 12}',
        'Here it is: ```json\n{"total": 12.0, "vendor": "ACME", "paid": false}\n```',
        '{"vendor": "ACME", "total": -5}',  # fails validation: does not vote
        '{"vendor": "Initech", "total": 3}',
        "Sorry, I cannot read the invoice.",
    ]
    out = create_majority_vote_graph(ScriptedPolicy(replies), n=5, answer_key=key).invoke({"problem": "Extract."})
    assert out["answer"] == '{"paid":false,"total":12.0,"vendor":"ACME"}'
    assert key.parse(out["answer"]) == Invoice(vendor="ACME", total=12)
    candidates = [Candidate.model_validate(c) for c in out["result"]["candidates"]]
    reasons = invalid_answers(candidates, key)
    assert sorted(reasons) == [2, 4]
    assert reasons[2].startswith(
        "the object does not validate as Invoice: total: Input should be greater than or equal"
    )
    assert reasons[4] == "the reply holds no JSON object"


def test_when_no_candidate_satisfies_the_schema_there_is_no_answer_and_every_reason_is_given() -> None:
    key = schema_answers(Invoice)
    replies = ['{"vendor": "ACME"}', "nothing", '{"vendor": 1, "total": "many"}']
    out = create_majority_vote_graph(ScriptedPolicy(replies, ["eos", "eos", "length"]), n=3, answer_key=key).invoke(
        {"problem": "Extract."}
    )
    assert out["answer"] is None and out["result"]["chosen_index"] is None and out["result"]["groups"] == []
    reasons = invalid_answers([Candidate.model_validate(c) for c in out["result"]["candidates"]], key)
    assert reasons == {
        0: "the object does not validate as Invoice: total: Field required",
        1: "the reply holds no JSON object",
        2: "cut off by max_tokens (a truncated candidate never votes)",
    }
    with pytest.raises(ValueError, match="is not a Invoice object"):
        key.parse('{"vendor": "x"}')
    with pytest.raises(TypeError, match="is not a pydantic model class"):
        schema_answers(dict)  # type: ignore[arg-type]


def test_a_schema_key_reads_the_arguments_of_a_tool_call_extraction() -> None:
    chat = ScriptedChatModel(
        replies=[
            {"name": "Invoice", "args": {"vendor": "ACME", "total": 12}},
            {"name": "Invoice", "args": {"vendor": "ACME", "total": 12.0}},
            {"name": "Invoice", "args": {"vendor": "ACME"}},
        ]
    )
    policy = ChatModelPolicy(chat, max_concurrency=1).with_tools([Invoice], tool_choice="Invoice")
    key = schema_answers(Invoice)
    out = create_majority_vote_graph(policy, n=3, answer_key=key).invoke({"problem": "Extract the invoice."})
    assert key.parse(out["answer"]) == Invoice(vendor="ACME", total=12)
    groups = out["result"]["groups"]
    assert len(groups) == 1 and len(groups[0]["indices"]) == 2
