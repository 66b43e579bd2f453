"""Engine interfaces: the policy and the PRM as LangChain Runnables.

In (policy): a list of :class:`~langchain_ttc.core.types.GenerationRequest`; out: one
:class:`~langchain_ttc.core.types.GenerationResult` per request (``n`` completions each). In (PRM): a list
of :class:`~langchain_ttc.core.types.ScoreRequest`; out: one :class:`~langchain_ttc.core.types.StepScores`
per request. One ``invoke`` is one batched call: strategies send every sample of an iteration in a
single call.

Backends implement ``_generate`` / ``_score`` and, natively when they can, ``_agenerate`` /
``_ascore`` (server and vLLM engines do; the default runs the sync method in a worker thread, the
right place for compute-bound in-process models). ``invoke`` / ``ainvoke`` wrap them in a traced
LLM run named ``ttc:policy`` / ``ttc:prm`` (tagged the same way) whose metadata names the model
and provider (``ls_model_name``, ``ls_provider``) and whose outputs carry LangChain's
``usage_metadata`` (prompt and completion tokens; for a PRM the tokens it read), so LangSmith shows
both; they accept plain dicts in place of the pydantic requests. A call takes the requests and
``config`` only: any other keyword (``temperature=``, say) raises a ``TypeError`` naming it and
where it goes (each request's fields, or ``config``), rather than being dropped.

Example:
    >>> from langchain_ttc.core.types import Completion
    >>> class Echo(PolicyEngine):
    ...     def _generate(self, requests):
    ...         return [GenerationResult(completions=[Completion(text=r.prompt or "", num_tokens=1,
    ...                 finish_reason="eos")] * r.n, prompt_tokens=1) for r in requests]
    >>> Echo().invoke([{"prompt": "hi", "n": 2}])[0].completions[1].text
    'hi'
    >>> Echo().invoke([{"prompt": "hi"}], temperature=0.2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: Echo.invoke() got an unexpected keyword argument 'temperature': ... set temperature on each request ...

"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config

from langchain_ttc.core.types import GenerationRequest, GenerationResult, ScoreRequest, StepScores, Usage


def _traced(config: RunnableConfig | None, name: str, engine: PolicyEngine | PRMEngine) -> RunnableConfig:
    config = ensure_config(config)
    config["run_name"] = config.get("run_name") or name
    config["tags"] = [*config.get("tags", []), name]
    config["metadata"] = {
        **config.get("metadata", {}),
        "ls_provider": engine.provider,
        "ls_model_name": engine.model_name,
    }
    return config


def _refuse_options(engine: PolicyEngine | PRMEngine, method: str, kwargs: dict[str, Any]) -> None:
    """Raise a ``TypeError`` naming keyword arguments an engine call would otherwise drop, and the fix.

    An engine call takes only its requests and ``config``: sampling settings belong to each request
    (requests of one batched call may differ), run settings to ``config``.
    """
    if not kwargs:
        return
    names = sorted(kwargs)
    request = GenerationRequest if isinstance(engine, PolicyEngine) else ScoreRequest
    per_request = [name for name in names if name in request.model_fields]
    where = (
        f"set {', '.join(per_request)} on each request instead (a {request.__name__} field)"
        if per_request
        else f"a request holds {', '.join(request.model_fields)}"
    )
    noun = "an unexpected keyword argument" if len(names) == 1 else "unexpected keyword arguments"
    raise TypeError(
        f"{type(engine).__name__}.{method}() got {noun} {', '.join(map(repr, names))}: an engine call takes only "
        f"its requests and config=; {where}, and run options (callbacks, tags, metadata) go in config=."
    )


def _usage_metadata(input_tokens: int, output_tokens: int, cache_read: int = 0) -> dict[str, Any]:
    """LangChain's ``UsageMetadata``; ``input_token_details.cache_read`` when some input came from a cache."""
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if cache_read:
        usage["input_token_details"] = {"cache_read": cache_read}
    return usage


def _policy_trace(results: list[GenerationResult]) -> dict[str, Any]:
    """What a policy run shows a tracer: the results and their token usage."""
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(c.num_tokens for r in results for c in r.completions)
    return {"results": results, "usage_metadata": _usage_metadata(prompt, completion)}


