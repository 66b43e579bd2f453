"""What ``ttc serve`` refuses, and how: bounded bodies, prompts, budgets, runs in flight and time.

In: a request (its ASGI messages, its messages, its options) and the :class:`~.settings.ServeLimits`.
Out: the request let through, or an :class:`~.protocol.APIError` that names the limit, the value
and the setting that raises it (:func:`over_limit`):

- :class:`BodyLimitMiddleware`: a body over ``max_body_bytes`` is refused 413 before it is parsed,
  by its ``Content-Length`` or by counting the bytes as they arrive (what arrives past the limit is
  read and dropped, never kept); it also sets each request's deadline (:func:`deadline_of`).
- :func:`check_prompt`: the messages' characters, then their tokens (the policy's own tokenizer and
  chat template, when the engine exposes them) against ``max_prompt_tokens`` and the policy's
  context window, before any engine call.
- :class:`RunLimiter`: at most ``max_in_flight`` runs at once and ``max_queue`` waiting; beyond,
  429 with ``Retry-After`` (an estimate from recent run times).
- :func:`run_until`: a run races the deadline and the client; either one ending first cancels it
  (asyncio cancellation reaches the engine's HTTP calls).

Example:
    >>> over_limit("the body is 5242880 bytes", 1048576, "max_body_bytes", fix="send less")  # doctest: +ELLIPSIS
    'the body is 5242880 bytes, over the limit of 1048576; send less, or raise the limit with TTC_SERVE_MAX_BODY...'

"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.serving.metrics import RECORD_KEY, RequestRecord
from langchain_ttc.serving.protocol import APIError, api_error
from langchain_ttc.serving.settings import ServeLimits, setting_name

T = TypeVar("T")

DEADLINE_KEY = "ttc_deadline"
"""The key of a request's deadline (``loop.time()`` seconds) in the ASGI scope's ``state``."""
DRAIN_FACTOR = 16
"""Bytes past the limit are read and dropped (so the client sees the 413) up to this many times the limit."""


def over_limit(what: str, limit: int | float, key: str, *, fix: str) -> str:
    """The message of a refusal: what the request holds, the limit, the fix, and the setting that raises it."""
    shown = f"{limit:g}" if isinstance(limit, float) else str(limit)
    return f"{what}, over the limit of {shown}; {fix}, or raise the limit with {setting_name(key)}."


def refusal(
    status: int, message: str, *, key: str, code: str, param: str | None = None, headers: dict[str, str] | None = None
) -> APIError:
    """An :class:`APIError` for a limit, tagged with the limit's setting (``error.limit``) for logs and metrics."""
    return api_error(status, message, param=param, code=code, limit=key, headers=headers)


def deadline_of(scope: Scope, limits: ServeLimits) -> float:
    """The request's deadline on the running loop's clock (set on arrival; a fresh one outside the middleware)."""
    deadline = scope.get("state", {}).get(DEADLINE_KEY)
    if isinstance(deadline, float):
        return deadline
    return asyncio.get_running_loop().time() + limits.request_timeout_s


def deadline_error(limits: ServeLimits, model: str, *, where: str) -> APIError:
    """504: the request did not finish in time (it was cancelled)."""
    seconds = f"{limits.request_timeout_s:g}"
    return refusal(
        504,
        f"model={model!r}: the request did not finish within the deadline of {seconds} s and was cancelled "
        f"({where}); ask for a smaller budget or max_tokens, or raise the deadline with "
        f"{setting_name('request_timeout_s')}.",
        key="request_timeout_s",
        code="deadline_exceeded",
    )


class BodyLimitMiddleware:
    """Refuses a request body over ``max_body_bytes`` with 413 before anything parses it; sets the deadline.

    A declared ``Content-Length`` over the limit is refused at once; a body sent without one (chunked)
    is counted as it arrives. Either way the bytes past the limit are read and dropped, up to
    :data:`DRAIN_FACTOR` times the limit, so the client is still listening when the 413 comes (a
    client that sent ``Expect: 100-continue`` is answered before it sends anything); the connection
    is then closed. Memory is bounded by the limit: a body is kept only while it fits. Reading the
    body counts against the request's deadline (408 when it does not arrive in time).
    """

    def __init__(self, app: ASGIApp, *, limits: ServeLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body within the limit and the deadline, then pass the request on with the body replayed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.request_timeout_s
        scope.setdefault("state", {})[DEADLINE_KEY] = deadline
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        limit = self.limits.max_body_bytes
        if declared.isdigit() and int(declared) > limit:
            drain = 0 if "100-continue" in headers.get("expect", "").lower() else DRAIN_FACTOR * limit
            if int(declared) <= drain:
                await self._drain(receive, deadline, drain)
            await self._refuse(scope, receive, send, int(declared))
            return
        chunks: list[bytes] = []
        size, pending = 0, None
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        pending = message  # the client left: the app sees it as it would have
                        break
                    body = message.get("body", b"")
                    size += len(body)
                    if size > limit:
                        chunks.clear()
                        if message.get("more_body", False):
                            size += await self._drain(receive, deadline, DRAIN_FACTOR * limit)
                        await self._refuse(scope, receive, send, size, counted=True)
                        return
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._respond(scope, receive, send, self._too_slow(size))
            return
        first: Message | None = pending or {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        chunks.clear()  # the body is kept once, in the message the app reads first

        async def replay() -> Message:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive: Receive, deadline: float, most: int) -> int:
        """Read and drop the rest of a body, up to ``most`` bytes or the deadline; the bytes read."""
        dropped = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while dropped <= most:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    dropped += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        return dropped

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int, *, counted: bool = False) -> None:
        what = f"the request body is {'at least ' if counted else ''}{size} bytes"
        error = refusal(
            413,
            over_limit(what, self.limits.max_body_bytes, "max_body_bytes", fix="send a smaller body"),
            key="max_body_bytes",
            code="body_too_large",
        )
        await self._respond(scope, receive, send, error)

    def _too_slow(self, size: int) -> APIError:
        return refusal(
            408,
            f"the request body did not arrive within the deadline of {self.limits.request_timeout_s:g} s "
            f"({size} bytes came); send it faster, or raise the deadline with {setting_name('request_timeout_s')}.",
            key="request_timeout_s",
            code="request_timeout",
        )

    @staticmethod
    async def _respond(scope: Scope, receive: Receive, send: Send, error: APIError) -> None:
        record = scope.get("state", {}).get(RECORD_KEY)
        if isinstance(record, RequestRecord):
            record.limit, record.error = error.limit, error.code
        response = JSONResponse(error.body(), status_code=error.status, headers={"Connection": "close"})
        await response(scope, receive, send)


def check_prompt(conversation: list[dict[str, str]], limits: ServeLimits) -> None:
    """Refuse messages with more characters than ``max_prompt_chars`` (cheap: no tokenizer).

    Raises:
        APIError: 400 ``context_length_exceeded`` with ``param="messages"``.

    """
    chars = sum(len(turn["content"]) for turn in conversation)
    if chars > limits.max_prompt_chars:
        raise refusal(
            400,
            over_limit(
                f"the messages hold {chars} characters", limits.max_prompt_chars, "max_prompt_chars",
                fix="send shorter messages",
            ),
            key="max_prompt_chars",
            code="context_length_exceeded",
            param="messages",
        )  # fmt: skip


def context_window(policy: Any) -> int | None:
    """The policy's context window in tokens, when its engine exposes one.

    vLLM engines expose ``max_model_len``; a transformers model its config's
    ``max_position_embeddings``. Engines that expose neither (servers, chat models, scripted ones)
    give ``None``: only ``max_prompt_tokens`` applies to them.
    """
    window = getattr(policy, "max_model_len", None)
    if not isinstance(window, int):
        config = getattr(getattr(policy, "model", None), "config", None)
        window = getattr(config, "max_position_embeddings", None)
    return window if isinstance(window, int) and window > 0 else None


def prompt_tokens(policy: Any, conversation: list[dict[str, str]]) -> int | None:
    """The tokens of the chat as the policy renders it (chat template, generation prompt), or ``None``.

    ``None`` when the engine exposes no tokenizer (``policy.tokenizer``) or it cannot render the chat:
    the engine call says what is wrong then. Runs the tokenizer: call it off the event loop.
    """
    tokenizer = tokenizer_of(policy)
    if tokenizer is None:
        return None
    try:
        return len(prompt_token_ids(tokenizer, GenerationRequest(messages=conversation)))
    except (ValueError, TypeError, RuntimeError):  # the engine call will say what is wrong with the chat
        return None


def tokenizer_of(policy: Any) -> Any:
    """The policy engine's tokenizer, or ``None`` when it has none (or cannot load it)."""
    try:
        return getattr(policy, "tokenizer", None)
    except (ValueError, OSError):  # a server's engine that could not load its tokenizer says so on use
        return None


async def check_prompt_tokens(policy: Any, conversation: list[dict[str, str]], limits: ServeLimits) -> None:
    """Refuse a prompt over ``max_prompt_tokens`` or the policy's context window, before any engine call.

    Counted with the policy's tokenizer in a worker thread (the event loop keeps serving); the
    window keeps one token for the answer.

    Raises:
        APIError: 400 ``context_length_exceeded`` with ``param="messages"``.

    """
    if tokenizer_of(policy) is None:
        return
    tokens = await asyncio.to_thread(prompt_tokens, policy, conversation)
    if tokens is None:
        return
    window = context_window(policy)
    if window is not None and tokens > window - 1 and window - 1 < limits.max_prompt_tokens:
        raise refusal(
            400,
            f"the messages are {tokens} tokens as the policy reads them, over its context window of {window} "
            f"tokens less one to answer; send shorter messages, or serve a policy with a longer context "
            f"(vLLM's --max-model-len).",
            key="context_window",
            code="context_length_exceeded",
            param="messages",
        )
    if tokens > limits.max_prompt_tokens:
        raise refusal(
            400,
            over_limit(
                f"the messages are {tokens} tokens as the policy reads them", limits.max_prompt_tokens,
                "max_prompt_tokens", fix="send shorter messages",
            ),
            key="max_prompt_tokens",
            code="context_length_exceeded",
            param="messages",
        )  # fmt: skip


def check_max_tokens(max_tokens: int | None, param: str, limits: ServeLimits) -> None:
    """Refuse a ``max_tokens`` (or ``max_completion_tokens``) over ``max_tokens_limit``.

    Raises:
        APIError: 400 ``invalid_value`` with ``param`` the request field.

    """
    if max_tokens is not None and max_tokens > limits.max_tokens_limit:
        raise refusal(
            400,
            over_limit(
                f"{param}={max_tokens}", limits.max_tokens_limit, "max_tokens_limit", fix=f"pass a smaller {param}"
            ),
            key="max_tokens_limit",
            code="invalid_value",
            param=param,
        )


class RunLimiter:
    """At most ``max_in_flight`` runs at once, ``max_queue`` more waiting in order; beyond, 429 at once.

    A slot that frees up goes to the longest waiter. The limiter keeps a moving average of how long
    a run holds its slot to tell a refused client when to come back (``Retry-After``). It binds to no
    event loop (plain counters and futures of the loop that waits), so one app serves many loops in tests.

    Example:
        >>> limiter = RunLimiter(max_in_flight=2, max_queue=0)
        >>> async def two_then_busy():
        ...     async with limiter.slot(), limiter.slot():
        ...         try:
        ...             async with limiter.slot():
        ...                 pass
        ...         except APIError as error:
        ...             return error.status, error.headers["Retry-After"]
        >>> asyncio.run(two_then_busy())
        (429, '1')

    """

    def __init__(self, max_in_flight: int, max_queue: int, *, run_time_s: float = 1.0) -> None:
        if max_in_flight < 1 or max_queue < 0:
            raise ValueError(f"max_in_flight={max_in_flight}, max_queue={max_queue}: pass >= 1 and >= 0.")
        self.max_in_flight, self.max_queue = max_in_flight, max_queue
        self.in_flight = 0
        self.run_time_s = run_time_s
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        """Runs waiting for a slot."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def full(self) -> bool:
        """Whether a run asking now would be refused (every slot taken, the queue full)."""
        return self.in_flight >= self.max_in_flight and self.queued >= self.max_queue

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the queue ahead of it, at the recent pace (1 to 60)."""
        ahead = self.queued + 1
        return max(1, min(60, math.ceil(self.run_time_s * ahead / self.max_in_flight)))

    def busy(self) -> APIError:
        """429: every slot is taken and the queue is full."""
        wait = self.retry_after_s()
        return refusal(
            429,
            f"ttc serve is busy: {self.in_flight} runs in flight and {self.queued} waiting, the limits of "
            f"{setting_name('max_in_flight')}={self.max_in_flight} and {setting_name('max_queue')}="
            f"{self.max_queue}; retry after {wait} s (Retry-After), or raise the limits.",
            key="max_in_flight",
            code="server_busy",
            headers={"Retry-After": str(wait)},
        )

    async def acquire(self) -> None:
        """Take a slot, waiting in line if every one is taken.

        Raises:
            APIError: 429 with ``Retry-After`` when the queue is full too.

        """
        if self.in_flight < self.max_in_flight and not self.queued:
            self.in_flight += 1
            return
        if self.full():
            raise self.busy()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot came as the wait was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: in_flight stays
                return
        self.in_flight -= 1

    def observe(self, seconds: float) -> None:
        """Count one run's time in the moving average behind ``Retry-After``."""
        self.run_time_s = 0.8 * self.run_time_s + 0.2 * seconds

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block (see :meth:`acquire`)."""
        await self.acquire()
        started = time.monotonic()
        try:
            yield
        finally:
            self.observe(time.monotonic() - started)
            self.release()


async def until_disconnected(receive: Receive) -> None:
    """Return when the client has gone (``http.disconnect``); call it once the body has been read."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class ClientGone(Exception):
    """The client went away while its request ran; the run was cancelled."""


async def run_until(
    work: Awaitable[T], *, deadline: float, receive: Receive, on_deadline: Callable[[], Exception]
) -> T:
    """Run ``work`` until it ends, the deadline passes or the client leaves; the last two cancel it.

    The work runs in its own task; cancelling that task cancels the graph's nodes and, through
    them, the engine calls in flight. A cancelled run is awaited (briefly) so its slot and its
    engine calls are given back before this returns.

    Raises:
        ClientGone: The client disconnected.
        Exception: ``on_deadline()`` when the deadline passed; whatever ``work`` raised.

    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(until_disconnected(receive))
    try:
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        await asyncio.wait({task, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)
    if not task.cancelled() and task.done():
        return task.result()
    if gone.done() and not gone.cancelled():
        raise ClientGone
    raise on_deadline()
