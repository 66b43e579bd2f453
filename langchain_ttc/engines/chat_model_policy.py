"""Any LangChain chat model as a policy, for the whole-solution strategies, tools included.

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects with ``messages`` (an agent's
history may hold assistant ``tool_calls`` and ``tool`` results, in the OpenAI chat format). Out:
``n`` completions per request, with the finish reason and token counts the model reports and, for a
policy bound to tools (:meth:`ChatModelPolicy.with_tools`), the tool calls each sampled turn made.

**How the n samples are drawn.** Where the provider samples ``n`` completions in one request (the
OpenAI-compatible ``n`` parameter: ``ChatOpenAI`` and its kin, also against a vLLM server; detected
by the model's ``n`` field, or set ``n_per_request``), a request with ``n > 1`` is one call that asks
for all of them: the prompt is sent and read once. Otherwise (and for greedy requests, which vLLM
refuses with ``n > 1``) the ``n`` samples are ``n`` concurrent calls. ``invoke`` runs the calls on
threads, ``ainvoke`` on the model's async API; both share one limit of ``max_concurrency`` calls in
flight, however many graph runs use the policy at once.

**Sampling settings.** A request's ``temperature``, ``top_p`` (when not 1) and ``seed`` are passed to
the model when the model declares them (``sampling`` names which; ``"max_tokens"`` and ``"stop"``
may be added); a setting the model does not declare keeps the model's own. Concurrent samples of one
seeded request get ``seed``, ``seed + 1``, ... (vLLM's rule), one request with ``n`` gets ``seed``.

**Cost.** Each completion's tokens are the model's ``usage_metadata`` (one request with ``n``
reports the tokens of all its completions together: they are split evenly among them, the prompt
counted once), and :attr:`ChatModelPolicy.usage_by_model` adds them up per model name (the name the
provider reports), as LangChain's ``get_usage_metadata_callback`` does for the runs it sees.

A chat model cannot continue a partial assistant message, so step-level search refuses this policy
at graph construction.

Example:
    >>> policy = ChatModelPolicy(ChatOpenAI(model="gpt-4o-mini"))  # doctest: +SKIP
    >>> graph = create_majority_vote_graph(policy, n=8, temperature=0.7, seed=1)  # one request, n=8  # doctest: +SKIP
    >>> policy.usage_by_model  # doctest: +SKIP
    {'gpt-4o-mini-2024-07-18': {'input_tokens': 41, 'output_tokens': 980, 'total_tokens': 1021, 'requests': 1}}
    >>> acting = policy.with_tools([get_weather], tool_choice="required")  # doctest: +SKIP

"""

from __future__ import annotations

import asyncio
import copy
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.runnables.config import ContextThreadPoolExecutor, ensure_config

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult, ToolCall
from langchain_ttc.engines.base import PolicyEngine

_LENGTH_REASONS = frozenset({"length", "max_tokens", "MAX_TOKENS"})

SAMPLING_SETTINGS = ("temperature", "top_p", "seed", "max_tokens", "stop")
"""The request settings a chat-model policy can pass to its model (``sampling=``)."""

DEFAULT_SAMPLING = ("temperature", "top_p", "seed")
"""The request settings passed by default (when the model declares them)."""


@runtime_checkable
class ToolCallingPolicy(Protocol):
    """A policy that can sample assistant turns which call tools (the chat-model policy is one)."""

    def with_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **options: Any) -> PolicyEngine:
        """The same policy, its sampled turns free to call ``tools``."""
        ...


