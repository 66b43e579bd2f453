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
