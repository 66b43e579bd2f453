"""A chat-model facade: any strategy graph as a LangChain ``BaseChatModel``, tool calling included.

In: chat messages (the last user message is the problem; an agent's history with its tool calls and
tool results is passed on whole). Out: an ``AIMessage`` whose content is the chosen solution (or
just the answer), with the whole result in ``response_metadata["ttc_result"]`` and token usage in
``usage_metadata``. Drop it into an agent or a chain where a chat model goes.

Tool calling: :meth:`TTCChatModel.bind_tools` works on a sample-then-select graph (majority vote,
best-of-N, weighted best-of-N) built on a
:class:`~langchain_ttc.engines.chat_model_policy.ChatModelPolicy` and voting with
:data:`~langchain_ttc.core.tool_calls.TOOL_CALL_ANSWERS`: each call samples ``n`` assistant turns
that may call the tools, votes over them (the same tool with equal arguments is the same action;
replies when most turns reply), and returns the chosen turn with its tool calls, so
``create_agent(TTCChatModel(...), tools=[...])`` is an agent whose every decision is a vote.
Anything else is refused at ``bind_tools`` with the fix.

``invoke`` and ``ainvoke`` (``graph.ainvoke``) run the graph; ``stream``/``astream`` run it and then
stream the chosen message as chunks (its text, then one chunk per tool call, then usage). Callbacks
reach the strategy graph and its engine runs, which a tracer sees nested under the chat model's
run; they are tagged ``nostream``, so an agent streamed with ``stream_mode="messages"`` shows the
chosen turn and not the ``n`` sampled ones. ``stop`` strings cut the returned text.

Example:
    >>> policy = ChatModelPolicy(ChatOpenAI(base_url=url, temperature=0.8))  # doctest: +SKIP
    >>> graph = create_majority_vote_graph(policy, n=5, answer_key=TOOL_CALL_ANSWERS)  # doctest: +SKIP
    >>> agent = create_agent(TTCChatModel(graph=graph), tools=[get_weather])  # doctest: +SKIP

"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.constants import TAG_NOSTREAM
from pydantic import ConfigDict, Field

from langchain_ttc.integrations.reasoner import ReasonerContent, to_message
from langchain_ttc.strategies.context import TTCContext, with_tools
from langchain_ttc.strategies.parts import parts_of

_VOTING_BUILDERS = "create_majority_vote_graph, create_best_of_n_graph or create_weighted_best_of_n_graph"


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
            ValueError: If the graph's answer key ignores tool calls, or an option is not supported.

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
        if not parts.answer_key.reads_tool_calls:
            raise ValueError(
                f"TTCChatModel(graph={name!r}).bind_tools: the graph votes with answer_key={parts.answer_key.name!r}, "
                "which ignores tool calls; build it with answer_key=TOOL_CALL_ANSWERS (from langchain_ttc)."
            )
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    # ------------------------------------------------------------------ runs

    def _run_args(
        self, messages: list[BaseMessage], tools: list[dict[str, Any]] | None, tool_choice: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        extra = {"context": TTCContext(tools=tools, tool_choice=tool_choice)} if tools else {}
        return {"messages": messages}, extra

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
        config: RunnableConfig = {"callbacks": _children_of(run_manager)} if run_manager else {}
        graph_input, extra = self._run_args(messages, tools, tool_choice)
        output = self.graph.invoke(graph_input, config, **extra)
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
        config: RunnableConfig = {"callbacks": _children_of(run_manager)} if run_manager else {}
        graph_input, extra = self._run_args(messages, tools, tool_choice)
        output = await self.graph.ainvoke(graph_input, config, **extra)
        return ChatResult(generations=[ChatGeneration(message=self._message(output, stop))])

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:  # fmt: skip
        """Run the strategy (one traced run, as ``invoke``), then stream the chosen message as chunks.

        The answer exists only once the vote is done: the chunks are its text, one chunk per tool call
        (``tool_call_chunks``), then a last chunk with the metadata and usage; added up they equal
        what ``invoke`` returns.
        """
        yield from _chunks(self.invoke(input, config, stop=stop, **kwargs))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:  # fmt: skip
        """Run the strategy with ``ainvoke``, then stream the chosen message as chunks (see :meth:`stream`)."""
        for chunk in _chunks(await self.ainvoke(input, config, stop=stop, **kwargs)):
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


def _chunks(message: BaseMessage) -> Iterator[AIMessageChunk]:
    """The chosen message as stream chunks: its text, one chunk per tool call, then metadata and usage."""
    assert isinstance(message, AIMessage)
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


def _children_of(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun,
) -> CallbackManager | AsyncCallbackManager:
    """Callbacks for runs nested under the chat model's run (its inheritable handlers, tags and metadata)."""
    manager_class = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    manager = manager_class(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_tags([TAG_NOSTREAM])  # an agent's "messages" stream shows the chosen turn, not the n samples
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager
