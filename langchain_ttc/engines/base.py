"""Engine interfaces: the policy and the PRM as LangChain Runnables.

In (policy): a list of :class:`~langchain_ttc.core.types.GenerationRequest`; out: one
:class:`~langchain_ttc.core.types.GenerationResult` per request (``n`` completions each). In (PRM): a list
of :class:`~langchain_ttc.core.types.ScoreRequest`; out: one :class:`~langchain_ttc.core.types.StepScores`
per request. One ``invoke`` is one batched call: strategies send every sample of an iteration in a
single call.

Backends implement ``_generate`` / ``_score``. ``invoke`` wraps them in a traced run named
``ttc:policy`` / ``ttc:prm`` (tagged the same way) so LangSmith traces read well, and accepts plain
dicts in place of the pydantic requests.

Example:
    >>> from langchain_ttc.core.types import Completion
    >>> class Echo(PolicyEngine):
    ...     def _generate(self, requests):
    ...         return [GenerationResult(completions=[Completion(text=r.prompt or "", num_tokens=1,
    ...                 finish_reason="eos")] * r.n, prompt_tokens=1) for r in requests]
    >>> Echo().invoke([{"prompt": "hi", "n": 2}])[0].completions[1].text
    'hi'

"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config

from langchain_ttc.core.types import GenerationRequest, GenerationResult, ScoreRequest, StepScores


def _traced(config: RunnableConfig | None, name: str) -> RunnableConfig:
    config = ensure_config(config)
    config["run_name"] = config.get("run_name") or name
    config["tags"] = [*config.get("tags", []), name]
    return config


class PolicyEngine(Runnable[Sequence[GenerationRequest | dict[str, Any]], list[GenerationResult]], ABC):
    """A policy model: one batched call generates completions for many requests."""

    name: str | None = "ttc:policy"

    #: Whether the engine can continue a partial assistant message (needed for step-level search).
    supports_partial: bool = True

    @abstractmethod
    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Generate completions for every request, in order."""

    def invoke(
        self,
        input: Sequence[GenerationRequest | dict[str, Any]],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[GenerationResult]:
        """Generate for every request in one batched call."""
        requests = [r if isinstance(r, GenerationRequest) else GenerationRequest.model_validate(r) for r in input]
        return self._call_with_config(
            lambda rs: self._generate(rs), requests, _traced(config, "ttc:policy"), run_type="llm"
        )


class PRMEngine(Runnable[Sequence[ScoreRequest | dict[str, Any]], list[StepScores]], ABC):
    """A process reward model: one batched call scores every step of many solutions."""

    name: str | None = "ttc:prm"

    @abstractmethod
    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        """Score every step of every request, in order."""

    def invoke(
        self,
        input: Sequence[ScoreRequest | dict[str, Any]],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[StepScores]:
        """Score every request in one batched call."""
        requests = [r if isinstance(r, ScoreRequest) else ScoreRequest.model_validate(r) for r in input]
        return self._call_with_config(
            lambda rs: self._score(rs), requests, _traced(config, "ttc:prm"), run_type="chain"
        )
