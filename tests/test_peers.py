"""The its_hub side-by-side's pure helpers (benchmarks/peers.py, _its_hub.py): records, summaries, settings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(_BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(_BENCHMARKS))  # peers.py imports its sibling _report
    spec = importlib.util.spec_from_file_location(f"bench_{name}", _BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = _load("peers")
its_hub_runner = _load("_its_hub")


def test_a_smaller_problem_set_is_the_first_problems_of_each_difficulty() -> None:
    full, smoke = peers.problem_set(10), peers.problem_set(2)
    assert len(full) == 40 and len(smoke) == 8
    assert [p["difficulty"] for p in full].count(8) == 10
    by_id = {p["id"]: p for p in full}
    assert all(by_id[p["id"]] == p for p in smoke)
    assert len({p["problem"] for p in full}) == 40


@pytest.mark.parametrize("read", [peers.read_jsonl, its_hub_runner.read_records])
def test_records_survive_a_run_killed_mid_line(tmp_path: Path, read) -> None:
    path = tmp_path / "records.jsonl"
    assert read(path) == []
    path.write_text(json.dumps({"id": "d2-0"}) + "\n" + '{"id": "d2-')
    assert read(path) == [{"id": "d2-0"}]


def _record(run: str, id_: str, correct: bool, tokens: int, requests: int) -> dict:
    return {"run": run, "id": id_, "correct": correct, "completion_tokens": tokens, "http_requests": requests}


def test_summary_of_a_resumed_run_adds_its_segments_and_reads_only_its_own_records() -> None:
    run = "ours/majority@4"
    records = [
        _record(run, "a", True, 100, 1),
        {"run": run, "kind": "segment", "problems": 1, "seconds": 3.0},  # killed after one problem
        _record(run, "b", False, 300, 3),
        _record(run, "c", True, 200, 2),
        {"run": run, "kind": "segment", "problems": 2, "seconds": 9.0},
        _record("its_hub/majority@4", "a", False, 999, 9),
        _record(run, "elsewhere", True, 0, 0),  # not among the problems asked about
    ]
    summary = peers.summarise(records, run, {"a", "b", "c"})
    assert summary["problems"] == 3
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert (summary["low"], summary["high"]) == pytest.approx(peers.wilson(2, 3))
    assert summary["wall_per_problem"] == pytest.approx(12.0 / 3)
    assert summary["tokens"] == pytest.approx(200.0)
    assert summary["requests"] == pytest.approx(2.0)
    assert peers.summarise(records, "ours/beam_search@4", {"a"}) is None
    assert peers.done_ids(records, run) == {"a", "b", "c", "elsewhere"}


@pytest.mark.parametrize("n", [4, 16])
def test_both_sides_search_with_the_same_beams_steps_and_aggregation(n: int) -> None:
    def option(arguments: list[str], flag: str) -> str:
        return arguments[arguments.index(flag) + 1]

    strategy, ours = peers.our_options("beam_search", n)
    theirs = peers.its_options("beam_search", n)
    assert strategy == "beam_search"
    assert int(option(theirs, "--beam-width")) * ours["beam_width"] == n  # survivors x continuations
    assert int(option(theirs, "--max-steps")) + 1 == ours["max_iterations"]  # its_hub writes max_steps + 1
    _, particles = peers.our_options("particle_filtering", n)
    theirs = peers.its_options("particle_filtering", n)
    assert option(theirs, "--aggregation") == particles["aggregation"] == "prod"
    assert option(theirs, "--stop-token") == particles["stop_at"]
    assert float(option(theirs, "--temperature")) == particles["temperature"]
    assert option(theirs, "--algorithm") == "particle_filtering"
    assert option(peers.its_options("majority", n), "--algorithm") == "self_consistency"


def test_the_adaptive_reports_its_hub_rows_pair_by_problem_and_skip_segments(tmp_path: Path) -> None:
    adaptive = _load("adaptive")
    ours = [
        {"id": f"t-{band}-{k}", "band": band, "runs": {"adaptive_majority_vote": {
            "correct": k == 0, "samples": 8.0, "flops": 1.0, "policy_flops": 1.0, "verifier_flops": 0.0}}}
        for band in ("easy", "hard") for k in range(2)
    ]  # fmt: skip
    path = tmp_path / "its.jsonl"
    label = f"its_hub/beta_self_consistency@{adaptive.MAX_BUDGET}"
    rows = [{"run": label, "id": r["id"], "correct": True, "samples": 4} for r in ours]
    rows.append({"run": label, "kind": "segment", "problems": 4, "seconds": 1.0})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    section = adaptive.its_hub_section(ours, adaptive.read_its_hub(path))
    overall = next(line for line in section if line.startswith("| `beta_self_consistency` | 0.95 | all |"))
    # its_hub right on all four, ours on two: b = 2, c = 0; 4.0 samples against 8.0
    assert overall == "| `beta_self_consistency` | 0.95 | all | 4/4 (100.0%) | 50.0% | 4.0 | 8.0 | 2 | 0 | 0.5 |"
    assert not any("adaptive_self_consistency" in line for line in section)  # not run: no rows
    assert adaptive.its_hub_section(ours, [])[-1] == "Not run (`--its-hub`)."
