import threading

import pytest

from langchain_ttc.engines.batching import MicroBatcher


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
