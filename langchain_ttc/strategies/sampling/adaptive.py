"""Adaptive majority voting and adaptive weighted best-of-N: sample in waves, stop once the vote is settled.

In: ``{"problem": str}`` or ``{"messages": [...]}`` (optional ``pilots``). Out: ``{"answer",
"result"}`` where ``result`` is a :class:`~langchain_ttc.core.types.TTCResult` as data; its
``metadata`` records every wave and why sampling stopped.

Easy problems need few samples: once the answers agree, more of them would not change the vote.
These graphs spend the budget ``n`` (the most solutions sampled) in waves of ``wave_size``:
``start`` → (``generate`` [→ ``score``] → ``tally``)* → ``select``, the loop a conditional edge.

1. ``generate`` samples one wave in one batched policy call, seeded with its own seed
   (:func:`~langchain_ttc.core.seeds.derive_seed` of the run's seed and the wave's number), so a
   seeded run is reproducible and no two waves share a sample;
2. ``score`` (weighted best-of-N only) scores the wave in one PRM call;
3. ``tally`` applies the stopping rule (:mod:`langchain_ttc.core.stopping`) to the vote over every
   sample so far and emits a ``ttc.wave`` event; the loop ends when the vote is settled or ``n``
   samples are in;
4. ``select`` votes as majority voting (equivalent answers counted) or weighted best-of-N (scores
   summed per answer) do, over every sample drawn.

Rules (``stop_rule``): ``"dirichlet"`` (Adaptive-Consistency, Aggarwal et al., 2023: stop when the
Dirichlet posterior gives P(the current leader stays the leader) >= ``threshold``, 0.95 by default)
or ``"supermajority"`` (its_hub's adaptive self-consistency: stop when the leader holds >=
``threshold`` of the votes, 0.75 by default). Weighted best-of-N applies them to the summed scores,
scaled to pseudo-counts that total the number of samples (the derivation and its assumptions are in
:mod:`langchain_ttc.core.stopping`).

Pilots in the input (a router's) are the first samples: they fill the first wave (no policy call
when they fill it) and count toward ``n``.

``result.metadata``: ``waves``, one record per wave (``wave``, ``sampled``, ``samples`` so far and
the rule's :class:`~langchain_ttc.core.stopping.StopDecision`: ``stop``, ``answer``, ``share``,
``posterior``, ...), and ``stop``, the last decision with its ``reason``: ``"settled"``, ``"budget"``
(``n`` samples in, not settled) or ``"exhausted"`` (the policy returned no samples).

Example:
    >>> graph = create_adaptive_majority_vote_graph(policy, n=32, wave_size=4)  # doctest: +SKIP
    >>> graph.invoke({"problem": "What is 2+3?"})["result"]["metadata"]["stop"]["samples"]  # doctest: +SKIP
    4

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Self

from langgraph.graph import END, START
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer
from pydantic import Field, model_validator

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.stopping import DEFAULT_THRESHOLDS, StopRule, check_threshold, vote_settled
from langchain_ttc.core.types import Candidate, Usage
from langchain_ttc.core.voting import majority_vote, weighted_best_of_n
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import Aggregation, ScoredConfig, StrategyConfig, choose_answers, validated
from langchain_ttc.strategies.context import TTCContext, policy_for_run, prm_for_run
from langchain_ttc.strategies.driver import Calls, as_node, emit
from langchain_ttc.strategies.generation import (
    check_policy,
    check_prm,
    conversation_from_input,
    sample,
    sampling_request,
    score_candidates,
    selection_output,
)
from langchain_ttc.strategies.graphs import (
    SelectionState,
    StrategyGraph,
    candidates_of,
    compile_loop,
    config_of,
    dumped,
    new_graph,
    run_config,
    usage_of,
)
from langchain_ttc.strategies.parts import record_parts
from langchain_ttc.strategies.spec import StrategySpec

DEFAULT_WAVE = 4
"""Samples per wave when ``wave_size`` is not set (fewer when ``n`` is smaller)."""


class AdaptiveConfig(StrategyConfig):
    """Settings of an adaptive vote: ``n`` is the most samples drawn, in waves, until the vote is settled."""

    wave_size: int | None = Field(
        None, ge=1, description="Samples per wave (one policy call, and one PRM call, each); None: min(4, n)."
    )
    stop_rule: StopRule = Field(
        "dirichlet",
        description="When the vote is settled: dirichlet (P(the leader stays the leader) >= threshold) or "
        "supermajority (the leader's share of the votes >= threshold).",
    )
    threshold: float | None = Field(
        None, description="Where the stop rule stops, in (0.5, 1]; None: 0.95 for dirichlet, 0.75 for supermajority."
    )

    @property
    def wave(self) -> int:
        """Samples per wave: ``wave_size``, or ``min(4, n)``."""
        return self.wave_size if self.wave_size is not None else min(DEFAULT_WAVE, self.n)

    @property
    def stop_threshold(self) -> float:
        """The threshold the rule compares with: ``threshold``, or the rule's default."""
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[self.stop_rule]

    @model_validator(mode="after")
    def _waves_fit(self) -> Self:
        if self.wave_size is not None and self.wave_size > self.n:
            raise ValueError(
                f"wave_size={self.wave_size} is larger than n={self.n}, the most samples a run draws; pass "
                f"wave_size <= n (e.g. wave_size={min(DEFAULT_WAVE, self.n)}) or a larger n."
            )
        if self.threshold is not None:
            check_threshold(self.threshold)
        return self


