"""The runtime context of every strategy graph: per-run settings that LangGraph Studio shows.

In: ``graph.invoke(input, context={...})`` (or the context panel in LangGraph Studio). Out: the
settings a run uses. A field left at ``None`` keeps the value the graph was built with, so the same
compiled graph serves library users (options at construction) and Studio users (options per run).
Models named here are loaded once per process and cached.

Example:
    >>> graph.invoke({"problem": "..."}, context={"n": 32, "temperature": 0.6})  # doctest: +SKIP

"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from langgraph.runtime import Runtime

from langchain_ttc.core.aggregation import Aggregation
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.chat_model_policy import ToolCallingPolicy
from langchain_ttc.engines.loading import load_policy, load_prm


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


@dataclass(kw_only=True)
class TTCContext:
    """Per-run settings of a strategy graph; ``None`` keeps the graph's own setting."""

    policy_model: str | None = field(
        default=None,
        metadata=_describe(
            "Policy model: a local directory, a Hugging Face hub id, or arith:small / arith:large (the "
            "checkpoints shipped in the package). Empty: the graph's own policy."
        ),
    )
    prm_model: str | None = field(
        default=None,
        metadata=_describe(
            "Process reward model (Math-Shepherd format): a local directory, a hub id, or arith:prm. "
            "Empty: the graph's own PRM."
        ),
    )
    backend: str = field(
        default="transformers", metadata=_describe("Engine that runs policy_model and prm_model: transformers.")
    )
    # The options: one per option of any registered strategy, typed and described as its config says
    # (tests/test_architecture.py checks every line against the configs; ``None`` keeps the graph's value).
    n: int | None = field(
        default=None,
        metadata=_describe(
            "majority_vote, best_of_n, weighted_best_of_n, beam_search, dvts, particle_filtering: The budget: "
            "solutions sampled (or beams written per iteration). self_refine: The budget: drafts at most (chains x "
            "(max_revisions + 1)). compute_optimal: The budget N (pilots included); one of the table's budgets."
        ),
    )
    temperature: float | None = field(default=None, metadata=_describe("Sampling temperature (0: greedy)."))
    top_p: float | None = field(default=None, metadata=_describe("Nucleus sampling mass, in (0, 1]."))
    max_tokens: int | None = field(
        default=None,
        metadata=_describe("Most tokens per solution (per step in the searches); a cut-off one is never picked."),
    )
    seed: int | None = field(
        default=None, metadata=_describe("Seed for reproducible sampling (each draw gets its own stream).")
    )
    system_prompt: str | None = field(
        default=None,
        metadata=_describe(
            "Optional system message put before the problem, or preset:<name> (preset:search-and-learn)."
        ),
    )
    step_delimiter: str | None = field(default=None, metadata=_describe("The text between steps, e.g. '\\n\\n'."))
    answers: str | None = field(
        default=None,
        metadata=_describe(
            "The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math "
            "(search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls."
        ),
    )
    aggregation: Aggregation | None = field(
        default=None,
        metadata=_describe(
            "best_of_n, weighted_best_of_n, beam_search, dvts, particle_filtering: How step scores become one score: "
            "last, min, prod, mean. self_refine: How a PRM's step scores become one (min: one bad step spoils it)."
        ),
    )
    max_iterations: int | None = field(
        default=None, metadata=_describe("Most steps per solution; the last one writes to the end.")
    )
    lookahead: int | None = field(
        default=None, metadata=_describe("Greedy steps rolled out past each candidate before scoring.")
    )
    selection: Literal["best", "weighted", "last", "vote", "verifier"] | None = field(
        default=None,
        metadata=_describe(
            "beam_search, dvts, particle_filtering: Final pick: weighted vote over finished solutions, or best. "
            "self_refine: Final pick: last, vote or verifier (default: last)."
        ),
    )
    record_tree: bool | None = field(
        default=None, metadata=_describe("Keep the whole search tree in the result (metadata['tree']).")
    )
    beam_width: int | None = field(default=None, metadata=_describe("Continuations per beam (M); must divide n."))
    filter_duplicates: bool | None = field(
        default=None, metadata=_describe("Drop candidates whose text equals an earlier one before pruning.")
    )
    stop_when_n_finished: bool | None = field(
        default=None, metadata=_describe("Stop once n beams have finished (off: run until none is active).")
    )
    resampling_temperature: float | None = field(
        default=None, metadata=_describe("Softmax temperature of the particle weights (lower: greedier).")
    )
    resampling: Literal["multinomial", "systematic"] | None = field(
        default=None, metadata=_describe("How particles are drawn: multinomial or systematic.")
    )
    rounds: int | None = field(
        default=None, metadata=_describe("Particle Gibbs sweeps that share the budget n (1: particle filtering).")
    )
    reference_particles: int | None = field(
        default=None,
        metadata=_describe("Particle Gibbs: finished particles carried into the next sweep as references."),
    )
    stop_at: str | None = field(
        default=None,
        metadata=_describe(
            "A particle whose step contains this text is finished (its_hub's rule, e.g. '\\boxed'); None: only end "
            "of sequence or a step of only whitespace ends one."
        ),
    )
    max_revisions: int | None = field(default=None, metadata=_describe("Revisions per chain (0: drafts only)."))
    critic: Literal["self", "prm", "policy", "custom"] | None = field(
        default=None, metadata=_describe("Who critiques: self (self-verification), prm, policy, custom.")
    )
    critique_threshold: float | None = field(
        default=None, metadata=_describe("A PRM critic flags the first step below it.")
    )
    table: str | None = field(
        default=None, metadata=_describe("A strategy table file (default: the shipped Arith table).")
    )
    estimator: str | None = field(default=None, metadata=_describe("The difficulty estimator (default: the table's)."))
    wave_size: int | None = field(
        default=None, metadata=_describe("Samples per wave (one policy call, and one PRM call, each); None: min(4, n).")
    )
    stop_rule: Literal["dirichlet", "supermajority"] | None = field(
        default=None,
        metadata=_describe(
            "When the vote is settled: dirichlet (P(the leader stays the leader) >= threshold) or supermajority "
            "(the leader's share of the votes >= threshold)."
        ),
    )
    threshold: float | None = field(
        default=None,
        metadata=_describe("Where the stop rule stops, in (0.5, 1]; None: 0.95 for dirichlet, 0.75 for supermajority."),
    )
    adaptive_threshold: float | None = field(
        default=None,
        metadata=_describe(
            "Stop early once the finished solutions' weighted vote is settled: P(its leader stays the leader) >= "
            "this, in (0.5, 1] (None: off)."
        ),
    )
    both_orders: bool | None = field(
        default=None,
        metadata=_describe(
            "Ask each comparison in both orders (A-B and B-A) to cancel position bias; off: half the calls."
        ),
    )
    # The run's collaborators beside the options.
    tools: list[dict[str, Any]] | None = field(
        default=None,
        metadata=_describe(
            "Tools the sampled turns may call (OpenAI tool schemas; TTCChatModel.bind_tools sets them). Needs a "
            "policy that calls tools (a ChatModelPolicy) and a tool-call answer key (answers: tool_calls)."
        ),
    )
    tool_choice: str | dict[str, Any] | None = field(
        default=None, metadata=_describe("With tools: auto, required, none or a tool's name. Empty: the model decides.")
    )


