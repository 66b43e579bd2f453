"""Shared pieces of the strategy graphs: input and output schemas, validation, sampling and scoring.

In: the graph input (``{"problem": str}`` or ``{"messages": [...]}``). Out: the conversation sent to
the policy, candidates built from completions, PRM scores attached to candidates, usage, and the
``{"answer", "result"}`` output every strategy graph returns. Nodes call these helpers; the
selection rules themselves live in :mod:`langchain_ttc.core.voting`.

**One node body, sync and async.** A node that calls an engine (or a subgraph) is written once, as
a generator that *yields* its calls (``results = yield from call(policy, requests)``) and returns
its state update. :func:`as_node` turns it into a LangGraph node with both drivers: under
``invoke`` each call runs with ``invoke``; under ``ainvoke`` / ``astream`` / ``abatch`` it is awaited
with ``ainvoke`` on the event loop, so no engine call is parked in a worker thread. Plain functions
(nodes that call nothing) get both drivers too.
"""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

from langchain_core.callbacks import dispatch_custom_event
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import DEFAULT_RECURSION_LIMIT
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime, get_runtime
from langgraph.types import Checkpointer

from langchain_ttc.core.aggregation import aggregate
from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey
from langchain_ttc.core.search import split_steps
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.tool_calls import render_tool_call, tool_fields
from langchain_ttc.core.types import (
    Candidate,
    Completion,
    GenerationRequest,
    GenerationResult,
    Message,
    ScoreRequest,
    TTCResult,
    Usage,
)
from langchain_ttc.core.voting import Selection
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import StrategyConfig
from langchain_ttc.strategies.context import TTCContext, context_options, policy_for_run

C = TypeVar("C", bound=StrategyConfig)
T = TypeVar("T")
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


StrategyGraph = CompiledStateGraph[Any, Any, Any, Any]
"""The type of every compiled strategy graph."""


class StrategyInput(TypedDict, total=False):
    """Graph input: a problem string, or a chat whose last user message is the problem.

    ``pilots`` (optional) are whole solutions already sampled for this problem, as
    :class:`~langchain_ttc.core.types.Candidate` data (the compute-optimal router passes the samples it
    estimated difficulty from). They are reused, not resampled: the sample-then-select graphs
    count them toward ``n`` (and keep their PRM scores), the step-level searches add them to the
    pool their final selection picks from.
    """

    problem: str
    messages: list[Any]
    pilots: list[dict[str, Any]]


class StrategyOutput(TypedDict):
    """Graph output: the chosen answer and the whole :class:`~langchain_ttc.core.types.TTCResult` as data."""

    answer: str | None
    result: dict[str, Any]


class SelectionState(StrategyInput, total=False):
    """State of the sample-then-select graphs (plain data, checkpointable)."""

    config: dict[str, Any]
    conversation: list[Message]
    candidates: list[dict[str, Any]]
    usage: dict[str, Any]
    answer: str | None
    result: dict[str, Any]


@dataclass(frozen=True)
class Call:
    """A call a node body hands its driver: ``runnable.invoke(input, **kwargs)`` or, async, ``ainvoke``.

    Attributes:
        runnable: An engine, a chat model or a compiled subgraph.
        input: Its input (a list of inputs with ``many=True``).
        kwargs: Keyword arguments of the call (for example a subgraph's ``context``).
        many: Call ``batch`` / ``abatch`` instead.

    """

    runnable: Runnable[Any, Any]
    input: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    many: bool = False

    def run(self) -> Any:
        """Make the call synchronously."""
        return (self.runnable.batch if self.many else self.runnable.invoke)(self.input, **self.kwargs)

    async def arun(self) -> Any:
        """Make the call on the running event loop."""
        return await (self.runnable.abatch if self.many else self.runnable.ainvoke)(self.input, **self.kwargs)


Calls = Generator[Call, Any, T]
"""A node body (or a helper of one): yields :class:`Call` objects, is sent their results, returns ``T``."""


def call(runnable: Runnable[Any, Any], input: Any, **kwargs: Any) -> Calls[Any]:
    """Hand one engine call to the node's driver and return its result (a node writes ``yield from``).

    Example:
        >>> steps = call(RunnableLambda(lambda x: x + 1), 1)
        >>> next(steps).run()
        2

    """
    return (yield Call(runnable, input, kwargs))


