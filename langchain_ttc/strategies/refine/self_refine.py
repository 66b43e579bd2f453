"""Self-refinement (sequential revisions) as a LangGraph cycle: draft → critique → revise → critique → ...

In: ``{"problem": str}`` or ``{"messages": [...]}`` (and optional ``pilots``: they become the first
drafts). Out: ``{"answer", "result"}``; ``result.candidates`` holds every draft of every chain and
``result.metadata["drafts"]`` says which chain and revision each is, with its critique.

``chains`` chains run in parallel (one batched policy call per round for all of them), each up to
``max_revisions`` revisions: parallel × sequential compute, N = chains × (max_revisions + 1). The
critique comes from

- the policy itself (``critic=None``): it answers the critique prompt (:mod:`langchain_ttc.core.prompts`)
  and its reply is read for "Step K is wrong" or "No error";
- a PRM (``critic=prm``, e.g. the policy's own :class:`~langchain_ttc.engines.self_verification.SelfVerificationPRM`):
  the first step scored below ``critique_threshold`` is flagged;
- a separate critic Runnable, such as a LangChain chat model (sent the critique prompt, batched);
- any callable ``(problem, steps) -> str``.

A revision restarts the solution at the flagged step (the steps before it kept, continued as a
partial assistant message), or, when no step is named or the policy cannot continue a partial
message, answers the revision prompt in a new turn. A chain stops at the revision budget, when a
critique finds no error, or when a revision gives the same answer as the draft before it.

The final answer: ``selection="last"`` (a vote among the chains' last drafts), ``"vote"`` (majority
over every draft) or ``"verifier"`` (weighted best-of-N over every draft, scored by ``verifier``).

Example:
    >>> from langchain_ttc.engines.loading import load_policy
    >>> from langchain_ttc.engines.self_verification import SelfVerificationPRM
    >>> policy = load_policy("arith:small")
    >>> graph = create_self_refine_graph(policy, SelfVerificationPRM(policy, seed=0), max_revisions=2, seed=0)
    >>> out = graph.invoke({"problem": "Keep only the last digit after each step. What is 2+3*7?"})
    >>> len(out["result"]["candidates"]) == len(out["result"]["metadata"]["drafts"]) >= 1
    True

"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal, Self

from langchain_core.runnables import Runnable
from langgraph.graph import END, START
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer
from pydantic import Field, model_validator

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.prompts import RefinePrompts, critique_messages, revision_messages
from langchain_ttc.core.refine import (
    Critique,
    Draft,
    critique_from_scores,
    parse_critique,
    revision_prefix,
    stop_reason,
)
from langchain_ttc.core.seeds import derive_seed, seed_requests
from langchain_ttc.core.types import Candidate, GenerationRequest, Message, Usage
from langchain_ttc.core.voting import majority_vote, weighted_best_of_n
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.self_verification import SelfVerificationPRM
from langchain_ttc.strategies.config import Aggregation, ScoredConfig, choose_answers, validated
from langchain_ttc.strategies.context import TTCContext, policy_for_run
from langchain_ttc.strategies.driver import Calls, as_node, call, call_batch, emit
from langchain_ttc.strategies.generation import (
    candidate_from_completion,
    check_policy,
    conversation_from_input,
    policy_call_usage,
    sample,
    sampling_request,
    score_candidates,
    selection_output,
)
from langchain_ttc.strategies.graphs import (
    StrategyGraph,
    StrategyInput,
    UsageChannel,
    candidates_of,
    compile_loop,
    config_of,
    dumped,
    new_graph,
    run_config,
    usage_of,
)
from langchain_ttc.strategies.spec import StrategySpec

FinalPick = Literal["last", "vote", "verifier"]
CriticName = Literal["self", "prm", "policy", "custom"]
Critic = PRMEngine | Runnable[Any, Any] | Callable[[str, list[str]], str] | None
CRITIQUE_MAX_TOKENS = 256
Critiques = Calls[tuple[list[tuple[Critique, Candidate]], Usage]]
CriticCall = Callable[[str, list[Candidate], Runtime[Any] | None], Critiques]
"""A critic as the graph calls it: ``(problem, drafts, runtime)`` yields its calls and returns a critique per
draft (with the draft, scored when the critic is a PRM) and the critic's usage."""


