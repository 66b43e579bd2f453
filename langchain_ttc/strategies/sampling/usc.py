"""Universal self-consistency (Chen et al., 2023) as a LangGraph graph: the judge names the most consistent sample.

In: ``{"problem": str}`` or ``{"messages": [...]}`` (optional ``pilots``). Out: ``{"answer",
"result"}`` where ``result`` is a :class:`~langchain_ttc.core.types.TTCResult` as data. The graph
samples ``n`` whole solutions in one policy call (``generate``), asks a judge in one call which of
them is the most consistent with the others (``judge``), and returns that one (``select``).

Majority voting needs an answer key that says when two answers are the same; universal
self-consistency does not: the judge reads the N responses side by side, so it works for free-form
answers (a summary, an explanation, code) that no key can compare. The judge is any LangChain chat
model or policy engine (by default the policy itself, as in the paper); its prompt is the
``consistency`` template of :class:`~langchain_ttc.core.judging.JudgePrompts` (the paper's
wording), answered as "The most consistent response is Response X" or, for a chat model with
structured output, as a ``{"response": X, "reason": ...}`` object.

- Only finished candidates are shown to the judge (a truncated one is never picked); with one, it
  is chosen without a judge call; with none, there is no answer.
- The ``answer_key`` plays no part in the choice: it reads the chosen solution's ``answer`` (math
  answers by default; :data:`~langchain_ttc.core.answers.SHORT_ANSWERS` or a schema key for other
  tasks), and the stated **fallback**: when the judge's reply names no shown response, the graph
  picks by majority vote under the key (the first finished candidate when no candidate has an
  answer), counts it in ``usage.judge_fallbacks`` and says so in ``result.metadata["judge"]["fallback"]``.
- Usage: the judge's call is ``usage.judge_calls`` (1) and its tokens ``usage.judge_tokens``; it is
  traced as the run ``ttc:judge:consistency``.

``result.metadata["judge"]``: ``shown`` (the candidate indices the judge saw, in order), ``choice``
(the chosen candidate's index), ``reason``, ``method`` and ``fallback`` (``None``, or why).

Batching: the judge takes a list of queries, so a caller with many problems can ask about all of
them in one call (:class:`~langchain_ttc.engines.judge.LLMJudge` ``.invoke([...])``); one graph run
asks about its own problem.

Example:
    >>> graph = create_usc_graph(ChatModelPolicy(ChatOpenAI(model="gpt-4o-mini")), n=8)  # doctest: +SKIP
    >>> out = graph.invoke({"problem": "Summarise the plot of Hamlet in two sentences."})  # doctest: +SKIP
    >>> out["result"]["solution"], out["result"]["metadata"]["judge"]["choice"]  # doctest: +SKIP

"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START
from langgraph.types import Checkpointer

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.judging import consistency_query
from langchain_ttc.core.types import Candidate, Usage
from langchain_ttc.core.voting import Selection, majority_vote
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.judge import JudgeModel, LLMJudge, selection_judge
from langchain_ttc.strategies.config import StrategyConfig, choose_answers, validated
from langchain_ttc.strategies.driver import Calls, as_node, call, emit
from langchain_ttc.strategies.generation import check_policy, make_generate_node, selection_output
from langchain_ttc.strategies.graphs import (
    SelectionState,
    StrategyGraph,
    candidates_of,
    config_of,
    new_graph,
    usage_of,
)
from langchain_ttc.strategies.parts import record_parts
from langchain_ttc.strategies.spec import StrategySpec, sampling_n


class USCConfig(StrategyConfig):
    """Universal self-consistency: ``n`` samples, the judge names the most consistent (base sampling settings)."""


class USCState(SelectionState, total=False):
    """The sample-then-select state plus the judge's verdict (plain data, checkpointable)."""

    judgment: dict[str, Any]


