"""Cross-problem batching, and stopping engine work whose run was cancelled.

In: an engine. Out: an engine of the same kind whose concurrent ``invoke`` calls (for example the
same search running over many problems with ``graph.batch``) are merged into one call of the wrapped
engine when they arrive within ``max_wait_s`` of each other. Each caller gets its own results back,
in order. This is how one policy call and one PRM call per iteration cover every problem in flight.

**Cancelled runs stop their engine work.** A blocking engine (transformers, ``vllm.LLM``) runs its
``ainvoke`` in a worker thread with :func:`in_stoppable_thread`. When the awaiting task is cancelled
(a LangGraph Studio run cancelled with ``client.runs.cancel``, a ``ttc serve`` client that left),
the ``CancelledError`` reaches the caller at once and the thread is told to stop: the engine checks
:func:`check_stop` between its batches (the transformers policy also between tokens), raises
:class:`StopRequested` there and frees its lock, so the next run starts at once instead of queueing
behind work nobody waits for. A merged call of the micro-batcher stops only when every caller in it
was cancelled; a window whose callers are all gone is never sent. Sync ``invoke`` calls have no stop
signal and always run to the end.

Example:
    >>> from langchain_ttc.engines.transformers_policy import TransformersPolicy  # doctest: +SKIP
    >>> policy = MicroBatchingPolicy(TransformersPolicy.from_pretrained(path))  # doctest: +SKIP
    >>> graph = create_beam_search_graph(policy, MicroBatchingPRM(prm), n=16)  # doctest: +SKIP
    >>> graph.batch([{"problem": p} for p in problems], {"max_concurrency": 8})  # doctest: +SKIP
    >>> stop_requested()  # outside a stoppable engine call nothing asks to stop
    False

"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

from langchain_ttc.core.types import GenerationRequest, GenerationResult, ScoreRequest, StepScores
from langchain_ttc.engines.base import PolicyEngine, PRMEngine

Request = TypeVar("Request")
Result = TypeVar("Result")
T = TypeVar("T")

_POLL_S = 0.05
"""How often a waiting thread looks whether its caller was cancelled."""


class StopSignal(Protocol):
    """What tells engine work to stop: a ``threading.Event`` or anything with ``is_set()``."""

    def is_set(self) -> bool:
        """Whether the work should stop."""
        ...


class StopRequested(RuntimeError):
    """Raised inside an engine's worker thread at a check point: the run that asked for the work was cancelled."""


_STOP: contextvars.ContextVar[StopSignal | None] = contextvars.ContextVar("langchain_ttc_engine_stop", default=None)


def current_stop_signal() -> StopSignal | None:
    """The stop signal of the engine call running in this thread (``None`` outside a stoppable call)."""
    return _STOP.get()


def stop_requested() -> bool:
    """Whether the engine call running in this thread was asked to stop (its caller was cancelled)."""
    signal = _STOP.get()
    return signal is not None and signal.is_set()


def check_stop() -> None:
    """Raise :class:`StopRequested` if the engine call running in this thread was asked to stop.

    Engines call it between batches (and after a batch a stop cut short), never returning a partial
    result as if it were whole.

    Raises:
        StopRequested: If the caller of this engine call was cancelled.

    """
    if stop_requested():
        raise StopRequested("the run that asked for this engine call was cancelled; its work stopped here.")


@contextmanager
def stop_signal(signal: StopSignal | None) -> Iterator[None]:
    """Run the block as an engine call that stops when ``signal`` is set (see :func:`check_stop`).

    Example:
        >>> event = threading.Event()
        >>> with stop_signal(event):
        ...     event.set()
        ...     stop_requested()
        True

    """
    token = _STOP.set(signal)
    try:
        yield
    finally:
        _STOP.reset(token)


async def in_stoppable_thread(function: Callable[..., T], /, *args: Any) -> T:
    """Run a blocking engine call in a worker thread; if the awaiting task is cancelled, tell it to stop.

    Like ``asyncio.to_thread`` (the context is copied into the thread), and the call runs under a
    stop signal that is set when the awaiting task is cancelled: the ``CancelledError`` propagates at
    once, and the thread stops at its next :func:`check_stop`.

    Example:
        >>> asyncio.run(in_stoppable_thread(sum, [1, 2]))
        3

    """
    stop = threading.Event()
    context = contextvars.copy_context()
    context.run(_STOP.set, stop)
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(context.run, function, *args))
    try:
        return await future
    except asyncio.CancelledError:
        stop.set()
        raise


