"""Engines: the policy and PRM Runnables. Backends that need torch live in their own submodules.

- :mod:`.base`: the ``PolicyEngine`` and ``PRMEngine`` interfaces;
- :mod:`.transformers_policy`: ``TransformersPolicy``;
- :mod:`.transformers_prm`: ``MathShepherdPRM``.
"""

from langchain_ttc.engines.base import PolicyEngine, PRMEngine

__all__ = ["PRMEngine", "PolicyEngine"]
