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

The HTTP side is a :class:`~.server_client.ServerClient`: one long-lived async client per engine,
one concurrency limit (``max_concurrency``) shared by every concurrent call, retries with jittered
backoff that honour ``Retry-After``, the API key from the argument or ``OPENAI_API_KEY``. Under
``ainvoke`` the requests run on the caller's event loop (no worker thread). Every request carries a
routing key derived from the conversation (the problem), so all requests of one problem go to one
replica (several URLs) or are kept together by a router's consistent-hash policy (one URL in
front of many replicas: ``X-Session-ID``, see the README's "Scaling out"). After ``max_retries``
a failure raises :class:`ServerError`, which names the URLs and what was tried.

Example:
    >>> replicas = ["http://gpu-1:8000", "http://gpu-2:8000"]
    >>> policy = OpenAICompatiblePolicy(replicas, model="meta-llama/Llama-3.2-1B-Instruct")  # doctest: +SKIP
    >>> policy = OpenAICompatiblePolicy(  # doctest: +SKIP
    ...     "http://gpu-1:8000", model="llama-1b", tokenizer="/models/Llama-3.2-1B-Instruct")

"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import Sequence
from typing import Any

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult
from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.engines.references import resolve_model_reference
from langchain_ttc.engines.server_client import (
    RETRYABLE_STATUS,
    ServerClient,
    ServerError,
    check_base_urls,
    gather_all,
    problem_key,
)
from langchain_ttc.engines.vllm_policy import completion_from_vllm, fitted_max_tokens

__all__ = ["RETRYABLE_STATUS", "OpenAICompatiblePolicy", "ServerError", "check_base_urls", "routing_key"]


def routing_key(request: GenerationRequest) -> str:
    """A stable key for a request's problem: the conversation (or raw prompt) without the partial answer."""
    source = json.dumps(request.messages, sort_keys=True) if request.messages is not None else request.prompt or ""
    return problem_key(source)


