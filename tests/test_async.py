"""The async path: graph nodes await engines on the event loop, and give what the sync path gives.

Unit tests with scripted engines whose async methods record the thread they run on (the async
engines against real vLLM servers are tested in ``test_vllm.py``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from langchain_ttc import create_strategy_graph
from langchain_ttc.core.types import GenerationRequest, GenerationResult, ScoreRequest, StepScores
from langchain_ttc.strategies.registry import STRATEGIES
from tests.fakes import ScriptedPolicy, ScriptedPRM

PROBLEM = "Keep only the last digit after each step. What is 2+3*3?"
TEXTS = [
    "2+3=5, so 5*3\n\n5*3=5. The answer is \\boxed{5}.",
    "2+3=5, so 5*3\n\n5*3=1. The answer is \\boxed{1}.",
    "2+3=6, so 6*3\n\n6*3=8. The answer is \\boxed{8}.",
]


class AsyncPolicy(ScriptedPolicy):
    """A scripted policy with a native async path; every call records its thread."""

    def __init__(self) -> None:
        super().__init__(TEXTS)
        self.threads: list[tuple[str, int]] = []

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.threads.append(("sync", threading.get_ident()))
        return super()._generate(requests)

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.threads.append(("async", threading.get_ident()))
        return super()._generate(requests)


class AsyncPRM(ScriptedPRM):
    def __init__(self) -> None:
        super().__init__(lambda problem, step: 0.9 if "=5" in step else 0.2)
        self.threads: list[tuple[str, int]] = []

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        self.threads.append(("sync", threading.get_ident()))
        return super()._score(requests)

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        self.threads.append(("async", threading.get_ident()))
        return super()._score(requests)


def options(strategy: str) -> dict[str, Any]:
    if strategy == "compute_optimal":
        return {"n": 16}
    if strategy in ("beam_search", "dvts"):
        return {"n": 4, "beam_width": 2, "max_iterations": 3}
    return {"n": 4}


def without_timing(data: Any) -> Any:
    """``data`` without its wall times (everything else must match)."""
    if isinstance(data, dict):
        return {k: without_timing(v) for k, v in data.items() if k != "wall_time_s"}
    if isinstance(data, list):
        return [without_timing(v) for v in data]
    return data


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_ainvoke_awaits_every_engine_call_on_the_event_loop(strategy: str) -> None:
    policy, prm = AsyncPolicy(), AsyncPRM()
    graph = create_strategy_graph(strategy, policy, prm, seed=0, **options(strategy))

    async def run() -> tuple[dict[str, Any], int]:
        return await graph.ainvoke({"problem": PROBLEM}), threading.get_ident()

    output, loop_thread = asyncio.run(run())
    calls = policy.threads + prm.threads
    assert policy.threads, "the policy was called"
    # Every engine call took the async path, on the thread that runs the event loop: none in a worker.
    assert calls == [("async", loop_thread)] * len(calls)

    sync_policy, sync_prm = AsyncPolicy(), AsyncPRM()
    sync_graph = create_strategy_graph(strategy, sync_policy, sync_prm, seed=0, **options(strategy))
    expected = sync_graph.invoke({"problem": PROBLEM})
    assert {kind for kind, _ in sync_policy.threads + sync_prm.threads} == {"sync"}
    assert output["answer"] == expected["answer"]
    assert without_timing(output["result"]) == without_timing(expected["result"])


def test_astream_reports_progress_and_abatch_runs_problems_concurrently() -> None:
    policy, prm = AsyncPolicy(), AsyncPRM()
    graph = create_strategy_graph("weighted_best_of_n", policy, prm, n=4, seed=0)

    async def run() -> tuple[list[Any], list[Any]]:
        events = [event async for event in graph.astream({"problem": PROBLEM}, stream_mode="custom")]
        outputs = await graph.abatch([{"problem": PROBLEM}] * 3)
        return events, outputs

    events, outputs = asyncio.run(run())
    assert [e["type"] for e in events] == ["ttc.generated", "ttc.scored", "ttc.selected"]
    assert [o["answer"] for o in outputs] == ["5"] * 3
    assert {kind for kind, _ in policy.threads + prm.threads} == {"async"}


def test_engines_without_a_native_async_path_run_in_a_worker_thread() -> None:
    # The default _agenerate of a compute-bound engine keeps the event loop free.
    policy = ScriptedPolicy(TEXTS)
    seen: list[int] = []
    original = policy._generate

    def recording(requests: list[GenerationRequest]) -> list[GenerationResult]:
        seen.append(threading.get_ident())
        return original(requests)

    policy._generate = recording  # type: ignore[method-assign]

    async def run() -> int:
        await policy.ainvoke([{"prompt": "1+1=", "n": 2}])
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert seen and seen[0] != loop_thread
