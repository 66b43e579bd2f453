"""The Arith world: multi-step last-digit arithmetic problems, their solutions and an exact checker.

In: a count, a difficulty (number of steps, 1 to 12) and a seed. Out: :class:`ArithProblem` objects
with the problem text, the gold step-by-step solution and the exact answer.

A problem is a left-to-right chain of one-digit operations where only the last digit is kept after
each step (arithmetic modulo 10). Every operation is a permutation of the ten digits (adding or
subtracting any digit, multiplying by 3, 7 or 9), so one wrong step always ends on a wrong answer:
a wrong derivation lands on the right answer only when a later error cancels an earlier one. A
solution has one step per paragraph (``"\\n\\n"`` delimited) and ends in ``\\boxed{...}``::

    Keep only the last digit after each step. What is 3+4*3-5?

    3+4=7, so 7*3-5

    7*3=1, so 1-5

    1-5=6. The answer is \\boxed{6}.

Example:
    >>> from langchain_ttc.arith import make_problems
    >>> [p.answer for p in make_problems(2, difficulty=3, seed=0)]
    ['6', '3']

"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 12
STEP_DELIMITER = "\n\n"
OPERATORS = ("+", "-", "*")
MULTIPLIERS = (3, 7, 9)
"""The digits a problem multiplies by: the units modulo 10 other than 1, so a product never loses an error."""

_PROBLEM_PREFIX = "Keep only the last digit after each step. What is "
_PROBLEM_RE = re.compile(r"What is (\d(?:[+\-*]\d)+)\?")
_STEP_RE = re.compile(r"^(\d)([+\-*])(\d)=(\d)(?:, so (\d(?:[+\-*]\d)+)|\. The answer is \\boxed\{(\d)\}\.)$")


@dataclass(frozen=True)
class ArithProblem:
    """One Arith problem.

    Attributes:
        problem: The problem text shown to the policy.
        solution: The gold solution, one step per ``"\\n\\n"``-separated paragraph.
        answer: The exact final answer (one digit, as text).
        difficulty: The number of steps (operations).

    """

    problem: str
    solution: str
    answer: str
    difficulty: int


def apply_operator(left: int, operator: str, right: int) -> int:
    """Apply one operation and keep the last digit.

    Example:
        >>> apply_operator(4, "-", 5)
        9

    """
    if operator == "+":
        return (left + right) % 10
    if operator == "-":
        return (left - right) % 10
    if operator == "*":
        return (left * right) % 10
    raise ValueError(f"operator={operator!r} is not one of {OPERATORS}.")


def arithmetic_facts() -> list[tuple[int, str, int]]:
    """Every fact a problem can ask for: ``(left, operator, right)``, 230 of them.

    Example:
        >>> len(arithmetic_facts()), arithmetic_facts()[0]
        (230, (0, '+', 0))

    """
    return [
        (left, op, right)
        for left in range(10)
        for op in OPERATORS
        for right in (MULTIPLIERS if op == "*" else range(10))
    ]


def _expression(head: int, operations: list[tuple[str, int]]) -> str:
    return str(head) + "".join(f"{op}{digit}" for op, digit in operations)


def _parse_expression(expression: str) -> tuple[int, list[tuple[str, int]]]:
    head = int(expression[0])
    operations = [(expression[i], int(expression[i + 1])) for i in range(1, len(expression), 2)]
    return head, operations


def format_problem(expression: str) -> str:
    """Return the problem text for an expression such as ``"3+4*3"``."""
    return f"{_PROBLEM_PREFIX}{expression}?"


def solve_expression(
    expression: str, compute: Callable[[int, str, int], int] = apply_operator
) -> tuple[list[str], str]:
    """Return the solution steps and the answer of an expression.

    Args:
        expression: Such as ``"3+4*3"``.
        compute: The result of one step; the exact :func:`apply_operator` by default (the training
            script passes a fallible one, its teacher).

    Example:
        >>> solve_expression("3+4*3")
        (['3+4=7, so 7*3', '7*3=1. The answer is \\\\boxed{1}.'], '1')

    """
    value, operations = _parse_expression(expression)
    steps = []
    for index, (op, digit) in enumerate(operations):
        result = compute(value, op, digit)
        rest = operations[index + 1 :]
        if rest:
            steps.append(f"{value}{op}{digit}={result}, so {_expression(result, rest)}")
        else:
            steps.append(f"{value}{op}{digit}={result}. The answer is \\boxed{{{result}}}.")
        value = result
    return steps, str(value)


def draw_operation(rng: random.Random) -> tuple[str, int]:
    """Draw one operation: an operator, then a digit (a multiplier for ``*``)."""
    op = rng.choice(OPERATORS)
    return op, rng.choice(MULTIPLIERS) if op == "*" else rng.randrange(10)


def make_problem(rng: random.Random, difficulty: int) -> ArithProblem:
    """Draw one problem of the given difficulty from ``rng``."""
    _check_difficulty(difficulty)
    head = rng.randrange(10)
    operations = [draw_operation(rng) for _ in range(difficulty)]
    expression = _expression(head, operations)
    steps, answer = solve_expression(expression)
    return ArithProblem(
        problem=format_problem(expression),
        solution=STEP_DELIMITER.join(steps),
        answer=answer,
        difficulty=difficulty,
    )


def make_problems(count: int, difficulty: int | tuple[int, int], seed: int = 0) -> list[ArithProblem]:
    """Generate ``count`` problems, reproducibly.

    Args:
        count: How many problems.
        difficulty: Number of steps (1 to 12), or an inclusive ``(low, high)`` range to draw from.
        seed: Seed of the generator; the same arguments always give the same problems.

    Returns:
        The problems with their gold solutions and exact answers.

    Example:
        >>> make_problems(1, difficulty=1, seed=3)[0].problem
        'Keep only the last digit after each step. What is 9*3?'

    """
    if count < 0:
        raise ValueError(f"count={count} is negative; pass 0 or more.")
    low, high = (difficulty, difficulty) if isinstance(difficulty, int) else difficulty
    _check_difficulty(low)
    _check_difficulty(high)
    if low > high:
        raise ValueError(f"difficulty={difficulty!r} has low > high; pass (low, high) with low <= high.")
    rng = random.Random(seed)
    return [make_problem(rng, rng.randint(low, high)) for _ in range(count)]


def _check_difficulty(difficulty: int) -> None:
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(
            f"difficulty={difficulty} is out of range; pass a number of steps from "
            f"{MIN_DIFFICULTY} to {MAX_DIFFICULTY}."
        )


def parse_expression(problem: str) -> str:
    """Return the expression of an Arith problem text.

    Raises:
        ValueError: If ``problem`` is not an Arith problem.

    """
    match = _PROBLEM_RE.search(problem)
    if match is None:
        raise ValueError(f"problem={problem[:80]!r} is not an Arith problem ('What is <expression>?').")
    return match.group(1)


def check_steps(problem: str, steps: list[str]) -> list[bool]:
    """Label each step of a solution with whether the solution is still correct up to it.

    This is the exact checker. Labels are prefix labels, as in Math-Shepherd: once a step is wrong
    (a wrong result, a miscopied operand or rest of the expression, a missing or extra step, a bad
    format), that step and every later one are labelled ``False``.

    Args:
        problem: An Arith problem text.
        steps: The solution steps, without their delimiters.

    Returns:
        One label per step.

    Example:
        >>> check_steps("... What is 3+4*3?", ["3+4=7, so 7*3", "7*3=5. The answer is \\\\boxed{5}."])
        [True, False]

    """
    gold_steps, _ = solve_expression(parse_expression(problem))
    labels = []
    still_correct = True
    for index, step in enumerate(steps):
        still_correct = still_correct and index < len(gold_steps) and step.strip() == gold_steps[index]
        labels.append(still_correct)
    return labels


def solution_is_correct(problem: str, steps: list[str]) -> bool:
    """Whether a solution is right at every step and complete (the exact checker's process grade).

    Example:
        >>> solution_is_correct("... What is 3+4*3?", ["3+4=7, so 7*3", "7*3=1. The answer is \\\\boxed{1}."])
        True

    """
    gold_steps, _ = solve_expression(parse_expression(problem))
    return len(steps) == len(gold_steps) and all(check_steps(problem, steps))


def split_steps(solution: str) -> list[str]:
    """Split a solution into its non-empty steps (``"\\n\\n"`` delimited)."""
    from langchain_ttc.core.search import split_steps as split_on

    return split_on(solution, STEP_DELIMITER)


def step_is_well_formed(step: str) -> bool:
    """Whether a step has the Arith step format (right or wrong)."""
    return _STEP_RE.match(step.strip()) is not None
