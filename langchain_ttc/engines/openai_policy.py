"""A policy engine on an OpenAI-compatible server (vLLM's), one URL or several replicas.

In: :class:`~langchain_ttc.types.GenerationRequest` objects. Out: per request, ``n`` completions,
with the same semantics as the in-process vLLM policy: stop strings kept in the text
(``include_stop_str_in_output``), a ``partial`` assistant text continued in place
(``continue_final_message``), finish reasons that tell a stop string, end of sequence and
``max_tokens`` apart (vLLM's ``stop_reason``), and token counts from the server.

Requests of a call are sent concurrently (at most ``max_concurrency`` at a time), spread
round-robin over the replicas. A failed request (connection error, timeout, HTTP 429 or 5xx) is
retried with exponential backoff on the next replica; after ``max_retries`` it raises
:class:`ServerError`, which names the URLs and what was tried.

Example:
    >>> replicas = ["http://gpu-1:8000", "http://gpu-2:8000"]
    >>> policy = OpenAICompatiblePolicy(replicas, model="meta-llama/Llama-3.2-1B-Instruct")  # doctest: +SKIP

"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.vllm_policy import completion_from_vllm, request_seed
from langchain_ttc.types import GenerationRequest, GenerationResult

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class ServerError(RuntimeError):
    """A model server failed after every retry."""


def check_base_urls(base_url: str | Sequence[str]) -> list[str]:
    """Return the base URLs as a list without trailing slashes, or raise a clear ``ValueError``."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise ValueError("base_url=[] is empty; pass a server URL such as 'http://127.0.0.1:8000'.")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url={url!r} is not an http(s) URL; pass for example 'http://127.0.0.1:8000'.")
    return [url.rstrip("/").removesuffix("/v1") for url in urls]


class OpenAICompatiblePolicy(PolicyEngine):
    """An OpenAI-compatible completions server (vLLM) as a batched policy engine.

    Args:
        base_url: The server URL, or a list of replica URLs used round-robin.
        model: The model name the server serves.
        api_key: Sent as a bearer token when given.
        max_concurrency: Most requests in flight at once.
        timeout_s: Timeout of one HTTP request.
        max_retries: Retries of a failed request (each on the next replica) before giving up.
        backoff_s: First retry delay; it doubles on each retry.

    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_urls = check_base_urls(base_url)
        if not model:
            raise ValueError("model='' is empty; pass the model name the server serves (see GET /v1/models).")
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError(
                f"max_concurrency={max_concurrency}, max_retries={max_retries}, timeout_s={timeout_s}, "
                f"backoff_s={backoff_s}: pass max_concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0."
            )
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._next_replica = itertools.count()
        self._lock = threading.Lock()

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._agenerate(requests))
        with ThreadPoolExecutor(max_workers=1) as pool:  # called from inside an event loop
            return pool.submit(asyncio.run, self._agenerate(requests)).result()

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        limit = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers) as client:
            return list(await asyncio.gather(*(self._one(client, limit, r, i) for i, r in enumerate(requests))))

    def _body(self, request: GenerationRequest, index: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": request.n,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request_seed(request, index),
            "stop": request.stop or None,
            "include_stop_str_in_output": True,
            "return_token_ids": True,
        }
        if request.messages is None:
            return "/v1/completions", {**body, "prompt": (request.prompt or "") + request.partial}
        messages = [dict(m) for m in request.messages]
        if request.partial:
            messages.append({"role": "assistant", "content": request.partial})
        return "/v1/chat/completions", {
            **body,
            "messages": messages,
            "continue_final_message": bool(request.partial),
            "add_generation_prompt": not request.partial,
        }

    async def _one(
        self, client: httpx.AsyncClient, limit: asyncio.Semaphore, request: GenerationRequest, index: int
    ) -> GenerationResult:
        path, body = self._body(request, index)
        tried: list[str] = []
        async with limit:
            for attempt in range(self.max_retries + 1):
                with self._lock:
                    url = self.base_urls[next(self._next_replica) % len(self.base_urls)] + path
                try:
                    response = await client.post(url, json=body)
                    if response.status_code in RETRYABLE_STATUS:
                        raise httpx.HTTPStatusError(
                            f"HTTP {response.status_code}", request=response.request, response=response
                        )
                    if response.status_code >= 400:
                        raise ServerError(
                            f"{url} refused the request (HTTP {response.status_code}): {response.text[:500]}"
                        )
                    return self._result(response.json())
                except (httpx.TransportError, httpx.HTTPStatusError) as error:
                    tried.append(f"{url}: {type(error).__name__}: {error}")
                    if attempt < self.max_retries:
                        await asyncio.sleep(self.backoff_s * 2**attempt)
        raise ServerError(
            f"the model server failed after {len(tried)} attempts ({', '.join(self.base_urls)}); tried: "
            + "; ".join(tried)
        )

    @staticmethod
    def _result(payload: dict[str, Any]) -> GenerationResult:
        choices = sorted(payload["choices"], key=lambda c: c["index"])
        usage = payload.get("usage") or {}
        completions = []
        for choice in choices:
            text = choice["message"]["content"] if "message" in choice else choice["text"]
            token_ids = choice.get("token_ids")
            tokens = (
                len(token_ids) if token_ids is not None else round(usage.get("completion_tokens", 0) / len(choices))
            )
            completions.append(
                completion_from_vllm(text or "", tokens, choice.get("finish_reason"), choice.get("stop_reason"))
            )
        return GenerationResult(completions=completions, prompt_tokens=usage.get("prompt_tokens", 0))
