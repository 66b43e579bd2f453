"""Scripted engines for unit tests of the algorithms (never a substitute for the real engines)."""

from __future__ import annotations

from collections.abc import Callable

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
