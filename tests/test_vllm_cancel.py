"""A cancelled ``ainvoke`` on an in-process vLLM engine aborts its requests in vLLM: ``vllm.LLM`` (stepped by
:class:`VLLMPolicy` under ``ainvoke``) takes at most the step in progress after the cancel and frees its
lock; ``AsyncLLM`` drops the requests from its output processor. The stepped path gives what
``LLM.generate`` gives. Real vLLM (CPU build) on the shipped Arith policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.vllm_policy import AsyncVLLMPolicy, VLLMPolicy
from tests.servers import CPU_ENGINE

pytestmark = pytest.mark.integration

CHAT = [{"role": "user", "content": "Keep only the last digit after each step. What is 2+3*7?"}]
LONG = GenerationRequest(messages=CHAT, n=64, temperature=1.0, max_tokens=256, seed=0)  # many engine steps
SHORT = GenerationRequest(messages=CHAT, n=2, temperature=0, max_tokens=64)


async def _until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_cancelled_call_on_vllm_llm_is_aborted_after_the_step_in_progress() -> None:
    policy = VLLMPolicy.from_pretrained(arith_checkpoint("small"), **CPU_ENGINE)
    engine = policy.llm.llm_engine
    steps: list[int] = []
    step = engine.step

    def counted() -> Any:
        steps.append(1)
        return step()

    engine.step = counted
    (reference,) = policy.invoke([SHORT])  # LLM.generate

    async def scenario() -> Any:
        (stepped,) = await policy.ainvoke([SHORT])  # the stepped path, run to the end
        assert [c.text for c in stepped.completions] == [c.text for c in reference.completions]
        task = asyncio.create_task(policy.ainvoke([LONG]))
        await _until(lambda: len(steps) > 5)
        await _cancel(task)
        at_cancel = len(steps)
        await _until(lambda: not policy._lock.locked())
        assert len(steps) - at_cancel <= 2 and not engine.has_unfinished_requests()
        return await policy.ainvoke([SHORT])

    (after,) = asyncio.run(scenario())
    assert [c.text for c in after.completions] == [c.text for c in reference.completions]


@pytest.fixture
def async_policy() -> Iterator[AsyncVLLMPolicy]:
    policy = AsyncVLLMPolicy.from_pretrained(arith_checkpoint("small"), **CPU_ENGINE)
    yield policy
    policy.shutdown()


def test_a_cancelled_call_on_async_vllm_aborts_its_requests(async_policy: AsyncVLLMPolicy) -> None:
    unfinished = async_policy.engine.output_processor.get_num_unfinished_requests

    async def scenario() -> Any:
        task = asyncio.create_task(async_policy.ainvoke([LONG]))
        await _until(lambda: unfinished() > 0)
        await _cancel(task)
        await _until(lambda: unfinished() == 0)  # aborted: the engine no longer writes them
        return await async_policy.ainvoke([SHORT])

    (after,) = asyncio.run(scenario())
    assert len(after.completions) == 2
