"""Scripted engines for unit tests of the algorithms (never a substitute for the real engines)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult, ScoreRequest, StepScores
from langchain_ttc.engines.base import PolicyEngine, PRMEngine


class ScriptedPolicy(PolicyEngine):
    """Returns the scripted completions in order, cycling; records every call."""

    def __init__(self, texts: list[str], finish_reasons: list[str] | None = None) -> None:
        self.texts = texts
        self.finish_reasons = finish_reasons or ["eos"] * len(texts)
        self.calls: list[list[GenerationRequest]] = []
        self._next = 0

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(requests)
        results = []
        for request in requests:
            completions = []
            for _ in range(request.n):
                i = self._next % len(self.texts)
                self._next += 1
                completions.append(
                    Completion(text=self.texts[i], num_tokens=len(self.texts[i]), finish_reason=self.finish_reasons[i])  # type: ignore[arg-type]
                )
            results.append(GenerationResult(completions=completions, prompt_tokens=10))
        return results


class ScriptedPRM(PRMEngine):
    """Scores each step with ``score_step(problem, step)``; records every call."""

    def __init__(self, score_step: Callable[[str, str], float]) -> None:
        self.score_step = score_step
        self.calls: list[list[ScoreRequest]] = []

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        self.calls.append(requests)
        return [
            StepScores(scores=[self.score_step(r.problem, s) for s in r.steps], num_tokens=sum(len(s) for s in r.steps))
            for r in requests
        ]


class StepTreePolicy(PolicyEngine):
    """Continues a partial text from a script: ``tree[partial]`` lists ``(text, finish_reason)``
    continuations handed out in turn (cycling) to successive samples from that partial."""

    def __init__(self, tree: dict[str, list[tuple[str, str]]]) -> None:
        self.tree = tree
        self.calls: list[list[GenerationRequest]] = []
        self._turn: dict[str, int] = {}

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(requests)
        results = []
        for request in requests:
            options = self.tree[request.partial]
            completions = []
            for _ in range(request.n):
                turn = self._turn.get(request.partial, 0)
                self._turn[request.partial] = turn + 1
                text, finish = options[turn % len(options)]
                completions.append(
                    Completion(
                        text=text,
                        num_tokens=max(1, len(text)),
                        finish_reason=finish,  # type: ignore[arg-type]
                        stop_string="\n\n" if finish == "stop" else None,
                    )
                )
            results.append(GenerationResult(completions=completions, prompt_tokens=5))
        return results


def last_step_prm(scores: dict[str, float], default: float = 0.5) -> ScriptedPRM:
    """A PRM whose score of a step is ``scores[step]`` (``default`` for unknown steps)."""
    return ScriptedPRM(lambda _problem, step: scores.get(step, default))


def seed_ranges(calls: list[list[GenerationRequest]]) -> list[range]:
    """The seeds each request of the recorded calls samples from under vLLM's rule (``seed + k``)."""
    return [range(r.seed, r.seed + r.n) for call in calls for r in call if r.seed is not None]


def assert_disjoint_streams(calls: list[list[GenerationRequest]]) -> None:
    """No two samples of the recorded calls share a seed (every sample was seeded)."""
    seeds = [seed for span in seed_ranges(calls) for seed in span]
    assert len(seeds) == sum(r.n for call in calls for r in call if r.temperature > 0)
    assert len(set(seeds)) == len(seeds), "two samples share a random stream"


class ScriptedChatModel(BaseChatModel):
    """A chat model that calls tools: returns the scripted replies in order (cycling), records every call.

    ``calls`` holds ``(messages, tools, tool_choice)`` per call; ``bind_tools`` binds OpenAI schemas as
    real chat models do. A reply given as a dict ``{"name": ..., "args": ...}`` is a tool call.
    """

    replies: list[Any]
    delay_s: float = 0.0
    _next: int = PrivateAttr(default=0)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _calls: list[tuple[list[BaseMessage], Any, Any]] = PrivateAttr(default_factory=list)
    _in_flight: int = PrivateAttr(default=0)
    _most_in_flight: int = PrivateAttr(default=0)
    _async_calls: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[tuple[list[BaseMessage], Any, Any]]:
        return self._calls

    @property
    def most_in_flight(self) -> int:
        """The most calls that were ever in flight at once."""
        return self._most_in_flight

    @property
    def async_calls(self) -> int:
        """Calls that came through the async API."""
        return self._async_calls

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._most_in_flight = max(self._most_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._enter()
        time.sleep(self.delay_s)
        self._leave()
        return self._reply(messages, kwargs)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self._enter()
        self._async_calls += 1
        await asyncio.sleep(self.delay_s)
        self._leave()
        return self._reply(messages, kwargs)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        with self._lock:
            reply = self.replies[self._next % len(self.replies)]
            self._next += 1
            self._calls.append((messages, kwargs.get("tools"), kwargs.get("tool_choice")))
        if isinstance(reply, dict):
            call = {"name": reply["name"], "args": reply["args"], "id": f"call_{self._next}", "type": "tool_call"}
            message = AIMessage(content=reply.get("text", ""), tool_calls=[call])
        else:
            message = AIMessage(content=str(reply))
        message.usage_metadata = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
        message.response_metadata = {"finish_reason": "tool_calls" if isinstance(reply, dict) else "stop"}
        return ChatResult(generations=[ChatGeneration(message=message)])
