"""A long search under a real SQLite checkpointer survives its process being killed mid-search:
resumed in a new process, it loses nothing and ends with the same result as an uninterrupted run.
``ttc calibrate`` killed mid-run resumes its records the same way (nothing lost or repeated)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from langchain_ttc import create_beam_search_graph, make_problems

pytestmark = pytest.mark.integration

PROBLEM = make_problems(1, 8, seed=61)[0].problem
OPTIONS: dict[str, Any] = {"n": 4, "beam_width": 2, "seed": 3, "max_tokens": 64}
CONFIG: dict[str, Any] = {"configurable": {"thread_id": "durable"}}
CHILD = """
import sqlite3, sys, time
from langgraph.checkpoint.sqlite import SqliteSaver
from langchain_ttc import create_beam_search_graph
from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.loading import load_policy, load_prm

class SlowPolicy(PolicyEngine):  # a slow model server: the parent kills the search meanwhile
    def _generate(self, requests):
        time.sleep(2)
        return load_policy("arith:small")._generate(requests)

saver = SqliteSaver(sqlite3.connect(sys.argv[1], check_same_thread=False))
graph = create_beam_search_graph(SlowPolicy(), load_prm("arith:prm"), checkpointer=saver, **{options})
for event in graph.stream({{"problem": sys.argv[2]}}, {config}, stream_mode="custom"):
    print(event["type"], event.get("iteration"), flush=True)
"""


def graph_on(db: Path, policy: Any, prm: Any) -> Any:
    return create_beam_search_graph(
        policy, prm, checkpointer=SqliteSaver(sqlite3.connect(str(db), check_same_thread=False)), **OPTIONS
    )


def test_killed_search_resumes_without_losing_work(arith_policy: Any, arith_prm: Any, tmp_path: Path) -> None:
    uninterrupted = create_beam_search_graph(arith_policy, arith_prm, **OPTIONS).invoke({"problem": PROBLEM})
    iterations = len(uninterrupted["result"]["metadata"]["iterations"])
    assert iterations > 2

    db = tmp_path / "search.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(options=OPTIONS, config=CONFIG), str(db), PROBLEM],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    observer = graph_on(db, arith_policy, arith_prm)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("ttc.iteration 1"):
                break
        deadline = time.time() + 60
        while observer.get_state(CONFIG).values.get("iteration", 0) < 2 and time.time() < deadline:
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)  # killed mid-search, after two checkpointed iterations
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    paused = observer.get_state(CONFIG)
    assert paused.next == ("generate",) and len(paused.values["iterations"]) == 2

    resumed = graph_on(db, arith_policy, arith_prm).invoke(None, CONFIG)  # a new process would do the same
    assert resumed["answer"] == uninterrupted["answer"]
    assert resumed["result"]["candidates"] == uninterrupted["result"]["candidates"]
    # Wall times differ, and so do the tokens the PRM found in its cache (this process's PRM has the
    # uninterrupted run's prefixes; the killed process's had its own).
    history = ("wall_time_s", "prm_cached_tokens")
    without_time = lambda rows: [{k: v for k, v in r.items() if k not in history} for r in rows]  # noqa: E731
    assert without_time(resumed["result"]["metadata"]["iterations"]) == without_time(
        uninterrupted["result"]["metadata"]["iterations"]
    )


def test_killed_calibration_resumes_with_nothing_lost_or_repeated(tmp_path: Path) -> None:
    """``ttc calibrate`` SIGKILLed mid-run, then run again: the records written before the kill are kept as
    they were, the rest are added once each, and the table is fitted on all of them."""
    import json

    output = tmp_path / "table.json"
    records = output.with_suffix(".records.jsonl")
    args = [sys.executable, "-m", "langchain_ttc.cli", "calibrate", "--count", "8", "--difficulty", "2-5"]
    args += ["--budgets", "4", "--pilots", "2", "--bins", "2", "--strategies", "majority_vote", "beam_search"]
    args += ["--beam-width", "2", "--max-tokens", "128", "--concurrency", "1", "--output", str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and (not records.exists() or len(records.read_text().splitlines()) < 3):
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    before = {r["id"]: r for r in map(json.loads, records.read_text().splitlines())}
    assert 3 <= len(before) < 8 and not output.exists()

    run = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    after = [json.loads(line) for line in records.read_text().splitlines()]
    ids = [r["id"] for r in after]
    assert ids == [f"arith-9000-{i}" for i in range(8)]  # every problem once, in the problems' order
    assert all(r == before[r["id"]] for r in after if r["id"] in before)  # kept as they were
    assert json.loads(output.read_text())["calibration"]["problems"] == 8
    assert f"[{len(before)}/8]" in run.stderr.replace("\r", "\n")  # the progress bar starts from the kept ones
