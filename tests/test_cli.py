"""``ttc`` end to end, as a user runs it (a subprocess, the shipped checkpoints, offline): ``ttc solve``'s
output and errors, and Ctrl-C (SIGINT) stopping ``ttc solve``, ``ttc eval`` and ``ttc calibrate``
within seconds with one line, exit code 130 and no traceback, keeping what is finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EASY = "Keep only the last digit after each step. What is 2+3?"


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def ttc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "langchain_ttc.cli", *args], capture_output=True, text=True, env=ENV, timeout=300
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
        (("solve", EASY, "--n", "0"), "ttc solve: error: argument --n: 0 must be at least 1 (see 'ttc solve --help')"),
        (("solve", EASY, "--n", "100000"), "n=100000 is over the limit of 1024; pass a smaller n, or raise the limit"),
        (("solve", EASY, "--strategy", "beam"), "argument --strategy: invalid choice: 'beam'"),
        (("solve", EASY, "--aggregation", "median"), "argument --aggregation: invalid choice: 'median'"),
        (("solve", EASY, "--policy", "./no/such/model"), "--policy='./no/such/model' does not exist"),
        (("solve", EASY, "--prm", "/no/such/prm"), "--prm='/no/such/prm' does not exist"),
    ],
)
def test_bad_input_exits_with_a_clear_error(args: tuple[str, ...], message: str) -> None:
    run = ttc(*args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Loading weights" not in run.stderr  # one line, no model


SLOW_TTC = """
import sys, time
from langchain_ttc.cli import main
from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.loading import load_policy
from langchain_ttc.engines.settings import EngineSettings

class SlowPolicy(PolicyEngine):  # a slow model server: every call takes 6 s more
    def _generate(self, requests):
        time.sleep(6)
        return load_policy("arith:small")._generate(requests)

EngineSettings.load_policy = lambda self: SlowPolicy()
sys.exit(main())  # as the ttc program does: the arguments from sys.argv
"""


def interrupted(
    tmp_path: Path, args: list[str], ready: Callable[[str], bool], *, signals: int = 1, slow: bool = False
) -> tuple[int, str, float]:
    """Run ``ttc args``; once ``ready(stderr)``, send SIGINT ``signals`` times (1 s apart); the exit code,
    stderr, and the seconds from the first SIGINT to the exit. ``slow``: every policy call takes 6 s more
    (and the first SIGINT comes 1 s after ``ready``, in the middle of the next call)."""
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-c", SLOW_TTC] if slow else [sys.executable, "-m", "langchain_ttc.cli"]
    with log.open("w") as err:
        child = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        try:
            deadline = time.time() + 300
            while not ready(log.read_text()) and time.time() < deadline and child.poll() is None:
                time.sleep(0.1)
            if slow:
                time.sleep(1)
            assert child.poll() is None, f"finished before the interrupt: {log.read_text()[-2000:]}"
            sent = time.time()
            for index in range(signals):
                if index:
                    time.sleep(1)  # the first is handled by then; the problems in flight are still in a slow call
                child.send_signal(signal.SIGINT)
            code = child.wait(timeout=60)
            return code, log.read_text(), time.time() - sent
        finally:
            if child.poll() is None:
                child.kill()


def last_line(stderr: str) -> str:
    return stderr.replace("\r", "\n").strip().splitlines()[-1]


def records_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigint_stops_a_search(tmp_path: Path) -> None:
    hard = "Keep only the last digit after each step. What is 8*3-2+4+3*7-6+5*5-3?"
    args = ["solve", hard, "--strategy", "beam_search", "--n", "256", "--beam-width", "4", "--seed", "0"]
    code, stderr, seconds = interrupted(tmp_path, args, lambda err: "iteration 1:" in err)
    assert code == 130 and seconds < 10, stderr  # at once: no waiting for the model call in progress
    assert last_line(stderr) == "ttc solve: interrupted before an answer (nothing to keep)"
    assert "Traceback" not in stderr


def test_sigint_stops_eval_keeping_the_finished_problems(tmp_path: Path) -> None:
    output = tmp_path / "eval.jsonl"
    args = ["eval", "--dataset", "arith", "--strategy", "majority_vote", "--n-max", "2", "--limit", "40"]
    args += ["--concurrency", "2", "--max-tokens", "200", "--output", str(output)]
    code, stderr, seconds = interrupted(tmp_path, args, lambda _: records_in(output) >= 1 + 3)
    assert code == 130 and seconds < 30 and "Traceback" not in stderr, stderr
    done = records_in(output) - 1
    assert 3 <= done < 40
    assert last_line(stderr) == (
        f"ttc eval: interrupted: {done} of 40 problems done, results kept in {output}; run the same command again "
        "to resume"
    )
    assert all(json.loads(line) for line in output.read_text().splitlines())  # every line whole


def test_sigint_stops_calibrate_keeping_the_finished_problems(tmp_path: Path) -> None:
    output = tmp_path / "table.json"
    records = output.with_suffix(".records.jsonl")
    args = ["calibrate", "--count", "30", "--difficulty", "2-5", "--budgets", "4", "--pilots", "2"]
    args += ["--strategies", "majority_vote", "beam_search", "--beam-width", "2", "--max-tokens", "128"]
    code, stderr, seconds = interrupted(tmp_path, [*args, "--output", str(output)], lambda _: records_in(records) >= 2)
    assert code == 130 and seconds < 30 and "Traceback" not in stderr, stderr
    done = records_in(records)
    assert last_line(stderr) == (
        f"ttc calibrate: interrupted: {done} of 30 problems done, results kept in {records}; run the same command "
        "again to resume"
    )
    assert not output.exists()  # no table from a part of the problems


def test_a_second_sigint_exits_at_once(tmp_path: Path) -> None:
    output = tmp_path / "eval.jsonl"
    args = ["eval", "--dataset", "arith", "--strategy", "majority_vote", "--n-max", "2", "--limit", "40"]
    args += ["--concurrency", "2", "--max-tokens", "200", "--output", str(output)]
    code, stderr, seconds = interrupted(tmp_path, args, lambda _: records_in(output) >= 2, signals=2, slow=True)
    assert code == 130 and seconds < 2.5 and "Traceback" not in stderr, stderr
    assert last_line(stderr) == f"ttc eval: interrupted again: exiting now; every finished problem is kept in {output}"
    assert all(json.loads(line) for line in output.read_text().splitlines())


def test_a_stop_waits_a_few_seconds_at_most_for_problems_in_a_slow_model_call(tmp_path: Path) -> None:
    output = tmp_path / "eval.jsonl"
    args = ["eval", "--dataset", "arith", "--strategy", "majority_vote", "--n-max", "2", "--limit", "40"]
    args += ["--concurrency", "2", "--max-tokens", "200", "--output", str(output)]
    code, stderr, seconds = interrupted(tmp_path, args, lambda _: records_in(output) >= 2, slow=True)
    assert code == 130 and 3 < seconds < 10 and "Traceback" not in stderr, stderr  # the 5 s grace, not the call
    done = records_in(output) - 1
    assert last_line(stderr).startswith(f"ttc eval: interrupted: {done} of 40 problems done, results kept in ")
