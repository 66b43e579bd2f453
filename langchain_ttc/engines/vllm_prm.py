"""A PRM served by vLLM, in-process or through its OpenAI-compatible server: generative or reward model.

In: :class:`~langchain_ttc.core.types.ScoreRequest` objects. Out: one score per step. The protocol
(:mod:`.prm_formats`) decides how a solution is read and how vLLM scores it:

- **Generative PRMs** (:class:`~.prm_formats.MathShepherdFormat`, :class:`~.prm_formats.RLHFlowFormat`):
  P(good) / (P(good) + P(bad)) from vLLM's log-probabilities of the label tokens. Each step's
  score is one request on the solution's prefix up to that step with ``max_tokens=1`` and
  ``logprob_token_ids=[good, bad]``; vLLM's prefix cache makes the shared prefixes nearly free.
- **Reward (pooling) models** (:class:`~.prm_formats.QwenMathFormat`, Qwen2.5-Math-PRM): the
  engine runs as a pooling model (``runner="pooling"``; the server's ``/pooling`` endpoint with
  ``task="token_classify"``), one request per solution; the score of a step is the positive class's
  probability at its ``<extra_0>``. vLLM's step pooler may return only the rows at the step tag
  (``step_tag_id``) or a row per token: both are read.

All steps of all requests go in one batched call. This lets one vLLM deployment serve both the
policy and the PRM.

Example:
    >>> prm = VLLMPRM.from_engine(llm, prm_format=MathShepherdFormat())  # doctest: +SKIP
    >>> model = "peiyi9979/math-shepherd-mistral-7b-prm"
    >>> prm = VLLMPRM.from_server("http://127.0.0.1:8001", model=model)  # doctest: +SKIP
    >>> qwen = LLM("Qwen/Qwen2.5-Math-PRM-7B", runner="pooling")  # doctest: +SKIP
    >>> prm = VLLMPRM.from_engine(qwen, prm_format=QwenMathFormat())  # doctest: +SKIP

"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from langchain_ttc.core.types import ScoreRequest, StepScores
from langchain_ttc.engines.base import PRMEngine
from langchain_ttc.engines.openai_policy import RETRYABLE_STATUS, ServerError, check_base_urls
from langchain_ttc.engines.prm_formats import MathShepherdFormat, PRMFormat, QwenMathFormat

LogprobBackend = Callable[[list[list[int]], list[int]], list[tuple[float, float]]]
"""(prompts as token ids, [good id, bad id]) -> per prompt, the log-probabilities of good and bad as next token."""

PoolingBackend = Callable[[list[list[int]]], list[Sequence[Sequence[float]]]]
"""(prompts as token ids) -> per prompt, the pooler's rows of class probabilities (per step tag or per token)."""


def _probability(good: float, bad: float) -> float:
    top = max(good, bad)
    return math.exp(good - top) / (math.exp(good - top) + math.exp(bad - top))


def step_rows(rows: Sequence[Sequence[float]], ids: list[int], positions: list[int]) -> list[float]:
    """The positive-class probability of each step from a pooler's output rows.

    Args:
        rows: The pooler's rows: one per step tag (step pooling) or one per token (all pooling).
        ids: The prompt's token ids.
        positions: The indices of the step tags in ``ids``.

    Raises:
        ValueError: If the row count matches neither, with the server option that fixes it.

    """
    if len(rows) == len(positions):
        return [float(row[1]) for row in rows]
    if len(rows) == len(ids):
        return [float(rows[p][1]) for p in positions]
    tag = ids[positions[0]] if positions else "<the step token's id>"
    raise ValueError(
        f"the vLLM pooler returned {len(rows)} rows for a prompt of {len(ids)} tokens with {len(positions)} step "
        f"tags (token id {tag}); start the server with --pooler-config '{{\"step_tag_id\": {tag}}}' "
        f"(in-process: LLM(..., pooler_config={{'step_tag_id': {tag}}}))."
    )


