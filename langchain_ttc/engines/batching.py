"""Cross-problem batching: merge concurrent engine calls into one backend call.

In: an engine. Out: an engine of the same kind whose concurrent ``invoke`` calls (for example the
same search running over many problems with ``graph.batch``) are merged into one call of the wrapped
engine when they arrive within ``max_wait_s`` of each other. Each caller gets its own results back,
in order. This is how one policy call and one PRM call per iteration cover every problem in flight.

Example:
    >>> from langchain_ttc.engines.transformers_policy import TransformersPolicy  # doctest: +SKIP
    >>> policy = MicroBatchingPolicy(TransformersPolicy.from_pretrained(path))  # doctest: +SKIP
    >>> graph = create_beam_search_graph(policy, MicroBatchingPRM(prm), n=16)  # doctest: +SKIP
    >>> graph.batch([{"problem": p} for p in problems], {"max_concurrency": 8})  # doctest: +SKIP

"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from langchain_ttc.core.types import GenerationRequest, GenerationResult, ScoreRequest, StepScores
from langchain_ttc.engines.base import PolicyEngine, PRMEngine

Request = TypeVar("Request")
Result = TypeVar("Result")


class _Pending(Generic[Request, Result]):
    """One caller's requests in a window, and, once the merged call is done, its results or the error."""

    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests
        self.results: list[Result] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def outcome(self) -> list[Result]:
        """Wait for the merged call; return this caller's results, or raise its error."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.results


class MicroBatcher(Generic[Request, Result]):
    """Merges calls that arrive within ``max_wait_s`` into one call of ``backend``.

    The first caller of a window waits ``max_wait_s``, then makes the merged call and hands every
    caller its slice of the results (or the error, to every caller).
    """

    def __init__(self, backend: Callable[[list[Request]], list[Result]], *, max_wait_s: float = 0.01) -> None:
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s={max_wait_s} must be >= 0.")
        self.backend = backend
        self.max_wait_s = max_wait_s
        self.backend_calls = 0
        self._lock = threading.Lock()
        self._window: list[_Pending[Request, Result]] | None = None

    def __call__(self, requests: list[Request]) -> list[Result]:
        """Run ``requests`` in the current window's merged call and return their results.

        Raises:
            RuntimeError: If the backend returns a different number of results than it got requests.

        """
        pending: _Pending[Request, Result] = _Pending(requests)
        with self._lock:
            window = self._window
            leader = window is None
            if window is None:  # the first caller opens the window and will make its call
                window = self._window = []
            window.append(pending)
        if leader:
            threading.Event().wait(self.max_wait_s)
            with self._lock:  # close the window: later callers open the next one
                self._window = None
            self._run(window)
        return pending.outcome()

    def _run(self, window: list[_Pending[Request, Result]]) -> None:
        merged = [r for p in window for r in p.requests]
        try:
            self.backend_calls += 1
            results = self.backend(merged)
            if len(results) != len(merged):
                raise RuntimeError(
                    f"the batched backend {getattr(self.backend, '__qualname__', self.backend)!r} returned "
                    f"{len(results)} results for {len(merged)} requests; an engine must return one result per "
                    "request, in order."
                )
        except BaseException as error:  # every caller of the window sees the failure
            for p in window:
                p.error = error
                p.done.set()
            return
        start = 0
        for p in window:
            p.results = results[start : start + len(p.requests)]
            start += len(p.requests)
            p.done.set()


class MicroBatchingPolicy(PolicyEngine):
    """A policy whose concurrent calls are merged into one call of ``policy`` (see module docs)."""

    def __init__(self, policy: PolicyEngine, *, max_wait_s: float = 0.01) -> None:
        self.policy = policy
        self.supports_partial = policy.supports_partial
        self.batcher: MicroBatcher[GenerationRequest, GenerationResult] = MicroBatcher(
            policy._generate, max_wait_s=max_wait_s
        )

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return self.batcher(requests)


class MicroBatchingPRM(PRMEngine):
    """A PRM whose concurrent calls are merged into one call of ``prm`` (see module docs)."""

    def __init__(self, prm: PRMEngine, *, max_wait_s: float = 0.01) -> None:
        self.prm = prm
        self.batcher: MicroBatcher[ScoreRequest, StepScores] = MicroBatcher(prm._score, max_wait_s=max_wait_s)

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        return self.batcher(requests)