def call_batch(runnable: Runnable[Any, Any], inputs: list[Any]) -> Calls[list[Any]]:
    """Yield one ``batch`` call to the node's driver and return its results."""
    return (yield Call(runnable, inputs, many=True))


def run_calls(body: Calls[T]) -> T:
    """Drive a generator of calls synchronously (outside a graph, for example in a benchmark)."""
    reply = None
    while True:
        try:
            step = body.send(reply)
        except StopIteration as done:
            return done.value
        reply = step.run()


async def arun_calls(body: Calls[T]) -> T:
    """Drive a generator of calls on the running event loop."""
    reply = None
    while True:
        try:
            step = body.send(reply)
        except StopIteration as done:
            return done.value
        reply = await step.arun()


def as_node(
    function: Callable[..., Any], *, name: str | None = None, subgraph: Runnable[Any, Any] | None = None
) -> Runnable[Any, Any]:
    """A LangGraph node with a sync and an async driver for ``function(state[, runtime])``.

    ``function`` is a generator of :class:`Call` objects (see the module docs) or a plain function.
    The run's :class:`~langgraph.runtime.Runtime` is passed when ``function`` takes ``runtime``.
    ``subgraph`` names a compiled graph the node runs, so LangGraph sees it (drawing with
    ``xray``, streaming with ``subgraphs=True``, checkpoint namespaces).
    """
    with_runtime = "runtime" in inspect.signature(function).parameters
    calls = inspect.isgeneratorfunction(function)

    def start(state: Any) -> Any:
        return function(state, get_runtime()) if with_runtime else function(state)

    def run(state: Any) -> Any:
        _ = subgraph  # referenced here so that LangGraph finds the subgraph among the node's dependencies
        return run_calls(start(state)) if calls else start(state)

    async def arun(state: Any) -> Any:
        return await arun_calls(start(state)) if calls else start(state)

    return RunnableLambda(run, afunc=arun, name=name or function.__name__)


def emit(event: dict[str, Any]) -> None:
    """Report progress: a LangGraph custom stream event, and a LangChain custom event of the same name.

    The first reaches ``stream_mode="custom"`` (and LangGraph Studio); the second reaches
    ``astream_events`` when the graph runs inside an LCEL chain.
    """
    get_stream_writer()(event)
    dispatch_custom_event(event["type"], event)


def run_config(config: C, runtime: Runtime[Any] | None) -> C:
    """The graph's config with the run's context settings on top, validated again.

    Raises:
        ValueError: If the context sets an invalid value (named, with the fix).

    """
    return config.merged(context_options(runtime))


def config_of(state: Mapping[str, Any], cls: type[C]) -> C:
    """The config a run validated and stored in its state (plain data, so checkpoints hold it).

    Read as ``cls`` or one of its bases (a shared node reads the fields it knows; no validation again).
    """
    return cls.model_construct(**state["config"])


LOOP_STEP_BUDGET = 10_000
"""The recursion limit a looping graph runs under when the caller sets none (or LangChain's default 25)."""


class LoopingGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """A compiled graph with a loop: its runs get a step budget that fits the loop.

    Each loop iteration takes a few LangGraph steps, so ``max_iterations=40`` needs about 123: more
    than LangChain's default ``recursion_limit`` of 25 that ``invoke``, ``batch`` and LCEL chains fill
    in. A run whose limit is missing or that default gets :data:`LOOP_STEP_BUDGET` (the loop bounds
    itself by its own ``max_iterations`` or ``max_revisions``); an explicit other limit is kept.
    Built by :func:`compile_loop`.
    """

    def stream(self, input: Any, config: RunnableConfig | None = None, *args: Any, **kwargs: Any) -> Any:
        """Stream a run (see ``CompiledStateGraph.stream``) under the loop's step budget."""
        return super().stream(input, _budgeted(config), *args, **kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None, *args: Any, **kwargs: Any) -> Any:
        """Stream a run asynchronously (see ``CompiledStateGraph.astream``) under the loop's step budget."""
        return super().astream(input, _budgeted(config), *args, **kwargs)


def _budgeted(config: RunnableConfig | None) -> RunnableConfig:
    budgeted: RunnableConfig = {**(config or {})}
    if budgeted.get("recursion_limit") in (None, DEFAULT_RECURSION_LIMIT):
        budgeted["recursion_limit"] = LOOP_STEP_BUDGET
    return budgeted


