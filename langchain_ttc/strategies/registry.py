"""The strategy registry: every family's strategies (name, config, builder, traits), read by everything else.

In: a strategy name and its options. Out: its spec, and its compiled graph. The router table's schema,
the router itself, ``ttc eval`` and ``ttc calibrate`` read :data:`STRATEGIES`; no other module lists
strategy names. Each strategy module defines its own :class:`StrategySpec` next to its factory; adding a
strategy is its module plus one entry in :data:`STRATEGIES`. The compute-optimal router builds these by
name and so sits above this module: the whole catalog, router included, is assembled by the composition
root (:mod:`langchain_ttc.wiring`), whose functions of the same names the surfaces use. Every function
here takes the ``catalog`` to read (this registry by default).

Example:
    >>> sorted(STRATEGIES)  # doctest: +NORMALIZE_WHITESPACE
    ['adaptive_majority_vote', 'adaptive_weighted_best_of_n', 'beam_search', 'best_of_n', 'dvts',
     'majority_vote', 'particle_filtering', 'self_refine', 'tournament', 'usc', 'weighted_best_of_n']
    >>> strategy_spec(DEFAULT_STRATEGY).needs_prm
    True

"""

from __future__ import annotations

from collections.abc import Mapping
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from langgraph.types import Checkpointer

from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import validated
from langchain_ttc.strategies.graphs import StrategyGraph
from langchain_ttc.strategies.refine.self_refine import SELF_REFINE
from langchain_ttc.strategies.sampling.adaptive import ADAPTIVE_MAJORITY_VOTE, ADAPTIVE_WEIGHTED_BEST_OF_N
from langchain_ttc.strategies.sampling.best_of_n import BEST_OF_N, WEIGHTED_BEST_OF_N
from langchain_ttc.strategies.sampling.majority_vote import MAJORITY_VOTE
from langchain_ttc.strategies.sampling.tournament import TOURNAMENT
from langchain_ttc.strategies.sampling.usc import USC
from langchain_ttc.strategies.search.beam_search import BEAM_SEARCH
from langchain_ttc.strategies.search.dvts import DVTS
from langchain_ttc.strategies.search.particle_filtering import PARTICLE_FILTERING
from langchain_ttc.strategies.spec import StrategySpec

STRATEGIES: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        MAJORITY_VOTE,
        BEST_OF_N,
        WEIGHTED_BEST_OF_N,
        BEAM_SEARCH,
        DVTS,
        PARTICLE_FILTERING,
        SELF_REFINE,
        ADAPTIVE_MAJORITY_VOTE,
        ADAPTIVE_WEIGHTED_BEST_OF_N,
        USC,
        TOURNAMENT,
    )
}
"""Every strategy of the families by name (the router, above them, joins them in :mod:`langchain_ttc.wiring`)."""
DEFAULT_STRATEGY = WEIGHTED_BEST_OF_N.name
"""What ``ttc solve`` runs when no strategy is named: the papers' strong, simple baseline."""

Catalog = Mapping[str, StrategySpec]


def strategy_spec(strategy: str, *, catalog: Catalog = STRATEGIES) -> StrategySpec:
    """The spec of ``strategy``.

    Raises:
        ValueError: If the strategy is unknown (the message lists the known ones).

    """
    if strategy not in catalog:
        raise ValueError(f"strategy={strategy!r} is not known; pass one of {', '.join(sorted(catalog))}.")
    return catalog[strategy]


def applicable(strategy: str, options: dict[str, Any], *, catalog: Catalog = STRATEGIES) -> dict[str, Any]:
    """The subset of ``options`` that ``strategy``'s config has (shared settings passed to many strategies)."""
    fields = strategy_spec(strategy, catalog=catalog).config.model_fields
    return {k: v for k, v in options.items() if k in fields}


def sampler_for(strategies: list[str], *, catalog: Catalog = STRATEGIES) -> str | None:
    """The sample-then-select strategy whose one run serves the selection rules of all of ``strategies``.

    Its samples are scored when any of them needs scores; ``None`` when none samples then selects.
    """
    specs = {s: strategy_spec(s, catalog=catalog) for s in strategies}
    sampling = [s for s in strategies if specs[s].vote is not None]
    return next((s for s in sampling if specs[s].needs_prm), sampling[0] if sampling else None)


def option_fields(*, catalog: Catalog = STRATEGIES) -> dict[str, tuple[type, tuple[Any, ...] | None, str]]:
    """Every option of any registered strategy: ``name -> (value type, choices or None, help)``.

    The CLI builds its flags from it. Choices of an option two strategies type differently are
    merged (each config still checks its own); the help names the strategies that take it.
    """
    found: dict[str, tuple[type, tuple[Any, ...] | None, str]] = {}
    users: dict[str, list[str]] = {}
    for spec in catalog.values():
        for name, info in spec.config.model_fields.items():
            users.setdefault(name, []).append(spec.name)
            kind, choices = _scalar(info.annotation)
            earlier = found[name][1] if name in found else None
            if earlier is not None and choices is not None:
                choices = tuple(dict.fromkeys((*earlier, *choices)))
            if name not in found or choices is not None:
                found[name] = (kind, choices, found[name][2] if name in found else info.description or "")
    return {
        name: (kind, choices, f"{text} ({', '.join(users[name])})") for name, (kind, choices, text) in found.items()
    }


def _scalar(annotation: Any) -> tuple[type, tuple[Any, ...] | None]:
    """The value type of an option's annotation (``X | None`` unwrapped) and its Literal choices, if any."""
    union = get_origin(annotation) in (Union, UnionType)
    (inner,) = [a for a in get_args(annotation) if a is not type(None)] if union else [annotation]
    if get_origin(inner) is Literal:
        choices = get_args(inner)
        return type(choices[0]), choices
    return inner, None


def create_strategy_graph(
    strategy: str,
    policy: PolicyEngine,
    prm: PRMEngine | None = None,
    *,
    checkpointer: Checkpointer = None,
    name: str | None = None,
    catalog: Catalog = STRATEGIES,
    **options: Any,
) -> StrategyGraph:
    """Build the graph of the named strategy from its options (validated by its config).

    Raises:
        ValueError: If the strategy is unknown, an option is invalid, or it needs a PRM and ``prm`` is ``None``.

    """
    spec = strategy_spec(strategy, catalog=catalog)
    config = validated(spec.config, **options)
    if spec.needs_prm and prm is None:
        raise ValueError(f"strategy={strategy!r} scores solutions with a PRM; pass prm=.")
    return spec.build(policy, prm, config, checkpointer=checkpointer, name=name or strategy)
