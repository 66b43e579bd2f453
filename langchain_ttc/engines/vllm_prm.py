"""A generative PRM served by vLLM, in-process or through its OpenAI-compatible server.

In: :class:`~langchain_ttc.types.ScoreRequest` objects. Out: one score per step: P(good) /
(P(good) + P(bad)) read from vLLM's log-probabilities of the protocol's label tokens (Math-Shepherd
or RLHFlow, see :mod:`.prm_formats`). Each step's score is one request on the solution's prefix
up to that step with ``max_tokens=1`` and ``logprob_token_ids=[good, bad]``; vLLM's prefix cache
makes the shared prefixes nearly free. All steps of all requests go in one batched call. This lets
one vLLM deployment serve both the policy and the PRM.

Example:
    >>> prm = VLLMPRM.from_engine(llm, prm_format=MathShepherdFormat())  # doctest: +SKIP
    >>> model = "peiyi9979/math-shepherd-mistral-7b-prm"
    >>> prm = VLLMPRM.from_server("http://127.0.0.1:8001", model=model)  # doctest: +SKIP

"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import httpx

from langchain_ttc.engines.base import PRMEngine
from langchain_ttc.engines.openai_policy import ServerError, check_base_urls
from langchain_ttc.engines.prm_formats import MathShepherdFormat, PRMFormat
from langchain_ttc.types import ScoreRequest, StepScores

LogprobBackend = Callable[[list[list[int]], list[int]], list[tuple[float, float]]]
"""(prompts as token ids, [good id, bad id]) -> per prompt, the log-probabilities of good and bad as next token."""


def _probability(good: float, bad: float) -> float:
    top = max(good, bad)
    return math.exp(good - top) / (math.exp(good - top) + math.exp(bad - top))


class VLLMPRM(PRMEngine):
    """A generative PRM scored through vLLM log-probabilities (build with a ``from_*`` constructor)."""

    def __init__(self, tokenizer: Any, backend: LogprobBackend, *, prm_format: PRMFormat) -> None:
        self.tokenizer = tokenizer
        self.prm_format = prm_format
        self._label_ids = list(prm_format.check(tokenizer))
        self._backend = backend

    @classmethod
    def from_engine(cls, llm: Any, *, prm_format: PRMFormat | None = None) -> VLLMPRM:
        """Score with an in-process ``vllm.LLM`` (it may be the policy's own engine)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        lock = threading.Lock()

        def backend(prompts: list[list[int]], labels: list[int]) -> list[tuple[float, float]]:
            params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(labels), logprob_token_ids=labels)
            with lock:
                outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
            pairs = []
            for output in outputs:
                logprobs = output.outputs[0].logprobs[0]
                pairs.append((logprobs[labels[0]].logprob, logprobs[labels[1]].logprob))
            return pairs

        return cls(llm.get_tokenizer(), backend, prm_format=prm_format or MathShepherdFormat())

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
    ) -> VLLMPRM:
        """Score through a vLLM OpenAI-compatible server's ``/v1/completions``.

        Args:
            base_url: The server URL.
            model: The served model name; its tokenizer is loaded from it unless ``tokenizer`` is given.
            tokenizer: The PRM's tokenizer (to build the protocol's token ids locally).
            prm_format: The protocol (Math-Shepherd by default).
            timeout_s: Timeout of one HTTP request.
            max_retries: Retries of a failed request before :class:`ServerError`.

        """
        (url,) = check_base_urls(base_url)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)

        def backend(prompts: list[list[int]], labels: list[int]) -> list[tuple[float, float]]:
            body = {
                "model": model,
                "prompt": prompts,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 0,
                "logprob_token_ids": labels,
                "return_tokens_as_token_ids": True,
            }
            errors = []
            for _ in range(max_retries + 1):
                try:
                    response = httpx.post(f"{url}/v1/completions", json=body, timeout=timeout_s)
                    response.raise_for_status()
                    break
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
            else:
                raise ServerError(f"the PRM server {url} failed after {len(errors)} attempts: {'; '.join(errors)}")
            choices = sorted(response.json()["choices"], key=lambda c: c["index"])
            pairs = []
            for choice in choices:
                top = choice["logprobs"]["top_logprobs"][0]
                pairs.append((top[f"token_id:{labels[0]}"], top[f"token_id:{labels[1]}"]))
            return pairs

        return cls(tokenizer, backend, prm_format=prm_format or MathShepherdFormat())

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        prompts: list[list[int]] = []
        owners: list[int] = []
        lengths = []
        for index, request in enumerate(requests):
            ids, positions = (
                self.prm_format.encode(self.tokenizer, request.problem, request.steps) if request.steps else ([], [])
            )
            if len(positions) != len(request.steps):
                raise ValueError(f"the PRM found {len(positions)} step positions for {len(request.steps)} steps.")
            lengths.append(len(ids))
            for position in positions:
                prompts.append(ids[:position])
                owners.append(index)
        pairs = self._backend(prompts, self._label_ids) if prompts else []
        scores: list[list[float]] = [[] for _ in requests]
        for owner, (good, bad) in zip(owners, pairs, strict=True):
            scores[owner].append(_probability(good, bad))
        return [StepScores(scores=s, num_tokens=n) for s, n in zip(scores, lengths, strict=True)]
