"""One long-lived HTTP client per engine for model servers: shared concurrency limit, retries, replicas.

In: JSON bodies to POST to a path of an OpenAI-compatible server (vLLM's ``/v1/completions``,
``/pooling``). Out: the JSON replies, or :class:`ServerError` naming the URLs and what was tried.

- **Async first.** :meth:`ServerClient.apost` runs on the caller's event loop: no worker thread.
  Each event loop gets one ``httpx.AsyncClient`` (connection pool) for the engine's lifetime and one
  ``asyncio.Semaphore`` of ``max_concurrency`` permits that every concurrent call on that loop
  shares: 64 concurrent graph runs never put more than ``max_concurrency`` requests in flight.
  Sync callers (:meth:`ServerClient.run`) all share one private event loop in a daemon thread, so
  they share one pool and one limit too.
- **Retries** by ``tenacity``: connection errors, timeouts, HTTP 408/429/5xx; jittered exponential
  backoff (``backoff_s`` doubling, capped at ``max_backoff_s``) unless the server sends
  ``Retry-After``, which is honoured. Each retry goes to the next replica.
- **Replicas and routing keys.** Several base URLs are tried in turn, starting from one picked by
  the request's routing key, so all requests of one problem go to the same replica while it is
  healthy (its prefix cache keeps the problem). With a real router in front (``vllm-router``, one
  URL) the key is sent as the ``X-Session-ID`` header and the body's ``user`` field, which its
  consistent-hash policy reads (see the README's "Scaling out").
- **API key** from the argument or the environment variable ``api_key_env`` (``OPENAI_API_KEY`` by
  default), sent as a bearer token.

Example:
    >>> client = ServerClient("http://127.0.0.1:8000", max_concurrency=32)
    >>> client.run(client.apost("/v1/completions", {"model": "m", "prompt": "1+1="}))  # doctest: +SKIP
    >>> await client.apost("/v1/completions", body, key="problem-17")  # doctest: +SKIP

"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import ssl
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
ROUTING_HEADER = "X-Session-ID"


class ServerError(RuntimeError):
    """A model server failed after every retry, or refused a request."""


class _Retryable(Exception):
    """A failure worth another try (a transport error or a retryable status)."""

    def __init__(self, url: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{url}: {message}")
        self.retry_after = retry_after


def problem_key(text: str) -> str:
    """A short stable key for a problem's text: its requests carry it, so a router keeps them on one replica.

    Example:
        >>> problem_key("What is 1+1?") == problem_key("What is 1+1?") != problem_key("What is 2+2?")
        True

    """
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def check_base_urls(base_url: str | Sequence[str]) -> list[str]:
    """Return the base URLs as a list without trailing slashes or ``/v1``, or raise a clear ``ValueError``."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise ValueError("base_url=[] is empty; pass a server URL such as 'http://127.0.0.1:8000'.")
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url={url!r} is not an http(s) URL; pass for example 'http://127.0.0.1:8000'.")
    return [url.rstrip("/").removesuffix("/v1") for url in urls]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to the backoff
        return None


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context (httpx's defaults, certifi's roots) for every client and pool of this process.

    httpx builds a new one for each transport and client it is not given one (about 40 ms of CPU each:
    loading the root certificates), which made a client of 8 pools cost 0.4 s to start.
    """
    return httpx.create_ssl_context()


class PooledTransport(httpx.AsyncBaseTransport):
    """``max_connections`` keep-alive connections as several small httpx pools; each request goes to the least busy.

    httpcore's connection pool does work quadratic in its connections every time a request starts or
    ends (each idle connection counts all the others), so one pool of 64 connections spent more CPU
    than everything else the client does at 64 requests in flight. Pools of at most
    ``per_pool`` connections keep that work small; a request goes to the pool with the fewest
    requests in flight (its connection is released when the response is closed), so with at most
    ``max_connections`` requests in flight none waits for a connection while another pool has one free.

    Example:
        >>> transport = PooledTransport(64)
        >>> len(transport.pools), transport.per_pool
        (8, 8)

    """

    def __init__(self, max_connections: int, *, per_pool: int = 8) -> None:
        self.per_pool = min(per_pool, max_connections)
        count = -(-max_connections // self.per_pool)
        limits = httpx.Limits(max_connections=self.per_pool, max_keepalive_connections=self.per_pool)
        self.pools = [httpx.AsyncHTTPTransport(limits=limits, verify=shared_ssl_context()) for _ in range(count)]
        self.busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the least busy pool; its slot is given back when the response is closed."""
        index = min(range(len(self.pools)), key=self.busy.__getitem__)
        self.busy[index] += 1
        try:
            response = await self.pools[index].handle_async_request(request)
        except BaseException:
            self.busy[index] -= 1
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _Releasing(stream, self.busy, index)
        return response

    async def aclose(self) -> None:
        """Close every pool's connections."""
        for pool in self.pools:
            await pool.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its pool's slot back when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, busy: list[int], index: int) -> None:
        self.stream, self.busy, self.index, self.open = stream, busy, index, True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.stream.aclose()
        finally:
            if self.open:
                self.open = False
                self.busy[self.index] -= 1


