"""A chat-model facade: any strategy graph as a LangChain ``BaseChatModel``, tool calling included.

In: chat messages (the last user message is the problem; an agent's history with its tool calls and
tool results is passed on whole). Out: an ``AIMessage`` whose content is the chosen solution (or
just the answer), with the whole result in ``response_metadata["ttc_result"]`` and token usage in
``usage_metadata``. Drop it into an agent or a chain where a chat model goes.

Tool calling: :meth:`TTCChatModel.bind_tools` works on a sample-then-select graph (majority vote,
best-of-N, weighted best-of-N) built on a
:class:`~langchain_ttc.engines.chat_model_policy.ChatModelPolicy`: each call samples ``n`` assistant
turns that may call the tools, votes over them with
:data:`~langchain_ttc.core.tool_calls.TOOL_CALL_ANSWERS` (the same tool with equal arguments is the
same action; replies when most turns reply), and returns the chosen turn with its tool calls, so
``create_agent(TTCChatModel(...), tools=[...])`` is an agent whose every decision is a vote. A graph
built with a key that ignores tool calls (``answers="math"``, the default) runs its tool-calling
turns with ``answers="tool_calls"`` in the run's context; a graph whose own key reads tool calls
keeps it. Anything else is refused at ``bind_tools`` with the fix.

``invoke`` and ``ainvoke`` (``graph.ainvoke``) run the graph (``_generate`` / ``_agenerate``).
Streaming is LangChain's ``stream``/``astream`` on ``_stream`` / ``_astream``: they run the graph,
then yield the chosen message as chunks (its text, then one chunk per tool call, then usage), each
reported to ``on_llm_new_token`` callbacks; added up, the chunks are what ``invoke`` returns. Only
``stream``/``astream`` stream: ``invoke`` runs ``_generate`` even when a streaming callback handler
listens (an agent streamed with ``stream_mode="messages"`` gets the chosen turn whole). Callbacks
reach the strategy graph and its engine runs, which a tracer sees nested under the chat model's
run, streamed runs included; they are tagged ``nostream``, so an agent's ``messages`` stream shows
the chosen turn and not the ``n`` sampled ones. ``stop`` strings cut the returned text.

Example:
    >>> policy = ChatModelPolicy(ChatOpenAI(base_url=url, temperature=0.8))  # doctest: +SKIP
    >>> graph = create_majority_vote_graph(policy, n=5, answer_key=TOOL_CALL_ANSWERS)  # doctest: +SKIP
    >>> agent = create_agent(TTCChatModel(graph=graph), tools=[get_weather])  # doctest: +SKIP

"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.constants import TAG_NOSTREAM
from pydantic import ConfigDict, Field

from langchain_ttc.integrations.reasoner import ReasonerContent, to_message
from langchain_ttc.strategies.context import TTCContext, with_tools
from langchain_ttc.strategies.parts import parts_of

_VOTING_BUILDERS = "create_majority_vote_graph, create_best_of_n_graph or create_weighted_best_of_n_graph"


@dataclass(frozen=True)
class _StreamParent:
    """The run a streamed call's graph nests under: its id (pinned before LangChain starts it) and callbacks."""

    run_id: uuid.UUID
    callbacks: BaseCallbackManager


_STREAM_PARENT: ContextVar[_StreamParent | None] = ContextVar("ttc_chat_model_stream_parent", default=None)
"""Set by ``stream``/``astream`` while LangChain starts the run and calls ``_stream``/``_astream``, which take it.

LangChain's ``stream`` does not hand ``_stream`` its run manager (by design: it reports the chunks
itself), so this is how the graph's runs still nest under the chat model's run.
"""


