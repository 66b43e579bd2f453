"""``TTCChatModel`` streams through LangChain's ``_stream`` / ``_astream``: ``on_llm_new_token`` fires
for every chunk of ``stream`` and ``astream`` (scripted engines), the chunks add up to what ``invoke``
returns, the graph's runs stay nested under the chat model's run, and ``invoke`` does not stream."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_ttc import create_majority_vote_graph
from langchain_ttc.integrations.chat_model import TTCChatModel
from tests.fakes import ScriptedPolicy

SOLUTION = "First 2+3=5.\n\nSo \\boxed{5}."


class TokenCounter(BaseCallbackHandler):
    """Counts ``on_llm_new_token`` per run, and records every run's parent."""

    def __init__(self) -> None:
        self.tokens: list[tuple[UUID, str, Any]] = []
        self.parents: dict[UUID, UUID | None] = {}
        self.names: dict[UUID, str] = {}

    def on_llm_new_token(self, token: str, *, run_id: UUID, chunk: Any = None, **kwargs: Any) -> None:
        self.tokens.append((run_id, token, chunk))

    def _started(self, serialized: Any, run_id: UUID, kwargs: dict[str, Any]) -> None:
        self.parents[run_id] = kwargs.get("parent_run_id")
        self.names[run_id] = kwargs.get("name") or (serialized or {}).get("name") or ""

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._started(serialized, run_id, kwargs)

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._started(serialized, run_id, kwargs)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._started(serialized, run_id, kwargs)


class AsyncTokenCounter(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


def model() -> TTCChatModel:
    return TTCChatModel(graph=create_majority_vote_graph(ScriptedPolicy([SOLUTION]), n=3))


def _added(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    return whole


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_every_streamed_chunk_reaches_on_llm_new_token(mode: str) -> None:
    counter = TokenCounter()
    config: Any = {"callbacks": [counter]}
    if mode == "stream":
        chunks = list(model().stream("What is 2+3?", config))
    else:

        async def collect() -> list[AIMessageChunk]:
            return [chunk async for chunk in model().astream("What is 2+3?", config)]

        chunks = asyncio.run(collect())
    assert len(chunks) == 2  # the text, then the metadata and usage
    (chat_run,) = [run for run, name in counter.names.items() if name == "TTCChatModel"]
    assert [token for _, token, _ in counter.tokens] == [SOLUTION, ""]
    assert all(run == chat_run and isinstance(chunk, ChatGenerationChunk) for run, _, chunk in counter.tokens)
    whole = _added(chunks)
    assert whole.content == SOLUTION and whole.response_metadata["answer"] == "5"
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] == 3 * len(SOLUTION)
    # the strategy graph (and, under it, the policy) ran nested under the chat model's run
    (graph_run,) = [run for run, name in counter.names.items() if name == "majority_vote"]
    assert counter.parents[graph_run] == chat_run
    (policy_run,) = [run for run, name in counter.names.items() if name == "ttc:policy"]
    ancestors, run = [], counter.parents[policy_run]
    while run is not None:
        ancestors.append(run)
        run = counter.parents.get(run)
    assert graph_run in ancestors and chat_run in ancestors


def test_an_async_handler_counts_the_chunks_of_astream() -> None:
    counter = AsyncTokenCounter()

    async def collect() -> list[AIMessageChunk]:
        return [chunk async for chunk in model().astream("What is 2+3?", {"callbacks": [counter]})]

    chunks = asyncio.run(collect())
    assert counter.tokens == [SOLUTION, ""] and len(chunks) == 2


def test_streamed_chunks_add_up_to_invoke_and_invoke_does_not_stream() -> None:
    counter = TokenCounter()
    message = model().invoke("What is 2+3?", {"callbacks": [counter]}, stop=["\n\n"])
    assert counter.tokens == []  # invoke runs _generate, whole
    streamed = _added(list(model().stream("What is 2+3?", stop=["\n\n"])))
    assert streamed.content == message.content == "First 2+3=5."
    assert streamed.usage_metadata == message.usage_metadata
    streamed_result, result = streamed.response_metadata["ttc_result"], message.response_metadata["ttc_result"]
    assert streamed_result["candidates"] == result["candidates"]
    assert streamed_result["answer"] == result["answer"] == "5"
