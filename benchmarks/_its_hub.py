"""The its_hub side of ``benchmarks/peers.py``: one its_hub 1.2.0 algorithm on a JSONL of problems, one record each.

Runs in its own environment (its_hub is not a dependency of this package), started by ``peers.py`` as
``/work/its-venv/bin/python benchmarks/_its_hub.py ...``. That environment, on a fresh clone::

    python3 -m venv /work/its-venv
    /work/its-venv/bin/pip install "its-hub[lm]==1.2.0" "torch==2.13.0"
    /work/its-venv/bin/pip install -e . --no-deps
    /work/its-venv/bin/pip install "langchain-core==1.8.3" "langgraph==1.2.24" "pydantic-settings==2.16.3" \\
        "math-verify==0.9.0" "httpx==0.29.0" "tenacity==9.2.1" "tqdm==4.70.1" "transformers==5.19.0" \\
        "safetensors==0.8.0" "accelerate==1.16.0"

(the last line: what ``langchain_ttc`` and its in-process Arith PRM need, at this checkout's versions).

The policy is its_hub's own ``OpenAICompatibleLanguageModel`` against a vLLM server's
``/v1/chat/completions``; the PRM is this package's in-process Arith PRM (``MathShepherdPRM`` on
``arith:prm``, torch limited to one thread), behind its_hub's reward-model interfaces: a process reward
model (``ascore(prompt, responses)``: one aggregated score per response) for ``BeamSearch`` and
``ParticleFiltering``, an outcome reward model (``ascore(conversations)``) for ``BestOfN``. A response
is split into steps at the step delimiter, as this package's strategies split theirs.

Every HTTP request its_hub sends goes through aiohttp's ``ClientSession._request``; a wrapper counts
them per problem (a context variable set around each problem's ``ainfer``) and reads the generated
tokens from each reply's ``usage`` (its_hub's step generation keeps no usage of its own). A request
cancelled before its reply (``BetaSelfConsistency`` cancels the rest once it stops) counts as sent,
with no tokens. ``--in-flight`` problems run at once on one event loop.

Each record: ``id``, ``difficulty``, ``gold``, ``answer`` (the chosen response's ``\\boxed{}``),
``correct`` (this package's checker), ``completion_tokens``, ``prompt_tokens``, ``http_requests``,
``samples`` (responses the algorithm kept: for the adaptive ones, how many it drew before stopping),
``wall_s`` (that problem's own wall time), and the run's settings. A rerun skips the ids already in
``--out`` (resumable).

    /work/its-venv/bin/python benchmarks/_its_hub.py --url http://127.0.0.1:8000/v1 --model small \\
        --problems problems.jsonl --algorithm particle_filtering --n 16 --out out.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ALGORITHMS = (
    "self_consistency",
    "best_of_n",
    "beam_search",
    "particle_filtering",
    "beta_self_consistency",
    "adaptive_self_consistency",
)
_COUNTS: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("its_hub_counts", default=None)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records already written to ``path`` (none if it does not exist); a torn last line is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a run killed mid-write: that problem runs again
    return records


def count_http_requests() -> None:
    """Count every aiohttp request (and the tokens its reply reports) in the running problem's counters."""
    import aiohttp

    original = aiohttp.ClientSession._request

    async def counted(self: Any, method: str, url: Any, **kwargs: Any) -> Any:
        counts = _COUNTS.get()
        if counts is not None:
            counts["http_requests"] += 1
        response = await original(self, method, url, **kwargs)
        if counts is not None:
            try:
                usage = json.loads(await response.read()).get("usage") or {}
            except (ValueError, AttributeError):
                usage = {}
            counts["completion_tokens"] += int(usage.get("completion_tokens") or 0)
            counts["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
        return response  # the body stays cached: its_hub's own response.json() reads it again

    aiohttp.ClientSession._request = counted  # type: ignore[method-assign]


class ArithPRMAdapter:
    """The package's in-process Arith PRM behind its_hub's process and outcome reward-model interfaces.

    ``ascore(prompt, responses)`` (process: BeamSearch, ParticleFiltering) and ``ascore(conversations)``
    (outcome: BestOfN) both return one score per response: its steps (split at ``step_delimiter``)
    scored in one batched call, aggregated with ``aggregation``. A response with no step scores 0.
    """

    def __init__(self, *, aggregation: str, step_delimiter: str) -> None:
        import torch

        torch.set_num_threads(1)
        from langchain_ttc.arith.checkpoints import arith_checkpoint
        from langchain_ttc.engines.transformers_prm import MathShepherdPRM

        self.prm = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"))
        self.aggregation, self.step_delimiter = aggregation, step_delimiter

    def _scores(self, pairs: list[tuple[str, str]]) -> list[float]:
        from langchain_ttc.core.aggregation import aggregate
        from langchain_ttc.core.search import split_steps

        requests = [{"problem": problem, "steps": split_steps(text, self.step_delimiter)} for problem, text in pairs]
        scored = self.prm.invoke(requests)
        return [aggregate(s.scores, self.aggregation) if s.scores else 0.0 for s in scored]

    async def ascore(self, prompt_or_conversations: Any, responses: Any = None, **_: Any) -> Any:
        if responses is None:  # outcome reward model: conversations ending in the candidate answer
            pairs = [(_text(c[0]), _text(c[-1])) for c in prompt_or_conversations]
            return await asyncio.to_thread(self._scores, pairs)
        single = isinstance(responses, str)
        given = prompt_or_conversations
        problem = given if isinstance(given, str) else _text(given[0])
        pairs = [(problem, r) for r in ([responses] if single else responses)]
        scores = await asyncio.to_thread(self._scores, pairs)
        return scores[0] if single else scores

    def score(self, prompt_or_conversations: Any, responses: Any = None, **_: Any) -> Any:
        return asyncio.run(self.ascore(prompt_or_conversations, responses))


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else message.content
    return content or ""


def build(args: argparse.Namespace) -> tuple[Any, Any]:
    """The language model and the algorithm, as the arguments ask."""
    from its_hub import (
        AdaptiveSelfConsistency,
        BestOfN,
        BetaSelfConsistency,
        LMOrchestrator,
        OpenAICompatibleLanguageModel,
        SelfConsistency,
        StepGeneration,
    )
    from its_hub.core.algorithms.beam_search import BeamSearch
    from its_hub.core.algorithms.particle_gibbs import ParticleFiltering

    from langchain_ttc.core.answers import extract_boxed

    def project(text: str) -> str:
        return extract_boxed(text) or text.strip()

    lm = OpenAICompatibleLanguageModel(
        endpoint=args.url, api_key="none", model_name=args.model, max_completion_tokens=args.max_tokens,
        temperature=args.temperature, max_concurrency=args.max_concurrency,
    )  # fmt: skip
    kind = args.algorithm
    # its_hub 1.2.0's orchestrator limit is a threading.Semaphore acquired in an executor thread; a task
    # cancelled while it waits (BetaSelfConsistency cancels its remaining requests once it stops) still
    # takes the slot and never gives it back, so a shared limit leaks until every run waits forever (seen
    # here: no progress after 7 problems). The algorithms that cancel get no orchestrator limit; the
    # language model's own limit (an asyncio.Semaphore per call, released on cancel) still bounds each
    # problem's requests to --max-concurrency.
    cancels = kind in ("beta_self_consistency", "adaptive_self_consistency")
    orchestrator = LMOrchestrator(max_concurrency=-1 if cancels else args.max_concurrency)
    if kind in ("self_consistency", "beta_self_consistency", "adaptive_self_consistency"):
        options: dict[str, Any] = {"consistency_space_projection_func": project, "orchestrator": orchestrator}
        if kind == "beta_self_consistency":
            return lm, BetaSelfConsistency(confidence_threshold=args.threshold or 0.95, **options)
        if kind == "adaptive_self_consistency":
            return lm, AdaptiveSelfConsistency(threshold=args.threshold or 0.75, **options)
        return lm, SelfConsistency(**options)
    adapter = ArithPRMAdapter(aggregation=args.aggregation, step_delimiter=args.step_delimiter)
    if kind == "best_of_n":
        return lm, BestOfN(adapter, orchestrator=orchestrator)  # type: ignore[arg-type]
    sg = StepGeneration(
        max_steps=args.max_steps, step_token=args.step_delimiter, stop_token=args.stop_token,
        temperature=args.temperature, include_stop_str_in_output=True,
    )  # fmt: skip
    if kind == "beam_search":
        return lm, BeamSearch(sg, adapter, beam_width=args.beam_width)  # type: ignore[arg-type]
    return lm, ParticleFiltering(sg, adapter, final_response_selection="argmax")  # type: ignore[arg-type]


async def run_all(args: argparse.Namespace, problems: list[dict[str, Any]]) -> None:
    """Run every problem not yet in ``args.out``, ``args.in_flight`` at once, appending one record each."""
    try:
        from langchain_ttc.core.answers import answers_equivalent, extract_boxed
    except ImportError:  # without this package: raw answers only
        answers_equivalent, extract_boxed = None, None  # type: ignore[assignment]
    done = {r["id"] for r in read_records(args.out)}
    todo = [p for p in problems if p["id"] not in done]
    count_http_requests()
    # its orchestrator's limit and the PRM calls wait in the default executor: give it room for every problem
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=4 * args.in_flight + 8))
    lm, algorithm = build(args)
    limit = asyncio.Semaphore(args.in_flight)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    async def one(problem: dict[str, Any]) -> None:
        async with limit:
            counts = {"http_requests": 0, "completion_tokens": 0, "prompt_tokens": 0}
            _COUNTS.set(counts)
            started = time.perf_counter()
            result = await algorithm.ainfer(lm, problem["problem"], args.n, return_response_only=False)
            wall_s = time.perf_counter() - started
            text = _text(result.the_one)
            answer = extract_boxed(text) if extract_boxed else text
            record = {
                "id": problem["id"],
                "difficulty": problem.get("difficulty"),
                "gold": problem["answer"],
                "answer": answer,
                "correct": bool(answer is not None and answers_equivalent(answer, problem["answer"]))
                if answers_equivalent
                else None,
                **counts,
                "samples": len(getattr(result, "responses", []) or []),
                "wall_s": round(wall_s, 3),
                "side": "its_hub",
                "algorithm": args.algorithm,
                "n": args.n,
            }
            with args.out.open("a") as out:
                out.write(json.dumps(record) + "\n")

    started = time.perf_counter()
    await asyncio.gather(*(asyncio.create_task(one(p)) for p in todo))
    if hasattr(lm, "close"):
        await lm.close()
    print(json.dumps({"problems": len(todo), "seconds": round(time.perf_counter() - started, 3)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server's OpenAI-compatible base URL, ending in /v1")
    parser.add_argument("--model", required=True, help="the served model name")
    parser.add_argument("--problems", type=Path, required=True, help="JSONL: id, problem, answer, difficulty")
    parser.add_argument("--algorithm", choices=ALGORITHMS, required=True)
    parser.add_argument("--n", type=int, required=True, help="the budget")
    parser.add_argument("--out", type=Path, required=True, help="JSONL of records (appended; resumable)")
    parser.add_argument("--beam-width", type=int, default=4, help="BeamSearch: beams kept per level")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=512, help="max_completion_tokens per request")
    parser.add_argument("--step-delimiter", default="\n\n")
    parser.add_argument("--stop-token", default="\\boxed", help="a step containing it ends a path")
    parser.add_argument("--max-steps", type=int, default=15, help="StepGeneration's max_steps")
    parser.add_argument("--aggregation", default="last", choices=("last", "min", "prod", "mean"))
    parser.add_argument(
        "--threshold", type=float, help="the adaptive algorithms' stopping threshold (default: its_hub's, 0.95 / 0.75)"
    )
    parser.add_argument("--in-flight", type=int, default=8, help="problems at once")
    parser.add_argument("--max-concurrency", type=int, default=64, help="requests at once (its orchestrator)")
    args = parser.parse_args()
    if args.n < 1 or args.in_flight < 1:
        parser.error(f"--n {args.n} --in-flight {args.in_flight}: pass positive numbers")
    problems = read_records(args.problems)
    if not problems:
        parser.error(f"--problems {args.problems}: no problems read; pass a JSONL with id, problem and answer")
    asyncio.run(run_all(args, problems))


if __name__ == "__main__":
    main()
