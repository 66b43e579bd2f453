"""What a run costs: samples and inference FLOPs (policy and verifier) from its usage.

In: the engines of an evaluation and the usage of each run. Out: the models' parameter counts (when
the engines expose them) and, per run, ``{"samples", "policy_flops", "verifier_flops", "flops"}``:
``2 x parameters x tokens`` for the tokens the policy generated, the prompt tokens it read, and the
tokens the verifier (PRM) read. Tokens read count whether or not an engine's prefix cache spared
recomputing them (``usage.prm_cached_tokens`` says how many it did), so the figure compares runs on
any engine; a cached PRM computes ``2 x parameters x (prm_tokens - prm_cached_tokens)`` of its
share. A FLOPs figure is ``None`` ("n/a" in reports) where a model's size
is unknown (a remote model behind an API) and it processed tokens.

Parameter counts come from what the engine holds: an explicit ``parameters`` attribute, the
``parameters()`` of the torch module it runs (``model``), or the weights of the checkpoint it names
(``model_name``: a local directory or a model in the Hugging Face cache; vLLM engines in process and
servers whose model is on this machine), read from the safetensors headers without loading a tensor;
wrappers (micro-batching) are looked through.

Example:
    >>> sizes = ModelSizes(policy=100, verifier=None)
    >>> run_cost({"completion_tokens": 10, "prompt_tokens": 5, "prm_tokens": 0}, samples=2, sizes=sizes)
    {'samples': 2, 'policy_flops': 3000.0, 'verifier_flops': 0.0, 'flops': 3000.0}

"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_ttc.core.metrics import inference_flops

WRAPPED = ("policy", "prm", "engine")
"""Attributes through which a wrapping engine (micro-batching, ...) holds the engine it wraps."""


def model_parameters(engine: Any) -> int | None:
    """The parameter count of the model ``engine`` runs, ``None`` when it does not expose one.

    Looks for an integer ``parameters`` attribute, then a torch module ``model`` (its parameters
    summed), then the same on an engine it wraps (``policy``, ``prm`` or ``engine``).

    Example:
        >>> class Remote: ...
        >>> model_parameters(Remote()) is None
        True

    """
    seen: set[int] = set()
    while engine is not None and id(engine) not in seen:
        seen.add(id(engine))
        count = getattr(engine, "parameters", None)
        if isinstance(count, int) and not isinstance(count, bool):
            return count
        module: Any = getattr(engine, "model", None)
        if module is not None and callable(getattr(module, "parameters", None)):
            try:
                return int(sum(p.numel() for p in module.parameters()))
            except (AttributeError, TypeError):
                return None
        checkpoint = getattr(engine, "model_name", None)
        if isinstance(checkpoint, str) and checkpoint:
            return checkpoint_parameters(checkpoint)
        engine = next((getattr(engine, name) for name in WRAPPED if getattr(engine, name, None) is not None), None)
    return None


def checkpoint_parameters(model: str) -> int | None:
    """The parameter count of a checkpoint on this machine, from its safetensors headers (no tensor is read).

    ``model`` is a directory, or a Hugging Face id already in the local cache (no download is tried).
    ``None`` when neither holds ``*.safetensors`` files.

    Example:
        >>> from langchain_ttc.arith.checkpoints import arith_checkpoint
        >>> checkpoint_parameters(str(arith_checkpoint("small"))), checkpoint_parameters("no/such-model")
        (123456, None)

    """
    from safetensors import safe_open

    directory = Path(model)
    if not directory.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        try:
            directory = Path(snapshot_download(model, local_files_only=True))
        except (LocalEntryNotFoundError, HFValidationError, OSError):
            return None
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="numpy") as weights:
            for key in weights.keys():
                total += math.prod(weights.get_slice(key).get_shape())
    return total


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts of an evaluation's models (``None``: unknown)."""

    policy: int | None
    verifier: int | None

    @classmethod
    def of(cls, policy: Any, prm: Any) -> ModelSizes:
        """The sizes the engines expose (see :func:`model_parameters`)."""
        return cls(policy=model_parameters(policy), verifier=model_parameters(prm))


UNKNOWN = ModelSizes(policy=None, verifier=None)


def run_cost(usage: Mapping[str, Any], *, samples: int, sizes: ModelSizes) -> dict[str, Any]:
    """Samples and FLOPs of one run from its usage (``completion_tokens``, ``prompt_tokens``, ``prm_tokens``).

    Example:
        >>> run_cost({"completion_tokens": 4, "prm_tokens": 3}, samples=1, sizes=ModelSizes(policy=None, verifier=10))
        {'samples': 1, 'policy_flops': None, 'verifier_flops': 60.0, 'flops': None}

    """
    policy = inference_flops(sizes.policy, usage.get("completion_tokens", 0) + usage.get("prompt_tokens", 0))
    verifier = inference_flops(sizes.verifier, usage.get("prm_tokens", 0))
    total = None if policy is None or verifier is None else policy + verifier
    return {"samples": samples, "policy_flops": policy, "verifier_flops": verifier, "flops": total}