class _SharedLimit:
    """At most ``size`` calls in flight: one thread semaphore, one asyncio semaphore per event loop."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.threads = threading.BoundedSemaphore(size)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def for_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._loops:
                self._loops[loop] = asyncio.Semaphore(self.size)
            return self._loops[loop]


class TokenTally:
    """Tokens spent per model name, added up over calls (safe to share between threads).

    Example:
        >>> tally = TokenTally()
        >>> tally.add("gpt-4o-mini", 10, 5); tally.add("gpt-4o-mini", 10, 7)
        >>> tally.snapshot()
        {'gpt-4o-mini': {'input_tokens': 20, 'output_tokens': 12, 'total_tokens': 32, 'requests': 2}}

    """

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def add(self, model: str, input_tokens: int, output_tokens: int, *, requests: int = 1) -> None:
        """Add one request's (or ``requests``') tokens to ``model``'s total."""
        with self._lock:
            counts = self._counts.setdefault(
                model, {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "requests": 0}
            )
            counts["input_tokens"] += input_tokens
            counts["output_tokens"] += output_tokens
            counts["total_tokens"] += input_tokens + output_tokens
            counts["requests"] += requests

    def snapshot(self) -> dict[str, dict[str, int]]:
        """The totals so far, per model name (a copy)."""
        with self._lock:
            return {model: dict(counts) for model, counts in self._counts.items()}


@dataclass(frozen=True)
class _Call:
    """One model call: ``count`` samples of request ``owner`` (``count > 1``: one request with ``n``)."""

    owner: int
    messages: list[BaseMessage]
    count: int
    settings: dict[str, Any]


