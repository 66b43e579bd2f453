"""The answer keys: the strict default (``MATH_ANSWERS``) and search-and-learn's (``REFERENCE_MATH_ANSWERS``).

The reference key follows ``extract_answer(text, "math")`` of search-and-learn's
``src/sal/utils/qwen_math_parser.py`` (its fallbacks and its ``strip_string``) and groups answers by the
canonical form of ``memoized_canonical_form`` (``src/sal/utils/math.py``). The expected values below
were checked against sal's own parser (with ``latex2sympy2`` 1.9.1) run side by side.
"""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor

import pytest

from langchain_ttc import create_majority_vote_graph, create_weighted_best_of_n_graph
from langchain_ttc.core.answers import (
    MATH_ANSWERS,
    REFERENCE_MATH_ANSWERS,
    canonical_form,
    group_equivalent,
    normalize_answer,
    reference_math_answer,
    same_canonical_form,
)
from langchain_ttc.core.types import Candidate
from langchain_ttc.core.voting import majority_vote, weighted_best_of_n
from tests.fakes import ScriptedPolicy, last_step_prm


def test_the_strict_key_stays_the_default() -> None:
    for function in (majority_vote, weighted_best_of_n):
        assert inspect.signature(function).parameters["key"].default is MATH_ANSWERS
    for factory in (create_majority_vote_graph, create_weighted_best_of_n_graph):
        assert inspect.signature(factory).parameters["answers"].default == MATH_ANSWERS.name == "math"
        assert inspect.signature(factory).parameters["answer_key"].default is None  # a key object only when given
    assert REFERENCE_MATH_ANSWERS.name == "reference-math" and not REFERENCE_MATH_ANSWERS.reads_tool_calls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 1. "final answer is $...$. I hope" (minerva), before everything else
        ("The final answer is $x=3$. I hope it is correct.", "3"),
        # 2. the last "boxed": braces matched, an unclosed brace takes the rest, no brace reads up to a "$"
        ("Therefore, the final answer is: $\\boxed{7}$. I hope it is correct.", "7"),
        ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("so \\boxed{3", "3"),
        ("\\boxed 5$ done", "5"),
        ("The answer is 4, so \\boxed{5}", "5"),
        # 3. after the last "he answer is" (The/the), then after "final answer is"
        ("The answer is 1/2.", "\\frac{1}{2}"),
        ("so the answer is: 12", "12"),
        ("the final answer is 42", "42"),
        ("The answer is $\\frac{\\sqrt{3}}{2}$.", "\\frac{\\sqrt{3}}{2}"),
        ("答案是 5\n\n more", "5"),
        # 4. the last number (commas dropped)
        ("3+4 = 7, and 7*2 = 14.", "14"),
        ("costs 1,000 dollars", "1000"),
        ("-3.5 degrees", "-3.5"),
        # the Math-Shepherd step tag is removed first
        ("2+2=4 ки\nThe answer is: 4 ки", "4"),
        # nothing at all: no answer (sal votes with "")
        ("no number here", None),
        ("\\boxed{}", None),
    ],
)
def test_reference_extraction_follows_the_parsers_fallbacks(text: str, expected: str | None) -> None:
    assert reference_math_answer(text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),
        ("\\tfrac{1}{4}", "\\frac{1}{4}"),
        ("10.0", "10"),
        ("x = 5", "5"),
        ("k = 7", "7"),
        ("50\\%", "50"),
        ("\\$5", "5"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("90^\\circ", "90"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("12/4", "\\frac{12}{4}"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
        (".5", "0.5"),
        ("\\{1,2\\}", "{1,2}"),
        ("(-\\infty,\\infty)", "\\mathbb{R}"),
        ("\\begin{bmatrix}1\\\\2\\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("3j", "3i"),
        ("\\text{Monday}", "Monday"),
        ("5 cm", "5cm"),  # sal's MathQA unit words are left out: sal gives "5"
    ],
)
def test_normalisation_follows_strip_string(answer: str, expected: str) -> None:
    assert normalize_answer(answer) == expected


def test_grouping_by_canonical_form() -> None:
    answers = ["1/2", "\\frac{1}{2}", "0.5", "\\frac{2}{4}", "(x+1)^2", "x^2+2x+1", "\\{1,2\\}", "\\{2,1\\}"]
    assert group_equivalent(answers, key=REFERENCE_MATH_ANSWERS) == [[0, 1, 2, 3], [4], [5], [6], [7]]
    assert group_equivalent(answers, key=MATH_ANSWERS) == [[0, 1, 2, 3], [4, 5], [6, 7]]
    assert canonical_form("\\frac{1}{3}+\\frac{1}{6}") == "\\frac{1}{2}"
    assert canonical_form("(3,\\frac{\\pi}{2})") == "(3,\\frac{\\pi}{2})"  # a pair: its normalised string, as sal
    assert same_canonical_form("2^{10}", "1024")


def test_canonical_form_falls_back_to_the_normalised_string() -> None:
    long = "x+" * 150 + "1"
    assert canonical_form(long) == normalize_answer(long)  # too long for sympy without a timeout
    assert canonical_form("\\frac{") == "\\frac{"  # a parse error


def test_canonical_form_runs_outside_the_main_thread() -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:  # LangGraph runs sync nodes in threads: no signal.alarm
        assert pool.submit(canonical_form, "\\sqrt{18}").result(timeout=60) == "3 \\sqrt{2}"


def _candidates(texts: list[str]) -> list[Candidate]:
    return [Candidate(text=t, steps=[t], answer=None, finish_reason="eos", score=0.5) for t in texts]


def test_the_keys_vote_differently_where_the_reference_splits_or_reads_more() -> None:
    texts = ["\\boxed{(x+1)^2}", "\\boxed{x^2+2x+1}", "\\boxed{3}", "\\boxed{3}", "The answer is 7", "I got 7", "so 7."]
    for key, answer in ((MATH_ANSWERS, "(x+1)^2"), (REFERENCE_MATH_ANSWERS, "7")):
        candidates = [c.model_copy(update={"answer": key.extract(c.text)}) for c in _candidates(texts)]
        chosen = majority_vote(candidates, key=key).chosen_index
        assert chosen is not None and candidates[chosen].answer == answer
    # the strict key reads no answer from the last three; the reference key reads "7" from each
    assert [MATH_ANSWERS.extract(t) for t in texts[4:]] == [None, None, None]


def test_a_graph_votes_with_the_reference_key() -> None:
    texts = ["\\boxed{(x+1)^2}", "\\boxed{x^2+2x+1}", "\\boxed{3}", "\\boxed{3}", "so it is 5"]
    default = create_majority_vote_graph(ScriptedPolicy(texts), n=len(texts)).invoke({"problem": "p"})
    reference = create_majority_vote_graph(ScriptedPolicy(texts), n=len(texts), answer_key=REFERENCE_MATH_ANSWERS)
    assert default["answer"] == "(x+1)^2"
    assert reference.invoke({"problem": "p"})["answer"] == "3"
    weighted = create_weighted_best_of_n_graph(
        ScriptedPolicy(texts), last_step_prm({"so it is 5": 0.99}, default=0.4), n=len(texts),
        answer_key=REFERENCE_MATH_ANSWERS,
    )  # fmt: skip
    assert weighted.invoke({"problem": "p"})["answer"] == "5"  # the last-number fallback votes, with its score
