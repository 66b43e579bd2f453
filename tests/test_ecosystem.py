"""LangChain and LangGraph ecosystem: LCEL reasoning step, subgraphs, runtime context, tracing,
tools in an agent built by LangChain's own agent factory, and the chat-model facade in an agent.
All on the real shipped Arith checkpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from langchain_ttc import TTCResult, create_strategy_graph, make_problems
from langchain_ttc.integrations.chat_model import TTCChatModel
from langchain_ttc.integrations.reasoner import create_reasoner
from langchain_ttc.integrations.tools import create_ttc_tool

pytestmark = pytest.mark.integration

PROBLEM = make_problems(1, 2, seed=51)[0]
STRATEGIES = [
    "majority_vote",
    "best_of_n",
    "weighted_best_of_n",
    "beam_search",
    "dvts",
    "compute_optimal",
    "self_refine",
]


def build(strategy: str, policy: Any, prm: Any, **options: Any) -> Any:
    extra = {"beam_width": 2} if strategy in ("beam_search", "dvts") else {}
    return create_strategy_graph(strategy, policy, prm, n=4, seed=0, max_tokens=64, **extra, **options)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_a_reasoning_step_in_lcel(strategy: str, arith_policy: Any, arith_prm: Any) -> None:
    graph = build(strategy, arith_policy, arith_prm)
    expected = graph.invoke({"problem": PROBLEM.problem})["answer"] or ""
    prompt = ChatPromptTemplate.from_messages([("user", "Keep only the last digit after each step. What is {expr}?")])
    expression = PROBLEM.problem.split("What is ")[1].rstrip("?")
    chain = prompt | create_reasoner(graph) | StrOutputParser()
    assert chain.invoke({"expr": expression}) == expected
    reasoner = create_reasoner(graph)
    for value in (PROBLEM.problem, {"problem": PROBLEM.problem}, [HumanMessage(PROBLEM.problem)]):
        message = reasoner.invoke(value)
        assert message.content == expected
        result = TTCResult.model_validate(message.response_metadata["ttc_result"])
        assert result.strategy == strategy and message.usage_metadata["output_tokens"] == result.usage.completion_tokens
    both = RunnableParallel(
        answer=chain, solution=prompt | create_reasoner(graph, content="solution") | StrOutputParser()
    )
    out = both.invoke({"expr": expression})
    assert out["answer"] == expected and (expected == "" or f"\\boxed{{{expected}}}" in out["solution"])


def test_reasoner_batch_async_stream_and_events(arith_policy: Any) -> None:
    graph = build("majority_vote", arith_policy, None)
    reasoner = create_reasoner(graph) | StrOutputParser()
    problems = [p.problem for p in make_problems(3, 1, seed=52)]
    expected = [graph.invoke({"problem": p})["answer"] or "" for p in problems]
    assert reasoner.batch(problems, {"max_concurrency": 2}) == expected
    assert asyncio.run(reasoner.abatch(problems, {"max_concurrency": 2})) == expected
    assert asyncio.run(reasoner.ainvoke(problems[0])) == expected[0]
    assert "".join(reasoner.stream(problems[0])) == expected[0]

    async def events() -> list[dict[str, Any]]:
        return [e async for e in reasoner.astream_events(problems[0], version="v2")]

    seen = asyncio.run(events())
    names = {e["name"] for e in seen}
    assert {"majority_vote", "generate", "select", "ttc:policy"} <= names
    custom = [e["data"]["type"] for e in seen if e["event"] == "on_custom_event"]
    assert custom == ["ttc.generated", "ttc.selected"]
    assert seen[-1]["event"] == "on_chain_end" and seen[-1]["data"]["output"] == expected[0]


def test_reasoner_rejects_unknown_input_and_content(arith_policy: Any) -> None:
    graph = build("majority_vote", arith_policy, None)
    with pytest.raises(TypeError, match="reasoner input int is not supported"):
        create_reasoner(graph).invoke(42)
    with pytest.raises(ValueError, match="content='text' is not supported"):
        create_reasoner(graph, content="text")  # type: ignore[arg-type]


def test_strategy_graph_as_a_subgraph_streams_its_progress(arith_policy: Any, arith_prm: Any) -> None:
    class Parent(TypedDict, total=False):
        problem: str
        answer: str | None
        result: dict[str, Any]
        report: str

    search = build("beam_search", arith_policy, arith_prm)
    builder = StateGraph(Parent)
    builder.add_node("reason", search)
    builder.add_node("report", lambda s: {"report": f"answer={s['answer']}"})
    builder.add_edge(START, "reason")
    builder.add_edge("reason", "report")
    builder.add_edge("report", END)
    parent = builder.compile()
    chunks = list(parent.stream({"problem": PROBLEM.problem}, stream_mode="custom", subgraphs=True))
    namespaces = {ns[0].split(":")[0] for ns, _ in chunks}
    assert namespaces == {"reason"}
    types = [event["type"] for _, event in chunks]
    assert types[-1] == "ttc.selected" and types.count("ttc.iteration") >= 1
    final = parent.invoke({"problem": PROBLEM.problem})
    assert final["report"] == f"answer={final['answer']}"


def test_runtime_context_overrides_options_and_models(arith_policy: Any, arith_prm: Any) -> None:
    graph = build("best_of_n", arith_policy, arith_prm)
    out = graph.invoke(
        {"problem": PROBLEM.problem}, context={"n": 6, "aggregation": "min", "policy_model": "arith:large"}
    )
    result = TTCResult.model_validate(out["result"])
    assert len(result.candidates) == 6
    assert all(c.score == min(c.step_scores) for c in result.candidates if c.step_scores)
    with pytest.raises(ValueError, match="n=0 is invalid: input should be greater than or equal to 1"):
        graph.invoke({"problem": PROBLEM.problem}, context={"n": 0})
    search = build("beam_search", arith_policy, arith_prm)
    with pytest.raises(ValueError, match="beam_width=3 does not divide n=4"):
        search.invoke({"problem": PROBLEM.problem}, context={"beam_width": 3})


def test_engine_calls_are_named_and_tagged_for_tracing(arith_policy: Any, arith_prm: Any) -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.runs: list[tuple[str, list[str]]] = []

        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            self.runs.append((kwargs.get("name") or "", kwargs.get("tags") or []))

    recorder = Recorder()
    build("weighted_best_of_n", arith_policy, arith_prm).invoke({"problem": PROBLEM.problem}, {"callbacks": [recorder]})
    engine_runs = [(name, tags) for name, tags in recorder.runs if name.startswith("ttc:")]
    assert [name for name, _ in engine_runs] == ["ttc:policy", "ttc:prm"]
    assert all(name in tags for name, tags in engine_runs)


class ToolCallingFake(GenericFakeChatModel):
    """A scripted chat model that 'supports' tools (for LangChain's agent factory)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def test_agent_calls_the_test_time_compute_tool(arith_policy: Any, arith_prm: Any) -> None:
    from langchain.agents import create_agent

    graph = build("weighted_best_of_n", arith_policy, arith_prm)
    expected = graph.invoke({"problem": PROBLEM.problem})["answer"]
    tool = create_ttc_tool(graph)
    script = iter(
        [
            AIMessage(content="", tool_calls=[{"name": tool.name, "args": {"problem": PROBLEM.problem}, "id": "c1"}]),
            AIMessage(content="Done."),
        ]
    )
    agent = create_agent(ToolCallingFake(messages=script), tools=[tool])
    messages = agent.invoke({"messages": [HumanMessage(PROBLEM.problem)]})["messages"]
    (tool_message,) = [m for m in messages if isinstance(m, ToolMessage)]
    assert tool_message.content.startswith(f"Answer: {expected} (strategy weighted_best_of_n, 4 candidates")
    assert TTCResult.model_validate(tool_message.artifact).answer == expected
    assert messages[-1].content == "Done."


def test_facade_is_the_model_of_an_agent(arith_policy: Any, arith_prm: Any) -> None:
    from langchain.agents import create_agent

    graph = build("weighted_best_of_n", arith_policy, arith_prm)
    expected = graph.invoke({"problem": PROBLEM.problem})["result"]["solution"]
    agent = create_agent(TTCChatModel(graph=graph))
    messages = agent.invoke({"messages": [HumanMessage(PROBLEM.problem)]})["messages"]
    assert isinstance(messages[-1], AIMessage) and messages[-1].content == (expected or "")
    assert messages[-1].response_metadata["strategy"] == "weighted_best_of_n"
    with pytest.raises(TypeError, match=r"policy=TransformersPolicy cannot call tools: .* ChatModelPolicy"):
        TTCChatModel(graph=graph).bind_tools([create_ttc_tool(graph)])
