"""A chat-model facade: any strategy graph as a LangChain ``BaseChatModel``.

In: chat messages (the last user message is the problem). Out: an ``AIMessage`` whose content is
the chosen solution (or just the answer), with the whole result in
``response_metadata["ttc_result"]`` and token usage in ``usage_metadata``. Drop it into an agent or
a chain where a chat model goes. Callbacks reach the strategy graph and its engine runs (a tracer
sees them nested under the chat model's run); ``stop`` strings cut the returned text. Tool calling
is not supported (``bind_tools`` raises).

Example:
    >>> model = TTCChatModel(graph=create_weighted_best_of_n_graph(policy, prm, n=8))  # doctest: +SKIP
    >>> model.invoke("Keep only the last digit after each step. What is 3+4*3?").content  # doctest: +SKIP
    '3+4=7, so 7*3\\n\\n7*2=4. The answer is \\\\boxed{4}.'

"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManager, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field

from langchain_ttc.integrations.reasoner import ReasonerContent, to_message


class TTCChatModel(BaseChatModel):
    """A strategy graph behind the chat-model interface.

    Attributes:
        graph: The compiled strategy graph to run for each call.
        content: ``"solution"`` (default: the chosen solution text) or ``"answer"``.

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

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config: RunnableConfig = {"callbacks": _children_of(run_manager)} if run_manager else {}
        output = self.graph.invoke({"messages": messages}, config)
        message = to_message(output, self.content)
        if stop and isinstance(message.content, str):  # cut the text at the first stop string, as chat models do
            message.content = min((message.content.split(s, 1)[0] for s in stop), key=len)
        return ChatResult(generations=[ChatGeneration(message=message)])


def _children_of(run_manager: CallbackManagerForLLMRun) -> CallbackManager:
    """Callbacks for runs nested under the chat model's run (its inheritable handlers, tags and metadata)."""
    manager = CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager
