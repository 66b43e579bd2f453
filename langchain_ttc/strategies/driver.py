"""The node driver: one node body for sync and async runs, with usage and wall time added for it.

In: a node body, a function of ``(state[, runtime])``. Out: a LangGraph node (a ``RunnableLambda``
with a sync and an async driver) whose state update carries the node's usage and wall time.

**One node body, sync and async.** A node that calls an engine (or a subgraph) is written once, as
a generator that *yields* its calls (``results = yield from call(policy, requests)``) and returns
its state update. :func:`as_node` drives it: under ``invoke`` each call runs with ``invoke``; under
``ainvoke`` / ``astream`` / ``abatch`` it is awaited with ``ainvoke`` on the event loop, so no engine
call is parked in a worker thread. Plain functions (nodes that call nothing) get both drivers too.

**Bookkeeping is the driver's.** A node returns only what it changed, and, under ``"usage"``, the
:class:`~langchain_ttc.core.types.Usage` of the calls it made (or nothing). The driver adds the
node's wall time and writes the sum to the state's ``usage`` channel, whose reducer
(:func:`add_usage`) adds it to the run's total. No node times itself.

Example:
    >>> node = as_node(lambda state: {"seen": state["x"]}, name="look")
    >>> update = node.invoke({"x": 1})
    >>> update["seen"], update["usage"]["wall_time_s"] >= 0
    (1, True)

"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.callbacks import dispatch_custom_event
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.runtime import get_runtime

from langchain_ttc.core.types import Usage

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """A call a node body hands its driver: ``runnable.invoke(input, **kwargs)`` or, async, ``ainvoke``.

    Attributes:
        runnable: An engine, a chat model or a compiled subgraph.
        input: Its input (a list of inputs with ``many=True``).
        kwargs: Keyword arguments of the call (for example a subgraph's ``context``).
        many: Call ``batch`` / ``abatch`` instead.

    """

    runnable: Runnable[Any, Any]
    input: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    many: bool = False

    def run(self) -> Any:
        """Make the call synchronously."""
        return (self.runnable.batch if self.many else self.runnable.invoke)(self.input, **self.kwargs)

    async def arun(self) -> Any:
        """Make the call on the running event loop."""
        return await (self.runnable.abatch if self.many else self.runnable.ainvoke)(self.input, **self.kwargs)


Calls = Generator[Call, Any, T]
"""A node body (or a helper of one): yields :class:`Call` objects, is sent their results, returns ``T``."""


def call(runnable: Runnable[Any, Any], input: Any, **kwargs: Any) -> Calls[Any]:
    """Hand one engine call to the node's driver and return its result (a node writes ``yield from``).

    Example:
        >>> steps = call(RunnableLambda(lambda x: x + 1), 1)
        >>> next(steps).run()
        2

    """
    return (yield Call(runnable, input, kwargs))


def call_batch(runnable: Runnable[Any, Any], inputs: list[Any]) -> Calls[list[Any]]:
    """Yield one ``batch`` call to the node's driver and return its results."""
    return (yield Call(runnable, inputs, many=True))


def run_calls(body: Calls[T]) -> T:
    """Drive a generator of calls synchronously (outside a graph, for example in a benchmark)."""
    reply = None
    while True:
        try:
            step = body.send(reply)
        except StopIteration as done:
            return done.value
        reply = step.run()


async def arun_calls(body: Calls[T]) -> T:
    """Drive a generator of calls on the running event loop."""
    reply = None
    while True:
        try:
            step = body.send(reply)
        except StopIteration as done:
            return done.value
        reply = await step.arun()


def add_usage(total: Mapping[str, Any] | Usage | None, delta: Mapping[str, Any] | Usage | None) -> dict[str, Any]:
    """The reducer of the ``usage`` channel: the run's usage so far plus a node's.

    Example:
        >>> add_usage({"policy_calls": 1}, Usage(policy_calls=2))["policy_calls"]
        3

    """
    return (as_usage(total) + as_usage(delta)).model_dump()


def as_usage(value: Mapping[str, Any] | Usage | None) -> Usage:
    """``value`` (stored usage data, a :class:`Usage` or nothing) as a :class:`Usage`."""
    return value if isinstance(value, Usage) else Usage.model_validate(value or {})


def _with_time(update: Any, started: float) -> Any:
    """The node's update with its wall time added to its usage (updates that are not dicts pass as they are)."""
    if not isinstance(update, dict):
        return update
    elapsed = Usage(wall_time_s=time.perf_counter() - started)
    return {**update, "usage": (as_usage(update.get("usage")) + elapsed).model_dump()}


def as_node(
    function: Callable[..., Any], *, name: str | None = None, subgraph: Runnable[Any, Any] | None = None
) -> Runnable[Any, Any]:
    """A LangGraph node with a sync and an async driver for ``function(state[, runtime])``.

    ``function`` is a generator of :class:`Call` objects (see the module docs) or a plain function.
    The run's :class:`~langgraph.runtime.Runtime` is passed when ``function`` takes ``runtime``.
    The driver adds the node's wall time to the usage it returns (see the module docs).
    ``subgraph`` names a compiled graph the node runs, so LangGraph sees it (drawing with
    ``xray``, streaming with ``subgraphs=True``, checkpoint namespaces).
    """
    with_runtime = "runtime" in inspect.signature(function).parameters
    calls = inspect.isgeneratorfunction(function)

    def start(state: Any) -> Any:
        return function(state, get_runtime()) if with_runtime else function(state)

    def run(state: Any) -> Any:
        _ = subgraph  # referenced here so that LangGraph finds the subgraph among the node's dependencies
        started = time.perf_counter()
        return _with_time(run_calls(start(state)) if calls else start(state), started)

    async def arun(state: Any) -> Any:
        started = time.perf_counter()
        return _with_time(await arun_calls(start(state)) if calls else start(state), started)

    return RunnableLambda(run, afunc=arun, name=name or function.__name__)


def emit(event: dict[str, Any]) -> None:
    """Report progress: a LangGraph custom stream event, and a LangChain custom event of the same name.

    The first reaches ``stream_mode="custom"`` (and LangGraph Studio); the second reaches
    ``astream_events`` when the graph runs inside an LCEL chain.
    """
    get_stream_writer()(event)
    dispatch_custom_event(event["type"], event)
