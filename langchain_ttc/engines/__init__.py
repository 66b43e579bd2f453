"""Engines: the policy and PRM Runnables. Backends that need torch or vLLM live in their own submodules.

- :mod:`.base`: the ``PolicyEngine`` and ``PRMEngine`` interfaces;
- policies: :mod:`.transformers_policy` (``TransformersPolicy``), :mod:`.vllm_policy` (``VLLMPolicy``,
  ``AsyncVLLMPolicy``), :mod:`.openai_policy` (``OpenAICompatiblePolicy``), :mod:`.chat_model_policy`
  (``ChatModelPolicy``);
- PRMs: :mod:`.transformers_prm` (``MathShepherdPRM``, ``RLHFlowPRM``, ``QwenMathPRM``, ``load_prm``),
  :mod:`.vllm_prm` (``VLLMPRM``), :mod:`.function_prm` (``FunctionPRM``);
- :mod:`.server_client` (the long-lived HTTP client of the server engines: shared limit, retries, routing
  keys), :mod:`.settings` (engines from environment variables or a config file), :mod:`.loading`
  (engines by name, cached), :mod:`.batching` (cross-problem micro-batching).
"""

from langchain_ttc.engines.base import PolicyEngine, PRMEngine

__all__ = ["PRMEngine", "PolicyEngine"]
