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
from langchain_ttc.wiring import STRATEGIES
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


def test_engine_runs_carry_model_provider_and_token_usage_for_tracers() -> None:
    from langchain_core.tracers.context import collect_runs

    policy, prm = AsyncPolicy(), AsyncPRM()
    policy.model_name, prm.model_name = "scripted-policy", "scripted-prm"
    graph = create_strategy_graph("weighted_best_of_n", policy, prm, n=4, seed=0)
    with collect_runs() as collected:
        output = asyncio.run(graph.ainvoke({"problem": PROBLEM}))
    runs, engine_runs = list(collected.traced_runs), {}
    while runs:  # walk the run tree down to the engine runs
        run = runs.pop()
        runs += run.child_runs
        if run.name in ("ttc:policy", "ttc:prm"):
            engine_runs[run.name] = run
    policy_run, prm_run = engine_runs["ttc:policy"], engine_runs["ttc:prm"]
    assert policy_run.run_type == prm_run.run_type == "llm"
    assert policy_run.extra["metadata"]["ls_model_name"] == "scripted-policy"
    assert prm_run.extra["metadata"]["ls_model_name"] == "scripted-prm"
    assert policy_run.extra["metadata"]["ls_provider"] == "langchain_ttc"
    usage = output["result"]["usage"]
    assert policy_run.outputs["usage_metadata"] == {
        "input_tokens": usage["prompt_tokens"],
        "output_tokens": usage["completion_tokens"],
        "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
    }
    assert prm_run.outputs["usage_metadata"]["input_tokens"] == usage["prm_tokens"] > 0
