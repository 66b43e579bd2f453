"""Client cost: the library's own CPU time per HTTP request and per search iteration, against an instant server.

A scripted OpenAI-compatible server (no model) runs in a separate process on loopback and answers at
once, the way vLLM answers our client: ``/v1/models`` (the context window), ``/v1/completions`` for the
policy (token-id prompts, ``n`` choices with their ``token_ids``, stop strings kept and told apart from
end of sequence by ``stop_reason``) and for the generative PRM (a list of step prefixes, the label
tokens' log-probabilities). Steps are canned Arith-style text (the Arith tokenizer's ids); a step ends
the solution with probability ``P_END``.

The client is the real one: :class:`~langchain_ttc.engines.openai_policy.OpenAICompatiblePolicy` and
:meth:`~langchain_ttc.engines.vllm_prm.VLLMPRM.from_server`, the Arith tokenizer and chat template,
weighted best-of-N@16, beam search@16 (beam width 4) and particle filtering@16, through
``graph.abatch`` (async, one event loop) and ``graph.batch`` (threads), 1, 8 and 64 runs in flight.
The number that matters is the **client process's CPU time** (``time.process_time``: every thread of
the process, user and system), divided by the HTTP requests the server answered (both engines) and by
the search iterations the runs recorded. It does not depend much on other load on the machine; wall
time does, and is reported as measured on a shared machine.

``--profile`` adds a cProfile breakdown of the async path at 64 in flight (self time bucketed:
chat-template rendering, tokenizing, JSON, HTTP, retries, PRM request building, graph machinery).

    python benchmarks/client_cost.py [--label after] [--profile]

Writes ``benchmarks/results/client_cost.<label>.json`` and ``benchmarks/results/client_cost.md``
(every label measured so far, side by side).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

from _report import RESULTS, header, write

from langchain_ttc import create_strategy_graph, make_problems
from langchain_ttc.arith.checkpoints import arith_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import free_port, running_server

STRATEGIES = {
    "weighted best-of-N@16": ("weighted_best_of_n", {"n": 16}),
    "beam search@16": ("beam_search", {"n": 16, "beam_width": 4}),
    "particle filtering@16": ("particle_filtering", {"n": 16}),
}
IN_FLIGHT = (1, 8, 64)
PROBLEMS = {1: 2, 8: 8, 64: 64}  # problems run at each number in flight
P_END = 0.25  # a step ends the solution with this probability...
MAX_STEPS = 6  # ...and always once the solution has this many steps
STEPS = ("9+4=3, so 3+7-7\n\n", "3+7=0, so 0-7\n\n", "5*6=0, so 0+2\n\n", "2-8=4, so 4*4\n\n")
ENDING = "0-7=3. The answer is \\boxed{3}."


# ---- the scripted server (its own process) ----


def serve(port: int) -> None:
    """Run the instant scripted server on loopback ``port`` (a raw ASGI app under uvicorn)."""
    import orjson
    import uvicorn
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(arith_checkpoint("small"))

    def ids(text: str) -> list[int]:
        return [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]

    steps = [(text, ids(text)) for text in STEPS]
    ending = (ENDING, ids(ENDING))
    counts = {"policy": 0, "prm": 0, "choices": 0, "prompts": 0}
    rng = random.Random(0)

    delimiter = ids("\n\n")

    def steps_in(prompt: list[int]) -> int:
        """Steps the prompt's partial solution has: its delimiters' token pairs."""
        a, b = delimiter
        return sum(1 for x, y in itertools.pairwise(prompt) if x == a and y == b)

    def choice(index: int, stop: list[str] | None, written: int) -> dict[str, Any]:
        if not stop:  # a whole solution: two steps and the ending
            picked = [rng.choice(steps), rng.choice(steps), ending]
            text, token_ids, reason = "".join(t for t, _ in picked), [i for _, s in picked for i in s], None
        elif written + 1 >= MAX_STEPS or rng.random() < P_END:
            (text, token_ids), reason = ending, None
        else:
            (text, token_ids), reason = rng.choice(steps), stop[0]
        return {"index": index, "text": text, "token_ids": token_ids, "finish_reason": "stop", "stop_reason": reason}

    def complete(body: dict[str, Any]) -> dict[str, Any]:
        if "logprob_token_ids" in body:  # the PRM: one choice per step prefix, the labels' log-probabilities
            good, bad = body["logprob_token_ids"]
            prompts = body["prompt"]
            counts["prm"] += 1
            counts["prompts"] += len(prompts)
            choices = []
            for index, prompt in enumerate(prompts):
                p = 0.2 + 0.6 * ((len(prompt) * 7919) % 97) / 97
                top = {f"token_id:{good}": _log(p), f"token_id:{bad}": _log(1 - p)}
                choices.append({"index": index, "text": "", "logprobs": {"top_logprobs": [top]}})
            return {"choices": choices, "usage": {"prompt_tokens": sum(map(len, prompts)), "completion_tokens": 0}}
        n = int(body.get("n") or 1)
        counts["policy"] += 1
        counts["prompts"] += 1
        counts["choices"] += n
        written = steps_in(body["prompt"]) if isinstance(body["prompt"], list) else 0
        choices = [choice(i, body.get("stop"), written) for i in range(n)]
        tokens = sum(len(c["token_ids"]) for c in choices)
        return {"choices": choices, "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": tokens}}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/v1/completions":
            reply: Any = complete(orjson.loads(b"".join(chunks)))
        elif path == "/v1/models":
            reply = {"data": [{"id": name, "max_model_len": 4096} for name in ("small", "prm")]}
        elif path == "/stats":
            reply = dict(counts)
        elif path == "/reset":
            reply = dict(counts)
            counts.update(dict.fromkeys(counts, 0))
        else:  # /health
            reply = {}
        payload = orjson.dumps(reply)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _log(p: float) -> float:
    import math

    return math.log(p)


# ---- the client ----


def engines(url: str) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
    from langchain_ttc.engines.vllm_prm import VLLMPRM

    tokenizer = AutoTokenizer.from_pretrained(arith_checkpoint("small"))
    policy = OpenAICompatiblePolicy(url, model="small", tokenizer=tokenizer, max_concurrency=64)
    prm = VLLMPRM.from_server(url, model="prm", tokenizer=tokenizer, max_concurrency=64)
    return policy, prm


def server_counts(url: str, path: str = "/stats") -> dict[str, int]:
    import httpx

    return dict(httpx.get(url + path, timeout=30).json())


def iterations_of(outputs: list[dict[str, Any]]) -> int:
    """Search iterations the runs recorded (a sampling strategy's run is one iteration)."""
    return sum(max(1, len(o["result"].get("metadata", {}).get("iterations", []))) for o in outputs)


def measure(url: str, label: str, path: str, in_flight: int, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """One configuration: fresh engines and graph, the problems run, the client's CPU and wall time."""
    strategy, options = STRATEGIES[label]
    policy, prm = engines(url)
    graph = create_strategy_graph(strategy, policy, prm, max_tokens=256, **options)
    problems = make_problems(PROBLEMS[in_flight], (1, 8), seed=6_000_007)
    inputs = [{"problem": p.problem} for p in problems]
    config: Any = {"max_concurrency": in_flight}
    server_counts(url, "/reset")
    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    if path == "async":
        outputs = asyncio.run(graph.abatch(inputs, config))
    else:
        outputs = graph.batch(inputs, config)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counts = server_counts(url)
    requests = counts["policy"] + counts["prm"]
    iterations = iterations_of(outputs)
    return {
        "strategy": label,
        "path": path,
        "in_flight": in_flight,
        "problems": len(problems),
        "cpu_s": cpu,
        "wall_s": wall,
        "requests": requests,
        "policy_requests": counts["policy"],
        "prm_requests": counts["prm"],
        "samples": counts["choices"],
        "iterations": iterations,
        "cpu_ms_per_request": 1000 * cpu / max(1, requests),
        "cpu_ms_per_iteration": 1000 * cpu / max(1, iterations),
    }


BUCKETS = (  # (bucket, substrings of "file:function"), first match wins
    ("chat template rendering", ("jinja2", "chat_template", "copy.py", "render_prompt")),
    ("tokenizing", ("tokenizers.Tokenizer", "tokenization_utils", "tokenizers")),
    ("JSON", ("json", "orjson")),
    ("PRM request building", ("vllm_prm", "prm_formats", "core/search.py:split_steps")),
    ("retries (tenacity)", ("tenacity",)),
    (
        "HTTP (aiohttp or httpx, sockets, event loop)",
        (
            *("aiohttp", "multidict", "yarl", "propcache", "httpx", "httpcore", "h11", "anyio"),
            *("socket", "selectors", "asyncio", "ssl", "select", "_contextvars"),
        ),
    ),
    ("our engines (request/result objects)", ("openai_policy", "server_client", "vllm_policy", "engines/base.py")),
    ("graph machinery (langgraph, langchain-core, pydantic)", ("langgraph", "langchain_core", "pydantic")),
    ("strategies and core", ("langchain_ttc",)),
)


def breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """The profile's self time per bucket, in seconds."""
    stats = pstats.Stats(profile)
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, self_time, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{function}"
        bucket = next((name for name, keys in BUCKETS if any(k in where for k in keys)), "other")
        totals[bucket] = totals.get(bucket, 0.0) + self_time
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def report(labels: list[str]) -> list[str]:
    runs = {label: json.loads((RESULTS / f"client_cost.{label}.json").read_text()) for label in labels}
    lines = header("Client cost: the library's CPU time per request against an instant scripted server", __file__)
    lines += [
        "- an instant scripted OpenAI-compatible server (no model) in its own process on loopback answers the "
        "policy's `/v1/completions` (token ids, `n` choices with `token_ids`, stop reasons) and the generative "
        f"PRM's `/v1/completions` (label log-probabilities); canned Arith steps, a step ends the solution with "
        f"p = {P_END} (always at step {MAX_STEPS}); the Arith tokenizer and chat template; `max_tokens=256`",
        "- client CPU = `time.process_time()` of the client process (all its threads), per HTTP request the server "
        "answered (policy + PRM) and per search iteration; wall time was measured on a shared machine (2 cores "
        "busy with a training run and other jobs) and is only indicative",
        f"- problems per configuration: {', '.join(f'{PROBLEMS[k]} at {k} in flight' for k in IN_FLIGHT)}; "
        "async = `graph.abatch`, threads = `graph.batch`, both with `max_concurrency` = runs in flight",
        *(f"- {label}: the code at {run['code']}" for label, run in runs.items() if run.get("code")),
        "",
    ]
    first = labels[0]
    columns = " | ".join(f"CPU ms / request ({label})" for label in labels)
    lines += [
        f"| strategy | path | in flight | requests / problem ({first}) | "
        + " | ".join(f"requests / problem ({label})" for label in labels[1:])
        + (" | " if len(labels) > 1 else "")
        + f"{columns} | "
        + " | ".join(f"CPU ms / problem ({label})" for label in labels)
        + f" | CPU ms / iteration ({labels[-1]}) | wall s ({labels[-1]}, shared machine) |",
        "| --- | --- | ---: | ---: | " + "---: | " * (3 * len(labels) - 1) + "---: | ---: |",
    ]
    keyed = {label: {(r["strategy"], r["path"], r["in_flight"]): r for r in run["rows"]} for label, run in runs.items()}
    for key, last in keyed[labels[-1]].items():
        rows = [keyed[label].get(key) for label in labels]
        per_problem = " | ".join("–" if r is None else f"{r['requests'] / r['problems']:.1f}" for r in rows)
        cpu = " | ".join("–" if r is None else f"{r['cpu_ms_per_request']:.2f}" for r in rows)
        cpu_problem = " | ".join("–" if r is None else f"{1000 * r['cpu_s'] / r['problems']:.1f}" for r in rows)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {per_problem} | {cpu} | {cpu_problem} | "
            f"{last['cpu_ms_per_iteration']:.1f} "
            f"| {last['wall_s']:.1f} |"
        )
    for label, run in runs.items():
        if not run.get("profile"):
            continue
        lines += [
            "",
            f"## Where the client's time goes ({label}): cProfile, async path, 64 in flight",
            "",
            "Self time per bucket (cProfile with the event-loop thread's CPU clock), as a share of that thread's "
            "profiled CPU time; cProfile inflates Python call overhead, so read the shares, not the milliseconds.",
            "",
            "| strategy | " + " | ".join(name for name, _ in BUCKETS) + " | other | CPU ms / request under cProfile |",
            "| --- | " + "---: | " * (len(BUCKETS) + 2),
        ]
        for strategy, profiled in run["profile"].items():
            total = sum(profiled["buckets"].values())
            shares = [profiled["buckets"].get(name, 0.0) / total for name, _ in BUCKETS]
            shares.append(profiled["buckets"].get("other", 0.0) / total)
            lines.append(
                f"| {strategy} | " + " | ".join(f"{100 * s:.0f}%" for s in shares) + f" | {profiled['ms']:.2f} |"
            )
    return lines


def code_version() -> str:
    """The commit of the ``langchain_ttc`` this run imported (``PYTHONPATH`` may point at another checkout)."""
    import subprocess

    import langchain_ttc

    where = Path(langchain_ttc.__file__).resolve().parent
    git = ["git", "-C", str(where)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True)
    return (head.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="after", help="Name of this measurement (before, after, ...).")
    parser.add_argument("--profile", action="store_true", help="Add a cProfile breakdown (async, 64 in flight).")
    parser.add_argument(
        "--profile-only", action="store_true", help="Only the profile, added to the label's saved rows."
    )
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES), help="Strategy labels to run.")
    parser.add_argument("--report-only", nargs="*", metavar="LABEL", help="Rewrite the report from saved labels.")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.report_only:
        write("client_cost.md", report(args.report_only))
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    with running_server([sys.executable, __file__, "--serve", str(port)], f"{url}/health"):
        measure(url, "beam search@16", "async", 8)  # imports, compiled templates, warm connections
        for label in args.strategies:
            for path in () if args.profile_only else ("async", "threads"):
                for in_flight in IN_FLIGHT:
                    row = measure(url, label, path, in_flight)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            if args.profile or args.profile_only:
                profile = cProfile.Profile(time.thread_time)  # the event loop thread's CPU: no idle waits
                row = measure(url, label, "async", 64, profile)
                profiles[label] = {"ms": row["cpu_ms_per_request"], "buckets": breakdown(profile)}
                print(label, json.dumps(profiles[label]), flush=True)
    saved = RESULTS / f"client_cost.{args.label}.json"
    if args.profile_only and saved.exists():
        rows = json.loads(saved.read_text())["rows"]
    saved.write_text(json.dumps({"rows": rows, "profile": profiles, "code": code_version()}, indent=1) + "\n")
    labels = [label for label in ("before", "after") if (RESULTS / f"client_cost.{label}.json").exists()]
    write("client_cost.md", report(labels or [args.label]))


if __name__ == "__main__":
    main()
