"""Any LangChain chat model as a policy, for the whole-solution strategies, tools included.

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects with ``messages`` (an agent's
history may hold assistant ``tool_calls`` and ``tool`` results, in the OpenAI chat format). Out:
``n`` completions per request, from ``n`` parallel calls of the model, with the finish reason and
token counts the model reports and, for a policy bound to tools (:meth:`ChatModelPolicy.with_tools`),
the tool calls each sampled turn made. ``invoke`` runs the calls on threads, ``ainvoke`` on the
model's async API; both share one limit of ``max_concurrency`` calls in flight, however many graph
runs use the policy at once. A chat model cannot continue a partial assistant message, so
step-level search refuses this policy at graph construction.

Example:
    >>> policy = ChatModelPolicy(ChatOpenAI(model="gpt-4o-mini", temperature=0.8))  # doctest: +SKIP
    >>> graph = create_majority_vote_graph(policy, n=8)  # doctest: +SKIP
    >>> acting = policy.with_tools([get_weather], tool_choice="required")  # doctest: +SKIP

"""

from __future__ import annotations

import asyncio
import copy
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import ContextThreadPoolExecutor

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult, ToolCall
from langchain_ttc.engines.base import PolicyEngine

_LENGTH_REASONS = frozenset({"length", "max_tokens", "MAX_TOKENS"})


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


class ChatModelPolicy(PolicyEngine):
    """A chat model behind the policy interface (sampling settings are the model's own).

    Args:
        model: Any LangChain chat model.
        max_concurrency: Most model calls in flight at once, shared by every call of this policy
            (and of the copies :meth:`with_tools` makes).

    Raises:
        TypeError: If ``model`` is not a chat model.
        ValueError: If ``max_concurrency`` is below 1.

    """

    supports_partial = False

    def __init__(self, model: BaseChatModel, *, max_concurrency: int = 8) -> None:
        if not isinstance(model, BaseChatModel):
            raise TypeError(f"model={type(model).__name__} is not a LangChain BaseChatModel.")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency={max_concurrency} must be at least 1.")
        self.model = model
        self.model_name = getattr(model, "model_name", None) or getattr(model, "model", None) or model._llm_type
        self.provider = "langchain"
        self.max_concurrency = max_concurrency
        self.tools: list[Any] = []
        self._runnable: Runnable[Any, Any] = model
        self._limit = _SharedLimit(max_concurrency)

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
        policy = copy.copy(self)  # shares the model and the concurrency limit
        policy.tools = list(tools)
        policy._runnable = bound
        return policy

    def _calls(self, requests: list[GenerationRequest]) -> tuple[list[list[BaseMessage]], list[int]]:
        calls: list[list[BaseMessage]] = []
        owners: list[int] = []
        for index, request in enumerate(requests):
            if request.partial or request.messages is None:
                raise ValueError(
                    "ChatModelPolicy takes chat requests without partial= (a chat model cannot continue a partial "
                    "assistant message); use a transformers or vLLM policy for step-level search."
                )
            messages = convert_to_messages([dict(m) for m in request.messages])
            calls += [messages] * request.n
            owners += [index] * request.n
        return calls, owners

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        calls, owners = self._calls(requests)

        def call(messages: list[BaseMessage]) -> Any:
            with self._limit.threads:
                return self._runnable.invoke(messages)

        with ContextThreadPoolExecutor(max_workers=max(1, min(len(calls), self.max_concurrency))) as pool:
            replies = list(pool.map(call, calls))
        return self._results(requests, owners, replies)

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Generate on the chat model's async API (every sample a task, under the shared limit)."""
        calls, owners = self._calls(requests)
        limit = self._limit.for_loop()

        async def call(messages: list[BaseMessage]) -> Any:
            async with limit:
                return await self._runnable.ainvoke(messages)

        replies = await asyncio.gather(*(call(messages) for messages in calls))
        return self._results(requests, owners, list(replies))

    def _results(
        self, requests: list[GenerationRequest], owners: list[int], replies: list[Any]
    ) -> list[GenerationResult]:
        completions: list[list[Completion]] = [[] for _ in requests]
        prompt_tokens = [0] * len(requests)
        for owner, reply in zip(owners, replies, strict=True):
            completions[owner].append(self._completion(reply))
            usage = getattr(reply, "usage_metadata", None) or {}
            prompt_tokens[owner] = usage.get("input_tokens", 0)
        return [
            GenerationResult(completions=c, prompt_tokens=p) for c, p in zip(completions, prompt_tokens, strict=True)
        ]

    @staticmethod
    def _completion(reply: Any) -> Completion:
        text = reply.text if isinstance(reply, AIMessage) else str(reply)
        metadata = getattr(reply, "response_metadata", None) or {}
        reason = metadata.get("finish_reason") or metadata.get("stop_reason")
        usage = getattr(reply, "usage_metadata", None) or {}
        calls = getattr(reply, "tool_calls", None) or []  # unparsable calls (invalid_tool_calls) are not actions
        return Completion(
            text=text,
            num_tokens=usage.get("output_tokens", 0),
            finish_reason="length" if reason in _LENGTH_REASONS else "eos",
            tool_calls=[ToolCall(name=c["name"], args=c.get("args") or {}, id=c.get("id")) for c in calls],
        )
