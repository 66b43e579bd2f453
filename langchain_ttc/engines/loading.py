"""Loading engines by name, once per process: for the CLI, the runtime context and LangGraph Studio.

In: a model reference (a local directory, a hub id, or an alias such as ``arith:small`` or
``smollm2``: :mod:`.references`) or a server URL, and a backend name. Out: a cached engine.

Example:
    >>> load_policy("arith:small") is load_policy("arith:small")  # doctest: +SKIP
    True

"""

from __future__ import annotations

import functools
from typing import Any

from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.references import resolve_reference

BACKENDS = ("transformers", "vllm", "openai")
"""transformers (CPU default), vllm (in-process ``vllm.LLM``), openai (a vLLM server: the model is its URL)."""
PRM_PROTOCOLS = ("math_shepherd", "rlhflow", "qwen_math")
"""Math-Shepherd and RLHFlow: generative PRMs; qwen_math: a reward model (Qwen2.5-Math-PRM)."""


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not available; pass one of {', '.join(BACKENDS)}.")


def _vllm_engine_options() -> dict[str, Any]:
    """Engine options that make vLLM's CPU build work; on GPUs, vLLM's own defaults."""
    import torch

    if torch.cuda.is_available():
        return {}
    return {"dtype": "float32", "kv_cache_memory_bytes": 256 * 2**20, "enforce_eager": True}


def served_model(url: str, *, api_key: str | None = None) -> str:
    """The first model a vLLM/OpenAI-compatible server serves (``GET /v1/models``)."""
    import httpx

    from langchain_ttc.engines.openai_policy import check_base_urls

    (base,) = check_base_urls(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{base}/v1/models", timeout=30, headers=headers)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


@functools.lru_cache(maxsize=8)
def load_policy(
    model: str,
    backend: str = "transformers",
    *,
    served_model_name: str | None = None,
    api_key: str | None = None,
    tokenizer: str | None = None,
) -> PolicyEngine:
    """Load (once) a policy engine; with ``backend="openai"``, ``model`` is the server's URL.

    Args:
        model: A model reference, or a server URL with ``backend="openai"``.
        backend: One of :data:`BACKENDS`.
        served_model_name: ``openai``: the model name the server serves (default: the first it lists).
        api_key: ``openai``: the server's bearer token.
        tokenizer: ``openai``: the tokenizer that renders prompts (default: loaded from the served name).

    """
    _check_backend(backend)
    if backend == "openai":
        from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy

        name = served_model_name or served_model(model, api_key=api_key)
        return OpenAICompatiblePolicy(model, model=name, api_key=api_key, tokenizer=tokenizer)
    if backend == "vllm":
        from langchain_ttc.engines.vllm_policy import VLLMPolicy

        return VLLMPolicy.from_pretrained(resolve_reference(model), **_vllm_engine_options())
    from langchain_ttc.engines.transformers_policy import TransformersPolicy

    return TransformersPolicy.from_pretrained(resolve_reference(model))


@functools.lru_cache(maxsize=8)
def load_prm(
    model: str,
    backend: str = "transformers",
    protocol: str = "math_shepherd",
    *,
    trust_remote_code: bool = False,
    served_model_name: str | None = None,
    api_key: str | None = None,
    tokenizer: str | None = None,
) -> PRMEngine:
    """Load (once) a PRM engine with an explicit protocol; ``openai``: ``model`` is the server's URL.

    Args:
        model: A model reference, or a server URL with ``backend="openai"``.
        backend: One of :data:`BACKENDS`.
        protocol: One of :data:`PRM_PROTOCOLS` (never guessed from the model name).
        trust_remote_code: Run the checkpoint's own modelling code (transformers; the published
            Qwen2.5-Math-PRM needs it there, vLLM has the architecture built in).
        served_model_name: ``openai``: the model name the server serves (default: the first it lists).
        api_key: ``openai``: the server's bearer token (default: ``OPENAI_API_KEY`` when set).
        tokenizer: ``openai``: the PRM's tokenizer (default: loaded from the served name).

    """
    _check_backend(backend)
    if protocol not in PRM_PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not available here; pass one of {', '.join(PRM_PROTOCOLS)}.")
    from langchain_ttc.engines.prm_formats import MathShepherdFormat, QwenMathFormat, RLHFlowFormat

    prm_format = {"math_shepherd": MathShepherdFormat, "rlhflow": RLHFlowFormat, "qwen_math": QwenMathFormat}[
        protocol
    ]()
    if backend == "openai":
        from langchain_ttc.engines.vllm_prm import VLLMPRM

        name = served_model_name or served_model(model, api_key=api_key)
        return VLLMPRM.from_server(model, model=name, prm_format=prm_format, tokenizer=tokenizer, api_key=api_key)
    if backend == "vllm":
        from vllm import LLM

        from langchain_ttc.engines.vllm_prm import VLLMPRM

        runner = {"runner": "pooling"} if protocol == "qwen_math" else {"enable_prefix_caching": True}
        from langchain_ttc.engines.vllm_policy import PRM_GPU_SHARE

        share: dict[str, Any] = {"gpu_memory_utilization": PRM_GPU_SHARE}  # beside a policy in the same process
        engine = LLM(model=resolve_reference(model), **runner, **share, **_vllm_engine_options())
        return VLLMPRM.from_engine(engine, prm_format=prm_format)
    from langchain_ttc.engines.transformers_prm import load_prm as load_transformers_prm

    options = {"trust_remote_code": True} if trust_remote_code and protocol == "qwen_math" else {}
    return load_transformers_prm(resolve_reference(model), protocol=protocol, **options)
