"""Majority voting (self-consistency) as a LangGraph graph.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}`` where ``result``
is a :class:`~langchain_ttc.core.types.TTCResult` as data. The graph samples ``n`` whole solutions in one
policy call (``generate``) and returns the most frequent answer, answers compared by mathematical
equivalence (``select``), or by another answer key, named (``answers="reference-math"`` reads and groups
answers as search-and-learn does; ``answers="tool_calls"`` votes over an agent's tool calls) or given as
an object (``answer_key=``). No PRM.

Example:
    >>> from langchain_ttc.arith.checkpoints import arith_checkpoint
    >>> from langchain_ttc.engines.transformers_policy import TransformersPolicy
    >>> graph = create_majority_vote_graph(TransformersPolicy.from_pretrained(arith_checkpoint("small")), n=4)
    >>> out = graph.invoke({"problem": "Keep only the last digit after each step. What is 2+3?"})
    >>> sorted(out)
    ['answer', 'result']

"""

from __future__ import annotations

from typing import Any

from langgraph.types import Checkpointer

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.voting import majority_vote
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import StrategyConfig, choose_answers, validated
from langchain_ttc.strategies.generation import check_policy, make_generate_node, selection_output
from langchain_ttc.strategies.graphs import (
    SelectionState,
    StrategyGraph,
    build_pipeline,
    candidates_of,
    config_of,
    usage_of,
)
from langchain_ttc.strategies.parts import record_parts
from langchain_ttc.strategies.spec import StrategySpec, sampling_n


class MajorityVoteConfig(StrategyConfig):
    """Majority voting: ``n`` samples, the most frequent answer (the base sampling settings only)."""


def create_majority_vote_graph(
    policy: PolicyEngine,
    *,
    n: int,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "majority_vote",
) -> StrategyGraph:
    """Build the majority-vote graph: ``generate`` then ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        n: The budget: solutions sampled (or beams written per iteration).
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
        ValueError: If ``n``, ``temperature``, ``top_p`` or ``max_tokens`` is out of range.
        TypeError: If ``policy`` is not a policy engine.

    """
    config = validated(
        MajorityVoteConfig, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        system_prompt=system_prompt, step_delimiter=step_delimiter, answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_majority_vote_graph(policy, None, config, answer_key=answer_key, checkpointer=checkpointer, name=name)


def build_majority_vote_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: StrategyConfig,
    *,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "majority_vote",
) -> StrategyGraph:
    """The majority-vote graph for a validated config (the registry's builder; ``prm`` is not used)."""
    check_policy(policy)
    own = config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here

    def select(state: SelectionState) -> dict[str, Any]:
        candidates = candidates_of(state)
        key = config_of(state, StrategyConfig).answer_key(answer_key)
        return selection_output(name, candidates, majority_vote(candidates, key=key), usage_of(state))

    generate = make_generate_node(policy, config, answer_key=answer_key)
    graph = build_pipeline([("generate", generate), ("select", select)], checkpointer=checkpointer, name=name)
    return record_parts(graph, policy=policy, answer_key=own)


MAJORITY_VOTE = StrategySpec(
    name="majority_vote",
    description="N samples, the most frequent answer (self-consistency); no PRM.",
    config=MajorityVoteConfig,
    build=build_majority_vote_graph,
    needs_prm=False,
    family="sampling",
    vote=majority_vote,
    routed_n=sampling_n,
)
