"""Records that survive a kill (``langchain_ttc.evaluation.records``): a torn last line dropped with a
warning naming the file and the line, resume by configuration, SIGINT keeping what is finished, and
calibration records appended as they finish and resumed. Scripted engines only: fast."""

from __future__ import annotations

import _thread
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from langchain_ttc.evaluation.calibrate import Calibration, calibration_records, read_calibration_records
from langchain_ttc.evaluation.datasets import EvalProblem
from langchain_ttc.evaluation.records import (
    RecordsFile,
    RecordsWarning,
    RunInterrupted,
    Stopped,
    read_jsonl,
    run_problems,
)
from langchain_ttc.strategies.routing.table import StrategyChoice
from tests.fakes import ScriptedPolicy, ScriptedPRM


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_torn_last_line_is_dropped_with_the_file_and_line_and_cut_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    records = RecordsFile(path, {"seed": 0})
    run_problems(lambda item, _stop: {"id": item}, ["a", "b"], records, total=3)
    with path.open("a") as file:
        file.write('{"id": "c", "predictions": {"majority_vote@1": "7"')  # killed mid-write
    with pytest.warns(RecordsWarning, match=rf"^{path}:4: dropped an incomplete last line"):
        assert [r["id"] for r in records.read()] == ["a", "b"]
    run_problems(lambda item, _stop: {"id": item}, ["c"], records, total=3, done=2)
    assert lines(path) == [{"config": {"seed": 0}}, {"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"config": {"seed": 0}}\n{"id": "a"}')
    records = RecordsFile(path, {"seed": 0})
    assert records.read() == [{"id": "a"}]
    run_problems(lambda item, _stop: {"id": item}, ["b"], records, total=2, done=1)
    assert [r.get("id") for r in lines(path)] == [None, "a", "b"]


def test_a_damaged_line_before_the_last_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text('{"config": {}}\n{"id": "a"\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=rf"^{path}:2 is not valid JSON \(Expecting ',' delimiter\); the file"):
        read_jsonl(path)


def test_another_configuration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    run_problems(lambda item, _stop: {"id": item}, ["a"], RecordsFile(path, {"seed": 0}), total=1)
    with pytest.raises(ValueError, match="holds results of another configuration"):
        RecordsFile(path, {"seed": 1}).read()
    stamped = tmp_path / "calibration.jsonl"
    run_problems(lambda item, _stop: {"id": item}, ["a"], calibration_records(stamped, {"seed": 0}), total=1)
    assert "run" in lines(stamped)[0] and len(lines(stamped)) == 1  # no header line: every line is a record
    with pytest.raises(ValueError, match=r"--records='.*' holds results of another configuration \(run "):
        calibration_records(stamped, {"seed": 1}).read()


def test_sigint_stops_the_run_keeps_what_is_finished_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    started: list[str] = []

    def work(item: str, stop: threading.Event) -> dict[str, Any]:
        started.append(item)
        if item == "c":  # the third problem: Ctrl-C while it runs; it stops at its next step
            _thread.interrupt_main()
            while not stop.wait(0.01):
                pass
            raise Stopped
        return {"id": item}

    with pytest.raises(RunInterrupted) as raised:
        run_problems(work, ["a", "b", "c", "d", "e"], RecordsFile(path, {}), total=7, done=2)
    assert str(raised.value) == f"4 of 7 problems done, results kept in {path}"
    assert [r.get("id") for r in lines(path)] == [None, "a", "b"] and started == ["a", "b", "c"]


def test_an_interrupted_run_waits_a_grace_period_at_most_for_a_long_step(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"

    def work(item: str, _stop: threading.Event) -> dict[str, Any]:
        if item == "b":  # one long model call that cannot be interrupted
            _thread.interrupt_main()
            time.sleep(3)
        return {"id": item}

    started = time.monotonic()
    with pytest.raises(RunInterrupted, match=r"^1 of 2 problems done"):
        run_problems(work, ["a", "b"], RecordsFile(path, {}), total=2, grace_s=0.3)
    assert time.monotonic() - started < 2.5
    time.sleep(3)  # "b" ends after the run was left: its record is not written (it runs again on resume)
    assert [r.get("id") for r in lines(path)] == [None, "a"]


def test_a_failure_keeps_the_finished_problems_and_says_how_to_resume(tmp_path: Path) -> None:
    def work(item: str, _stop: threading.Event) -> dict[str, Any]:
        if item == "b":
            raise RuntimeError("server down")
        return {"id": item}

    path = tmp_path / "r.jsonl"
    with pytest.raises(RuntimeError, match="server down") as raised:
        run_problems(work, ["a", "b", "c"], RecordsFile(path, {}), total=3)
    saved = len(lines(path)) - 1  # "c" may have started before "b" failed: then it finishes and is saved too
    assert saved in (1, 2) and f"{saved} of 3 problems are finished and saved" in raised.value.__notes__[0]


PROBLEMS = [EvalProblem(id=f"p{i}", problem=f"problem {i}", answer="4", level="1") for i in range(5)]


def calibration() -> Calibration:
    policy = ScriptedPolicy(["2+2=4. The answer is \\boxed{4}.", "2+2=5. The answer is \\boxed{5}."])
    prm = ScriptedPRM(lambda _problem, step: 0.9 if "4" in step else 0.2)
    candidates = [StrategyChoice(strategy="majority_vote"), StrategyChoice(strategy="weighted_best_of_n")]
    return Calibration(policy, prm, budgets=[4], candidates=candidates, pilots=2, max_tokens=64)


def test_calibration_appends_records_and_resumes_without_repeating(tmp_path: Path) -> None:
    path = tmp_path / "table.records.jsonl"
    first = calibration()
    records = calibration_records(path, first.settings())
    first.run(PROBLEMS[:3], progress=False, records=records)
    assert [r["id"] for r in lines(path)] == ["p0", "p1", "p2"]
    with path.open("a") as file:
        file.write('{"id": "p3", "level": "1", "diffi')  # killed mid-write
    again = calibration()
    ran: list[str] = []
    original = again.run_problem

    def counted(problem: EvalProblem, *, stop: threading.Event | None = None) -> dict[str, Any]:
        ran.append(problem.id)
        return original(problem, stop=stop)

    again.run_problem = counted  # type: ignore[method-assign]
    with pytest.warns(RecordsWarning, match=rf"{path}:4: dropped an incomplete last line"):
        result = again.run(PROBLEMS, progress=False, records=calibration_records(path, again.settings()))
    assert sorted(ran) == ["p3", "p4"]  # the three finished ones are not run again
    assert [r["id"] for r in result] == [p.id for p in PROBLEMS] == [r["id"] for r in lines(path)]
    assert read_calibration_records(path) == lines(path)


def test_calibration_stops_between_graph_steps(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        calibration().run_problem(PROBLEMS[0], stop=stop)


def test_from_records_drops_a_torn_line_and_skips_an_eval_header(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    record = {"id": "p0", "level": "1", "difficulty": {"agreement": 0.5}, "correct": {"4": {"majority_vote": True}}}
    path.write_text(json.dumps({"config": {}}) + "\n" + json.dumps(record) + "\n" + '{"id": "p1", "le')
    before = path.read_text()
    with pytest.warns(RecordsWarning, match=rf"{path}:3: dropped an incomplete last line"):
        assert read_calibration_records(path) == [record]
    assert path.read_text() == before  # an input file is read, never changed
