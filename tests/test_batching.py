"""The micro-batcher: concurrent calls merged into one backend call, results routed back, failures shared,
and cancelled callers' work stopped (a window nobody waits for is never sent; a merged call stops
between its batches once every caller is cancelled)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from langchain_ttc.engines.batching import (
    MicroBatcher,
    StopRequested,
    check_stop,
    in_stoppable_thread,
    stop_requested,
    stop_signal,
)


def test_concurrent_calls_are_merged_and_results_routed_back() -> None:
    calls: list[list[int]] = []
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda xs: calls.append(xs) or [x * 10 for x in xs], max_wait_s=0.2)
    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher([i, i + 100]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.backend_calls == len(calls) == 1 and sorted(calls[0]) == sorted([0, 100, 1, 101, 2, 102, 3, 103])
    assert results == {i: [i * 10, (i + 100) * 10] for i in range(4)}


def test_a_backend_failure_reaches_every_caller() -> None:
    def fail(_: list[int]) -> list[int]:
        raise RuntimeError("server down")

    batcher: MicroBatcher[int, int] = MicroBatcher(fail, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="server down"):
        batcher([1])


def test_a_backend_that_returns_the_wrong_number_of_results_fails_every_caller() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda xs: [x * 10 for x in xs][:-1], max_wait_s=0.2)
    errors: dict[int, BaseException] = {}

    def call(i: int) -> None:
        try:
            batcher([i, i + 100])
        except RuntimeError as error:
            errors[i] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.backend_calls == 1 and sorted(errors) == [0, 1, 2]
    assert all("returned 5 results for 6 requests; an engine must return one result per request" in str(e)
               for e in errors.values())  # fmt: skip
    with pytest.raises(RuntimeError, match="returned 0 results for 1 requests"):  # the next call opens a new window
        batcher([7])
    assert batcher.backend_calls == 2


def test_the_window_is_closed_after_each_merged_call() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda xs: [x + 1 for x in xs], max_wait_s=0.0)
    assert batcher([1]) == [2] and batcher([2, 3]) == [3, 4] and batcher.backend_calls == 2


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_a_window_whose_callers_were_all_cancelled_is_never_sent() -> None:
    sent: list[list[int]] = []
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda xs: sent.append(xs) or xs, max_wait_s=60.0)

    async def scenario() -> None:
        caller = asyncio.create_task(in_stoppable_thread(batcher, [1]))
        await _until(lambda: batcher.waiting == 1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await _until(lambda: batcher.stopped_windows == 1)  # the leader gave up its 60 s wait at once

    asyncio.run(scenario())
    assert sent == [] and batcher.backend_calls == 0
    batcher.max_wait_s = 0.0
    assert batcher([2]) == [2] and sent == [[2]]  # the next call opens a new window and runs


class ChunkedBackend:
    """A backend that works through its requests one "batch" at a time, each batch held until ``release``."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.release = threading.Event()
        self.outcome: list[str] = []

    def __call__(self, xs: list[int]) -> list[int]:
        try:
            for x in xs:
                check_stop()
                self.started.append(x)
                self.release.wait(10)
        except StopRequested:
            self.outcome.append("stopped")
            raise
        self.outcome.append("finished")
        return xs


def test_a_cancelled_caller_stops_its_merged_call_before_the_next_batch() -> None:
    backend = ChunkedBackend()
    batcher: MicroBatcher[int, int] = MicroBatcher(backend, max_wait_s=0.0)

    async def scenario() -> None:
        caller = asyncio.create_task(in_stoppable_thread(batcher, [1, 2, 3]))
        await _until(lambda: backend.started == [1])
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller  # the caller is released at once, while its batch is still held
        backend.release.set()
        await _until(lambda: bool(backend.outcome))

    asyncio.run(scenario())
    assert backend.outcome == ["stopped"] and backend.started == [1] and batcher.backend_calls == 1


def test_a_merged_call_runs_on_while_one_of_its_callers_still_waits() -> None:
    backend = ChunkedBackend()
    batcher: MicroBatcher[int, int] = MicroBatcher(backend, max_wait_s=1.0)
    results: list[list[int]] = []

    async def scenario() -> None:
        cancelled = asyncio.create_task(in_stoppable_thread(batcher, [1, 2]))
        await _until(lambda: batcher.waiting == 1)
        waiting = asyncio.create_task(in_stoppable_thread(batcher, [3, 4]))
        await _until(lambda: batcher.waiting == 2)
        await _until(lambda: backend.started == [1])  # one merged call for both callers
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        backend.release.set()
        results.append(await waiting)

    asyncio.run(scenario())
    assert results == [[3, 4]] and backend.outcome == ["finished"] and backend.started == [1, 2, 3, 4]


def test_stop_signals_are_per_call_and_absent_outside_stoppable_calls() -> None:
    assert not stop_requested()
    check_stop()  # no signal: nothing to stop
    event = threading.Event()
    with stop_signal(event):
        check_stop()
        event.set()
        with pytest.raises(StopRequested, match="was cancelled"):
            check_stop()
    assert not stop_requested()
