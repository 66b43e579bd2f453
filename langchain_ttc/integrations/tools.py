"""A strategy graph as a LangChain tool, so an agent can "solve with test-time compute".

In: the agent's tool call ``{"problem": "..."}``. Out: the tool message content (the answer and a
one-line summary) and, as the artifact, the whole :class:`~langchain_ttc.core.types.TTCResult` as data.
``invoke`` runs the graph with ``graph.invoke``, ``ainvoke`` (an async agent) with ``graph.ainvoke``; a
run inside an agent nests the graph's runs under the tool's run.

Example:
    >>> tool = create_ttc_tool(create_beam_search_graph(policy, prm, n=16))  # doctest: +SKIP
    >>> agent = create_agent(model, tools=[tool])  # doctest: +SKIP

"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from langchain_ttc.strategies.graphs import StrategyGraph

DEFAULT_DESCRIPTION = (
    "Solve a math problem carefully by sampling many step-by-step solutions and checking every step with "
    "a verifier (test-time compute). Input: the full problem text. Output: the final answer."
)


def create_ttc_tool(
    graph: StrategyGraph,
    *,
    name: str = "solve_with_test_time_compute",
    description: str = DEFAULT_DESCRIPTION,
) -> BaseTool:
    """Wrap a strategy graph as a tool taking ``problem: str``.

    Raises:
        ValueError: If ``name`` is empty.

    """
    if not name.strip():
        raise ValueError("name='' is empty; pass the tool name the agent should call.")

    def solve(problem: str) -> tuple[str, dict[str, Any]]:
        return _summary(graph.invoke({"problem": problem}))

    async def asolve(problem: str) -> tuple[str, dict[str, Any]]:
        return _summary(await graph.ainvoke({"problem": problem}))

    return StructuredTool.from_function(
        func=solve, coroutine=asolve, name=name, description=description, response_format="content_and_artifact"
    )


def _summary(output: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = output["result"]
    usage = result["usage"]
    summary = (
        f"Answer: {result['answer']} (strategy {result['strategy']}, {len(result['candidates'])} candidates, "
        f"{usage['completion_tokens']} tokens)"
    )
    return summary, result