class ChatModelPolicy(PolicyEngine):
    """A chat model behind the policy interface.

    Args:
        model: Any LangChain chat model.
        max_concurrency: Most model calls in flight at once, shared by every call of this policy
            (and of the copies :meth:`with_tools` makes).
        n_per_request: Ask for a request's ``n`` samples in one call (the OpenAI ``n`` parameter).
            ``None``: when the model has an ``n`` field (``ChatOpenAI`` and other OpenAI-compatible
            models); ``False``: always ``n`` concurrent calls.
        sampling: The request settings passed to the model when it declares them, from
            ``temperature``, ``top_p``, ``seed``, ``max_tokens`` and ``stop`` (the rest stay the
            model's own). Pass ``()`` to keep every setting of the model.

    Raises:
        TypeError: If ``model`` is not a chat model.
        ValueError: If ``max_concurrency`` is below 1 or ``sampling`` names an unknown setting.

    Example:
        >>> chat = ChatOpenAI(model="gpt-4o-mini")  # doctest: +SKIP
        >>> policy = ChatModelPolicy(chat, sampling=("temperature", "seed", "max_tokens"))  # doctest: +SKIP

    """

    supports_partial = False

    def __init__(
        self,
        model: BaseChatModel,
        *,
        max_concurrency: int = 8,
        n_per_request: bool | None = None,
        sampling: Sequence[str] = DEFAULT_SAMPLING,
    ) -> None:
        if not isinstance(model, BaseChatModel):
            raise TypeError(f"model={type(model).__name__} is not a LangChain BaseChatModel.")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency={max_concurrency} must be at least 1.")
        unknown = sorted(set(sampling) - set(SAMPLING_SETTINGS))
        if unknown:
            raise ValueError(
                f"sampling={list(sampling)} names {unknown}; pass settings from {list(SAMPLING_SETTINGS)}."
            )
        declared = set(type(model).model_fields)
        self.model = model
        self.model_name = getattr(model, "model_name", None) or getattr(model, "model", None) or model._llm_type
        self.provider = "langchain"
        self.max_concurrency = max_concurrency
        self.n_per_request = "n" in declared if n_per_request is None else n_per_request
        self.sampling = tuple(s for s in sampling if s in declared or s == "stop")  # stop= is every model's
        self.tools: list[Any] = []
        self._runnable: Runnable[Any, Any] = model
        self._bound: dict[str, Any] | None = {}  # the binding's options, for calls that ask for n samples at once
        self._limit = _SharedLimit(max_concurrency)
        self._tally = TokenTally()

    @property
    def usage_by_model(self) -> dict[str, dict[str, int]]:
        """Tokens this policy (and its :meth:`with_tools` copies) spent, per model name.

        Each entry holds ``input_tokens``, ``output_tokens``, ``total_tokens`` and ``requests``.
        """
        return self._tally.snapshot()

    def with_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **options: Any) -> ChatModelPolicy:
        """The same policy (same model, same concurrency limit), its sampled turns free to call ``tools``.

        Args:
            tools: Tools as LangChain accepts them (``BaseTool``, functions, OpenAI schemas).
            tool_choice: ``None`` (the model decides), ``"auto"``, ``"required"``/``"any"``, ``"none"``
                or a tool's name, passed to the model's ``bind_tools``.
            **options: Other ``bind_tools`` options of the model (for example ``parallel_tool_calls``).

        Raises:
            TypeError: If the chat model cannot call tools (its ``bind_tools`` is not implemented).

        Example:
            >>> acting = policy.with_tools([get_weather], tool_choice="required")  # doctest: +SKIP

        """
        try:
            bound = self.model.bind_tools(list(tools), tool_choice=tool_choice, **options)
        except NotImplementedError as error:
            raise TypeError(
                f"ChatModelPolicy(model={type(self.model).__name__}) cannot call tools: the model does not implement "
                "bind_tools; use a chat model with tool calling (for example ChatOpenAI against a vLLM server)."
            ) from error
        policy = copy.copy(self)  # shares the model, the concurrency limit and the token tally
        policy.tools = list(tools)
        policy._runnable = bound
        plain = isinstance(bound, RunnableBinding) and bound.bound is self.model
        policy._bound = dict(getattr(bound, "kwargs", {})) if plain else None  # another wrapper: one call per sample
        return policy

    # ---- the calls of a batch ----

    def _settings(self, request: GenerationRequest, copy_index: int) -> dict[str, Any]:
        """What the ``copy_index``-th call of ``request`` passes to the model (see the module docs)."""
        settings: dict[str, Any] = {}
        if "temperature" in self.sampling:
            settings["temperature"] = request.temperature
        if "top_p" in self.sampling and request.top_p != 1.0:
            settings["top_p"] = request.top_p
        if "seed" in self.sampling and request.seed is not None:
            settings["seed"] = request.seed + copy_index
        if "max_tokens" in self.sampling:
            settings["max_tokens"] = request.max_tokens
        if "stop" in self.sampling and request.stop:
            settings["stop"] = list(request.stop)
        return settings

    def _calls(self, requests: list[GenerationRequest]) -> list[_Call]:
        calls: list[_Call] = []
        for index, request in enumerate(requests):
            if request.partial or request.messages is None:
                raise ValueError(
                    "ChatModelPolicy takes chat requests without partial= (a chat model cannot continue a partial "
                    "assistant message); use a transformers or vLLM policy for step-level search."
                )
            messages = convert_to_messages([dict(m) for m in request.messages])
            together = self.n_per_request and self._bound is not None and request.n > 1 and request.temperature > 0
            if together:
                calls.append(_Call(index, messages, request.n, self._settings(request, 0)))
            else:
                calls += [_Call(index, messages, 1, self._settings(request, k)) for k in range(request.n)]
        return calls

    def _generate_kwargs(self, call: _Call, count: int) -> dict[str, Any]:
        """The keyword arguments of ``model.generate`` for ``count`` samples of ``call`` (run config included)."""
        config = ensure_config()  # the policy run's config: the samples nest under it in traces
        settings = dict(call.settings)
        stop = settings.pop("stop", None)
        return {
            "stop": stop,
            "callbacks": config.get("callbacks"),
            "tags": config.get("tags"),
            "metadata": config.get("metadata"),
            "n": count,
            **(self._bound or {}),
            **settings,
        }

    def _run(self, call: _Call) -> tuple[list[Any], bool]:
        """The replies of one call (sync); whether their usage is the whole request's (one call for ``n``)."""
        with self._limit.threads:
            if call.count == 1:
                return [self._runnable.invoke(call.messages, **call.settings)], False
            result = self.model.generate([call.messages], **self._generate_kwargs(call, call.count))
        replies = _messages(result)
        missing = call.count - len(replies)  # a provider that ignored n: the rest one call each
        single = _Call(call.owner, call.messages, 1, call.settings)
        return replies + [self._run(single)[0][0] for _ in range(missing)], True

    async def _arun(self, call: _Call) -> tuple[list[Any], bool]:
        limit = self._limit.for_loop()
        async with limit:
            if call.count == 1:
                return [await self._runnable.ainvoke(call.messages, **call.settings)], False
            result = await self.model.agenerate([call.messages], **self._generate_kwargs(call, call.count))
        replies = _messages(result)
        missing = call.count - len(replies)
        single = _Call(call.owner, call.messages, 1, call.settings)
        extra = await asyncio.gather(*(self._arun(single) for _ in range(missing)))
        return replies + [e[0][0] for e in extra], True

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        calls = self._calls(requests)
        with ContextThreadPoolExecutor(max_workers=max(1, min(len(calls), self.max_concurrency))) as pool:
            replies = list(pool.map(self._run, calls))
        return self._results(requests, calls, replies)

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Generate on the chat model's async API (every call a task, under the shared limit)."""
        calls = self._calls(requests)
        replies = await asyncio.gather(*(self._arun(call) for call in calls))
        return self._results(requests, calls, list(replies))

    # ---- replies to completions ----

    def _results(
        self, requests: list[GenerationRequest], calls: list[_Call], replies: list[tuple[list[Any], bool]]
    ) -> list[GenerationResult]:
        completions: list[list[Completion]] = [[] for _ in requests]
        prompt_tokens = [0] * len(requests)
        for call, (messages, shared) in zip(calls, replies, strict=True):
            first = messages[0]
            usage = getattr(first, "usage_metadata", None) or {}
            prompt_tokens[call.owner] = usage.get("input_tokens", 0)
            if shared:  # one request for n: its usage covers all of them, split evenly (the prompt read once)
                shares = _split(usage.get("output_tokens", 0), len(messages))
                completions[call.owner] += [
                    self._completion(m, tokens=t) for m, t in zip(messages, shares, strict=True)
                ]
                self._tally.add(_served_model(first, str(self.model_name)), usage.get("input_tokens", 0), sum(shares))
            else:
                completions[call.owner] += [self._completion(m) for m in messages]
                for m in messages:
                    used = getattr(m, "usage_metadata", None) or {}
                    self._tally.add(
                        _served_model(m, str(self.model_name)),
                        used.get("input_tokens", 0),
                        used.get("output_tokens", 0),
                    )
        return [
            GenerationResult(completions=c, prompt_tokens=p) for c, p in zip(completions, prompt_tokens, strict=True)
        ]

    @staticmethod
    def _completion(reply: Any, *, tokens: int | None = None) -> Completion:
        text = reply.text if isinstance(reply, AIMessage) else str(reply)
        metadata = getattr(reply, "response_metadata", None) or {}
        reason = metadata.get("finish_reason") or metadata.get("stop_reason")
        usage = getattr(reply, "usage_metadata", None) or {}
        calls = getattr(reply, "tool_calls", None) or []  # unparsable calls (invalid_tool_calls) are not actions
        return Completion(
            text=text,
            num_tokens=usage.get("output_tokens", 0) if tokens is None else tokens,
            finish_reason="length" if reason in _LENGTH_REASONS else "eos",
            tool_calls=[ToolCall(name=c["name"], args=c.get("args") or {}, id=c.get("id")) for c in calls],
        )


def _messages(result: LLMResult) -> list[Any]:
    """The messages of the one prompt a ``generate`` call was given."""
    return [getattr(g, "message", g.text) for g in result.generations[0]]


def _split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` near-equal shares (the first ones take the remainder), summing to ``total``.

    Example:
        >>> _split(10, 3)
        [4, 3, 3]

    """
    base, rest = divmod(total, parts)
    return [base + (1 if k < rest else 0) for k in range(parts)]


def _served_model(reply: Any, default: str) -> str:
    """The model that served ``reply`` (the provider's ``model_name``), else the policy's model name."""
    metadata = getattr(reply, "response_metadata", None) or {}
    return str(metadata.get("model_name") or default)
