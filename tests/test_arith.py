import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_ttc.arith.problems import (
    MAX_DIFFICULTY,
    apply_operator,
    arithmetic_facts,
    check_steps,
    make_problems,
    parse_expression,
    solution_is_correct,
    solve_expression,
    split_steps,
    step_is_well_formed,
)
from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.engines.math_shepherd_format import math_shepherd_text

difficulties = st.integers(min_value=1, max_value=MAX_DIFFICULTY)
seeds = st.integers(min_value=0, max_value=2**32)


def training_script() -> ModuleType:
    """scripts/train_arith.py, which is not part of the package (it imports torch at the top)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "train_arith.py"
    spec = importlib.util.spec_from_file_location("train_arith", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_arith", module)
    spec.loader.exec_module(module)
    return module


def evaluate(expression: str) -> int:
    value = int(expression[0])
    for i in range(1, len(expression), 2):
        value = apply_operator(value, expression[i], int(expression[i + 1]))
    return value


@given(difficulty=difficulties, seed=seeds)
def test_generated_problem_is_consistent(difficulty: int, seed: int) -> None:
    (problem,) = make_problems(1, difficulty, seed=seed)
    steps = split_steps(problem.solution)
    expression = parse_expression(problem.problem)
    assert problem.difficulty == difficulty == len(steps) == len(expression) // 2
    assert problem.answer == str(evaluate(expression)) == extract_boxed(problem.solution)
    assert all(step_is_well_formed(s) for s in steps)
    assert check_steps(problem.problem, steps) == [True] * difficulty


@given(low=difficulties, span=st.integers(0, 7), seed=seeds, count=st.integers(0, 20))
def test_generator_is_reproducible_and_in_range(low: int, span: int, seed: int, count: int) -> None:
    high = min(MAX_DIFFICULTY, low + span)
    problems = make_problems(count, (low, high), seed=seed)
    assert problems == make_problems(count, (low, high), seed=seed)
    assert len(problems) == count
    assert all(low <= p.difficulty <= high for p in problems)


@given(difficulty=difficulties, seed=seeds, data=st.data())
def test_checker_labels_are_prefix_labels(difficulty: int, seed: int, data: st.DataObject) -> None:
    (problem,) = make_problems(1, difficulty, seed=seed)
    steps = split_steps(problem.solution)
    broken = data.draw(st.integers(0, difficulty - 1))
    step = steps[broken]
    # Corrupt the result digit of one step: the step and every later one become wrong.
    result_at = step.index("=") + 1
    wrong = str((int(step[result_at]) + data.draw(st.integers(1, 9))) % 10)
    steps[broken] = step[:result_at] + wrong + step[result_at + 1 :]
    labels = check_steps(problem.problem, steps)
    assert labels == [i < broken for i in range(difficulty)]


@given(difficulty=difficulties, seed=seeds, cut=st.integers(0, 8))
def test_checker_on_truncated_and_extended_solutions(difficulty: int, seed: int, cut: int) -> None:
    (problem,) = make_problems(1, difficulty, seed=seed)
    steps = split_steps(problem.solution)
    assert check_steps(problem.problem, steps[:cut]) == [True] * min(cut, difficulty)
    assert check_steps(problem.problem, [*steps, steps[-1]]) == [True] * difficulty + [False]


@settings(max_examples=300)
@given(left=st.integers(0, 9), right=st.integers(0, 9), op=st.sampled_from("+-*"))
def test_operations_keep_the_last_digit(left: int, right: int, op: str) -> None:
    exact = {"+": left + right, "-": left - right, "*": left * right}[op]
    assert apply_operator(left, op, right) == exact % 10


def test_bad_difficulty_and_problem_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"difficulty=13 is out of range.*1 to 12"):
        make_problems(1, 13)
    with pytest.raises(ValueError, match=r"difficulty=\(5, 2\) has low > high"):
        make_problems(1, (5, 2))
    with pytest.raises(ValueError, match="is not an Arith problem"):
        check_steps("What is the capital of France?", ["Paris"])


@given(difficulty=difficulties, seed=seeds, data=st.data())
def test_one_wrong_step_always_ends_on_a_wrong_answer(difficulty: int, seed: int, data: st.DataObject) -> None:
    (problem,) = make_problems(1, difficulty, seed=seed)
    expression = parse_expression(problem.problem)
    assert all(expression[i + 1] in "379" for i in range(1, len(expression), 2) if expression[i] == "*")
    broken = data.draw(st.integers(0, difficulty - 1))
    shift = data.draw(st.integers(1, 9))

    step = iter(range(difficulty))

    def compute(left: int, op: str, right: int) -> int:
        return (apply_operator(left, op, right) + (shift if next(step) == broken else 0)) % 10

    _, answer = solve_expression(expression, compute)
    assert answer != problem.answer


def test_facts_and_process_grades() -> None:
    facts = arithmetic_facts()
    assert len(facts) == len(set(facts)) == 230 and (4, "*", 3) in facts and (4, "*", 2) not in facts
    (problem,) = make_problems(1, 3, seed=5)
    steps = split_steps(problem.solution)
    assert solution_is_correct(problem.problem, steps)
    assert not solution_is_correct(problem.problem, steps[:-1])  # right so far, but unfinished
    assert not solution_is_correct(problem.problem, [*steps, steps[-1]])


def test_teacher_distributions_and_solutions() -> None:
    train = training_script()
    RECIPES, Teacher, _Tables = train.RECIPES, train.Teacher, train._Tables
    _fact_results, _result_digits = train._fact_results, train._result_digits
    prm_solutions, teacher_solution = train.prm_solutions, train.teacher_solution

    small, large = (RECIPES[name].teacher for name in ("small", "large"))
    assert small is not None and large is not None
    wrong = small.wrong_results()
    assert len(wrong) == 50 and large.wrong_results().items() <= wrong.items()  # the large policy's are a subset
    prm_teacher = train.PRM_RECIPES["prm"].teacher.wrong_results()  # the realistic PRM's teacher shares half of them
    assert len(prm_teacher) == 50 and len(prm_teacher.items() & wrong.items()) == 25
    assert not large.wrong_results().keys() & prm_teacher.keys()  # the large policy's are all blind spots
    for fact in arithmetic_facts():
        probs = small.distribution(fact)
        right = apply_operator(*fact)
        assert sum(probs) == pytest.approx(1.0) and min(probs) > 0
        if fact in wrong:
            assert probs[wrong[fact]] == pytest.approx(0.55) and probs[right] == pytest.approx(0.35)
        else:
            assert probs[right] == pytest.approx(0.97)
    tables = _Tables(Teacher(misconceptions=230, right_on_misconception=0.0, wrong_on_misconception=1.0))
    rng = random.Random(0)
    solution, targets = teacher_solution("3+4*3-5", tables, rng)
    # every result is the misconception's: the offsets point at the written results, the targets are one-hot
    assert [solution[offset] for offset, _ in targets] == [s[s.index("=") + 1] for s in solution.split("\n\n")] and all(
        max(p) == pytest.approx(1.0) for _, p in targets
    )
    assert [p.index(max(p)) for _, p in targets] == [int(solution[offset]) for offset, _ in targets]
    pairs = prm_solutions(200, small, random.Random(1), difficulty=6)
    labels = [label for problem, steps in pairs for label in check_steps(problem.problem, steps)]
    assert 0.05 < labels.count(False) / len(labels) < 0.6  # the PRM sees both classes
    for problem, steps in pairs:  # each result digit is labelled where it sits in the PRM's text
        text = math_shepherd_text(problem.problem, steps)
        digits = _result_digits(problem.problem, steps)
        tags = check_steps(problem.problem, steps)
        assert [text[offset] for offset, _ in digits] == [s[s.index("=") + 1] for s in steps]
        assert all(digit or not tag for (_, digit), tag in zip(digits, tags, strict=True))  # a right step: right digit
        # the fact targets sit on the same digits and hold the right result of each step's own operation
        facts = _fact_results(problem.problem, steps)
        assert [offset for offset, _ in facts] == [offset for offset, _ in digits]
        assert [str(result) for _, result in facts] == [str(apply_operator(int(s[0]), s[1], int(s[2]))) for s in steps]
