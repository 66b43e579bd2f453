"""``ttc solve`` end to end, as a user runs it (a subprocess, the shipped checkpoints, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

EASY = "Keep only the last digit after each step. What is 2+3?"


def ttc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "langchain_ttc.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_solve_json_prints_the_documented_fields() -> None:
    run = ttc("solve", EASY, "--strategy", "weighted_best_of_n", "--n", "4", "--seed", "0", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert {"answer", "solution", "candidates", "usage", "strategy"} <= set(result)
    assert len(result["candidates"]) == 4 and all("step_scores" in c for c in result["candidates"])
    assert result["usage"]["policy_calls"] == 1 and result["usage"]["prm_calls"] == 1


def test_solve_human_output_shows_answer_table_and_usage() -> None:
    run = ttc("solve", EASY, "--strategy", "majority_vote", "--n", "3", "--seed", "0")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("answer: ")
    assert "  #  answer      score   finish  tokens" in run.stdout
    assert "usage: 1 policy call(s)" in run.stdout and "0 PRM call(s)" in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("solve", "  "), "problem='  ' is empty"),
        (("solve", EASY, "--n", "0"), "argument --n: 0 must be at least 1"),
        (("solve", EASY, "--strategy", "beam"), "argument --strategy: invalid choice: 'beam'"),
        (("solve", EASY, "--aggregation", "median"), "argument --aggregation: invalid choice: 'median'"),
        (("solve", EASY, "--policy", "./no/such/model"), "--policy='./no/such/model' does not exist"),
        (("solve", EASY, "--prm", "/no/such/prm"), "--prm='/no/such/prm' does not exist"),
    ],
)
def test_bad_input_exits_with_a_clear_error(args: tuple[str, ...], message: str) -> None:
    run = ttc(*args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
