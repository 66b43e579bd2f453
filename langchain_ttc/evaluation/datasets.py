"""Evaluation datasets: the Arith generator, a JSONL file (MATH-500, GSM8K), or a hub dataset id.

In: a dataset spec and options. Out: :class:`EvalProblem` objects (id, problem, gold answer, level).
Every check runs before any model loads: an unknown name, a missing file, or a row without the
fields its format needs raises a ``ValueError`` naming the file, the line and the fix.

Formats recognised from a row's fields:

- MATH / MATH-500: ``problem``, ``answer`` (LaTeX), ``level``, ``unique_id``;
- GSM8K: ``question``, ``answer`` (reasoning ending in ``#### <number>``);
- generic: ``problem`` and ``answer``.

Example:
    >>> [p.answer for p in load_problems("arith", limit=2, difficulty=(1, 1), seed=0)]
    ['0', '9']

"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from langchain_ttc.arith.problems import make_problems, parse_expression, solution_is_correct

_GSM8K_ANSWER = re.compile(r"####\s*(.+)\s*$")


@dataclass(frozen=True)
class EvalProblem:
    """One evaluation problem."""

    id: str
    problem: str
    answer: str
    level: str


def process_grade(problem: str, steps: list[str]) -> bool | None:
    """Whether every step of a solution is right, where an exact step checker exists (Arith); else ``None``.

    Example:
        >>> process_grade("How much is 1+1?", ["1+1=2"]) is None
        True

    """
    try:
        parse_expression(problem)
    except ValueError:
        return None
    return solution_is_correct(problem, steps)


def gsm8k_answer(text: str) -> str:
    """The number after ``####`` in a GSM8K answer, without thousands separators.

    Example:
        >>> gsm8k_answer("She has 3 + 4 = 7 apples.\\n#### 1,007")
        '1007'

    """
    match = _GSM8K_ANSWER.search(text.strip())
    if match is None:
        raise ValueError(f"answer={text[-60:]!r} has no '#### <number>' line (GSM8K format).")
    return match.group(1).replace(",", "").strip()


def _row_problem(row: dict[str, object], where: str, index: int) -> EvalProblem:
    if "question" in row and "answer" in row:
        return EvalProblem(
            id=str(row.get("id", index)),
            problem=str(row["question"]),
            answer=gsm8k_answer(str(row["answer"])),
            level="all",
        )
    if "problem" in row and "answer" in row:
        return EvalProblem(
            id=str(row.get("unique_id", row.get("id", index))),
            problem=str(row["problem"]),
            answer=str(row["answer"]),
            level=str(row.get("level", row.get("difficulty", "all"))),
        )
    raise ValueError(
        f"{where} has fields {sorted(row)}; each row needs 'problem' and 'answer' (MATH), or 'question' and "
        "'answer' with '#### <number>' (GSM8K)."
    )


def load_jsonl(path: Path, *, limit: int | None = None) -> list[EvalProblem]:
    """Read a JSONL dataset (every row is checked, not just the first ``limit``)."""
    problems = []
    with path.open() as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not valid JSON ({error.msg}).") from None
            problems.append(_row_problem(row, f"{path}:{number}", number - 1))
    return problems[:limit]


def load_problems(
    dataset: str, *, limit: int | None = None, difficulty: tuple[int, int] = (1, 8), seed: int = 0, count: int = 100
) -> list[EvalProblem]:
    """Load an evaluation dataset.

    Args:
        dataset: ``"arith"``, a ``.jsonl`` path, or a Hugging Face dataset id (``name`` or
            ``name:split``; needs the ``datasets`` package and a network).
        limit: Keep the first ``limit`` problems.
        difficulty: Arith only: the range of steps.
        seed: Arith only: the generator's seed.
        count: Arith only: how many problems when no ``limit`` is given.

    Raises:
        ValueError: If the dataset is unknown or malformed.

    """
    if dataset == "arith":
        problems = make_problems(limit if limit is not None else count, difficulty, seed=seed)
        return [
            EvalProblem(id=f"arith-{seed}-{i}", problem=p.problem, answer=p.answer, level=str(p.difficulty))
            for i, p in enumerate(problems)
        ]
    path = Path(dataset)
    if dataset.endswith(".jsonl") or path.exists():
        if not path.is_file():
            raise ValueError(f"--dataset={dataset!r} does not exist; pass 'arith', a .jsonl file, or a hub dataset id.")
        return load_jsonl(path, limit=limit)
    if dataset.count("/") == 1 and " " not in dataset:
        return _load_hub(dataset, limit=limit)
    raise ValueError(
        f"--dataset={dataset!r} is not known; pass 'arith', a .jsonl file, or a hub dataset id (org/name)."
    )


def _load_hub(dataset: str, *, limit: int | None) -> list[EvalProblem]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise ValueError(
            f"--dataset={dataset!r} is a Hugging Face hub id, which needs the 'datasets' package (no extra of "
            "langchain-ttc installs it): pip install datasets; or pass the set as a .jsonl file (MATH-500 is the "
            "file prm800k/math_splits/test.jsonl of github.com/openai/prm800k)."
        ) from None
    name, _, split = dataset.partition(":")
    rows = load_dataset(name, split=split or "test")
    return [_row_problem(dict(row), f"{dataset}[{i}]", i) for i, row in enumerate(rows)][:limit]