def _prm_trace(results: list[StepScores]) -> dict[str, Any]:
    """What a PRM run shows a tracer: the scores, the tokens the PRM read and those it took from its cache."""
    usage = Usage.of_prm_call(results)
    return {"results": results, "usage_metadata": _usage_metadata(usage.prm_tokens, 0, usage.prm_cached_tokens)}


class _Engine:
    """What both engine kinds share: the model's name and provider for traces."""

    #: The provider shown in traces (``ls_provider``).
    provider: str = "langchain_ttc"

    #: The model shown in traces (``ls_model_name``); engines set it from what they load or call.
    model_name: str | None = None


class PolicyEngine(_Engine, Runnable[Sequence[GenerationRequest | dict[str, Any]], list[GenerationResult]], ABC):
    """A policy model: one batched call generates completions for many requests."""

    name: str | None = "ttc:policy"

    #: Whether the engine can continue a partial assistant message (needed for step-level search).
    supports_partial: bool = True

    @abstractmethod
    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Generate completions for every request, in order."""

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Generate asynchronously; by default the sync method in a worker thread (override natively)."""
        return await asyncio.to_thread(self._generate, requests)

    def invoke(
        self,
        input: Sequence[GenerationRequest | dict[str, Any]],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[GenerationResult]:
        """Generate for every request in one batched call.

        Raises:
            TypeError: If called with any keyword argument but ``config`` (it would be ignored).

        """
        _refuse_options(self, "invoke", kwargs)
        traced = _untyped(self)._call_with_config(
            lambda rs: _policy_trace(self._generate(rs)),
            _policy_requests(input),
            _traced(config, "ttc:policy", self),
            run_type="llm",
        )
        return list(traced["results"])

    async def ainvoke(
        self,
        input: Sequence[GenerationRequest | dict[str, Any]],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[GenerationResult]:
        """Generate for every request in one batched call, on the native async path (see :meth:`invoke`)."""
        _refuse_options(self, "ainvoke", kwargs)

        async def run(requests: list[GenerationRequest]) -> dict[str, Any]:
            return _policy_trace(await self._agenerate(requests))

        traced = await _untyped(self)._acall_with_config(
            run, _policy_requests(input), _traced(config, "ttc:policy", self), run_type="llm"
        )
        return list(traced["results"])


class PRMEngine(_Engine, Runnable[Sequence[ScoreRequest | dict[str, Any]], list[StepScores]], ABC):
    """A process reward model: one batched call scores every step of many solutions."""

    name: str | None = "ttc:prm"

    @abstractmethod
    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        """Score every step of every request, in order."""

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        """Score asynchronously; by default the sync method in a worker thread (override natively)."""
        return await asyncio.to_thread(self._score, requests)

    def invoke(
        self,
        input: Sequence[ScoreRequest | dict[str, Any]],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[StepScores]:
        """Score every request in one batched call.

        Raises:
            TypeError: If called with any keyword argument but ``config`` (it would be ignored).

        """
        _refuse_options(self, "invoke", kwargs)
        traced = _untyped(self)._call_with_config(
            lambda rs: _prm_trace(self._score(rs)),
            _prm_requests(input),
            _traced(config, "ttc:prm", self),
            run_type="llm",
        )
        return list(traced["results"])

    async def ainvoke(
        self,
        input: Sequence[ScoreRequest | dict[str, Any]],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[StepScores]:
        """Score every request in one batched call, on the native async path (see :meth:`invoke`)."""
        _refuse_options(self, "ainvoke", kwargs)

        async def run(requests: list[ScoreRequest]) -> dict[str, Any]:
            return _prm_trace(await self._ascore(requests))

        traced = await _untyped(self)._acall_with_config(
            run, _prm_requests(input), _traced(config, "ttc:prm", self), run_type="llm"
        )
        return list(traced["results"])


def _untyped(engine: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """The engine typed loosely: its traced call returns the trace (results and usage), not just the results."""
    return engine


def _policy_requests(input: Sequence[GenerationRequest | dict[str, Any]]) -> list[GenerationRequest]:
    return [r if isinstance(r, GenerationRequest) else GenerationRequest.model_validate(r) for r in input]


def _prm_requests(input: Sequence[ScoreRequest | dict[str, Any]]) -> list[ScoreRequest]:
    return [r if isinstance(r, ScoreRequest) else ScoreRequest.model_validate(r) for r in input]