class TTCChatModel(BaseChatModel):
    """A strategy graph behind the chat-model interface.

    Attributes:
        graph: The compiled strategy graph to run for each call.
        content: ``"solution"`` (default: the chosen solution text) or ``"answer"``.

    Example:
        >>> model = TTCChatModel(graph=create_majority_vote_graph(policy, n=8))  # doctest: +SKIP
        >>> model.invoke("What is 3+4*3?").response_metadata["answer"]  # doctest: +SKIP
        '15'

    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    graph: Any = Field(description="A compiled strategy graph (any create_*_graph result).")
    content: ReasonerContent = "solution"

    @property
    def _llm_type(self) -> str:
        return "ttc"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"strategy": getattr(self.graph, "name", None), "content": self.content}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "langchain_ttc"
        params["ls_model_name"] = str(kwargs.get("model") or getattr(self.graph, "name", "ttc"))
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Let the sampled turns call ``tools``; every call then votes over ``n`` sampled turns.

        Args:
            tools: Tools as LangChain accepts them (``BaseTool``, functions, pydantic models, OpenAI schemas).
            tool_choice: Passed to the policy's chat model: ``None``/``"auto"`` (it decides),
                ``"any"``/``"required"`` (it must call a tool), ``"none"``, or a tool's name.
            strict: Ask the server to follow each tool's JSON schema exactly (OpenAI ``strict``; vLLM
                then decodes arguments under the schema, which small models need).
            **kwargs: Only ``ls_structured_output_format`` (set by ``with_structured_output``).

        Raises:
            TypeError: If the graph cannot vote over tool calls: not a sample-then-select graph, or its
                policy cannot call tools (not a ``ChatModelPolicy`` on a tool-calling chat model).
            ValueError: If an option is not supported.

        Example:
            >>> policy = ChatModelPolicy(chat)  # doctest: +SKIP
            >>> graph = create_majority_vote_graph(policy, n=5, answer_key=TOOL_CALL_ANSWERS)  # doctest: +SKIP
            >>> TTCChatModel(graph=graph).bind_tools([get_weather], tool_choice="any")  # doctest: +SKIP

        """
        unsupported = set(kwargs) - {"ls_structured_output_format"}
        if unsupported:
            raise ValueError(
                f"TTCChatModel.bind_tools does not take {sorted(unsupported)}; pass tools, tool_choice and strict "
                "(set other options on the chat model inside the ChatModelPolicy)."
            )
        name = getattr(self.graph, "name", type(self.graph).__name__)
        parts = parts_of(self.graph)
        if parts is None:
            raise TypeError(
                f"TTCChatModel(graph={name!r}).bind_tools: only a graph built by {_VOTING_BUILDERS} votes over whole "
                "assistant turns, tool calls included; build one of those on a ChatModelPolicy."
            )
        schemas = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        with_tools(parts.policy, schemas, tool_choice=tool_choice)  # a policy that cannot call tools fails now
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    # ------------------------------------------------------------------ runs

    def _run_args(
        self, messages: list[BaseMessage], tools: list[dict[str, Any]] | None, tool_choice: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if not tools:
            return {"messages": messages}, {}
        parts = parts_of(self.graph)
        answers = None if parts is None or parts.answer_key.reads_tool_calls else "tool_calls"
        return {"messages": messages}, {"context": TTCContext(tools=tools, tool_choice=tool_choice, answers=answers)}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        graph_input, extra = self._run_args(messages, tools, tool_choice)
        output = self.graph.invoke(graph_input, _graph_config(run_manager), **extra)
        return ChatResult(generations=[ChatGeneration(message=self._message(output, stop))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        graph_input, extra = self._run_args(messages, tools, tool_choice)
        output = await self.graph.ainvoke(graph_input, _graph_config(run_manager), **extra)
        return ChatResult(generations=[ChatGeneration(message=self._message(output, stop))])

    def _should_stream(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        """Stream only for ``stream``/``astream``: ``invoke`` keeps ``_generate``, its run manager and its nesting."""
        return bool(kwargs.get("stream")) and super()._should_stream(
            async_api=async_api, run_manager=run_manager, **kwargs
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Run the strategy (the whole vote), then yield the chosen message as chunks.

        The answer exists only once the vote is done: the chunks are its text, one chunk per tool call
        (``tool_call_chunks``), then a last chunk with the metadata and usage; added up they equal
        what ``invoke`` returns. Each goes to ``run_manager.on_llm_new_token`` when LangChain hands
        the run manager over (its ``stream`` reports the chunks itself).
        """
        graph_input, extra = self._run_args(messages, tools, tool_choice)
        output = self.graph.invoke(graph_input, _graph_config(run_manager), **extra)
        for chunk in _chunks(self._message(output, stop)):
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=generation)
            yield generation

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Run the strategy with ``graph.ainvoke``, then yield the chosen message as chunks (see :meth:`_stream`)."""
        graph_input, extra = self._run_args(messages, tools, tool_choice)
        output = await self.graph.ainvoke(graph_input, _graph_config(run_manager), **extra)
        for chunk in _chunks(self._message(output, stop)):
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=generation)
            yield generation

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:  # fmt: skip
        """LangChain's ``stream`` (chunks from :meth:`_stream`), with the graph's runs nested under its run.

        Nothing but plumbing: the run's id and callbacks are fixed here and handed to ``_stream``,
        which LangChain calls without its run manager.
        """
        config, parent = _pinned(config, CallbackManager)
        chunks = super().stream(input, config, stop=stop, **kwargs)
        token = _STREAM_PARENT.set(parent)
        try:
            first = next(chunks, None)  # LangChain starts the run and _stream runs the graph, under `parent`
        finally:
            _STREAM_PARENT.reset(token)
        if first is not None:
            yield first
            yield from chunks

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:  # fmt: skip
        """LangChain's ``astream`` (chunks from :meth:`_astream`), with the graph's runs nested (see :meth:`stream`)."""
        config, parent = _pinned(config, AsyncCallbackManager)
        chunks = super().astream(input, config, stop=stop, **kwargs)
        token = _STREAM_PARENT.set(parent)
        try:
            first = await anext(chunks, None)
        finally:
            _STREAM_PARENT.reset(token)
        if first is not None:
            yield first
            async for chunk in chunks:
                yield chunk

    def _message(self, output: dict[str, Any], stop: list[str] | None) -> AIMessage:
        message = to_message(output, self.content)
        result = output["result"]
        chosen = result["chosen_index"]
        calls = result["candidates"][chosen].get("tool_calls") if chosen is not None else None
        if calls:  # an action: the chosen turn's own text and calls
            message.content = result["candidates"][chosen]["text"]
            message.tool_calls = [
                {"name": c["name"], "args": c["args"], "id": c.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                 "type": "tool_call"}
                for c in calls
            ]  # fmt: skip
        if stop and isinstance(message.content, str):  # cut the text at the first stop string, as chat models do
            message.content = min((message.content.split(s, 1)[0] for s in stop), key=len)
        return message


def _chunks(message: AIMessage) -> Iterator[AIMessageChunk]:
    """The chosen message as stream chunks: its text, one chunk per tool call, then metadata and usage."""
    if message.text:
        yield AIMessageChunk(content=message.text, id=message.id)
    for index, call in enumerate(message.tool_calls):
        part = ToolCallChunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=index)
        yield AIMessageChunk(content="", tool_call_chunks=[part], id=message.id)
    yield AIMessageChunk(
        content="",
        id=message.id,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        chunk_position="last",
    )


def _pinned(
    config: RunnableConfig | None, manager_class: type[CallbackManager] | type[AsyncCallbackManager]
) -> tuple[RunnableConfig, _StreamParent]:
    """``config`` with the run's id and callbacks fixed, and the parent they make for the graph's runs.

    LangChain's run copies the fixed callbacks' handlers (a tracer among them, so it knows the run),
    and the graph's runs get the same handlers with the fixed run as their parent.
    """
    config = ensure_config(config)
    run_id = config.pop("run_id", None) or uuid.uuid4()
    callbacks = manager_class.configure(
        config.get("callbacks"), inheritable_tags=config.get("tags"), inheritable_metadata=config.get("metadata")
    )
    return {**config, "callbacks": callbacks, "run_id": run_id}, _StreamParent(run_id, callbacks)


def _graph_config(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None) -> RunnableConfig:
    """The config of the graph's run: nested under the chat model's run, tagged ``nostream``.

    The parent is ``run_manager`` when LangChain hands it over, else the run ``stream``/``astream``
    pinned (taken, so a nested call does not see it), else the surrounding runnable's config.
    """
    if run_manager is not None:
        return {"callbacks": _children_of(run_manager)}
    parent = _STREAM_PARENT.get()
    if parent is not None:
        _STREAM_PARENT.set(None)
        return {"callbacks": _children_of(parent.callbacks, run_id=parent.run_id)}
    return {"tags": [*ensure_config().get("tags", []), TAG_NOSTREAM]}  # on top of the surrounding config


def _children_of(
    parent: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | BaseCallbackManager,
    *,
    run_id: uuid.UUID | None = None,
) -> CallbackManager | AsyncCallbackManager:
    """Callbacks for runs nested under a run (its inheritable handlers, tags and metadata).

    ``parent`` is the run's manager, or the callbacks it was started with and ``run_id`` its id.
    """
    is_async = isinstance(parent, AsyncCallbackManagerForLLMRun | AsyncCallbackManager)
    manager_class = AsyncCallbackManager if is_async else CallbackManager
    parent_run_id = run_id if run_id is not None else getattr(parent, "run_id", None)
    manager = manager_class(handlers=[], parent_run_id=parent_run_id)
    manager.set_handlers(parent.inheritable_handlers)
    manager.add_tags(parent.inheritable_tags)
    manager.add_tags([TAG_NOSTREAM])  # an agent's "messages" stream shows the chosen turn, not the n samples
    manager.add_metadata(parent.inheritable_metadata)
    return manager
