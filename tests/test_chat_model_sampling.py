"""Chat-model policies that sample well: n samples in one request where the provider takes ``n``, else concurrent
calls under the shared limit; temperature, top_p and seed passed when the model declares them; tokens per model."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from pydantic import Field

from langchain_ttc import create_majority_vote_graph
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy
from tests.fakes import ScriptedChatModel

ASK = {"messages": [{"role": "user", "content": "Pick a number."}]}


class OpenAILike(ScriptedChatModel):
    """Declares ``n``, ``temperature``, ``top_p``, ``seed`` and ``max_tokens`` as ChatOpenAI does, and answers ``n``
    completions in one call with the usage of the whole request on every message (as langchain-openai does).

    ``honour_n=False`` plays a provider that ignores ``n``. Every call's keyword arguments are recorded.
    """

    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    honour_n: bool = True
    seen: list[dict[str, Any]] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return self._answer(kwargs, stop)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return self._answer(kwargs, stop)

    def _answer(self, kwargs: dict[str, Any], stop: Any) -> ChatResult:
        with self._lock:
            self.seen.append({**kwargs, "stop": stop})
            count = (kwargs.get("n") or 1) if self.honour_n else 1
            texts = [f"\\boxed{{{(len(self.seen) * 10 + k) % 3}}}" for k in range(count)]
        usage = {"input_tokens": 12, "output_tokens": 5 * count + 1, "total_tokens": 12 + 5 * count + 1}
        generations = []
        for text in texts:
            message = AIMessage(content=text)
            message.usage_metadata = dict(usage)  # type: ignore[assignment]
            message.response_metadata = {"finish_reason": "stop", "model_name": "served-model-v2"}
            generations.append(ChatGeneration(message=message))
        return ChatResult(generations=generations)


def test_n_samples_are_one_request_with_n_where_the_provider_takes_it() -> None:
    chat = OpenAILike(replies=["unused"])
    policy = ChatModelPolicy(chat)
    assert policy.n_per_request and policy.sampling == ("temperature", "top_p", "seed")
    (result,) = policy.invoke([{**ASK, "n": 4, "temperature": 0.7, "seed": 5, "top_p": 0.9, "max_tokens": 64}])
    assert len(chat.seen) == 1 and len(result.completions) == 4
    (kwargs,) = chat.seen
    assert (kwargs["n"], kwargs["temperature"], kwargs["seed"], kwargs["top_p"]) == (4, 0.7, 5, 0.9)
    assert "max_tokens" not in kwargs and kwargs["stop"] is None  # the model's own limit unless asked
    # The request's usage (21 output tokens for four completions) is split among them; the prompt is read once.
    assert [c.num_tokens for c in result.completions] == [6, 5, 5, 5] and result.prompt_tokens == 12
    assert policy.usage_by_model == {
        "served-model-v2": {"input_tokens": 12, "output_tokens": 21, "total_tokens": 33, "requests": 1}
    }


def test_greedy_requests_and_models_without_n_are_concurrent_calls_with_their_own_seeds() -> None:
    chat = OpenAILike(replies=["unused"])
    ChatModelPolicy(chat).invoke([{**ASK, "n": 3, "temperature": 0.0, "seed": 7}])  # vLLM refuses n > 1 when greedy
    assert sorted(k["seed"] for k in chat.seen) == [7, 8, 9] and all("n" not in k for k in chat.seen)
    forced = OpenAILike(replies=["unused"])
    ChatModelPolicy(forced, n_per_request=False).invoke([{**ASK, "n": 2, "temperature": 1.0, "seed": 1}])
    assert sorted(k["seed"] for k in forced.seen) == [1, 2]
    plain = ScriptedChatModel(replies=["\\boxed{1}"])  # declares none of the settings: none is passed
    policy = ChatModelPolicy(plain, max_concurrency=2)
    assert not policy.n_per_request and policy.sampling == ()
    (result,) = policy.invoke([{**ASK, "n": 3, "temperature": 0.3, "seed": 1}])
    assert len(plain.calls) == 3 and len(result.completions) == 3


def test_a_provider_that_ignores_n_is_topped_up_one_call_each() -> None:
    chat = OpenAILike(replies=["unused"], honour_n=False)
    (result,) = ChatModelPolicy(chat).invoke([{**ASK, "n": 3, "temperature": 0.8}])
    assert len(result.completions) == 3 and [k.get("n") for k in chat.seen] == [3, None, None]


def test_the_async_path_asks_for_n_too_and_tool_bindings_go_along() -> None:
    @tool
    def pick(number: int) -> str:
        """Pick a number."""
        return str(number)

    chat = OpenAILike(replies=["unused"])
    policy = ChatModelPolicy(chat).with_tools([pick], tool_choice="pick")
    (result,) = asyncio.run(policy.ainvoke([{**ASK, "n": 2, "temperature": 0.9, "seed": 3}]))
    (kwargs,) = chat.seen
    assert len(result.completions) == 2 and kwargs["n"] == 2 and kwargs["tool_choice"] == "pick"
    assert kwargs["tools"][0]["function"]["name"] == "pick"
    assert policy.usage_by_model["served-model-v2"]["requests"] == 1


def test_max_tokens_and_stop_are_passed_when_asked_and_unknown_settings_refused() -> None:
    chat = OpenAILike(replies=["unused"])
    policy = ChatModelPolicy(chat, sampling=("max_tokens", "stop"))
    policy.invoke([{**ASK, "n": 1, "max_tokens": 33, "stop": ["\n\n"]}])
    (kwargs,) = chat.seen
    assert kwargs["max_tokens"] == 33 and kwargs["stop"] == ["\n\n"] and "temperature" not in kwargs
    with pytest.raises(ValueError, match=r"names \['logit_bias'\]"):
        ChatModelPolicy(chat, sampling=("temperature", "logit_bias"))


def test_strategies_sample_through_one_request_and_langchain_counts_its_tokens_once() -> None:
    chat = OpenAILike(replies=["unused"])
    graph = create_majority_vote_graph(ChatModelPolicy(chat), n=5, temperature=0.6, seed=11)
    with get_usage_metadata_callback() as usage:
        out = graph.invoke({"problem": "Pick a number."})
    assert len(chat.seen) == 1 and chat.seen[0]["n"] == 5 and chat.seen[0]["temperature"] == 0.6
    assert chat.seen[0]["seed"] is not None  # the run's seed, derived for this draw
    assert out["result"]["usage"]["completion_tokens"] == 26 and len(out["result"]["candidates"]) == 5
    assert usage.usage_metadata["served-model-v2"]["output_tokens"] == 26  # one request, counted once
