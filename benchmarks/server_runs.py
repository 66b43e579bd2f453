"""Many concurrent runs through a real LangGraph server: none lost, none duplicated.

Starts ``langgraph dev`` from the repository (the graphs of ``langgraph.json``, offline, on a free
loopback port), creates ``--runs`` threads and one background run on each at once with the async
``langgraph_sdk`` client (weighted best-of-N on Arith problems, ``n`` from the run's context), waits
for every run, and reads every thread back. The report counts runs completed (status ``success``
and the thread's state holds the answer), errored, lost (never finished by the deadline) and
duplicated (a thread with more than one run, or a run id seen twice), and gives problems per
minute and the wall time.

    nice python benchmarks/server_runs.py [--runs 100] [--n 4] [--jobs 10] [--timeout 1800]

Writes ``benchmarks/results/server_runs.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from _report import header, write

from langchain_ttc import make_problems
from langchain_ttc.core.answers import answers_equivalent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
GRAPH = "weighted_best_of_n"


def start_server(port: int, jobs: int) -> subprocess.Popen[bytes]:
    """``langgraph dev`` on loopback ``port``, in its own process group; returns once ``/ok`` answers."""
    langgraph = Path(sys.executable).parent / "langgraph"
    command = [str(langgraph), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n-jobs-per-worker", str(jobs)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ok", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            stop(process)
            raise RuntimeError(f"langgraph dev did not start (exit code {process.poll()})")
        time.sleep(1)


async def load(url: str, *, runs: int, n: int, timeout_s: float) -> dict[str, Any]:
    """Create ``runs`` threads and runs at once, wait for all, and read everything back."""
    from langgraph_sdk import get_client

    client = get_client(url=url, timeout=120)
    problems = make_problems(runs, (2, 6), seed=2015)
    started = time.perf_counter()
    threads = await asyncio.gather(*(client.threads.create() for _ in problems))
    created = await asyncio.gather(
        *(
            client.runs.create(t["thread_id"], GRAPH, input={"problem": p.problem}, context={"n": n})
            for t, p in zip(threads, problems, strict=True)
        )
    )
    submitted_s = time.perf_counter() - started

    async def wait(thread_id: str, run_id: str) -> dict[str, Any]:
        await client.runs.join(thread_id, run_id)
        return {"finished_s": time.perf_counter() - started}

    waits = [asyncio.ensure_future(wait(t["thread_id"], r["run_id"])) for t, r in zip(threads, created, strict=True)]
    done, pending = await asyncio.wait(waits, timeout=timeout_s)
    for task in pending:
        task.cancel()
    finished_at = [w.result()["finished_s"] for w in waits if w in done and not w.exception()]
    wall_s = max(finished_at, default=time.perf_counter() - started)

    rows = []
    for thread, run, problem in zip(threads, created, problems, strict=True):
        final = await client.runs.get(thread["thread_id"], run["run_id"])
        listed = await client.runs.list(thread["thread_id"], limit=100)
        values = (await client.threads.get_state(thread["thread_id"]))["values"] or {}
        answer = values.get("answer") if isinstance(values, dict) else None
        rows.append(
            {
                "status": final["status"],
                "runs_on_thread": len(listed),
                "run_ids": [r["run_id"] for r in listed],
                "answer": answer,
                "has_result": isinstance(values, dict) and "result" in values,
                "right": answer is not None and answers_equivalent(answer, problem.answer),
            }
        )
    return {"rows": rows, "wall_s": wall_s, "submitted_s": submitted_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="concurrent threads, one run each")
    parser.add_argument("--n", type=int, default=4, help="weighted best-of-N budget per run")
    parser.add_argument("--jobs", type=int, default=10, help="langgraph dev --n-jobs-per-worker")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for every run")
    args = parser.parse_args()
    if args.runs < 1 or args.n < 1 or args.jobs < 1 or args.timeout <= 0:
        parser.error(f"--runs {args.runs}, --n {args.n}, --jobs {args.jobs}, --timeout {args.timeout}: pass positives")

    port = free_port()
    boot = time.perf_counter()
    server = start_server(port, args.jobs)
    boot_s = time.perf_counter() - boot
    try:
        measured = asyncio.run(load(f"http://127.0.0.1:{port}", runs=args.runs, n=args.n, timeout_s=args.timeout))
    finally:
        stop(server)

    rows, wall_s = measured["rows"], measured["wall_s"]
    statuses = Counter(r["status"] for r in rows)
    completed = sum(r["status"] == "success" and r["has_result"] and r["answer"] is not None for r in rows)
    errored = statuses.get("error", 0) + statuses.get("timeout", 0) + statuses.get("interrupted", 0)
    lost = sum(r["status"] in ("pending", "running") for r in rows)
    success_without_result = sum(r["status"] == "success" and not (r["has_result"] and r["answer"]) for r in rows)
    all_ids = [i for r in rows for i in r["run_ids"]]
    duplicated = sum(r["runs_on_thread"] != 1 for r in rows) + (len(all_ids) - len(set(all_ids)))
    right = sum(r["right"] for r in rows)

    lines = header("Concurrent runs through a real LangGraph server", __file__)
    lines += [
        "",
        f"`langgraph dev` (in-memory runtime, `--n-jobs-per-worker {args.jobs}`) serves the repository's graphs;",
        f"{args.runs} threads and one background run on each (`{GRAPH}` on the shipped Arith checkpoints,",
        f"context `n={args.n}`, one Arith problem each, 2-6 operations) are created at once through the async",
        "`langgraph_sdk` client, then every run is joined and every thread's state read back.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| runs created | {len(rows)} |",
        f"| completed (status success, answer in the thread's state) | {completed} |",
        f"| errored | {errored} |",
        f"| lost (never finished within {args.timeout:.0f} s) | {lost} |",
        f"| success without a result in the thread | {success_without_result} |",
        f"| duplicated (threads with other than one run, plus repeated run ids) | {duplicated} |",
        f"| run statuses | {dict(sorted(statuses.items()))} |",
        f"| answers right | {right} / {len(rows)} |",
        f"| server start | {boot_s:.0f} s |",
        f"| all {len(rows)} runs submitted after | {measured['submitted_s']:.1f} s |",
        f"| wall time, first request to last run finished | {wall_s:.0f} s |",
        f"| problems per minute | {60 * completed / wall_s:.1f} |",
        "",
        "Runs execute in the server process next to the engines (transformers on the CPU), so throughput is",
        "the machine's; the point is that every run is accepted at once, queued, executed once and kept.",
    ]
    write("server_runs.md", lines)


if __name__ == "__main__":
    main()
