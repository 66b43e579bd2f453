"""One long-lived HTTP client per engine for model servers: shared concurrency limit, retries, replicas.

In: JSON bodies to POST to a path of an OpenAI-compatible server (vLLM's ``/v1/completions``,
``/pooling``). Out: the JSON replies, or :class:`ServerError` naming the URLs and what was tried.

- **Async first.** :meth:`ServerClient.apost` runs on the caller's event loop: no worker thread.
  Each event loop gets one ``aiohttp.ClientSession`` (a keep-alive pool of ``max_concurrency``
  connections) and one ``asyncio.Semaphore`` of ``max_concurrency`` permits that every concurrent
  call on that loop shares: 64 concurrent graph runs never put more than ``max_concurrency``
  requests in flight. The pool is closed when its loop shuts down (``asyncio.run`` closes it on the
  way out). Sync callers (:meth:`ServerClient.run`) all share one private event loop in a daemon
  thread, so they share one pool and one limit too. aiohttp, not httpx: at 64 requests in flight
  this client spent about 1.1 ms of CPU per request on httpx and httpcore, 0.27 ms on aiohttp (see
  ``docs/performance.md``).
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
import atexit
import hashlib
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Awaitable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to the backoff
        return None


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY`` unless ``NO_PROXY`` exempts it), or ``None``.

    Read once per replica, not per request (aiohttp's ``trust_env`` looks it up in a worker thread
    for every request), the way httpx and the OpenAI client honour these variables.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", HTTP_PROXY="http://proxy:3128", NO_PROXY="localhost,127.0.0.1"):
        ...     env_proxy("http://gpu-box:8000"), env_proxy("http://127.0.0.1:8000")
        ('http://proxy:3128', None)

    """
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@dataclass
class _Session:
    """One event loop's connection pool and concurrency limit, closed when that loop shuts down."""

    http: aiohttp.ClientSession
    limit: asyncio.Semaphore
    closer: AsyncGenerator[None, None]


async def _close_at_shutdown(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Suspended for the loop's life: ``asyncio.run`` closes live async generators on the way out, and so the pool."""
    try:
        yield
    finally:
        await session.close()


class ServerClient:
    """The HTTP side of a server-backed engine (see the module docs).

    Args:
        base_url: The server URL, or a list of replica URLs.
        api_key: Bearer token; by default read from the environment variable ``api_key_env``.
        api_key_env: The environment variable that holds the key when ``api_key`` is not given.
        max_concurrency: Most requests in flight at once, shared by every concurrent call.
        timeout_s: The longest wait to connect, and for the next bytes of a reply (a whole reply may take longer).
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
        self.proxies = {url: env_proxy(url) for url in self.base_urls}
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
        self._per_loop: dict[asyncio.AbstractEventLoop, _Session] = {}
        self._portal: asyncio.AbstractEventLoop | None = None
        self._portal_lock = threading.Lock()

    async def _session(self) -> _Session:
        """The running loop's pool and concurrency limit (created on first use, closed with the loop)."""
        loop = asyncio.get_running_loop()
        session = self._per_loop.get(loop)
        if session is None:
            for old in [old for old in self._per_loop if old.is_closed()]:  # loops asyncio.run has finished
                del self._per_loop[old]
            http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                timeout=aiohttp.ClientTimeout(sock_connect=self.timeout_s, sock_read=self.timeout_s),
                headers=self.headers,
            )
            session = self._per_loop[loop] = _Session(
                http, asyncio.Semaphore(self.max_concurrency), _close_at_shutdown(http)
            )
            await anext(session.closer)  # started, so the loop's shutdown closes it
        return session

    def replica_order(self, key: str | None) -> list[str]:
        """The replicas in the order a request with routing ``key`` tries them (stable for one key)."""
        if key is None or len(self.base_urls) == 1:
            return list(self.base_urls)
        start = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % len(self.base_urls)
        return self.base_urls[start:] + self.base_urls[:start]

    def _transport_failure(self, error: BaseException) -> str:
        """What went wrong on the wire, in words that do not depend on the HTTP library."""
        if isinstance(error, aiohttp.ClientConnectorError):
            return f"cannot connect ({error.os_error})"
        if isinstance(error, TimeoutError):
            return f"no reply within timeout_s={self.timeout_s}"
        return f"connection failed ({type(error).__name__}: {error})"

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
        session = await self._session()
        headers = {"content-type": "application/json", **({ROUTING_HEADER: key} if key else {})}
        if key and "user" not in body:
            body = {**body, "user": key}
        content = orjson.dumps(body)  # once for every retry; several times faster than the stdlib's encoder
        order = self.replica_order(key)
        tried: list[str] = []

        async def attempt() -> Any:
            base = order[len(tried) % len(order)]  # each retry goes to the next replica
            url = base + path
            try:
                post = session.http.post(url, data=content, headers=headers, proxy=self.proxies[base])
                async with post as response:
                    status, payload = response.status, await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                reason = self._transport_failure(error)
                tried.append(f"{url}: {reason}")
                raise _Retryable(url, reason) from error
            if status in RETRYABLE_STATUS:
                tried.append(f"{url}: HTTP {status}")
                raise _Retryable(url, f"HTTP {status}", _retry_after(response.headers))
            if status >= 400:
                text = payload[:500].decode(errors="replace")
                raise ServerError(f"{url} refused the request (HTTP {status}): {text}")
            return orjson.loads(payload)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        async with session.limit:
            try:
                return await retrying(attempt)
            except _Retryable:
                raise ServerError(
                    f"the model server failed after {len(tried)} attempts ({', '.join(self.base_urls)}); tried: "
                    + "; ".join(tried)
                ) from None

    async def aget(self, path: str) -> Any:
        """GET ``path`` from the first replica; the JSON reply, or ``None`` if it failed."""
        session = await self._session()
        try:
            url = self.base_urls[0]
            async with session.limit, session.http.get(url + path, proxy=self.proxies[url]) as response:
                return orjson.loads(await response.read()) if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` to completion from sync code, on the engine's private event loop."""
        with self._portal_lock:
            if self._portal is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="ttc-server-client", daemon=True).start()
                self._portal = loop
                atexit.register(self._close_portal)
        return asyncio.run_coroutine_threadsafe(coroutine, self._portal).result()

    def _close_portal(self) -> None:
        """Close the private loop's pool at exit (that loop runs until the process ends)."""
        portal = self._portal
        session = self._per_loop.get(portal) if portal is not None else None
        if portal is not None and session is not None and portal.is_running():
            asyncio.run_coroutine_threadsafe(session.closer.aclose(), portal).result(timeout=5)


async def gather_all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that lets every request finish before raising the first failure (nothing half-sent)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)  # type: ignore[arg-type]