class ServerClient:
    """The HTTP side of a server-backed engine (see the module docs).

    Args:
        base_url: The server URL, or a list of replica URLs.
        api_key: Bearer token; by default read from the environment variable ``api_key_env``.
        api_key_env: The environment variable that holds the key when ``api_key`` is not given.
        max_concurrency: Most requests in flight at once, shared by every concurrent call.
        timeout_s: Timeout of one HTTP request.
        max_retries: Retries of a failed request before :class:`ServerError`.
        backoff_s: First retry delay (jittered, doubling); a ``Retry-After`` header wins.
        max_backoff_s: The longest delay between two tries.

    Raises:
        ValueError: If an option is out of range (named, with the fix).

    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 64,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.base_urls = check_base_urls(base_url)
        for name, value, ok, fix in (
            ("max_concurrency", max_concurrency, max_concurrency >= 1, ">= 1"),
            ("max_retries", max_retries, max_retries >= 0, ">= 0"),
            ("timeout_s", timeout_s, timeout_s > 0, "> 0"),
            ("backoff_s", backoff_s, backoff_s >= 0, ">= 0"),
            ("max_backoff_s", max_backoff_s, max_backoff_s >= backoff_s, ">= backoff_s"),
        ):
            if not ok:
                raise ValueError(f"{name}={value} is out of range; pass {name} {fix}.")
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ]
        self._per_loop = weakref.WeakKeyDictionary()
        self._portal: asyncio.AbstractEventLoop | None = None
        self._portal_lock = threading.Lock()

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The running loop's client and concurrency limit (created on first use, kept for the engine's life)."""
        loop = asyncio.get_running_loop()
        if loop not in self._per_loop:
            client = httpx.AsyncClient(
                timeout=self.timeout_s, headers=self.headers, transport=PooledTransport(self.max_concurrency),
                verify=shared_ssl_context(),  # with a transport given, httpx still builds a context for proxies
            )  # fmt: skip
            self._per_loop[loop] = (client, asyncio.Semaphore(self.max_concurrency))
        return self._per_loop[loop]

    @property
    def in_flight_limit(self) -> asyncio.Semaphore:
        """The running loop's shared concurrency limit (for tests and diagnostics)."""
        return self._session()[1]

    def replica_order(self, key: str | None) -> list[str]:
        """The replicas in the order a request with routing ``key`` tries them (stable for one key)."""
        if key is None or len(self.base_urls) == 1:
            return list(self.base_urls)
        start = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % len(self.base_urls)
        return self.base_urls[start:] + self.base_urls[:start]

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return min(error.retry_after, self.max_backoff_s)
        backoff = wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s)
        return float(backoff(state))

    async def apost(self, path: str, body: dict[str, Any], *, key: str | None = None) -> Any:
        """POST ``body`` to ``path`` with the shared limit and retries; return the JSON reply.

        Args:
            path: The endpoint, for example ``"/v1/completions"``.
            body: The JSON body (a ``user`` field is added from ``key`` unless present).
            key: A routing key (for example a hash of the problem) that keeps related requests together.

        Raises:
            ServerError: If every try failed, or the server refused the request (HTTP 4xx other than 408/429).

        """
        client, limit = self._session()
        headers = {"content-type": "application/json", **({ROUTING_HEADER: key} if key else {})}
        if key and "user" not in body:
            body = {**body, "user": key}
        content = orjson.dumps(body)  # once for every retry; several times faster than the stdlib's encoder
        order = self.replica_order(key)
        tried: list[str] = []

        async def attempt() -> Any:
            url = order[len(tried) % len(order)] + path  # each retry goes to the next replica
            try:
                response = await client.post(url, content=content, headers=headers)
            except httpx.TransportError as error:
                tried.append(f"{url}: {type(error).__name__}: {error}")
                raise _Retryable(url, str(error)) from error
            if response.status_code in RETRYABLE_STATUS:
                tried.append(f"{url}: HTTP {response.status_code}")
                raise _Retryable(url, f"HTTP {response.status_code}", _retry_after(response))
            if response.status_code >= 400:
                raise ServerError(f"{url} refused the request (HTTP {response.status_code}): {response.text[:500]}")
            return orjson.loads(response.content)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        async with limit:
            try:
                return await retrying(attempt)
            except _Retryable:
                raise ServerError(
                    f"the model server failed after {len(tried)} attempts ({', '.join(self.base_urls)}); tried: "
                    + "; ".join(tried)
                ) from None

    async def aget(self, path: str) -> Any:
        """GET ``path`` from the first replica; the JSON reply, or ``None`` if it failed."""
        client, limit = self._session()
        try:
            async with limit:
                response = await client.get(self.base_urls[0] + path)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` to completion from sync code, on the engine's private event loop."""
        with self._portal_lock:
            if self._portal is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="ttc-server-client", daemon=True).start()
                self._portal = loop
        return asyncio.run_coroutine_threadsafe(coroutine, self._portal).result()


async def gather_all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that lets every request finish before raising the first failure (nothing half-sent)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)  # type: ignore[arg-type]