def build_pipeline(
    nodes: Sequence[tuple[str, Any]], *, checkpointer: Checkpointer, name: str
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Wire a sample-then-select graph: its nodes one after the other, from start to end."""
    builder = StateGraph(
        SelectionState, context_schema=TTCContext, input_schema=StrategyInput, output_schema=StrategyOutput
    )
    for node_name, node in nodes:
        builder.add_node(node_name, as_node(node, name=node_name))
    names = [START, *(node_name for node_name, _ in nodes), END]
    for first, second in itertools.pairwise(names):
        builder.add_edge(first, second)
    return builder.compile(checkpointer=checkpointer, name=name)


def compile_loop(builder: StateGraph[Any, Any, Any, Any], *, checkpointer: Checkpointer, name: str) -> LoopingGraph:
    """Compile a graph that loops into a :class:`LoopingGraph` (constructed as LangGraph's ``copy`` does)."""
    graph = builder.compile(checkpointer=checkpointer, name=name)
    return LoopingGraph(**{k: v for k, v in graph.__dict__.items() if k != "__orig_class__"})


def check_policy(policy: object) -> PolicyEngine:
    """Return ``policy`` if it is a policy engine, else raise a ``TypeError`` with the fix."""
    if not isinstance(policy, PolicyEngine):
        raise TypeError(
            f"policy={type(policy).__name__} is not a PolicyEngine; wrap your model, for example "
            "TransformersPolicy.from_pretrained(path)."
        )
    return policy


def check_prm(prm: object) -> PRMEngine:
    """Return ``prm`` if it is a PRM engine, else raise a ``TypeError`` with the fix."""
    if not isinstance(prm, PRMEngine):
        raise TypeError(
            f"prm={type(prm).__name__} is not a PRMEngine; load one, for example MathShepherdPRM.from_pretrained(path)."
        )
    return prm


def _message(message: Any) -> Message:
    if isinstance(message, BaseMessage):
        converted: Message = {"role": _ROLES.get(message.type, message.type), "content": message.text}
        return converted | tool_fields(message)  # an agent's history keeps its tool calls and results
    if isinstance(message, dict) and "content" in message:
        role = str(message.get("role", message.get("type", "user")))
        return {"role": _ROLES.get(role, role), "content": str(message["content"])}
    if isinstance(message, (tuple, list)) and len(message) == 2:
        return {"role": _ROLES.get(str(message[0]), str(message[0])), "content": str(message[1])}
    raise TypeError(f"messages item {message!r} is not a chat message; pass {{'role': ..., 'content': ...}}.")


def conversation_from_input(state: StrategyInput, *, system_prompt: str | None) -> tuple[str, list[Message]]:
    """Return the problem text and the conversation to send to the policy.

    Raises:
        ValueError: If the input has no problem, or the problem is empty.

    """
    if state.get("problem") is not None:
        problem = str(state["problem"])
        conversation: list[Message] = [{"role": "user", "content": problem}]
    elif state.get("messages"):
        conversation = [_message(m) for m in state["messages"]]
        users = [m["content"] for m in conversation if m["role"] == "user"]
        problem = users[-1] if users else ""
    else:
        raise ValueError("the input has neither 'problem' nor 'messages'; pass {'problem': 'What is 2+2?'}.")
    if not problem.strip():
        raise ValueError(f"problem={problem!r} is empty; pass the text of the problem to solve.")
    if system_prompt and conversation[0]["role"] != "system":
        conversation = [{"role": "system", "content": system_prompt}, *conversation]
    return problem, conversation


def candidate_from_completion(
    completion: Completion, *, prefix: str = "", delimiter: str, key: AnswerKey = MATH_ANSWERS
) -> Candidate:
    """Build a candidate (steps, and its answer as ``key`` reads it) from a completion of ``prefix``."""
    text = prefix + completion.text
    calls = completion.tool_calls  # an agent's action: the reward model reads each call as one more step
    return Candidate(
        text=text,
        steps=split_steps(text, delimiter) + [render_tool_call(call) for call in calls],
        answer=key.answer_of(text, calls),
        finish_reason=completion.finish_reason,
        num_tokens=completion.num_tokens,
        tool_calls=calls,
    )


def policy_call_usage(results: Sequence[GenerationResult]) -> Usage:
    """The usage of one batched policy call that returned ``results`` (no call when there are none)."""
    return Usage(
        policy_calls=1 if results else 0,
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(c.num_tokens for r in results for c in r.completions),
    )


def sample(
    policy: PolicyEngine, request: GenerationRequest, *, delimiter: str, key: AnswerKey = MATH_ANSWERS
) -> Calls[tuple[list[Candidate], Usage]]:
    """One batched policy call for ``request.n`` whole solutions."""
    results = yield from call(policy, [request])
    candidates = [candidate_from_completion(c, delimiter=delimiter, key=key) for c in results[0].completions]
    return candidates, policy_call_usage(results)


def reaggregated(candidates: Sequence[Candidate], *, aggregation: str) -> list[Candidate]:
    """The candidates, each one with step scores given the aggregate of ``aggregation``."""
    return [
        c.model_copy(update={"score": aggregate(c.step_scores, aggregation)}) if c.step_scores is not None else c
        for c in candidates
    ]


def score_candidates(
    prm: PRMEngine, problem: str, candidates: Sequence[Candidate], *, aggregation: str
) -> Calls[tuple[list[Candidate], Usage]]:
    """One batched PRM call for every candidate with steps and no scores yet; attach step scores and the aggregate."""
    scored = reaggregated(candidates, aggregation=aggregation)  # already scored (reused pilots): no PRM call
    todo = [i for i, c in enumerate(candidates) if c.steps and c.step_scores is None]
    if not todo:
        return scored, Usage()
    results = yield from call(prm, [ScoreRequest(problem=problem, steps=candidates[i].steps) for i in todo])
    for i, step_scores in zip(todo, results, strict=True):
        scores = step_scores.scores
        scored[i] = candidates[i].model_copy(update={"step_scores": scores, "score": aggregate(scores, aggregation)})
    return scored, Usage(prm_calls=1, prm_tokens=sum(r.num_tokens for r in results))


def elapsed_since(started: float) -> Usage:
    """Usage holding the wall time since ``started`` (a ``time.perf_counter()`` reading)."""
    return Usage(wall_time_s=time.perf_counter() - started)


def usage_of(state: Mapping[str, Any]) -> Usage:
    """The usage recorded in a graph state so far."""
    return Usage.model_validate(state.get("usage") or {})


def selection_output(strategy: str, candidates: list[Candidate], selection: Selection, usage: Usage) -> dict[str, Any]:
    """The graph output for a selection over ``candidates``; also emits the ``ttc.selected`` event."""
    chosen = selection.chosen_index
    result = TTCResult(
        strategy=strategy,
        answer=None if chosen is None else candidates[chosen].answer,
        solution=None if chosen is None else candidates[chosen].text,
        chosen_index=chosen,
        candidates=candidates,
        groups=selection.groups,
        usage=usage,
    )
    emit({"type": "ttc.selected", "answer": result.answer, "chosen_index": chosen})
    return {"answer": result.answer, "result": result.model_dump()}


def sampling_request(config: StrategyConfig, conversation: list[Message], **update: Any) -> GenerationRequest:
    """A request with the config's sampling settings (``update`` sets ``n``, ``partial``, ``stop``, ``seed``, ...)."""
    request = GenerationRequest(
        messages=conversation, max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p
    )
    return request.model_copy(update=update)


def make_generate_node(policy: PolicyEngine, config: StrategyConfig, *, key: AnswerKey = MATH_ANSWERS) -> Any:
    """The ``generate`` node of the sample-then-select graphs: one policy call for ``n`` solutions.

    Pilots in the input count toward ``n``: only the rest is sampled (no call when they suffice).
    The run's :class:`~langchain_ttc.strategies.context.TTCContext` may override the config (checked
    before the call); the run's config is stored in the state for the nodes after it.
    """

    def generate(state: SelectionState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        started = time.perf_counter()
        run = run_config(config, runtime)
        problem, conversation = conversation_from_input(state, system_prompt=run.system_prompt)
        candidates = [Candidate.model_validate(c) for c in state.get("pilots") or []]
        usage = Usage()
        if run.n > len(candidates):
            request = sampling_request(
                run, conversation, n=run.n - len(candidates), seed=derive_seed(run.seed, "samples")
            )
            sampled, usage = yield from sample(
                policy_for_run(policy, runtime), request, delimiter=run.step_delimiter, key=key
            )
            candidates += sampled
        emit({"type": "ttc.generated", "candidates": len(candidates), "tokens": usage.completion_tokens})
        total = usage_of(state) + usage + elapsed_since(started)
        return {
            "problem": problem,
            "config": run.model_dump(),
            "conversation": conversation,
            "candidates": [c.model_dump() for c in candidates],
            "usage": total.model_dump(),
        }

    return generate
