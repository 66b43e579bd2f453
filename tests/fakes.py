"""Scripted engines for unit tests of the algorithms (never a substitute for the real engines)."""

from __future__ import annotations

from collections.abc import Callable

from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.types import Completion, GenerationRequest, GenerationResult, ScoreRequest, StepScores


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
