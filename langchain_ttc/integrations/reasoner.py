"""A strategy graph as a reasoning step for LCEL chains.

In: a string, a dict with ``problem`` (or ``messages``), a list of chat messages, or a prompt value
(the output of a prompt template). Out: an ``AIMessage`` whose content is the answer (or the chosen
solution) and whose ``response_metadata["ttc_result"]`` is the whole
:class:`~langchain_ttc.core.types.TTCResult` as data. ``invoke``, ``ainvoke``, ``batch``, ``abatch``,
``stream`` and ``astream_events`` all work, as for any LCEL runnable.

Example:
    >>> from langchain_core.output_parsers import StrOutputParser  # doctest: +SKIP
    >>> chain = prompt | create_reasoner(graph) | StrOutputParser()  # doctest: +SKIP
    >>> chain.invoke({"expression": "3+4*3"})  # doctest: +SKIP
    '4'

"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from langchain_ttc.strategies.graphs import StrategyGraph

ReasonerContent = Literal["answer", "solution"]


def to_graph_input(value: Any) -> dict[str, Any]:
    """Normalise a chain's value into a strategy graph's input.

    Raises:
        TypeError: If the value is none of the accepted kinds.

    """
    if isinstance(value, str):
        return {"problem": value}
    if isinstance(value, PromptValue):
        return {"messages": value.to_messages()}
    if isinstance(value, BaseMessage):
        return {"messages": [value]}
    if isinstance(value, dict) and ("problem" in value or "messages" in value):
        return {key: value[key] for key in ("problem", "messages") if key in value}
    if isinstance(value, list) and all(isinstance(m, (BaseMessage, dict, tuple)) for m in value):
        return {"messages": value}
    raise TypeError(
        f"reasoner input {type(value).__name__} is not supported; pass a string, a dict with 'problem' or "
        "'messages', a list of chat messages, or a prompt value."
    )


def to_message(output: dict[str, Any], content: ReasonerContent = "answer") -> AIMessage:
    """The strategy graph's output as an ``AIMessage`` (usage in ``usage_metadata``)."""
    result = output["result"]
    usage = result["usage"]
    text = result["answer"] if content == "answer" else result["solution"]
    return AIMessage(
        content=text or "",
        response_metadata={"ttc_result": result, "answer": result["answer"], "strategy": result["strategy"]},
        usage_metadata={
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        },
    )


def create_reasoner(graph: StrategyGraph, *, content: ReasonerContent = "answer") -> Runnable[Any, AIMessage]:
    """Wrap a strategy graph as an LCEL runnable (``input normalisation | graph | AIMessage``).

    Args:
        graph: A compiled strategy graph (any ``create_*_graph`` result).
        content: What the message content holds: the ``"answer"`` or the chosen ``"solution"``.

    Raises:
        ValueError: If ``content`` is unknown.

    """
    if content not in ("answer", "solution"):
        raise ValueError(f"content={content!r} is not supported; pass 'answer' or 'solution'.")
    normalise = RunnableLambda(to_graph_input, name="ttc_input")

    # Invoke (not stream) the graph: streamed through a sequence, a graph yields per-node updates.
    def run(value: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return graph.invoke(value, config)

    async def arun(value: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return await graph.ainvoke(value, config)

    solve: Runnable[dict[str, Any], dict[str, Any]] = RunnableLambda(run, afunc=arun, name=graph.name)
    finish: Runnable[dict[str, Any], AIMessage] = RunnableLambda(
        lambda output: to_message(output, content), name="ttc_output"
    )
    return (normalise | solve | finish).with_config(run_name=f"ttc_reasoner:{graph.name}")
