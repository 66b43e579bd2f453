"""The PRM's prefix cache on real step searches: the same results, fewer tokens computed, less time.

Beam search, DVTS and particle filtering at N = 16 on Arith problems of 1-9 steps (v3 small policy,
realistic PRM, the study's sampling settings), each run twice on the same problems with the same seeds:
the PRM without a prefix cache (``prefix_cache_mib=0``: every request a full pass, as before) and with it
(the default). The two run in alternating chunks, so machine load falls on both alike. Reports accuracy,
how many problems got the same answer, the PRM's tokens read and computed per problem, the verifier FLOPs
actually computed (2 x parameters x tokens computed) and seconds per problem, with the paired McNemar test
on correctness. Records go to ``benchmarks/results/prm_reuse.jsonl``; a rerun resumes from them.

    python benchmarks/prm_reuse.py [--problems 40] [--concurrency 8] [--threads 2]

Writes ``benchmarks/results/prm_reuse.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from _report import header, write
from _stats import compare

from langchain_ttc import create_strategy_graph, make_problems
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.answers import answers_equivalent
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM
from langchain_ttc.engines.transformers_policy import TransformersPolicy
from langchain_ttc.engines.transformers_prm import DEFAULT_PREFIX_CACHE_MIB, MathShepherdPRM
from langchain_ttc.evaluation.compute import checkpoint_parameters
from langchain_ttc.evaluation.records import read_jsonl
from langchain_ttc.strategies.context import TTCContext
from langchain_ttc.wiring import applicable

SEED = 26_100_001
N = 16
STRATEGIES = ("beam_search", "dvts", "particle_filtering")
OPTIONS = {"temperature": 0.8, "top_p": 1.0, "max_tokens": 256, "aggregation": "last", "beam_width": 4}
MODES = {"full passes": 0, "prefix cache": DEFAULT_PREFIX_CACHE_MIB}
CHUNK = 8
RECORDS = Path(__file__).parent / "results" / "prm_reuse.jsonl"


def _solve(graph: Any, strategy: str, todo: list[tuple[int, Any]], concurrency: int) -> list[dict[str, Any]]:
    """Each problem's graph output, ``concurrency`` at a time, seeded per problem as the study is."""

    def one(item: tuple[int, Any]) -> dict[str, Any]:
        seed = derive_seed(SEED, strategy, item[0])
        return graph.invoke({"problem": item[1].problem}, context=TTCContext(seed=seed))

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, todo))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (strategy, mode, problem) not yet in the records, in alternating chunks; all records."""
    torch.set_num_threads(args.threads)
    problems = make_problems(args.problems, (1, 9), seed=SEED)
    done = read_jsonl(RECORDS, repair=True)  # an interrupted run's torn last line is cut off
    seen = {(r["strategy"], r["mode"], r["id"]) for r in done}
    policy = MicroBatchingPolicy(TransformersPolicy.from_pretrained(arith_checkpoint("small"), batch_size=128))
    engines = {
        mode: MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), batch_size=64, prefix_cache_mib=mib)
        for mode, mib in MODES.items()
    }
    prms = {mode: MicroBatchingPRM(engine) for mode, engine in engines.items()}
    for strategy in STRATEGIES:
        for engine in engines.values():  # a strategy reuses only its own runs' prefixes
            if engine.prefix_cache is not None:
                engine.prefix_cache.clear()
        for start in range(0, len(problems), CHUNK):
            chunk = list(enumerate(problems))[start : start + CHUNK]
            for mode, prm in prms.items():
                todo = [(i, p) for i, p in chunk if (strategy, mode, i) not in seen]
                if not todo:
                    continue
                graph = create_strategy_graph(strategy, policy, prm, n=N, **applicable(strategy, OPTIONS))
                started = time.perf_counter()
                outputs = _solve(graph, strategy, todo, args.concurrency)
                seconds = (time.perf_counter() - started) / len(todo)
                with RECORDS.open("a") as f:
                    for (i, p), output in zip(todo, outputs, strict=True):
                        usage = output["result"]["usage"]
                        record = {
                            "strategy": strategy,
                            "mode": mode,
                            "id": i,
                            "answer": output["answer"],
                            "correct": output["answer"] is not None and answers_equivalent(output["answer"], p.answer),
                            "prm_tokens": usage["prm_tokens"],
                            "prm_cached_tokens": usage["prm_cached_tokens"],
                            "completion_tokens": usage["completion_tokens"],
                            "seconds": seconds,
                            "load": os.getloadavg()[0],
                        }
                        f.write(json.dumps(record) + "\n")
                        done.append(record)
            print(f"{strategy}: {min(start + CHUNK, len(problems))}/{len(problems)}", flush=True)
    return done


def report(records: list[dict[str, Any]], problems: int) -> list[str]:
    """The report's lines: one row per strategy and mode, then the paired tests."""
    parameters = checkpoint_parameters(str(arith_checkpoint("prm")))
    assert parameters is not None, "the shipped PRM has safetensors weights"
    lines = header("The PRM's prefix cache on step searches (N = 16)", __file__)
    lines += [
        f"- {problems} Arith problems of 1-9 steps (seed {SEED}), v3 small policy, realistic PRM "
        f"({parameters:,} parameters), {', '.join(f'{k}={v}' for k, v in OPTIONS.items())}",
        "- the same seeds in both modes; `full passes` is `prefix_cache_mib=0`, `prefix cache` the default "
        f"({DEFAULT_PREFIX_CACHE_MIB} MiB)",
        "- tokens read: the PRM's whole inputs (`usage.prm_tokens`, the study's verifier count); computed: read "
        "minus those taken from the cache (`usage.prm_cached_tokens`)",
        f"- the machine's 1-minute load average during the runs: {sum(r['load'] for r in records) / len(records):.1f} "
        f"on {os.cpu_count()} cores (other jobs share it: the seconds are noisy; the modes alternate in chunks of "
        f"{CHUNK} problems so the load falls on both alike)",
        "",
        "| strategy | mode | problems | accuracy | PRM tokens read / problem | computed / problem | "
        "verifier FLOPs computed / problem | s / problem |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by = {(r["strategy"], r["mode"], r["id"]): r for r in records}
    tests = []
    for strategy in STRATEGIES:
        ids = sorted({i for (s, m, i) in by if s == strategy and all((s, mode, i) in by for mode in MODES)})
        if not ids:
            continue
        for mode in MODES:
            rows = [by[strategy, mode, i] for i in ids]
            read = sum(r["prm_tokens"] for r in rows) / len(ids)
            computed = read - sum(r["prm_cached_tokens"] for r in rows) / len(ids)
            correct = sum(r["correct"] for r in rows)
            seconds = sum(r["seconds"] for r in rows) / len(ids)
            lines.append(
                f"| {strategy} | {mode} | {len(ids)} | {correct / len(ids):.1%} | {read:,.0f} | {computed:,.0f} | "
                f"{2 * parameters * computed:.3g} | {seconds:.2f} |"
            )
        full, fast = ({str(i): by[strategy, mode, i]["correct"] for i in ids} for mode in MODES)
        paired = compare(fast, full, "prefix cache", "full passes")
        same = sum(by[strategy, "full passes", i]["answer"] == by[strategy, "prefix cache", i]["answer"] for i in ids)
        ratio = sum(by[strategy, "full passes", i]["seconds"] for i in ids) / sum(
            by[strategy, "prefix cache", i]["seconds"] for i in ids
        )
        tests.append(
            f"| {strategy} | {len(ids)} | {same} | {paired.a_only} | {paired.b_only} | {paired.p:.3g} | {ratio:.2f}x |"
        )
    lines += [
        "",
        "Paired on the same problems (b: right only with the cache; c: right only without; exact McNemar p):",
        "",
        "| strategy | problems | same answer | b | c | p | speed-up (s / problem) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *tests,
        "",
        "Scores with the cache equal full passes up to floating-point rounding (`tests/test_prefix_cache.py`); a "
        "sampled search can still part where two beams' scores tie within that rounding. An Arith solution's steps "
        "have a length fixed by the problem, so the three searches (16 beams, one step per iteration) read the same "
        "tokens per problem; what they differ in is which beams survive.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads.")
    parser.add_argument("--report-only", action="store_true", help="Rebuild the report from the records.")
    args = parser.parse_args()
    records = read_jsonl(RECORDS) if args.report_only else run(args)
    print(write("prm_reuse.md", report(records, args.problems)))


if __name__ == "__main__":
    main()