OPTION_FIELDS = frozenset(f.name for f in fields(TTCContext)) - {
    "policy_model", "prm_model", "backend", "tools", "tool_choice"
}  # fmt: skip


def context_of(runtime: Runtime[Any] | None) -> TTCContext | None:
    """The run's :class:`TTCContext`, if it has one."""
    context = getattr(runtime, "context", None)
    return context if isinstance(context, TTCContext) else None


def context_options(runtime: Runtime[Any] | None) -> dict[str, Any]:
    """The strategy options the run's context sets (``None``: the graph's own value).

    A strategy takes only those its config has (a ``beam_width`` means nothing to majority voting).
    """
    context = context_of(runtime)
    if context is None:
        return {}
    return {name: getattr(context, name) for name in OPTION_FIELDS if getattr(context, name) is not None}


def policy_for_run(default: PolicyEngine, runtime: Runtime[Any] | None) -> PolicyEngine:
    """The run's policy: the context's ``policy_model`` if set, else the graph's own; bound to the context's tools.

    Raises:
        TypeError: If the context sets ``tools`` and the policy cannot call tools (named, with the fix).

    """
    context = context_of(runtime)
    if context is None:
        return default
    policy = load_policy(context.policy_model, context.backend) if context.policy_model else default
    return with_tools(policy, context.tools, tool_choice=context.tool_choice) if context.tools else policy


def with_tools(policy: PolicyEngine, tools: list[Any], *, tool_choice: Any = None) -> PolicyEngine:
    """``policy`` with its sampled turns free to call ``tools``.

    Raises:
        TypeError: If the policy cannot call tools, naming it and the fix.

    Example:
        >>> tools = [{"type": "function", "function": {"name": "f"}}]
        >>> with_tools(load_policy("arith:small"), tools)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: policy=TransformersPolicy cannot call tools: ...

    """
    if not isinstance(policy, ToolCallingPolicy):
        raise TypeError(
            f"policy={type(policy).__name__} cannot call tools: only a policy that samples tool calls can vote "
            "over them. Build the graph on ChatModelPolicy(chat_model) with a chat model that calls tools (for "
            "example ChatOpenAI(base_url=<your vLLM server>/v1))."
        )
    return policy.with_tools(tools, tool_choice=tool_choice)


def prm_for_run(default: PRMEngine, runtime: Runtime[Any] | None) -> PRMEngine:
    """The run's PRM: the context's ``prm_model`` if set, else the graph's own PRM."""
    context = context_of(runtime)
    if context is None or not context.prm_model:
        return default
    return load_prm(context.prm_model, context.backend)
