"""Sampling and scoring helpers: from the graph input to scored candidates, and from a selection to the output.

In: the graph input, a config's sampling settings, engines. Out: the conversation sent to the policy,
candidates built from completions (with the answer an answer key reads), PRM scores attached to
candidates, the usage of each call, the ``generate`` node of the sample-then-select graphs, and the
``{"answer", "result"}`` output. The selection rules themselves live in :mod:`langchain_ttc.core.voting`.

Example:
    >>> conversation_from_input({"problem": "What is 2+2?"}, system_prompt=None)
    ('What is 2+2?', [{'role': 'user', 'content': 'What is 2+2?'}])

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime

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
from langchain_ttc.strategies.context import TTCContext, policy_for_run
from langchain_ttc.strategies.driver import Calls, call, emit
from langchain_ttc.strategies.graphs import SelectionState, StrategyInput, candidates_of, dumped, run_config

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


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
    return scored, Usage.of_prm_call(results)


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


def make_generate_node(policy: PolicyEngine, config: StrategyConfig, *, answer_key: AnswerKey | None = None) -> Any:
    """The ``generate`` node of the sample-then-select graphs: one policy call for ``n`` solutions.

    Pilots in the input count toward ``n``: only the rest is sampled (no call when they suffice).
    The run's :class:`~langchain_ttc.strategies.context.TTCContext` may override the config (checked
    before the call); the run's config is stored in the state for the nodes after it. Answers are
    read with the key the run's ``answers`` names (``answer_key``: the graph's own key object, for
    ``custom:<name>``).
    """

    def generate(state: SelectionState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        run = run_config(config, runtime)
        key = run.answer_key(answer_key)
        problem, conversation = conversation_from_input(state, system_prompt=run.system_prompt)
        candidates = candidates_of(state, "pilots")
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
        return {
            "problem": problem,
            "config": run.model_dump(),
            "conversation": conversation,
            "candidates": dumped(candidates),
            "usage": usage,
        }

    return generate