class RefineState(StrategyInput, total=False):
    """State of a self-refinement run (plain data, checkpointable)."""

    config: dict[str, Any]
    conversation: list[Message]
    chains: list[list[dict[str, Any]]]
    stopped: list[str | None]
    extra: list[dict[str, Any]]
    round: int
    usage: UsageChannel
    answer: str | None
    result: dict[str, Any]


class SelfRefineConfig(ScoredConfig):
    """Self-refinement: ``n`` drafts in ``n // (max_revisions + 1)`` chains of up to ``max_revisions`` revisions."""

    n: int = Field(ge=1, description="The budget: drafts at most (chains x (max_revisions + 1)).")
    aggregation: Aggregation = Field(
        "min", description="How a PRM's step scores become one (min: one bad step spoils it)."
    )
    max_revisions: int = Field(2, ge=0, description="Revisions per chain (0: drafts only).")
    critic: CriticName = Field("self", description="Who critiques: self (self-verification), prm, policy, custom.")
    selection: FinalPick | None = Field(None, description="Final pick: last, vote or verifier (default: last).")
    critique_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="A PRM critic flags the first step below it.")

    @model_validator(mode="after")
    def _one_chain(self) -> Self:
        if self.n < self.max_revisions + 1:
            raise ValueError(
                f"n={self.n} is below one chain of {self.max_revisions + 1} drafts; pass n >= {self.max_revisions + 1}."
            )
        return self

    @property
    def chains(self) -> int:
        """Chains run in parallel: ``n // (max_revisions + 1)``."""
        return self.n // (self.max_revisions + 1)


def check_collaborators(*, critic: object, verifier: object, selection: str) -> None:
    """Check the critic and the verifier against the final pick.

    Raises:
        ValueError: ``"verifier"`` selection without a verifier.
        TypeError: A ``verifier`` that is not a PRM engine, or a ``critic`` that is neither a PRM
            engine, a Runnable nor a callable.

    """
    if verifier is not None and not isinstance(verifier, PRMEngine):
        raise TypeError(
            f"verifier={type(verifier).__name__} is not a PRMEngine; pass a PRM (MathShepherdPRM, "
            "SelfVerificationPRM, FunctionPRM, ...) or None."
        )
    if critic is not None and not isinstance(critic, (PRMEngine, Runnable)) and not callable(critic):
        raise TypeError(
            f"critic={type(critic).__name__} is neither a PRMEngine, a Runnable (e.g. a chat model) nor a callable "
            "(problem, steps) -> str; pass None to let the policy critique its own drafts."
        )
    if selection == "verifier" and verifier is None:
        raise ValueError("selection='verifier' needs verifier=; pass a PRM, or selection='last' or 'vote'.")


