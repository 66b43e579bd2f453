"""Beam search and DVTS on the real shipped Arith checkpoints: batching, usage, CLI, and
interrupt/resume equality under a real SQLite checkpointer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from langchain_ttc import TTCResult, create_beam_search_graph, create_dvts_graph, make_problems

pytestmark = pytest.mark.integration

HARD = make_problems(1, 6, seed=31)[0]


@pytest.mark.parametrize("factory", [create_beam_search_graph, create_dvts_graph])
def test_one_policy_and_one_prm_call_per_iteration(
    factory: Any, arith_policy: Any, arith_prm: Any, count_calls: Any
) -> None:
    policy_calls, prm_calls = count_calls(arith_policy), count_calls(arith_prm)
    graph = factory(arith_policy, arith_prm, n=8, beam_width=2, seed=0, max_tokens=64)
    result = TTCResult.model_validate(graph.invoke({"problem": HARD.problem})["result"])
    iterations = result.metadata["iterations"]
    assert len(iterations) == policy_calls.calls == prm_calls.calls >= 1
    assert all(i["policy_calls"] == 1 and i["prm_calls"] == 1 for i in iterations)
    # Every frontier beam is in the one call of its iteration: 4 subtrees (DVTS) or 4 survivors.
    assert policy_calls.batches[0] == (1 if factory is create_beam_search_graph else 4)
    assert result.usage.completion_tokens == sum(i["completion_tokens"] for i in iterations) > 0
    assert result.usage.prm_tokens == sum(i["prm_tokens"] for i in iterations) > 0
    assert all(c.finished or c.finish_reason == "length" for c in result.candidates)
    if result.chosen_index is not None:
        assert result.candidates[result.chosen_index].finished


def _sqlite(path: Path) -> SqliteSaver:
    import sqlite3

    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


@pytest.mark.parametrize("factory", [create_beam_search_graph, create_dvts_graph])
def test_interrupted_search_resumes_to_the_same_result(
    factory: Any, arith_policy: Any, arith_prm: Any, tmp_path: Path
) -> None:
    options = {"n": 4, "beam_width": 2, "seed": 5, "max_tokens": 64}
    uninterrupted = factory(arith_policy, arith_prm, **options).invoke({"problem": HARD.problem})

    assert len(uninterrupted["result"]["metadata"]["iterations"]) > 2
    config = {"configurable": {"thread_id": "search-1"}}
    first = factory(arith_policy, arith_prm, checkpointer=_sqlite(tmp_path / "c.db"), **options)
    first.invoke({"problem": HARD.problem}, config, interrupt_after=["prune"])  # stop after iteration 1
    first.invoke(None, config, interrupt_after=["prune"])  # and after iteration 2
    paused = first.get_state(config)
    assert paused.next == ("generate",) and paused.values["iteration"] == 2
    # A new graph (as after a restart) on the same database resumes from the checkpoint.
    resumed = factory(arith_policy, arith_prm, checkpointer=_sqlite(tmp_path / "c.db"), **options)
    output = resumed.invoke(None, config)
    assert output["answer"] == uninterrupted["answer"]
    strip = lambda r: {**r, "usage": None, "metadata": None}  # noqa: E731  (wall times differ)
    assert strip(output["result"]) == strip(uninterrupted["result"])
    history = ("wall_time_s", "prm_cached_tokens")  # the PRM's cache holds the uninterrupted run's prefixes too
    counts = [{k: v for k, v in i.items() if k not in history} for i in output["result"]["metadata"]["iterations"]]
    expected = [
        {k: v for k, v in i.items() if k not in history} for i in uninterrupted["result"]["metadata"]["iterations"]
    ]
    assert counts == expected


def test_cli_beam_search_json_and_progress_line() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = ["solve", HARD.problem, "--strategy", "beam_search", "--n", "16", "--beam-width", "4", "--seed", "0"]
    run = subprocess.run(
        [sys.executable, "-m", "langchain_ttc.cli", *args, "--max-tokens", "64", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    iterations = result["metadata"]["iterations"]
    assert iterations and all(i["policy_calls"] == 1 and i["prm_calls"] == 1 for i in iterations)
    assert result["usage"]["policy_calls"] == len(iterations) == result["usage"]["prm_calls"]
    assert "iteration 1: " in run.stderr and "finished, best score" in run.stderr


def test_search_over_a_batch_of_problems_shares_engine_calls(arith_policy: Any, arith_prm: Any) -> None:
    from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM

    policy, prm = MicroBatchingPolicy(arith_policy, max_wait_s=0.05), MicroBatchingPRM(arith_prm, max_wait_s=0.05)
    graph = create_dvts_graph(policy, prm, n=4, beam_width=2, seed=0, max_tokens=64, max_iterations=3)
    problems = [p.problem for p in make_problems(4, 3, seed=41)]
    outputs = graph.batch([{"problem": p} for p in problems], {"max_concurrency": 4})
    per_problem_calls = sum(o["result"]["usage"]["policy_calls"] for o in outputs)
    assert all(o["result"]["candidates"] for o in outputs)
    # Iterations of different problems ran in the same backend calls.
    assert policy.batcher.backend_calls < per_problem_calls
    assert prm.batcher.backend_calls < sum(o["result"]["usage"]["prm_calls"] for o in outputs)
