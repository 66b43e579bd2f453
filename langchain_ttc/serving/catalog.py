"""Model names to strategy graphs: ``<strategy>`` or ``<strategy>:<n>``, one compiled graph per name.

In: the ``model`` of a request. Out: the compiled strategy graph (from
:mod:`langchain_ttc.wiring`) built once on the engines loaded at startup, or an
:class:`~langchain_ttc.serving.protocol.APIError` (404 for an unknown strategy, 400 for a bad budget).

Example:
    >>> catalog = StrategyCatalog(policy, prm, default_n=16, max_n=64)  # doctest: +SKIP
    >>> catalog.parse("beam_search:8"), catalog.parse("majority_vote")  # doctest: +SKIP
    (('beam_search', 8), ('majority_vote', 16))

"""

from __future__ import annotations

from typing import Any

from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.serving.protocol import APIError, api_error
from langchain_ttc.serving.settings import setting_name
from langchain_ttc.strategies.graphs import StrategyGraph
from langchain_ttc.wiring import STRATEGIES, applicable, create_strategy_graph, strategy_spec


class StrategyCatalog:
    """The strategies ``ttc serve`` offers, and their compiled graphs (built once per model name).

    Args:
        policy: The policy engine every graph samples from (loaded once).
        prm: The PRM engine of the strategies that score (loaded once).
        default_n: The budget of a bare strategy name.
        max_n: The largest budget a model name may ask for.
        options: Options given to every strategy that has them (e.g. ``max_tokens``).

    """

    def __init__(
        self,
        policy: PolicyEngine,
        prm: PRMEngine | None,
        *,
        default_n: int = 16,
        max_n: int = 64,
        options: dict[str, Any] | None = None,
    ) -> None:
        if not 1 <= default_n <= max_n:
            raise ValueError(f"default_n={default_n}, max_n={max_n}: pass 1 <= default_n <= max_n.")
        self.policy, self.prm = policy, prm
        self.default_n, self.max_n = default_n, max_n
        self.options = dict(options or {})
        self._graphs: dict[tuple[str, int], StrategyGraph] = {}

    def names(self) -> list[str]:
        """The strategies, by name (what ``/v1/models`` lists)."""
        return sorted(STRATEGIES)

    def parse(self, model: str) -> tuple[str, int]:
        """The strategy and budget a model name asks for.

        Raises:
            APIError: 404 ``model_not_found`` for an unknown strategy; 400 for a budget that is not an
                integer in ``1..max_n``.

        """
        name, sep, budget = model.partition(":")
        if name not in STRATEGIES:
            raise api_error(
                404,
                f"model={_cut(model)!r} names no strategy; pass one of {', '.join(self.names())}, optionally with "
                f"':<n>' for the budget (e.g. '{self.names()[0]}:{self.default_n}'); GET /v1/models lists them.",
                param="model",
                code="model_not_found",
            )
        if not sep:
            return name, self.default_n
        try:
            n = int(budget)
        except ValueError:
            n = 0
        if not 1 <= n <= self.max_n or not budget.isdigit():
            shown = budget if len(budget) <= 32 else f"{budget[:32]}..."
            raise api_error(
                400,
                f"model={_cut(model)!r} asks for budget n={shown!r}; pass an integer from 1 to {self.max_n}, "
                f"e.g. '{name}:{self.default_n}' (the server's limit is max_n={self.max_n}: raise it with "
                f"{setting_name('max_n')} or ttc serve --max-n, up to TTC_MAX_N).",
                param="model",
                code="invalid_budget",
                limit="max_n" if n > self.max_n else None,
            )
        return name, n

    def strategy_of(self, model: str) -> str | None:
        """The strategy a model name names, if it names one (whatever its budget)."""
        name = model.partition(":")[0]
        return name if name in STRATEGIES else None

    def graph(self, model: str) -> tuple[StrategyGraph, str, int]:
        """The compiled graph for a model name (built on first use, then reused), its strategy and budget.

        Raises:
            APIError: An unknown strategy (404), a bad budget, or options the strategy refuses (400).

        """
        strategy, n = self.parse(model)
        key = (strategy, n)
        if key not in self._graphs:
            try:
                self._graphs[key] = create_strategy_graph(
                    strategy, self.policy, self.prm, n=n, **applicable(strategy, self.options)
                )
            except ValueError as error:
                raise api_error(400, f"model={_cut(model)!r}: {error}", param="model", code="invalid_budget") from None
        return self._graphs[key], strategy, n

    def describe(self, name: str) -> dict[str, Any]:
        """One strategy as a ``/v1/models`` entry (with the ``ttc`` extension: budgets, PRM, family)."""
        spec = strategy_spec(name)
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "langchain-ttc",
            "ttc": {
                "description": spec.description,
                "family": spec.family,
                "needs_prm": spec.needs_prm,
                "default_n": self.default_n,
                "max_n": self.max_n,
            },
        }


def _cut(model: str, most: int = 64) -> str:
    """A model name as messages quote it: long ones cut short (an error never echoes a huge input)."""
    return model if len(model) <= most else f"{model[:most]}..."


__all__ = ["APIError", "StrategyCatalog"]