def create_usc_graph(
    policy: PolicyEngine,
    *,
    n: int,
    judge: LLMJudge | JudgeModel | None = None,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "usc",
) -> StrategyGraph:
    """Build the universal self-consistency graph: ``generate``, ``judge``, ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        n: The budget: solutions sampled (or beams written per iteration).
        judge: Who names the most consistent response: an
            :class:`~langchain_ttc.engines.judge.LLMJudge`, any LangChain chat model or policy
            engine (``None``: the policy itself, as in the paper).
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass, in (0, 1].
        max_tokens: Most tokens per solution (per step in the searches); a cut-off one is never picked.
        seed: Seed for reproducible sampling (each draw gets its own stream).
        system_prompt: Optional system message put before the problem, or preset:<name> (preset:search-and-learn).
        step_delimiter: The text between steps, e.g. '\\n\\n'.
        answers: The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math
            (search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls.
        answer_key: An answer key object of your own instead of a name (recorded as answers='custom:<its name>';
            leave answers at its default).
        checkpointer: Optional LangGraph checkpointer.
        name: The compiled graph's name.

    Raises:
        ValueError: If ``n`` or a sampling setting is out of range.
        TypeError: If ``policy`` is not a policy engine or ``judge`` cannot judge.

    Example:
        >>> graph = create_usc_graph(policy, n=8, judge=ChatOpenAI(model="gpt-4o-mini"))  # doctest: +SKIP

    """
    config = validated(
        USCConfig, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        system_prompt=system_prompt, step_delimiter=step_delimiter, answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_usc_graph(
        policy, None, config, judge=judge, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def consensus_fallback(candidates: list[Candidate], shown: list[int], *, key: AnswerKey) -> int:
    """The stated fallback pick: the majority vote under ``key`` among ``shown``, else the first shown.

    Example:
        >>> from langchain_ttc.core.answers import MATH_ANSWERS
        >>> c = lambda a: Candidate(text=str(a), steps=[], answer=a, finish_reason="eos")
        >>> consensus_fallback([c("1"), c("2"), c("2")], [0, 1, 2], key=MATH_ANSWERS)
        1
        >>> consensus_fallback([c(None), c(None)], [1, 0], key=MATH_ANSWERS)
        1

    """
    vote = majority_vote([candidates[i] for i in shown], key=key).chosen_index
    return shown[vote if vote is not None else 0]


def build_usc_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: StrategyConfig,
    *,
    judge: LLMJudge | JudgeModel | None = None,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "usc",
) -> StrategyGraph:
    """The universal self-consistency graph for a validated config (the registry's builder).

    ``prm`` is used only when it is a :class:`~langchain_ttc.engines.judge.JudgePRM` and no ``judge``
    is given: its judge then names the most consistent response.
    """
    check_policy(policy)
    asked = selection_judge(policy, prm, judge)
    own = config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here

    def judge_node(state: USCState) -> Calls[dict[str, Any]]:
        candidates = candidates_of(state)
        key = config_of(state, StrategyConfig).answer_key(answer_key)
        shown = [i for i, c in enumerate(candidates) if c.finished]
        record: dict[str, Any] = {"shown": shown, "choice": None, "reason": "", "method": None, "fallback": None}
        usage = Usage()
        if len(shown) == 1:
            record |= {"choice": shown[0], "reason": "the only finished candidate"}
        elif shown:
            query = consistency_query(asked.prompts, state["problem"], [candidates[i].text for i in shown])
            (verdict,) = yield from call(asked, [query])
            usage = Usage(judge_calls=1 + verdict.escalated, judge_tokens=verdict.tokens)
            record |= {"reason": verdict.reason, "method": verdict.method}
            if verdict.choice is not None:
                record["choice"] = shown[verdict.choice]
            else:
                record["choice"] = consensus_fallback(candidates, shown, key=key)
                record["fallback"] = (
                    f"the judge's reply names none of the {len(shown)} responses ({verdict.reply[:200]!r}); "
                    f"picked by majority vote under the {key.name} key"
                )
                usage += Usage(judge_fallbacks=1)
        emit({"type": "ttc.judged", "choice": record["choice"], "shown": len(shown), "fallback": record["fallback"]})
        return {"judgment": record, "usage": usage}

    def select(state: USCState) -> dict[str, Any]:
        candidates = candidates_of(state)
        record = state.get("judgment") or {}
        output = selection_output(name, candidates, Selection(chosen_index=record.get("choice")), usage_of(state))
        output["result"]["metadata"] = {"judge": record}
        return output

    builder = new_graph(USCState)
    builder.add_node("generate", as_node(make_generate_node(policy, config, answer_key=answer_key), name="generate"))
    builder.add_node("judge", as_node(judge_node, name="judge"))
    builder.add_node("select", as_node(select, name="select"))
    for first, second in [(START, "generate"), ("generate", "judge"), ("judge", "select"), ("select", END)]:
        builder.add_edge(first, second)
    graph = builder.compile(checkpointer=checkpointer, name=name)
    return record_parts(graph, policy=policy, answer_key=own)


USC = StrategySpec(
    name="usc",
    description="N samples, the judge (the policy by default) names the most consistent one; no answer key needed.",
    config=USCConfig,
    build=build_usc_graph,
    needs_prm=False,
    family="sampling",
    routed_n=sampling_n,
)
"""No ``vote``: the choice is a judge's call, which a replay over a fixed sample set cannot make for free."""
