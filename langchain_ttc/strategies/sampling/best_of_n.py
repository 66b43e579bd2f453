"""Best-of-N and weighted best-of-N as LangGraph graphs.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}`` where ``result``
is a :class:`~langchain_ttc.core.types.TTCResult` as data. The graph samples ``n`` whole solutions in one
policy call (``generate``), scores every step of every solution in one PRM call (``score``), and
picks (``select``):

- naive best-of-N: the solution with the highest aggregated score;
- weighted best-of-N: the answer whose equivalent solutions have the largest summed score.

With ``answers="tool_calls"`` (or ``answer_key=TOOL_CALL_ANSWERS``) the candidates are an agent's
sampled turns: the PRM (or a judge as a :class:`~langchain_ttc.engines.function_prm.FunctionPRM`)
reads each tool call as a step ``Tool call: name {args}``, and weighted best-of-N sums scores per
tool call.

Example:
    >>> from langchain_ttc.arith.checkpoints import arith_checkpoint
    >>> from langchain_ttc.engines.transformers_policy import TransformersPolicy
    >>> from langchain_ttc.engines.transformers_prm import MathShepherdPRM
    >>> graph = create_weighted_best_of_n_graph(
    ...     TransformersPolicy.from_pretrained(arith_checkpoint("small")),
    ...     MathShepherdPRM.from_pretrained(arith_checkpoint("prm")), n=4)
    >>> out = graph.invoke({"problem": "Keep only the last digit after each step. What is 2+3?"})
    >>> out["result"]["usage"]["prm_calls"]
    1

"""

from __future__ import annotations

from functools import partial
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Checkpointer

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.voting import best_of_n, weighted_best_of_n
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import Aggregation, ScoredConfig, choose_answers, validated
from langchain_ttc.strategies.context import TTCContext, prm_for_run
from langchain_ttc.strategies.driver import Calls, emit
from langchain_ttc.strategies.generation import (
    check_policy,
    check_prm,
    make_generate_node,
    score_candidates,
    selection_output,
)
from langchain_ttc.strategies.graphs import (
    SelectionState,
    StrategyGraph,
    build_pipeline,
    candidates_of,
    config_of,
    dumped,
    usage_of,
)
from langchain_ttc.strategies.parts import record_parts
from langchain_ttc.strategies.spec import StrategySpec, sampling_n


class BestOfNConfig(ScoredConfig):
    """Best-of-N and weighted best-of-N: ``n`` samples, scored by a PRM with ``aggregation``."""


def create_best_of_n_graph(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    n: int,
    aggregation: Aggregation = "last",
    weighted: bool = False,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str | None = None,
) -> StrategyGraph:
    """Build the best-of-N graph: ``generate``, ``score``, ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        prm: The PRM engine (a :class:`~langchain_ttc.engines.base.PRMEngine`).
        n: The budget: solutions sampled (or beams written per iteration).
        aggregation: How step scores become one score: last, min, prod, mean.
        weighted: Pick the answer with the largest summed score instead of the best single solution.
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
        name: The compiled graph's name (default ``"best_of_n"`` or ``"weighted_best_of_n"``).

    Raises:
        ValueError: If ``n``, ``aggregation`` or a sampling setting is invalid.
        TypeError: If ``policy`` or ``prm`` is not an engine.

    """
    config = validated(
        BestOfNConfig, n=n, aggregation=aggregation, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        seed=seed, system_prompt=system_prompt, step_delimiter=step_delimiter,
        answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_best_of_n_graph(
        policy, prm, config, weighted=weighted, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def create_weighted_best_of_n_graph(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    n: int,
    aggregation: Aggregation = "last",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "weighted_best_of_n",
) -> StrategyGraph:
    """Build the weighted best-of-N graph: :func:`create_best_of_n_graph` with ``weighted=True``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        prm: The PRM engine (a :class:`~langchain_ttc.engines.base.PRMEngine`).
        n: The budget: solutions sampled (or beams written per iteration).
        aggregation: How step scores become one score: last, min, prod, mean.
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

    Example:
        >>> graph = create_weighted_best_of_n_graph(policy, prm, n=16, aggregation="min")  # doctest: +SKIP

    """
    return create_best_of_n_graph(
        policy, prm, n=n, aggregation=aggregation, weighted=True, temperature=temperature, top_p=top_p,
        max_tokens=max_tokens, seed=seed, system_prompt=system_prompt, step_delimiter=step_delimiter,
        answers=answers, answer_key=answer_key, checkpointer=checkpointer, name=name,
    )  # fmt: skip


def build_best_of_n_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: ScoredConfig,
    *,
    weighted: bool = False,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str | None = None,
) -> StrategyGraph:
    """The (weighted) best-of-N graph for a validated config (the registry's builder)."""
    check_policy(policy)
    prm = check_prm(prm)
    strategy = name or ("weighted_best_of_n" if weighted else "best_of_n")
    own = config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here

    def score(state: SelectionState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run = config_of(state, BestOfNConfig)
        scored, usage = yield from score_candidates(
            prm_for_run(prm, runtime), state["problem"], candidates_of(state), aggregation=run.aggregation
        )
        best = max((c.score for c in scored if c.score is not None), default=None)
        emit({"type": "ttc.scored", "candidates": len(scored), "best_score": best})
        return {"candidates": dumped(scored), "usage": usage}

    def select(state: SelectionState) -> dict[str, Any]:
        candidates = candidates_of(state)
        key = config_of(state, BestOfNConfig).answer_key(answer_key)
        selection = weighted_best_of_n(candidates, key=key) if weighted else best_of_n(candidates)
        return selection_output(strategy, candidates, selection, usage_of(state))

    generate = make_generate_node(policy, config, answer_key=answer_key)
    nodes = [("generate", generate), ("score", score), ("select", select)]
    graph = build_pipeline(nodes, checkpointer=checkpointer, name=strategy)
    return record_parts(graph, policy=policy, answer_key=own)


BEST_OF_N = StrategySpec(
    name="best_of_n",
    description="N samples scored by the PRM, the one with the highest aggregated score.",
    config=BestOfNConfig,
    build=build_best_of_n_graph,
    needs_prm=True,
    family="sampling",
    vote=best_of_n,
    routed_n=sampling_n,
)
WEIGHTED_BEST_OF_N = StrategySpec(
    name="weighted_best_of_n",
    description="N samples scored by the PRM, the answer with the largest summed score.",
    config=BestOfNConfig,
    build=partial(build_best_of_n_graph, weighted=True),
    needs_prm=True,
    family="sampling",
    vote=weighted_best_of_n,
    routed_n=sampling_n,
)