class AdaptiveMajorityVoteConfig(AdaptiveConfig):
    """Adaptive majority voting: waves of samples until the most frequent answer is settled (no PRM)."""


class AdaptiveWeightedBestOfNConfig(AdaptiveConfig, ScoredConfig):
    """Adaptive weighted best-of-N: waves of scored samples until the answer with the most score is settled."""


class AdaptiveState(SelectionState, total=False):
    """The sample-then-select state plus the record of every wave (plain data, checkpointable)."""

    waves: list[dict[str, Any]]


def create_adaptive_majority_vote_graph(
    policy: PolicyEngine,
    *,
    n: int,
    wave_size: int | None = None,
    stop_rule: StopRule = "dirichlet",
    threshold: float | None = None,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "adaptive_majority_vote",
) -> StrategyGraph:
    """Build the adaptive majority-vote graph: ``start``, (``generate`` → ``tally``) in a loop, ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        n: The budget: solutions sampled (or beams written per iteration).
        wave_size: Samples per wave (one policy call, and one PRM call, each); None: min(4, n).
        stop_rule: When the vote is settled: dirichlet (P(the leader stays the leader) >= threshold) or supermajority
            (the leader's share of the votes >= threshold).
        threshold: Where the stop rule stops, in (0.5, 1]; None: 0.95 for dirichlet, 0.75 for supermajority.
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
        ValueError: If ``wave_size > n``, ``threshold`` is outside (0.5, 1], or another option is out of range.
        TypeError: If ``policy`` is not a policy engine.

    Example:
        >>> graph = create_adaptive_majority_vote_graph(policy, n=32, stop_rule="supermajority")  # doctest: +SKIP

    """
    config = validated(
        AdaptiveMajorityVoteConfig, n=n, wave_size=wave_size, stop_rule=stop_rule, threshold=threshold,
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, system_prompt=system_prompt,
        step_delimiter=step_delimiter, answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_adaptive_majority_vote_graph(
        policy, None, config, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def create_adaptive_weighted_best_of_n_graph(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    n: int,
    wave_size: int | None = None,
    stop_rule: StopRule = "dirichlet",
    threshold: float | None = None,
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
    name: str = "adaptive_weighted_best_of_n",
) -> StrategyGraph:
    """Build the adaptive weighted best-of-N graph: ``start``, (``generate`` → ``score`` → ``tally``)*, ``select``.

    Args:
        policy: The policy engine (a :class:`~langchain_ttc.engines.base.PolicyEngine`).
        prm: The PRM engine (a :class:`~langchain_ttc.engines.base.PRMEngine`).
        n: The budget: solutions sampled (or beams written per iteration).
        wave_size: Samples per wave (one policy call, and one PRM call, each); None: min(4, n).
        stop_rule: When the vote is settled: dirichlet (P(the leader stays the leader) >= threshold) or supermajority
            (the leader's share of the votes >= threshold).
        threshold: Where the stop rule stops, in (0.5, 1]; None: 0.95 for dirichlet, 0.75 for supermajority.
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

    Raises:
        ValueError: If ``wave_size > n``, ``threshold`` is outside (0.5, 1], or another option is out of range.
        TypeError: If ``policy`` or ``prm`` is not an engine.

    Example:
        >>> graph = create_adaptive_weighted_best_of_n_graph(policy, prm, n=32, threshold=0.9)  # doctest: +SKIP

    """
    config = validated(
        AdaptiveWeightedBestOfNConfig, n=n, wave_size=wave_size, stop_rule=stop_rule, threshold=threshold,
        aggregation=aggregation, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        system_prompt=system_prompt, step_delimiter=step_delimiter, answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_adaptive_weighted_best_of_n_graph(
        policy, prm, config, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def wave_count(run: AdaptiveConfig, have: int, wave: int) -> int:
    """Samples wave ``wave`` draws when ``have`` are in: a wave, the pilots filling the first, never past ``n``.

    Example:
        >>> run = AdaptiveMajorityVoteConfig(n=10, wave_size=4)
        >>> [wave_count(run, 0, 0), wave_count(run, 3, 0), wave_count(run, 4, 1), wave_count(run, 8, 2)]
        [4, 1, 4, 2]

    """
    return max(0, min(run.n - have, run.wave - have if wave == 0 else run.wave))


def stop_reason(run: AdaptiveConfig, last: dict[str, Any]) -> str | None:
    """Why the loop ends after the wave recorded as ``last`` (``None``: it goes on)."""
    if last["stop"]:
        return "settled"
    if last["samples"] >= run.n:
        return "budget"
    if last["wave"] > 0 and last["sampled"] == 0:  # the policy returned nothing: asking again would loop forever
        return "exhausted"
    return None


def _build_adaptive_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: AdaptiveConfig,
    *,
    answer_key: AnswerKey | None,
    checkpointer: Checkpointer,
    name: str,
) -> StrategyGraph:
    """Wire an adaptive vote: weighted (scored by ``prm``) when a PRM is given, else plain."""
    weighted = prm is not None
    settings = type(config)
    own = config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here

    def start(state: AdaptiveState, runtime: Runtime[TTCContext]) -> dict[str, Any]:
        run = run_config(config, runtime)
        problem, conversation = conversation_from_input(state, system_prompt=run.system_prompt)
        return {
            "problem": problem,
            "config": run.model_dump(),
            "conversation": conversation,
            "candidates": dumped(candidates_of(state, "pilots")),
            "waves": [],
        }

    def generate(state: AdaptiveState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run = config_of(state, settings)
        candidates = candidates_of(state)
        count = wave_count(run, len(candidates), len(state.get("waves") or []))
        sampled: list[Candidate] = []
        usage = Usage()
        if count:
            seed = derive_seed(run.seed, "wave", len(state.get("waves") or []))
            request = sampling_request(run, state["conversation"], n=count, seed=seed)
            sampled, usage = yield from sample(
                policy_for_run(policy, runtime), request, delimiter=run.step_delimiter, key=run.answer_key(answer_key)
            )
        return {"candidates": dumped([*candidates, *sampled]), "usage": usage}

    def score(state: AdaptiveState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        assert prm is not None
        run = config_of(state, AdaptiveWeightedBestOfNConfig)
        scored, usage = yield from score_candidates(
            prm_for_run(prm, runtime), state["problem"], candidates_of(state), aggregation=run.aggregation
        )
        return {"candidates": dumped(scored), "usage": usage}

    def tally(state: AdaptiveState) -> dict[str, Any]:
        run = config_of(state, settings)
        candidates = candidates_of(state)
        waves = list(state.get("waves") or [])
        before = waves[-1]["samples"] if waves else len(state.get("pilots") or [])
        decision = vote_settled(
            candidates,
            rule=run.stop_rule,
            threshold=run.stop_threshold,
            weighted=weighted,
            key=run.answer_key(answer_key),
        )
        record = {"wave": len(waves), "sampled": len(candidates) - before, "samples": len(candidates)}
        record |= decision.model_dump()
        emit({"type": "ttc.wave", **record})
        return {"waves": [*waves, record]}

    def route(state: AdaptiveState) -> Literal["generate", "select"]:
        return "generate" if stop_reason(config_of(state, settings), state["waves"][-1]) is None else "select"

    def select(state: AdaptiveState) -> dict[str, Any]:
        run = config_of(state, settings)
        candidates = candidates_of(state)
        waves = state["waves"]
        rule = weighted_best_of_n if weighted else majority_vote
        output = selection_output(name, candidates, rule(candidates, key=run.answer_key(answer_key)), usage_of(state))
        output["result"]["metadata"] = {
            "waves": waves,
            "stop": {"reason": stop_reason(run, waves[-1]), "waves": len(waves), **waves[-1]},
        }
        return output

    check_policy(policy)
    loop = ["generate", "score", "tally"] if weighted else ["generate", "tally"]
    nodes: dict[str, Callable[..., Any]] = {"start": start, "generate": generate, "score": score}
    nodes |= {"tally": tally, "select": select}
    builder = new_graph(AdaptiveState)
    for node_name in ["start", *loop, "select"]:
        builder.add_node(node_name, as_node(nodes[node_name], name=node_name))
    builder.add_edge(START, "start")
    for first, second in zip(["start", *loop], loop, strict=False):
        builder.add_edge(first, second)
    builder.add_conditional_edges("tally", route, ["generate", "select"])
    builder.add_edge("select", END)
    graph = compile_loop(builder, checkpointer=checkpointer, name=name)
    return record_parts(graph, policy=policy, answer_key=own)


def build_adaptive_majority_vote_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: AdaptiveConfig,
    *,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "adaptive_majority_vote",
) -> StrategyGraph:
    """The adaptive majority-vote graph for a validated config (the registry's builder; ``prm`` is not used)."""
    return _build_adaptive_graph(policy, None, config, answer_key=answer_key, checkpointer=checkpointer, name=name)


def build_adaptive_weighted_best_of_n_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: AdaptiveConfig,
    *,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "adaptive_weighted_best_of_n",
) -> StrategyGraph:
    """The adaptive weighted best-of-N graph for a validated config (the registry's builder)."""
    return _build_adaptive_graph(
        policy, check_prm(prm), config, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def adaptive_n(options: dict[str, Any], budget: int, _pilots: int) -> int:
    """A routed adaptive vote samples up to the budget, the pilots its first samples (0: its wave does not fit).

    Example:
        >>> adaptive_n({}, 8, 4), adaptive_n({"wave_size": 16}, 8, 4)
        (8, 0)

    """
    wave = options.get("wave_size")
    return budget if wave is None or wave <= budget else 0


ADAPTIVE_MAJORITY_VOTE = StrategySpec(
    name="adaptive_majority_vote",
    description="Majority voting in waves, stopped once the vote is settled (Adaptive-Consistency); no PRM.",
    config=AdaptiveMajorityVoteConfig,
    build=build_adaptive_majority_vote_graph,
    needs_prm=False,
    family="sampling",
    routed_n=adaptive_n,
)
ADAPTIVE_WEIGHTED_BEST_OF_N = StrategySpec(
    name="adaptive_weighted_best_of_n",
    description="Weighted best-of-N in waves, stopped once the score-weighted vote is settled.",
    config=AdaptiveWeightedBestOfNConfig,
    build=build_adaptive_weighted_best_of_n_graph,
    needs_prm=True,
    family="sampling",
    routed_n=adaptive_n,
)
"""No ``vote``: a replay over a fixed sample set would count all of them, not the samples the stop
spent, so evaluation and calibration run these graphs themselves and record what they used."""