class _AllOf:
    """Set once every caller's signal is set: a merged call stops only when nobody waits for it any more."""

    def __init__(self, signals: Sequence[StopSignal | None]) -> None:
        self.signals = signals

    def is_set(self) -> bool:
        return all(s is not None and s.is_set() for s in self.signals)


class _Pending(Generic[Request, Result]):
    """One caller's requests in a window, and, once the merged call is done, its results or the error."""

    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests
        self.stop = current_stop_signal()
        self.results: list[Result] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def outcome(self) -> list[Result]:
        """Wait for the merged call; return this caller's results, or raise its error.

        Raises:
            StopRequested: If this caller was cancelled while it waited (it stops waiting at once).

        """
        while not self.done.wait(_POLL_S if self.stop is not None else None):
            if self.stopped():
                raise StopRequested("the caller was cancelled while its merged engine call ran.")
        if self.error is not None:
            raise self.error
        return self.results


class MicroBatcher(Generic[Request, Result]):
    """Merges calls that arrive within ``max_wait_s`` into one call of ``backend``.

    The first caller of a window waits ``max_wait_s``, then makes the merged call and hands every
    caller its slice of the results (or the error, to every caller). Callers that were cancelled
    before the window closed are left out of it; a window left empty is never sent (counted in
    ``stopped_windows``), and the merged call runs under a stop signal set once all of its callers
    are cancelled (see the module docs).
    """

    def __init__(self, backend: Callable[[list[Request]], list[Result]], *, max_wait_s: float = 0.01) -> None:
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s={max_wait_s} must be >= 0.")
        self.backend = backend
        self.max_wait_s = max_wait_s
        self.backend_calls = 0
        self.stopped_windows = 0
        self._lock = threading.Lock()
        self._window: list[_Pending[Request, Result]] | None = None

    @property
    def waiting(self) -> int:
        """How many callers are in the open window (waiting for it to close)."""
        with self._lock:
            return 0 if self._window is None else len(self._window)

    def __call__(self, requests: list[Request]) -> list[Result]:
        """Run ``requests`` in the current window's merged call and return their results.

        Raises:
            RuntimeError: If the backend returns a different number of results than it got requests.
            StopRequested: If this call's caller was cancelled (see the module docs).

        """
        pending: _Pending[Request, Result] = _Pending(requests)
        with self._lock:
            window = self._window
            leader = window is None
            if window is None:  # the first caller opens the window and will make its call
                window = self._window = []
            window.append(pending)
        if leader:
            self._wait(window)
            with self._lock:  # close the window: later callers open the next one
                self._window = None
            self._run(window)
        return pending.outcome()

    def _wait(self, window: list[_Pending[Request, Result]]) -> None:
        """Wait ``max_wait_s`` for more callers, or less if every caller so far was cancelled."""
        deadline = time.monotonic() + self.max_wait_s
        while (left := deadline - time.monotonic()) > 0:
            threading.Event().wait(min(left, _POLL_S))
            with self._lock:
                if all(p.stopped() for p in window):
                    return

    def _run(self, window: list[_Pending[Request, Result]]) -> None:
        for p in window:
            if p.stopped():  # cancelled before the call: its requests are not sent
                p.error = StopRequested("the caller was cancelled before its merged engine call started.")
                p.done.set()
        live = [p for p in window if not p.done.is_set()]
        if not live:
            self.stopped_windows += 1
            return
        merged = [r for p in live for r in p.requests]
        try:
            self.backend_calls += 1
            with stop_signal(_AllOf([p.stop for p in live])):
                results = self.backend(merged)
            if len(results) != len(merged):
                raise RuntimeError(
                    f"the batched backend {getattr(self.backend, '__qualname__', self.backend)!r} returned "
                    f"{len(results)} results for {len(merged)} requests; an engine must return one result per "
                    "request, in order."
                )
        except BaseException as error:  # every caller of the window sees the failure
            for p in live:
                p.error = error
                p.done.set()
            return
        start = 0
        for p in live:
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

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return await in_stoppable_thread(self._generate, requests)


class MicroBatchingPRM(PRMEngine):
    """A PRM whose concurrent calls are merged into one call of ``prm`` (see module docs)."""

    def __init__(self, prm: PRMEngine, *, max_wait_s: float = 0.01) -> None:
        self.prm = prm
        self.batcher: MicroBatcher[ScoreRequest, StepScores] = MicroBatcher(prm._score, max_wait_s=max_wait_s)

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        return self.batcher(requests)

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        return await in_stoppable_thread(self._score, requests)