class OpenAICompatiblePolicy(PolicyEngine):
    """An OpenAI-compatible completions server (vLLM) as a batched policy engine.

    Args:
        base_url: The server URL (a single server or a router in front of replicas), or a list of
            replica URLs (each problem sticks to one, chosen by its routing key; failures move on).
        model: The model name the server serves.
        tokenizer: The model's tokenizer (a loaded one, a local path or a hub id) that renders chats;
            by default loaded from ``model`` (vLLM serves a model under its path or hub id). Raw
            ``prompt=`` requests need none.
        api_key: Sent as a bearer token; by default ``OPENAI_API_KEY`` when set.
        max_concurrency: Most requests in flight at once, shared by every concurrent call of the engine.
        timeout_s: Timeout of one HTTP request.
        max_retries: Retries of a failed request (each on the next replica) before giving up.
        backoff_s: First retry delay (jittered, doubling); a ``Retry-After`` header wins.

    """

    provider = "openai-compatible"

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        model: str,
        tokenizer: Any = None,
        api_key: str | None = None,
        max_concurrency: int = 64,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        if not model:
            raise ValueError("model='' is empty; pass the model name the server serves (see GET /v1/models).")
        self.client = ServerClient(
            base_url,
            api_key=api_key,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )
        self.base_urls = self.client.base_urls
        self.model = self.model_name = model
        self._tokenizer, self._tokenizer_error = _load_tokenizer(tokenizer, model)
        self._max_model_len: int | None = None  # read from the server's /v1/models on first use
        self._max_model_len_read = False
        self._read_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._read_locks = weakref.WeakKeyDictionary()

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return self.client.run(self._agenerate(requests))

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if not self._max_model_len_read:
            await self._read_context_window()
        groups = self._coalesced(requests)
        replies = await gather_all([self._send(group) for group in groups])
        results: list[GenerationResult | None] = [None] * len(requests)
        for group, parts in zip(groups, replies, strict=True):
            for index, result in zip(group.members, parts, strict=True):
                results[index] = result
        return [r for r in results if r is not None]

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

    async def _read_context_window(self) -> None:
        """Read the context window once: concurrent first calls on one event loop wait for one request."""
        lock = self._read_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if not self._max_model_len_read:
                self._max_model_len, self._max_model_len_read = await self._read_max_model_len(), True

    async def _read_max_model_len(self) -> int | None:
        """The served model's context window (vLLM lists it in ``/v1/models``), or ``None`` if not given."""
        listing = await self.client.aget("/v1/models")
        models = listing.get("data", []) if isinstance(listing, dict) else []
        lengths = [m.get("max_model_len") for m in models if m.get("id") == self.model]
        return lengths[0] if lengths and isinstance(lengths[0], int) else None

    def _body(self, request: GenerationRequest, prompt: list[int] | str) -> dict[str, Any]:
        """The ``/v1/completions`` body of a request (``n`` and ``seed`` as the request has them)."""
        max_tokens = request.max_tokens
        if isinstance(prompt, list):
            max_tokens = fitted_max_tokens(max_tokens, len(prompt), self._max_model_len)
        return {
            "model": self.model,
            "prompt": prompt,
            "n": request.n,
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": request.stop or None,
            "include_stop_str_in_output": True,
            "return_token_ids": True,
            "seed": request.seed,
        }

    def _coalesced(self, requests: list[GenerationRequest]) -> list[_Group]:
        """The HTTP requests of one call: sampled requests for one prompt go out as one request with their ``n`` summed.

        Requests with the same prompt and sampling settings (resampled particles that are copies of
        one partial solution, say) are merged when the merged request samples exactly what they would:
        none is seeded, or each one's seed follows the previous one's block (``seed + n``, as
        :func:`~langchain_ttc.core.seeds.seed_requests` assigns them; vLLM seeds the ``k``-th sample
        ``seed + k``). Each is then answered with its own consecutive choices. Greedy requests are
        not merged (each is sent as its copies). A prompt is rendered once per call.
        """
        groups: list[_Group] = []
        open_groups: dict[tuple[Any, ...], _Group] = {}
        prompts: dict[tuple[str, str], list[int] | str] = {}
        for index, request in enumerate(requests):
            key = routing_key(request)
            rendered = (key, request.partial)
            if rendered not in prompts:
                prompts[rendered] = self.prompt(request)
            prompt = prompts[rendered]
            if request.temperature == 0:
                copies = [{**self._body(request, prompt), "n": 1, "seed": seed} for seed in _copy_seeds(request)]
                groups.append(_Group([index], [request.n], copies, key))
                continue
            same = (rendered, request.max_tokens, request.temperature, request.top_p, tuple(request.stop))
            group = open_groups.get(same)
            if group is not None and group.follows(request):
                group.add(index, request)
                continue
            group = _Group([index], [request.n], [self._body(request, prompt)], key)
            groups.append(group)
            open_groups[same] = group
        return groups

    async def _send(self, group: _Group) -> list[GenerationResult]:
        """Send a group's bodies; one result per member, each with its own choices in order."""
        replies = await gather_all([self.client.apost("/v1/completions", body, key=group.key) for body in group.bodies])
        parts = [self._result(reply) for reply in replies]
        completions: list[Completion] = [c for part in parts for c in part.completions]
        results, start = [], 0
        for n in group.counts:
            results.append(
                GenerationResult(completions=completions[start : start + n], prompt_tokens=parts[0].prompt_tokens)
            )
            start += n
        if start != len(completions):
            raise ServerError(f"the server returned {len(completions)} completions for {start} requested samples.")
        return results

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


def _copy_seeds(request: GenerationRequest) -> list[int | None]:
    """The seeds of a greedy request's ``n`` copies (``seed + k``, or none)."""
    return [None if request.seed is None else request.seed + copy for copy in range(request.n)]


class _Group:
    """One prompt's requests of a call, sent together: their indices, sample counts, bodies and routing key."""

    def __init__(self, members: list[int], counts: list[int], bodies: list[dict[str, Any]], key: str) -> None:
        self.members, self.counts, self.bodies, self.key = members, counts, bodies, key

    def follows(self, request: GenerationRequest) -> bool:
        """Whether merging ``request`` into this (sampled) group samples exactly what sending it alone would."""
        (body,) = self.bodies
        if body["seed"] is None or request.seed is None:
            return body["seed"] is None and request.seed is None
        return bool(request.seed == body["seed"] + body["n"])

    def add(self, index: int, request: GenerationRequest) -> None:
        self.members.append(index)
        self.counts.append(request.n)
        self.bodies[0]["n"] += request.n


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
