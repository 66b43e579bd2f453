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

**Through a server, one request per problem** scores every step of all its solutions in the call: a
generative PRM sends their step prefixes as one ``/v1/completions`` request (a prompt list, one
label token each); a solution's prefixes extend one another and all share the problem, so with the
server's prefix cache (``--enable-prefix-caching``) each solution is prefilled about once. A reward
model gets one ``/pooling`` request per problem. (One request per *solution* cost 1.7x the time of
the batched call in a beam search on 2 CPU cores: per-request overhead.) Problems are scored
concurrently under the engine's shared limit, on a long-lived client with retries
(:class:`~.server_client.ServerClient`), natively async under ``ainvoke``, and may go to several
replicas (each problem sticks to one) or to a router. (vLLM's server cannot return chosen tokens'
log-probabilities at given prompt positions, and its top-k ``prompt_logprobs`` miss the labels of a
PRM trained as a two-way classifier: the Arith PRM's "+" ranks anywhere in its vocabulary.)

Example:
    >>> prm = VLLMPRM.from_engine(llm, prm_format=MathShepherdFormat())  # doctest: +SKIP
    >>> model = "peiyi9979/math-shepherd-mistral-7b-prm"
    >>> prm = VLLMPRM.from_server("http://127.0.0.1:8001", model=model)  # doctest: +SKIP
    >>> qwen = LLM("Qwen/Qwen2.5-Math-PRM-7B", runner="pooling")  # doctest: +SKIP
    >>> prm = VLLMPRM.from_engine(qwen, prm_format=QwenMathFormat())  # doctest: +SKIP

"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_ttc.core.types import ScoreRequest, StepScores
from langchain_ttc.engines.base import PRMEngine
from langchain_ttc.engines.prm_formats import MathShepherdFormat, PRMFormat, QwenMathFormat
from langchain_ttc.engines.server_client import ServerClient, gather_all, problem_key

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


def _label_logprob(entry: dict[str, Any] | None, label: int) -> float | None:
    """A label's log-probability in one position's logprob dict (keyed by id, or ``token_id:<id>``)."""
    if not entry:
        return None
    found = entry.get(str(label), entry.get(f"token_id:{label}"))
    if found is None:
        return None
    return float(found["logprob"] if isinstance(found, dict) else found)


class VLLMPRM(PRMEngine):
    """A PRM scored through vLLM (build with :meth:`from_engine` or :meth:`from_server`).

    Args:
        tokenizer: The PRM's tokenizer (the protocol's ids are built locally).
        backend: A :data:`LogprobBackend` for a generative format, a :data:`PoolingBackend` for
            :class:`~.prm_formats.QwenMathFormat`.
        prm_format: The protocol.

    """

    provider = "vllm"

    def __init__(
        self, tokenizer: Any, backend: LogprobBackend | PoolingBackend | None, *, prm_format: PRMFormat
    ) -> None:
        self.tokenizer = tokenizer
        self.client: ServerClient | None = None  # set by from_server
        self.model_name = getattr(tokenizer, "name_or_path", None)
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
        base_url: str | Sequence[str],
        *,
        model: str,
        tokenizer: Any = None,
        prm_format: PRMFormat | None = None,
        api_key: str | None = None,
        max_concurrency: int = 64,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> VLLMPRM:
        """Score through vLLM servers: ``/v1/completions`` (generative) or ``/pooling`` (reward model).

        Args:
            base_url: The server URL (or a router's), or a list of replica URLs.
            model: The served model name; its tokenizer is loaded from it unless ``tokenizer`` is given.
            tokenizer: The PRM's tokenizer (to build the protocol's token ids locally).
            prm_format: The protocol (Math-Shepherd by default).
            api_key: Sent as a bearer token; by default ``OPENAI_API_KEY`` when set.
            max_concurrency: Most requests in flight at once, shared by every concurrent call.
            timeout_s: Timeout of one HTTP request.
            max_retries: Retries of a failed request before :class:`~.server_client.ServerError`.
            backoff_s: First retry delay (jittered, doubling); a ``Retry-After`` header wins.

        Raises:
            ValueError: If an option is out of range (named, with the fix).

        """
        client = ServerClient(
            base_url,
            api_key=api_key,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
        prm = cls(tokenizer, None, prm_format=prm_format or MathShepherdFormat())
        prm.client, prm.model_name = client, model
        prm.provider = "openai-compatible"
        return prm

    def _encoded(self, requests: list[ScoreRequest]) -> list[tuple[list[int], list[int]]]:
        encoded = []
        for request in requests:
            ids, positions = (
                self.prm_format.encode(self.tokenizer, request.problem, request.steps) if request.steps else ([], [])
            )
            if len(positions) != len(request.steps):
                raise ValueError(f"the PRM found {len(positions)} step positions for {len(request.steps)} steps.")
            encoded.append((ids, positions))
        return encoded

    @staticmethod
    def _results(scores: list[list[float]], encoded: list[tuple[list[int], list[int]]]) -> list[StepScores]:
        return [StepScores(scores=s, num_tokens=len(ids)) for s, (ids, _) in zip(scores, encoded, strict=True)]

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        if self.client is not None:
            return self.client.run(self._ascore(requests))
        encoded = self._encoded(requests)
        if isinstance(self.prm_format, QwenMathFormat):
            scores = self._pooled_scores(encoded)
        else:
            scores = self._generative_scores(encoded)
        return self._results(scores, encoded)

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        if self.client is None:  # an in-process engine: its blocking call runs in a worker thread
            return await super()._ascore(requests)
        encoded = self._encoded(requests)
        groups: dict[str, list[int]] = {}  # one request per problem: its solutions share the problem's prefix
        for index, request in enumerate(requests):
            if encoded[index][1]:
                key = problem_key(request.problem)
                groups.setdefault(key, []).append(index)
        score = self._server_pooled if isinstance(self.prm_format, QwenMathFormat) else self._server_generative
        replies = await gather_all([score([encoded[i] for i in members], key) for key, members in groups.items()])
        scores: list[list[float]] = [[] for _ in requests]
        for members, group_scores in zip(groups.values(), replies, strict=True):
            for index, solution_scores in zip(members, group_scores, strict=True):
                scores[index] = solution_scores
        return self._results(scores, encoded)

    async def _server_pooled(self, solutions: list[tuple[list[int], list[int]]], key: str) -> list[list[float]]:
        """One ``/pooling`` request for one problem's solutions."""
        assert self.client is not None
        body = {"model": self.model_name, "input": [ids for ids, _ in solutions], "task": "token_classify"}
        data = sorted((await self.client.apost("/pooling", body, key=key))["data"], key=lambda d: d["index"])
        return [step_rows(item["data"], ids, positions) for item, (ids, positions) in zip(data, solutions, strict=True)]

    async def _server_generative(self, solutions: list[tuple[list[int], list[int]]], key: str) -> list[list[float]]:
        """One request for one problem's solutions: the labels' log-probabilities after every step prefix."""
        assert self.client is not None
        prompts = [ids[:position] for ids, positions in solutions for position in positions]
        reply = await self.client.apost("/v1/completions", {**self._label_body([]), "prompt": prompts}, key=key)
        good, bad = self._label_ids
        pairs = []
        for choice in sorted(reply["choices"], key=lambda c: c["index"]):
            top = choice["logprobs"]["top_logprobs"][0]
            pair = _label_logprob(top, good), _label_logprob(top, bad)
            if pair[0] is None or pair[1] is None:
                raise ValueError(f"the PRM server returned no log-probabilities for token ids {good}, {bad}: {top}")
            pairs.append(_probability(pair[0], pair[1]))
        counts = itertools.accumulate((len(positions) for _, positions in solutions), initial=0)
        return [pairs[start:end] for start, end in itertools.pairwise(counts)]

    def _label_body(self, prompt: list[int]) -> dict[str, Any]:
        """A one-token greedy completion of ``prompt`` that returns the labels' log-probabilities."""
        return {
            "model": self.model_name,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": 0,
            "logprob_token_ids": self._label_ids,
            "return_tokens_as_token_ids": True,
        }

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