def create_self_refine_graph(
    policy: PolicyEngine,
    critic: Critic | Literal["self", "policy"] = "self",
    *,
    max_revisions: int = 2,
    chains: int = 1,
    verifier: PRMEngine | None = None,
    selection: FinalPick | None = None,
    critique_threshold: float = 0.5,
    aggregation: Aggregation = "min",
    prompts: RefinePrompts | None = None,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "self_refine",
) -> StrategyGraph:
    """Build the self-refinement graph: ``draft`` → (``critique`` → ``revise``)* → ``select``.

    Args:
        policy: The policy engine (writes drafts and revisions; the critic when ``critic`` is None).
        critic: Who critiques: self (self-verification), prm, policy, custom.
        max_revisions: Revisions per chain (0: drafts only).
        chains: Chains run in parallel (N = chains × (max_revisions + 1) drafts at most).
        verifier: A PRM for ``selection="verifier"`` (the critic's scores are reused when it is the same PRM).
        selection: Final pick: last, vote or verifier (default: last).
        critique_threshold: A PRM critic flags the first step below it.
        aggregation: How a PRM's step scores become one (min: one bad step spoils it).
        prompts: The critique and revision prompts (:class:`~langchain_ttc.core.prompts.RefinePrompts`).
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
        ValueError: ``max_revisions`` < 0, ``chains`` < 1, or another option out of range.
        TypeError: A policy, critic or verifier of the wrong type.

    """
    if isinstance(chains, bool) or not isinstance(chains, int) or chains < 1:
        raise ValueError(f"chains={chains!r} must be an integer >= 1; pass for example chains=4.")
    if isinstance(max_revisions, bool) or not isinstance(max_revisions, int) or max_revisions < 0:
        raise ValueError(f"max_revisions={max_revisions!r} must be an integer >= 0 (0: drafts only, no revision).")
    config = validated(
        SelfRefineConfig, n=chains * (max_revisions + 1), max_revisions=max_revisions,
        critic=_critic_name(critic), selection=selection, critique_threshold=critique_threshold,
        aggregation=aggregation, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        system_prompt=system_prompt, step_delimiter=step_delimiter, answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    given = None if isinstance(critic, str) else critic
    return build_self_refine_graph(
        policy, config, critic=given, verifier=verifier, prompts=prompts, answer_key=answer_key,
        checkpointer=checkpointer, name=name,
    )  # fmt: skip


def _critic_name(critic: Critic | str) -> CriticName:
    if critic == "self":
        return "self"
    return "policy" if critic is None or critic == "policy" else "custom"


def prm_critic(prm: PRMEngine, *, aggregation: str, threshold: float) -> CriticCall:
    """A PRM as critic (one batched call): the first step scored below ``threshold`` is flagged."""

    def critique(problem: str, drafts: list[Candidate], runtime: Runtime[Any] | None) -> Critiques:
        scored, usage = yield from score_candidates(prm, problem, drafts, aggregation=aggregation)
        return [(critique_from_scores(c.steps, c.step_scores or [], threshold=threshold), c) for c in scored], usage

    return critique


def runnable_critic(runnable: Runnable[Any, Any], prompts: RefinePrompts) -> CriticCall:
    """A Runnable (e.g. a chat model) as critic: sent the critique prompt, one batched call for every draft."""

    def critique(problem: str, drafts: list[Candidate], runtime: Runtime[Any] | None) -> Critiques:
        messages = [critique_messages(problem, c.steps, prompts) for c in drafts]
        replies = (yield from call_batch(runnable, messages)) if drafts else []
        return [
            (parse_critique(str(getattr(reply, "content", reply)), num_steps=len(c.steps)), c)
            for c, reply in zip(drafts, replies, strict=True)
        ], Usage()

    return critique


def function_critic(function: Callable[[str, list[str]], str]) -> CriticCall:
    """A callable ``(problem, steps) -> critique text`` as critic."""

    def critique(problem: str, drafts: list[Candidate], runtime: Runtime[Any] | None) -> Critiques:
        found = [(parse_critique(function(problem, c.steps), num_steps=len(c.steps)), c) for c in drafts]
        yield from ()  # a node body that makes no call
        return found, Usage()

    return critique


def policy_critic(policy: PolicyEngine, prompts: RefinePrompts) -> CriticCall:
    """The run's policy as critic: it answers the critique prompt greedily (one batched call)."""

    def critique(problem: str, drafts: list[Candidate], runtime: Runtime[Any] | None) -> Critiques:
        requests = [
            GenerationRequest(messages=critique_messages(problem, c.steps, prompts), temperature=0.0,
                              max_tokens=CRITIQUE_MAX_TOKENS)
            for c in drafts
        ]  # fmt: skip
        results = (yield from call(policy_for_run(policy, runtime), requests)) if requests else []
        return [
            (parse_critique(r.completions[0].text, num_steps=len(c.steps)), c)
            for c, r in zip(drafts, results, strict=True)
        ], policy_call_usage(results)

    return critique


def critic_call(policy: PolicyEngine, critic: Critic, config: SelfRefineConfig, prompts: RefinePrompts) -> CriticCall:
    """The critic as the graph calls it, chosen once at construction (``None``: by ``config.critic``)."""
    if critic is None and config.critic == "self":
        critic = SelfVerificationPRM(
            policy, seed=config.seed, step_delimiter=config.step_delimiter, system_prompt=config.system_prompt
        )
    if isinstance(critic, PRMEngine):
        return prm_critic(critic, aggregation=config.aggregation, threshold=config.critique_threshold)
    if isinstance(critic, Runnable):
        return runnable_critic(critic, prompts)
    if critic is not None:
        return function_critic(critic)
    return policy_critic(policy, prompts)


def build_self_refine_graph(
    policy: PolicyEngine,
    config: SelfRefineConfig,
    *,
    critic: Critic = None,
    verifier: PRMEngine | None = None,
    prompts: RefinePrompts | None = None,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "self_refine",
) -> StrategyGraph:
    """The self-refinement graph for a validated config, with its critic (``None``: the one ``config.critic`` names).

    Raises:
        ValueError: ``critic="prm"`` or ``"custom"`` in the config without the critic itself.

    """
    check_policy(policy)
    chosen_selection: str = config.selection or ("verifier" if verifier is not None else "last")
    check_collaborators(critic=critic, verifier=verifier, selection=chosen_selection)
    if critic is None and config.critic in ("prm", "custom"):
        raise ValueError(
            f"critic={config.critic!r} needs the critic itself: pass prm= to create_strategy_graph, or the critic to "
            "create_self_refine_graph(policy, critic, ...)."
        )
    config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here
    prompts = prompts or RefinePrompts()
    critiques_of = critic_call(policy, critic, config, prompts)
    max_revisions, aggregation, step_delimiter = config.max_revisions, config.aggregation, config.step_delimiter

    def draft(state: RefineState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run = run_config(config, runtime)
        chains = run.chains
        problem, conversation = conversation_from_input(state, system_prompt=run.system_prompt)
        # Pilots start the chains; their scores (from whoever scored them) are dropped: the critic judges.
        pilots = [c.model_copy(update={"step_scores": None, "score": None}) for c in candidates_of(state, "pilots")]
        firsts, usage = pilots[:chains], Usage()
        if len(firsts) < chains:
            request = sampling_request(run, conversation, n=chains - len(firsts), seed=derive_seed(run.seed, "drafts"))
            sampled, usage = yield from sample(
                policy_for_run(policy, runtime), request, delimiter=step_delimiter, key=run.answer_key(answer_key)
            )
            firsts += sampled
        drafts = [Draft(chain=i, revision=0, candidate=c) for i, c in enumerate(firsts)]
        for d in drafts:
            emit({"type": "ttc.draft", "chain": d.chain, "revision": 0, "answer": d.candidate.answer,
                  "tokens": d.candidate.num_tokens})  # fmt: skip
        return {
            "problem": problem,
            "config": run.model_dump(),
            "conversation": conversation,
            "chains": [[d.model_dump()] for d in drafts],
            "stopped": [stop_reason([d], max_revisions=max_revisions) for d in drafts],  # one draft: no key needed
            "extra": dumped(pilots[chains:]),
            "round": 0,
            "usage": usage,
        }

    def critique(state: RefineState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        chains_now = chains_of(state)
        active = [i for i, reason in enumerate(state["stopped"]) if reason is None]
        lasts = [chains_now[i][-1] for i in active]
        critiques, usage = yield from critiques_of(state["problem"], [d.candidate for d in lasts], runtime)
        stopped = list(state["stopped"])
        key = config_of(state, SelfRefineConfig).answer_key(answer_key)
        for i, last, found in zip(active, lasts, critiques, strict=True):
            chains_now[i][-1] = last.model_copy(update={"critique": found[0], "candidate": found[1]})
            stopped[i] = stop_reason(chains_now[i], max_revisions=max_revisions, key=key)
            emit({"type": "ttc.critique", "chain": i, "revision": last.revision, "step": found[0].step,
                  "text": found[0].text})  # fmt: skip
        return {"chains": [dumped(chain) for chain in chains_now], "stopped": stopped, "usage": usage}

    def revise(state: RefineState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run = config_of(state, SelfRefineConfig)
        engine = policy_for_run(policy, runtime)
        chains_now = chains_of(state)
        active = [i for i, reason in enumerate(state["stopped"]) if reason is None]
        requests, prefixes = [], []
        for i in active:
            last = chains_now[i][-1]
            found = last.critique or Critique(step=None, text="Check every step.")
            if found.step is not None and engine.supports_partial:
                prefix = revision_prefix(last.candidate.steps, found.step, step_delimiter)
                messages = state["conversation"]
            else:
                prefix = ""
                messages = revision_messages(state["conversation"], last.candidate.text, found.text, prompts)
            requests.append(sampling_request(run, messages, partial=prefix))
            prefixes.append(prefix)
        seeds = derive_seed(run.seed, "revision", state["round"])
        results = (yield from call(engine, seed_requests(requests, seeds))) if requests else []
        stopped = list(state["stopped"])
        key = run.answer_key(answer_key)
        for i, prefix, result in zip(active, prefixes, results, strict=True):
            completion = result.completions[0]
            candidate = candidate_from_completion(completion, prefix=prefix, delimiter=step_delimiter, key=key)
            revised = Draft(chain=i, revision=chains_now[i][-1].revision + 1, candidate=candidate)
            chains_now[i].append(revised)
            stopped[i] = stop_reason(chains_now[i], max_revisions=max_revisions, key=key)
            emit({"type": "ttc.draft", "chain": i, "revision": revised.revision, "answer": candidate.answer,
                  "tokens": completion.num_tokens})  # fmt: skip
        return {
            "chains": [dumped(chain) for chain in chains_now],
            "stopped": stopped,
            "round": state["round"] + 1,
            "usage": policy_call_usage(results),
        }

    def select(state: RefineState) -> Calls[dict[str, Any]]:
        key = config_of(state, SelfRefineConfig).answer_key(answer_key)
        drafts = [d for chain in chains_of(state) for d in chain]
        candidates = [d.candidate for d in drafts] + candidates_of(state, "extra")
        usage = usage_of(state)
        if verifier is not None and chosen_selection == "verifier":  # the critic's scores are kept when it verifies
            if verifier is not critic:
                candidates = [c.model_copy(update={"step_scores": None, "score": None}) for c in candidates]
            candidates, scoring = yield from score_candidates(
                verifier, state["problem"], candidates, aggregation=aggregation
            )
            usage = usage + scoring
            rule = weighted_best_of_n(candidates, key=key)
        elif chosen_selection == "vote":
            rule = majority_vote(candidates, key=key)
        else:  # a vote among the chains' last drafts
            ends = list(itertools.accumulate(len(chain) for chain in state["chains"]))
            votes = majority_vote([candidates[end - 1] for end in ends], key=key)
            lasts = [end - 1 for end in ends]  # indices into candidates
            groups = [g.model_copy(update={"indices": [lasts[i] for i in g.indices]}) for g in votes.groups]
            chosen = None if votes.chosen_index is None else lasts[votes.chosen_index]
            rule = replace(votes, chosen_index=chosen, groups=groups)
        output = selection_output(name, candidates, rule, usage)
        output["result"]["metadata"] = {
            "drafts": [
                {"chain": d.chain, "revision": d.revision, "critique": d.critique.model_dump() if d.critique else None}
                for d in drafts
            ],
            "stop_reasons": state["stopped"],
            "selection": chosen_selection,
        }
        return output

    def after_round(state: RefineState) -> str:
        return "critique" if any(reason is None for reason in state["stopped"]) else "select"

    def after_critique(state: RefineState) -> str:
        return "revise" if any(reason is None for reason in state["stopped"]) else "select"

    builder = new_graph(RefineState)
    for node in (draft, critique, revise, select):
        builder.add_node(node.__name__, as_node(node))
    builder.add_edge(START, "draft")
    builder.add_conditional_edges("draft", after_round, ["critique", "select"])
    builder.add_conditional_edges("critique", after_critique, ["revise", "select"])
    builder.add_conditional_edges("revise", after_round, ["critique", "select"])
    builder.add_edge("select", END)
    return compile_loop(builder, checkpointer=checkpointer, name=name)


def chains_of(state: RefineState) -> list[list[Draft]]:
    """The drafts of every chain, in order."""
    return [[Draft.model_validate(d) for d in chain] for chain in state["chains"]]


def build_registered_self_refine_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: SelfRefineConfig,
    *,
    checkpointer: Checkpointer = None,
    name: str = "self_refine",
) -> StrategyGraph:
    """Self-refinement as the registry builds it: the critic named by ``config.critic`` (``prm``: the PRM given)."""
    critic = prm if config.critic == "prm" else None
    return build_self_refine_graph(policy, config, critic=critic, checkpointer=checkpointer, name=name)


def refined_n(options: dict[str, Any], budget: int, pilots: int) -> int:
    """A routed self-refinement runs the whole budget if every pilot can start a chain (0: it does not fit)."""
    return budget if budget // (int(options.get("max_revisions", 2)) + 1) >= pilots else 0


SELF_REFINE = StrategySpec(
    name="self_refine",
    description="Self-refinement: parallel chains of draft, critique (self-verification, PRM or policy), revise.",
    config=SelfRefineConfig,
    build=build_registered_self_refine_graph,
    needs_prm=False,
    family="refine",
    routed_n=refined_n,
    prm_option=lambda config: config.critic == "prm",
)
