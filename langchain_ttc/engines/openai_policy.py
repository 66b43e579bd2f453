"""A policy engine on an OpenAI-compatible server (vLLM's), one URL or several replicas.

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects. Out: per request, ``n`` completions,
with the same semantics as the in-process vLLM policy: stop strings kept in the text
(``include_stop_str_in_output``), a ``partial`` assistant text continued in place, finish reasons
that tell a stop string, end of sequence and ``max_tokens`` apart (vLLM's ``stop_reason``), and
token counts from the server.

The prompt is rendered here, with the model's own tokenizer, exactly as the in-process engines
render it (:func:`~langchain_ttc.engines.chat_template.prompt_token_ids`: chat template, partial
assistant text continued, whitespace a trimming template drops put back), and sent as token ids to
``/v1/completions``. The server's ``/v1/chat/completions`` would render it again with a template that
may trim the step delimiter off a partial message (Llama 3.x's does), and every step would come back
empty. Greedy requests with ``n > 1`` are sent as ``n`` greedy copies (vLLM refuses ``n > 1`` at
temperature 0).

Requests of a call are sent concurrently (at most ``max_concurrency`` at a time), spread
round-robin over the replicas. A failed request (connection error, timeout, HTTP 429 or 5xx) is
retried with exponential backoff on the next replica; after ``max_retries`` it raises
:class:`ServerError`, which names the URLs and what was tried.

Example:
    >>> replicas = ["http://gpu-1:8000", "http://gpu-2:8000"]
    >>> policy = OpenAICompatiblePolicy(replicas, model="meta-llama/Llama-3.2-1B-Instruct")  # doctest: +SKIP
    >>> policy = OpenAICompatiblePolicy(  # doctest: +SKIP
    ...     "http://gpu-1:8000", model="llama-1b", tokenizer="/models/Llama-3.2-1B-Instruct")

"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult
from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.engines.references import resolve_model_reference
from langchain_ttc.engines.vllm_policy import completion_from_vllm, fitted_max_tokens

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
        tokenizer: The model's tokenizer (a loaded one, a local path or a hub id) that renders chats;
            by default loaded from ``model`` (vLLM serves a model under its path or hub id). Raw
            ``prompt=`` requests need none.
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
        tokenizer: Any = None,
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
        self._tokenizer, self._tokenizer_error = _load_tokenizer(tokenizer, model)
        self._max_model_len: int | None = None  # read from the server's /v1/models on first use
        self._max_model_len_read = False
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
            if not self._max_model_len_read:
                self._max_model_len, self._max_model_len_read = await self._read_max_model_len(client), True
            return list(await asyncio.gather(*(self._one(client, limit, r) for r in requests)))

    @property
    def tokenizer(self) -> Any:
        """The tokenizer that renders chats.

        Raises:
            ValueError: If it could not be loaded (the message says from where and how to pass one).

        """
        if self._tokenizer is None:
            raise ValueError(self._tokenizer_error)
        return self._tokenizer

    def prompt(self, request: GenerationRequest) -> list[int] | str:
        """What is sent as ``prompt``: the token ids the in-process engines feed the model.

        A raw prompt without a tokenizer is sent as text (the server adds its special tokens, as the
        in-process engines do for raw prompts).
        """
        if request.messages is None and self._tokenizer is None:
            return (request.prompt or "") + request.partial
        return prompt_token_ids(self.tokenizer, request)

    async def _read_max_model_len(self, client: httpx.AsyncClient) -> int | None:
        """The served model's context window (vLLM lists it in ``/v1/models``), or ``None`` if not given."""
        try:
            response = await client.get(self.base_urls[0] + "/v1/models")
            models = response.json().get("data", []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError):
            return None
        lengths = [m.get("max_model_len") for m in models if m.get("id") == self.model]
        return lengths[0] if lengths and isinstance(lengths[0], int) else None

    def _bodies(self, request: GenerationRequest) -> list[dict[str, Any]]:
        copies, n = (request.n, 1) if request.temperature == 0 else (1, request.n)
        prompt = self.prompt(request)
        max_tokens = request.max_tokens
        if isinstance(prompt, list):
            max_tokens = fitted_max_tokens(max_tokens, len(prompt), self._max_model_len)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "n": n,
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": request.stop or None,
            "include_stop_str_in_output": True,
            "return_token_ids": True,
        }
        return [{**body, "seed": None if request.seed is None else request.seed + copy} for copy in range(copies)]

    async def _one(
        self, client: httpx.AsyncClient, limit: asyncio.Semaphore, request: GenerationRequest
    ) -> GenerationResult:
        parts = [await self._post(client, limit, body) for body in self._bodies(request)]
        completions: list[Completion] = [c for part in parts for c in part.completions]
        return GenerationResult(completions=completions, prompt_tokens=parts[0].prompt_tokens)

    async def _post(
        self, client: httpx.AsyncClient, limit: asyncio.Semaphore, body: dict[str, Any]
    ) -> GenerationResult:
        path = "/v1/completions"
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
            text = choice["text"]
            token_ids = choice.get("token_ids")
            tokens = (
                len(token_ids) if token_ids is not None else round(usage.get("completion_tokens", 0) / len(choices))
            )
            completions.append(
                completion_from_vllm(text or "", tokens, choice.get("finish_reason"), choice.get("stop_reason"))
            )
        return GenerationResult(completions=completions, prompt_tokens=usage.get("prompt_tokens", 0))


def _load_tokenizer(tokenizer: Any, model: str) -> tuple[Any, str]:
    """The tokenizer (or ``None``) and, when it could not be loaded, the error to raise on first use.

    An explicit path or id that does not load raises at once; the default (``model``) is only
    needed once a chat is sent.
    """
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer, ""
    source = model if tokenizer is None else tokenizer
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(resolve_model_reference(source, parameter="tokenizer")), ""
    except (ImportError, OSError, ValueError) as error:
        message = (
            f"tokenizer={str(source)!r} could not be loaded ({type(error).__name__}: {error}); chats are rendered "
            "locally with the model's tokenizer: pass tokenizer= a local directory or hub id of the served model "
            "(pip install transformers)."
        )
        if tokenizer is not None:
            raise ValueError(message) from error
        return None, message