def _post(url: str, body: dict[str, Any], *, timeout_s: float, max_retries: int, backoff_s: float) -> Any:
    """POST with retries and exponential backoff; the JSON reply, or :class:`ServerError` naming the URL."""
    tried: list[str] = []
    for attempt in range(max_retries + 1):
        try:
            response = httpx.post(url, json=body, timeout=timeout_s)
            if response.status_code in RETRYABLE_STATUS:
                raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)
            if response.status_code >= 400:
                raise ServerError(f"{url} refused the request (HTTP {response.status_code}): {response.text[:500]}")
            return response.json()
        except (httpx.TransportError, httpx.HTTPStatusError) as error:
            tried.append(f"{type(error).__name__}: {error}")
            if attempt < max_retries:
                time.sleep(backoff_s * 2**attempt)
    raise ServerError(f"the PRM server {url} failed after {len(tried)} attempts: {'; '.join(tried)}")


class VLLMPRM(PRMEngine):
    """A PRM scored through vLLM (build with :meth:`from_engine` or :meth:`from_server`).

    Args:
        tokenizer: The PRM's tokenizer (the protocol's ids are built locally).
        backend: A :data:`LogprobBackend` for a generative format, a :data:`PoolingBackend` for
            :class:`~.prm_formats.QwenMathFormat`.
        prm_format: The protocol.

    """

    def __init__(self, tokenizer: Any, backend: LogprobBackend | PoolingBackend, *, prm_format: PRMFormat) -> None:
        self.tokenizer = tokenizer
        self.prm_format = prm_format
        self._label_ids: list[int] = []
        if isinstance(prm_format, QwenMathFormat):
            prm_format.check(tokenizer)
        else:
            self._label_ids = list(prm_format.check(tokenizer))
        self._backend: Any = backend

    @classmethod
    def from_engine(cls, llm: Any, *, prm_format: PRMFormat | None = None) -> VLLMPRM:
        """Score with an in-process ``vllm.LLM`` (a generative PRM may be the policy's own engine).

        Args:
            llm: The engine; a ``runner="pooling"`` engine for :class:`~.prm_formats.QwenMathFormat`.
            prm_format: The protocol (Math-Shepherd by default).

        Raises:
            ValueError: If the engine's runner does not fit the protocol.

        """
        prm_format = prm_format or MathShepherdFormat()
        runner = getattr(getattr(llm, "model_config", None), "runner_type", None)
        needed = "pooling" if isinstance(prm_format, QwenMathFormat) else "generate"
        if runner is not None and runner != needed:
            raise ValueError(
                f"prm_format={type(prm_format).__name__}() needs a {needed} engine, but the engine runs {runner!r}; "
                f"build it with LLM(..., runner={needed!r})."
            )
        lock = threading.Lock()
        if isinstance(prm_format, QwenMathFormat):
            from vllm import PoolingParams
            from vllm.inputs import TokensPrompt

            pooler = getattr(llm.model_config, "pooler_config", None)
            step_pooling = getattr(pooler, "tok_pooling_type", None) == "STEP"
            step_id = prm_format.check(llm.get_tokenizer())

            def pool(prompts: list[list[int]]) -> list[Sequence[Sequence[float]]]:
                params = PoolingParams(step_tag_id=step_id) if step_pooling else PoolingParams()
                prompts_in = [TokensPrompt(prompt_token_ids=p) for p in prompts]
                with lock:
                    outputs = llm.encode(prompts_in, params, pooling_task="token_classify", use_tqdm=False)
                return [output.outputs.data.tolist() for output in outputs]

            return cls(llm.get_tokenizer(), pool, prm_format=prm_format)

        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        def logprobs(prompts: list[list[int]], labels: list[int]) -> list[tuple[float, float]]:
            params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(labels), logprob_token_ids=labels)
            with lock:
                outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
            pairs = []
            for output in outputs:
                first = output.outputs[0].logprobs[0]
                pairs.append((first[labels[0]].logprob, first[labels[1]].logprob))
            return pairs

        return cls(llm.get_tokenizer(), logprobs, prm_format=prm_format)

    @classmethod
    def from_server(
        cls,
        base_url: str,
        *,
        model: str,
        tokenizer: Any = None,
        prm_format: PRMFormat | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> VLLMPRM:
        """Score through a vLLM server: ``/v1/completions`` (generative) or ``/pooling`` (reward model).

        Args:
            base_url: The server URL.
            model: The served model name; its tokenizer is loaded from it unless ``tokenizer`` is given.
            tokenizer: The PRM's tokenizer (to build the protocol's token ids locally).
            prm_format: The protocol (Math-Shepherd by default).
            timeout_s: Timeout of one HTTP request.
            max_retries: Retries of a failed request before :class:`ServerError`.
            backoff_s: First retry delay; it doubles on each retry.

        """
        (url,) = check_base_urls(base_url)
        if max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError(
                f"max_retries={max_retries}, timeout_s={timeout_s}, backoff_s={backoff_s}: pass max_retries >= 0, "
                "timeout_s > 0, backoff_s >= 0."
            )
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
        prm_format = prm_format or MathShepherdFormat()
        post = functools.partial(_post, timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s)

        if isinstance(prm_format, QwenMathFormat):

            def pool(prompts: list[list[int]]) -> list[Sequence[Sequence[float]]]:
                body = {"model": model, "input": prompts, "task": "token_classify"}
                data = sorted(post(f"{url}/pooling", body)["data"], key=lambda d: d["index"])
                return [item["data"] for item in data]

            return cls(tokenizer, pool, prm_format=prm_format)

        def logprobs(prompts: list[list[int]], labels: list[int]) -> list[tuple[float, float]]:
            body = {
                "model": model,
                "prompt": prompts,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 0,
                "logprob_token_ids": labels,
                "return_tokens_as_token_ids": True,
            }
            choices = sorted(post(f"{url}/v1/completions", body)["choices"], key=lambda c: c["index"])
            pairs = []
            for choice in choices:
                top = choice["logprobs"]["top_logprobs"][0]
                pairs.append((top[f"token_id:{labels[0]}"], top[f"token_id:{labels[1]}"]))
            return pairs

        return cls(tokenizer, logprobs, prm_format=prm_format)

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        encoded = []
        for request in requests:
            ids, positions = (
                self.prm_format.encode(self.tokenizer, request.problem, request.steps) if request.steps else ([], [])
            )
            if len(positions) != len(request.steps):
                raise ValueError(f"the PRM found {len(positions)} step positions for {len(request.steps)} steps.")
            encoded.append((ids, positions))
        if isinstance(self.prm_format, QwenMathFormat):
            scores = self._pooled_scores(encoded)
        else:
            scores = self._generative_scores(encoded)
        return [StepScores(scores=s, num_tokens=len(ids)) for s, (ids, _) in zip(scores, encoded, strict=True)]

    def _pooled_scores(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        todo = [index for index, (_, positions) in enumerate(encoded) if positions]
        rows = self._backend([encoded[i][0] for i in todo]) if todo else []
        scores: list[list[float]] = [[] for _ in encoded]
        for index, pooled in zip(todo, rows, strict=True):
            scores[index] = step_rows(pooled, *encoded[index])
        return scores

    def _generative_scores(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        prompts: list[list[int]] = []
        owners: list[int] = []
        for index, (ids, positions) in enumerate(encoded):
            for position in positions:
                prompts.append(ids[:position])
                owners.append(index)
        pairs = self._backend(prompts, self._label_ids) if prompts else []
        scores: list[list[float]] = [[] for _ in encoded]
        for owner, (good, bad) in zip(owners, pairs, strict=True):
            scores[owner].append(_probability(good, bad))
        return scores
