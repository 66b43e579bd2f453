"""A strategy's spec: what the registry records about it (name, config, builder, traits).

Each strategy module defines its spec next to its factory; :mod:`.registry` collects them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from langchain_ttc.core.voting import Selection
from langchain_ttc.strategies.config import StrategyConfig
from langchain_ttc.strategies.graphs import StrategyGraph

Family = Literal["sampling", "search", "refine", "routing"]


@dataclass(frozen=True, kw_only=True)
class StrategySpec:
    """What the rest of the library needs to know about one strategy.

    Attributes:
        name: The strategy's name (CLI ``--strategy``, router tables, ``ttc eval`` records).
        description: One line for help texts.
        config: Its pydantic config class (the options ``create_strategy_graph`` accepts).
        build: ``build(policy, prm, config, *, checkpointer, name)`` returns the compiled graph.
        needs_prm: Whether it scores solutions with a PRM.
        family: ``sampling`` (sample, then select), ``search`` (step-level), ``refine`` or ``routing``.
        vote: For sample-then-select strategies, the selection rule ``vote(candidates, key=answer_key)``
            (evaluation and calibration apply it to subsets of one sample set).
        routed_n: For strategies a router table may choose: ``(options, budget, pilots) -> n`` the
            strategy runs with when the pilots are reused, 0 when it does not fit.
        prm_option: For a strategy that scores only with some options: whether a config asks for a PRM.

    """

    name: str
    description: str
    config: type[StrategyConfig]
    build: Callable[..., StrategyGraph]
    needs_prm: bool
    family: Family
    vote: Callable[..., Selection] | None = None
    routed_n: Callable[[dict[str, Any], int, int], int] | None = None
    prm_option: Callable[[Any], bool] | None = None

    def uses_prm(self, config: StrategyConfig) -> bool:
        """Whether a run with ``config`` scores with a PRM (``needs_prm``, or an option that asks for one)."""
        return self.needs_prm or (self.prm_option is not None and self.prm_option(config))

    def options(self) -> list[str]:
        """The names of its options (its config's fields)."""
        return list(self.config.model_fields)


def sampling_n(_options: dict[str, Any], budget: int, _pilots: int) -> int:
    """A sample-then-select strategy samples up to the budget (pilots included)."""
    return budget
