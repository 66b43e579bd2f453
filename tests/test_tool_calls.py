"""Voting over tool calls and the tool-calling chat-model facade (unit tests, scripted chat models).

The key: arguments compared as JSON values (key order, whitespace, number forms), the calls of a
turn in any order, replies when most turns reply. The facade: ``bind_tools`` refuses what cannot
vote over tool calls, ``n`` sampled turns reach the chat model with the tools, the vote's turn comes
back with its calls (invoke, ainvoke, stream, astream), runs nest under the chat model's run, and
``create_agent`` runs a whole agent on it. The real-server version is ``test_agent_vllm.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any, Literal

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run

from langchain_ttc import (
    TOOL_CALL_ANSWERS,
    Candidate,
    create_beam_search_graph,
    create_majority_vote_graph,
    create_weighted_best_of_n_graph,
    majority_vote,
    tool_call_answers,
    weighted_best_of_n,
)
from langchain_ttc.core.answers import MATH_ANSWERS
from langchain_ttc.core.tool_calls import (
    canonical_json,
    parse_tool_calls_answer,
    render_tool_call,
    tool_calls_answer,
)
from langchain_ttc.core.types import ToolCall
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy
from langchain_ttc.engines.function_prm import FunctionPRM
from langchain_ttc.integrations.chat_model import TTCChatModel
from langchain_ttc.integrations.tools import create_ttc_tool
from tests.fakes import ScriptedChatModel, ScriptedPolicy, last_step_prm

PARIS = {"name": "get_weather", "args": {"city": "Paris"}}
TOKYO = {"name": "get_weather", "args": {"city": "Tokyo"}}


@tool
def get_weather(city: Literal["Paris", "Tokyo"]) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def turn(text: str = "", *calls: dict[str, Any], finish: str = "eos", score: float | None = None) -> Candidate:
    tool_calls = [ToolCall(name=c["name"], args=c["args"]) for c in calls]
    answer = TOOL_CALL_ANSWERS.answer_of(text, tool_calls)
    return Candidate(text=text, steps=[], answer=answer, finish_reason=finish, tool_calls=tool_calls, score=score)  # type: ignore[arg-type]


def voting_model(replies: list[Any], *, n: int = 3, **policy_options: Any) -> tuple[TTCChatModel, ScriptedChatModel]:
    chat = ScriptedChatModel(replies=replies)
    graph = create_majority_vote_graph(ChatModelPolicy(chat, **policy_options), n=n, answer_key=TOOL_CALL_ANSWERS)
    return TTCChatModel(graph=graph), chat


# ---------------------------------------------------------------- the key


def test_arguments_equal_as_json_are_the_same_action() -> None:
    same = [
        [ToolCall(name="f", args={"a": 1, "b": {"x": [1.0, 2.5]}})],
        [ToolCall(name="f", args={"b": {"x": [1, 2.50]}, "a": 1.0}, id="other-id")],
    ]
    assert tool_calls_answer(same[0]) == tool_calls_answer(same[1])
    assert canonical_json('{ "b" : 2.0,\n "a": "x  y" }') == '{"a":"x  y","b":2}'  # whitespace inside strings kept
    two = [ToolCall(name="f", args={"a": 1}), ToolCall(name="g")]
    assert tool_calls_answer(two) == tool_calls_answer(two[::-1])  # a turn's calls in any order
    different = [
        [ToolCall(name="g", args={"a": 1, "b": {"x": [1, 2.5]}})],  # another tool
        [ToolCall(name="f", args={"a": 2, "b": {"x": [1, 2.5]}})],  # another value
        [ToolCall(name="f", args={"a": True, "b": {"x": [1, 2.5]}})],  # true is not 1
        [ToolCall(name="f", args={"a": "1", "b": {"x": [1, 2.5]}})],  # "1" is not 1
        [*same[0], *same[0]],  # calling it twice is another action
    ]
    answers = {tool_calls_answer(calls) for calls in [same[0], *different]}
    assert len(answers) == len(different) + 1
    assert parse_tool_calls_answer(tool_calls_answer(two)) == [ToolCall(name="f", args={"a": 1}), ToolCall(name="g")]
    assert render_tool_call(two[0]) == 'Tool call: f {"a": 1}'
    with pytest.raises(ValueError, match="are not JSON"):
        canonical_json("{city: Paris}")


def test_replies_are_read_by_the_reply_key_and_never_taken_for_actions() -> None:
    assert TOOL_CALL_ANSWERS.answer_of("  It is\n sunny. ") == "It is sunny."
    assert TOOL_CALL_ANSWERS.answer_of("   ") is None
    action = tool_calls_answer([ToolCall(name="f")])
    assert TOOL_CALL_ANSWERS.answer_of(action) is None  # a reply that spells an action out does not vote as one
    math = tool_call_answers(MATH_ANSWERS)
    assert math.answer_of("so \\boxed{0.5}") == "0.5" and math.equivalent("0.5", "\\frac{1}{2}")
    assert not math.equivalent(action, "0.5")
    with pytest.raises(TypeError, match=r"reply_key=.* is not an AnswerKey"):
        tool_call_answers("math")  # type: ignore[arg-type]


def test_majority_vote_picks_the_most_frequent_tool_call_ties_to_the_first() -> None:
    paris_spaced = {"name": "get_weather", "args": {"city": "Paris", "days": 1.0}}
    paris_plain = {"name": "get_weather", "args": {"days": 1, "city": "Paris"}}
    truncated = turn("", TOKYO, finish="length")
    candidates = [turn("", TOKYO), turn("", paris_spaced), turn("checking", paris_plain), truncated]
    selection = majority_vote(candidates, key=TOOL_CALL_ANSWERS)
    assert selection.chosen_index == 1  # two Paris calls; the truncated Tokyo call does not vote
    assert sorted(g.weight for g in selection.groups) == [1.0, 2.0]
    tie = majority_vote([turn("", TOKYO), turn("", PARIS), turn("", PARIS), turn("", TOKYO)], key=TOOL_CALL_ANSWERS)
    assert tie.chosen_index == 0  # equal votes: the call seen first


def test_the_agent_acts_or_replies_as_most_turns_do() -> None:
    replies = [turn("Sunny."), turn("", PARIS), turn("It is sunny."), turn("", PARIS), turn("Sunny!")]
    assert majority_vote(replies, key=TOOL_CALL_ANSWERS).chosen_index == 0  # three replies outvote two equal calls
    acting = [turn("", PARIS), turn("Sunny."), turn("", TOKYO), turn("Sunny.")]
    assert majority_vote(acting, key=TOOL_CALL_ANSWERS).chosen_index == 0  # 2 acts vs 2 replies: the first family
    no_tools = [turn("Sunny."), turn("Rainy."), turn("sunny."), turn(" Rainy. ")]
    assert majority_vote(no_tools, key=TOOL_CALL_ANSWERS).chosen_index == 1


def test_weighted_best_of_n_sums_scores_per_tool_call() -> None:
    candidates = [turn("", TOKYO, score=0.9), turn("", PARIS, score=0.6), turn("", PARIS, score=0.5)]
    selection = weighted_best_of_n(candidates, key=TOOL_CALL_ANSWERS)
    assert selection.chosen_index == 1 and max(g.weight for g in selection.groups) == pytest.approx(1.1)


# ---------------------------------------------------------------- the strategies over a chat model


def test_majority_vote_graph_samples_n_turns_with_the_tools_and_returns_the_vote() -> None:
    model, chat = voting_model([TOKYO, PARIS, PARIS, "Sunny."], n=4)
    reply = model.bind_tools([get_weather], tool_choice="any").invoke("What is the weather in Paris?")
    assert len(chat.calls) == 4
    assert all(tools[0]["function"]["name"] == "get_weather" and choice == "any" for _, tools, choice in chat.calls)
    assert isinstance(reply, AIMessage) and [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    result = reply.response_metadata["ttc_result"]
    votes = Counter(json.dumps([(t["name"], t["args"]) for t in c["tool_calls"]]) for c in result["candidates"])
    assert votes.most_common(1)[0][1] == 2
    assert result["answer"] == '{"tool_calls":[{"args":{"city":"Paris"},"name":"get_weather"}]}'
    assert reply.usage_metadata == {"input_tokens": 7, "output_tokens": 12, "total_tokens": 19}


def test_weighted_best_of_n_with_a_judge_that_reads_the_tool_calls() -> None:
    judged: list[list[str]] = []

    def judge(problem: str, steps: list[str]) -> list[float]:
        judged.append(steps)
        return [1.0 if "Tokyo" in step else 0.2 for step in steps]

    chat = ScriptedChatModel(replies=[PARIS, TOKYO, PARIS])
    graph = create_weighted_best_of_n_graph(
        ChatModelPolicy(chat), FunctionPRM(judge), n=3, answer_key=TOOL_CALL_ANSWERS
    )
    reply = TTCChatModel(graph=graph).bind_tools([get_weather]).invoke("Weather in Tokyo?")
    tokyo = render_tool_call(ToolCall(name="get_weather", args={"city": "Tokyo"}))
    assert sorted(judged) == sorted([['Tool call: get_weather {"city": "Paris"}']] * 2 + [[tokyo]])
    assert reply.tool_calls[0]["args"] == {"city": "Tokyo"}  # 1.0 beats 0.2 + 0.2


def test_an_agent_whose_every_decision_is_a_vote() -> None:
    from langchain.agents import create_agent

    model, chat = voting_model([PARIS, TOKYO, PARIS, "It is sunny.", "Sunny!", "It is  sunny."])
    messages = create_agent(model, tools=[get_weather]).invoke({"messages": [HumanMessage("Weather in Paris?")]})
    kinds = [type(m).__name__ for m in messages["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    action, result, final = messages["messages"][1:]
    assert action.tool_calls[0]["args"] == {"city": "Paris"} and result.content == "Sunny in Paris"
    # The winning reply group ("It is sunny." twice, whitespace aside); which of its two texts is shown
    # depends on the order the threads sampled them in.
    assert " ".join(final.content.split()) == "It is sunny." and not final.tool_calls
    history = chat.calls[-1][0]  # the second decision saw the chosen call and its result
    assert history[1].tool_calls[0]["id"] == action.tool_calls[0]["id"]
    assert isinstance(history[2], ToolMessage) and history[2].tool_call_id == action.tool_calls[0]["id"]


def test_a_graph_built_with_the_math_key_votes_over_tool_calls_once_tools_are_bound() -> None:
    chat = ScriptedChatModel(replies=[TOKYO, PARIS, PARIS, "Sunny."])
    graph = create_majority_vote_graph(ChatModelPolicy(chat), n=4)  # answers="math": ignores tool calls
    reply = TTCChatModel(graph=graph).bind_tools([get_weather]).invoke("What is the weather in Paris?")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert reply.response_metadata["ttc_result"]["answer"].startswith('{"tool_calls":[{"args":{"city":"Paris"}')
    boxed = ChatModelPolicy(ScriptedChatModel(replies=["\\boxed{2}"]))
    plain = TTCChatModel(graph=create_majority_vote_graph(boxed, n=2))
    assert plain.invoke("1+1?").response_metadata["ttc_result"]["answer"] == "2"  # no tools: the graph's own key


# ---------------------------------------------------------------- bad input


def test_bind_tools_refuses_what_cannot_vote_over_tool_calls() -> None:
    scripted = create_majority_vote_graph(ScriptedPolicy(["\\boxed{1}"]), n=2, answer_key=TOOL_CALL_ANSWERS)
    with pytest.raises(TypeError, match=r"policy=ScriptedPolicy cannot call tools: .*ChatModelPolicy"):
        TTCChatModel(graph=scripted).bind_tools([get_weather])
    no_tools = ChatModelPolicy(GenericFakeChatModel(messages=iter([])))
    graph = create_majority_vote_graph(no_tools, n=2, answer_key=TOOL_CALL_ANSWERS)
    with pytest.raises(TypeError, match=r"model=GenericFakeChatModel.* cannot call tools: .*not implement bind_tools"):
        TTCChatModel(graph=graph).bind_tools([get_weather])
    search = create_beam_search_graph(ScriptedPolicy(["x"]), last_step_prm({}), n=2, beam_width=2)
    with pytest.raises(TypeError, match=r"graph='beam_search'.*only a graph built by create_majority_vote_graph"):
        TTCChatModel(graph=search).bind_tools([get_weather])
    model, _ = voting_model([PARIS])
    with pytest.raises(ValueError, match=r"does not take \['parallel_tool_calls'\]"):
        model.bind_tools([get_weather], parallel_tool_calls=False)


# ---------------------------------------------------------------- async, streaming, callbacks, the tool


def test_async_runs_use_the_chat_models_async_api_under_one_shared_limit() -> None:
    chat = ScriptedChatModel(replies=[PARIS], delay_s=0.05)
    policy = ChatModelPolicy(chat, max_concurrency=2).with_tools([get_weather])
    request = {"messages": [{"role": "user", "content": "Weather?"}], "n": 3}

    async def two_runs() -> list[Any]:
        return await asyncio.gather(policy.ainvoke([request]), policy.ainvoke([request]))

    results = asyncio.run(two_runs())
    assert chat.async_calls == 6 and chat.most_in_flight == 2  # six calls, never more than two at once
    calls = [c.tool_calls[0] for result in results for c in result[0].completions]
    assert len(calls) == 6 and {(c.name, c.args["city"]) for c in calls} == {("get_weather", "Paris")}
    sync_chat = ScriptedChatModel(replies=["x"], delay_s=0.05)
    ChatModelPolicy(sync_chat, max_concurrency=3).invoke([{**request, "n": 7}])
    assert len(sync_chat.calls) == 7 and sync_chat.most_in_flight == 3


def test_ainvoke_of_the_facade_votes_too() -> None:
    model, chat = voting_model([TOKYO, PARIS, PARIS])
    reply = asyncio.run(model.bind_tools([get_weather]).ainvoke("Weather in Paris?"))
    assert reply.tool_calls[0]["args"] == {"city": "Paris"} and len(chat.calls) == 3


def test_streaming_yields_the_chosen_turn_tool_call_chunks_included() -> None:
    # Identical samples: the sync policy samples on threads, so which scripted reply goes to which sample varies.
    model, _ = voting_model([{"text": "Let me check.", **PARIS}] * 3)
    bound = model.bind_tools([get_weather])
    chunks = list(bound.stream("Weather in Paris?"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.tool_call_chunks[0]["name"] for c in chunks if c.tool_call_chunks] == ["get_weather"]
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.content == "Let me check." and whole.tool_calls[0]["args"] == {"city": "Paris"}
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] == 9

    async def astream() -> list[Any]:
        return [chunk async for chunk in bound.astream("Weather in Paris?")]

    streamed_calls = [c.tool_call_chunks[0]["args"] for c in asyncio.run(astream()) if c.tool_call_chunks]
    assert streamed_calls == ['{"city": "Paris"}']


class _Runs(BaseTracer):
    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.roots.append(run)


def _tree(run: Run) -> list[tuple[int, str]]:
    def walk(node: Run, depth: int) -> list[tuple[int, str]]:
        return [(depth, node.name), *(x for child in node.child_runs for x in walk(child, depth + 1))]

    return walk(run, 0)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_a_tracer_sees_the_graph_and_the_engine_runs_under_the_chat_models_run(mode: str) -> None:
    model, _ = voting_model([PARIS, PARIS, TOKYO])
    bound, tracer = model.bind_tools([get_weather]), _Runs()
    config: Any = {"callbacks": [tracer]}
    if mode == "invoke":
        bound.invoke("Weather?", config)
    elif mode == "ainvoke":
        asyncio.run(bound.ainvoke("Weather?", config))
    elif mode == "stream":
        list(bound.stream("Weather?", config))
    else:

        async def drain() -> None:
            async for _ in bound.astream("Weather?", config):
                pass

        asyncio.run(drain())
    assert len(tracer.roots) == 1
    tree = _tree(tracer.roots[0])
    assert tree[0] == (0, "TTCChatModel") and (1, "majority_vote") in tree
    policy_depth = next(depth for depth, name in tree if name == "ttc:policy")
    assert [d for d, name in tree if name == "ScriptedChatModel"] == [policy_depth + 1] * 3


def test_an_agents_message_stream_shows_the_chosen_turns_not_the_samples() -> None:
    from langchain.agents import create_agent

    model, chat = voting_model([PARIS, TOKYO, PARIS, "It is sunny.", "Sunny.", "It is sunny."])
    agent = create_agent(model, tools=[get_weather])
    streamed = [m for m, _ in agent.stream({"messages": [HumanMessage("Weather?")]}, stream_mode="messages")]
    assert len(chat.calls) == 6  # two decisions of three samples each
    ai = [m for m in streamed if isinstance(m, AIMessage | AIMessageChunk)]
    assert len(ai) == 2 and ai[0].tool_calls[0]["args"] == {"city": "Paris"} and ai[1].content == "It is sunny."


def test_the_ttc_tool_runs_the_graph_asynchronously() -> None:
    graph = create_majority_vote_graph(ScriptedPolicy(["so \\boxed{7}"]), n=2)
    solver = create_ttc_tool(graph)
    message = asyncio.run(solver.ainvoke({"type": "tool_call", "name": solver.name, "id": "c1",
                                          "args": {"problem": "What is 3+4?"}}))  # fmt: skip
    assert message.content.startswith("Answer: 7 (strategy majority_vote, 2 candidates")
    assert message.artifact["answer"] == "7"
