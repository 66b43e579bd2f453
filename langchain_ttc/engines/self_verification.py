"""A self-verification PRM: the policy checks its own steps, no external reward model.

In: :class:`~langchain_ttc.core.types.ScoreRequest` objects. Out: one score per step: the share of
``samples`` re-derivations of that step by the policy itself (from the problem and the steps
before it, stopping at the step delimiter) that agree with the step. Two steps agree when their
whitespace-normalised texts are equal or they state the same numbers in the same order. All steps
of all requests go in one batched policy call (``samples`` completions each), so it works with
every policy engine (transformers, vLLM, a server) and plugs in anywhere a PRM does: best-of-N,
beam search, the router, or as the critic of self-refinement.

What it can and cannot see: a step the policy writes by a slip of sampling is re-derived
differently and scores low; a step that follows from the policy's own systematic misconception is
re-derived the same way and scores high. ``benchmarks/self_refine.py`` measures how far that gets.

Example:
    >>> from langchain_ttc.engines.loading import load_policy
    >>> prm = SelfVerificationPRM(load_policy("arith:small"), samples=4, seed=0)
    >>> scores = prm.invoke([{"problem": "Keep only the last digit after each step. What is 2+3?",
    ...                       "steps": ["2+3=5. The answer is \\\\boxed{5}."]}])
    >>> len(scores[0].scores)
    1

"""

from __future__ import annotations

import re

from langchain_ttc.core.seeds import derive_seed, seed_requests
from langchain_ttc.core.types import GenerationRequest, GenerationResult, Message, ScoreRequest, StepScores
from langchain_ttc.engines.base import PolicyEngine, PRMEngine

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def steps_agree(a: str, b: str) -> bool:
    """Whether two steps say the same: equal normalised text, or the same numbers in the same order."""
    if " ".join(a.split()) == " ".join(b.split()):
        return True
    numbers = _NUMBER.findall(a)
    return bool(numbers) and numbers == _NUMBER.findall(b)


class SelfVerificationPRM(PRMEngine):
    """The policy as its own verifier: each step scored by how often the policy re-derives it.

    Args:
        policy: The policy engine; it must continue partial assistant messages.
        samples: Re-derivations per step (scores are multiples of ``1 / samples``).
        temperature: Sampling temperature of the re-derivations.
        max_step_tokens: Most tokens per re-derived step.
        step_delimiter: What ends a step.
        system_prompt: Optional system message, as the policy was prompted when solving.
        seed: Seed for reproducible re-derivations.

    Raises:
        TypeError: If ``policy`` is not a policy engine that continues partial messages.
        ValueError: If a numeric option is out of range.

    """

    def __init__(
        self,
        policy: PolicyEngine,
        *,
        samples: int = 4,
        temperature: float = 0.8,
        max_step_tokens: int = 96,
        step_delimiter: str = "\n\n",
        system_prompt: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(policy, PolicyEngine) or not policy.supports_partial:
            raise TypeError(
                f"policy={type(policy).__name__} must be a PolicyEngine that continues partial assistant "
                "messages (transformers, vLLM or a vLLM server), to re-derive each step from the ones before it."
            )
        if samples < 1 or max_step_tokens < 1 or temperature < 0 or not step_delimiter:
            raise ValueError(
                f"samples={samples}, max_step_tokens={max_step_tokens}, temperature={temperature}, "
                f"step_delimiter={step_delimiter!r}: pass samples >= 1, max_step_tokens >= 1, temperature >= 0 "
                "and a non-empty delimiter."
            )
        self.policy = policy
        self.samples = samples
        self.temperature = temperature
        self.max_step_tokens = max_step_tokens
        self.step_delimiter = step_delimiter
        self.system_prompt = system_prompt
        self.seed = seed

    def _conversation(self, problem: str) -> list[Message]:
        system: list[Message] = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": problem}]

    def _requests(self, requests: list[ScoreRequest]) -> tuple[list[GenerationRequest], list[tuple[int, str]]]:
        """The policy requests (one per step, every call seeded alike) and which solution and step each asks about."""
        generations: list[GenerationRequest] = []
        owners: list[tuple[int, str]] = []
        for index, request in enumerate(requests):
            for k, step in enumerate(request.steps):
                prefix = "".join(f"{s}{self.step_delimiter}" for s in request.steps[:k])
                generations.append(
                    GenerationRequest(
                        messages=self._conversation(request.problem),
                        partial=prefix,
                        n=self.samples,
                        stop=[self.step_delimiter],
                        max_tokens=self.max_step_tokens,
                        temperature=self.temperature,
                    )
                )
                owners.append((index, step))
        # Every call draws from the same seeds: a step is judged the same way whenever it is asked about.
        return seed_requests(generations, derive_seed(self.seed, "self-verification")), owners

    def _verdicts(
        self, requests: list[ScoreRequest], owners: list[tuple[int, str]], results: list[GenerationResult]
    ) -> list[StepScores]:
        scores: list[list[float]] = [[] for _ in requests]
        tokens = [0] * len(requests)
        for (index, step), result in zip(owners, results, strict=True):
            agreeing = sum(steps_agree(c.text.removesuffix(self.step_delimiter), step) for c in result.completions)
            scores[index].append(agreeing / len(result.completions))
            tokens[index] += sum(c.num_tokens for c in result.completions)
        return [StepScores(scores=s, num_tokens=t) for s, t in zip(scores, tokens, strict=True)]

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        generations, owners = self._requests(requests)
        results = self.policy.invoke(generations) if generations else []
        return self._verdicts(requests, owners, results)

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        generations, owners = self._requests(requests)
        results = await self.policy.ainvoke(generations) if generations else []
        return self._verdicts(requests, owners, results)
