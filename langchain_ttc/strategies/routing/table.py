"""The strategy table: (difficulty bin, budget N) -> (strategy, hyperparameters).

In: a JSON file (or mapping). Out: a checked :class:`StrategyTable`. The file is versioned and
human readable; it names the difficulty estimator, the pilot count, the bins' upper thresholds, a
choice for every bin at every budget, and how and on what data it was calibrated. Every rule is
checked on load, so a bad table fails where it is loaded, naming the file and the fix.

A table key is the budget the user states (``N``, or the most a problem may spend). A choice may
name a smaller ``budget`` of its own, what the router spends on that bin (pilots included): a
budget-choosing table (``ttc calibrate --max-budget/--tolerance``) spends little on easy bins. A
choice without one (every table written before budgets were chosen) spends the key's ``N``.

A shipped table for the Arith world lives next to this module (:func:`default_table_path`);
``ttc calibrate`` writes new ones.

Example:
    >>> table = load_table(default_table_path())
    >>> table.bin_of(0.0) == table.bins[0].name
    True

"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_ttc.core.aggregation import AGGREGATIONS
from langchain_ttc.core.errors import format_validation_error
from langchain_ttc.strategies.config import StrategyConfig
from langchain_ttc.strategies.registry import STRATEGIES, strategy_spec
from langchain_ttc.strategies.routing.difficulty import ESTIMATORS

SHARED_OPTIONS = frozenset(StrategyConfig.model_fields)
"""Settings the router passes to every routed strategy itself (a choice sets the others)."""


def routable_strategies() -> list[str]:
    """Strategies a table may route to, in the registry's order (ties are broken toward the first)."""
    return [name for name, spec in STRATEGIES.items() if spec.routed_n is not None]


def choice_options(strategy: str) -> list[str]:
    """The hyperparameters a table choice of ``strategy`` may set: its config's own fields."""
    return sorted(set(strategy_spec(strategy).options()) - SHARED_OPTIONS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StrategyChoice(_Strict):
    """What runs for one bin at one budget: the strategy, its options, and the budget it spends.

    Example:
        >>> choice = StrategyChoice(strategy="majority_vote", budget=4)
        >>> choice.spends(64), StrategyChoice(strategy="majority_vote").spends(64)
        (4, 64)

    """

    strategy: str
    options: dict[str, Any] = Field(default_factory=dict)
    budget: int | None = Field(
        default=None,
        ge=1,
        description="The budget this bin spends (pilots included), at most the table budget it is listed under; "
        "None: that table budget (the user's N).",
    )

    @model_validator(mode="after")
    def _known(self) -> StrategyChoice:
        routable = routable_strategies()
        if self.strategy not in routable:
            raise ValueError(f"strategy {self.strategy!r} cannot be routed to; use one of {', '.join(routable)}")
        unknown = set(self.options) - set(choice_options(self.strategy))
        if unknown:
            raise ValueError(
                f"options {sorted(unknown)} do not apply to {self.strategy!r}; allowed: {choice_options(self.strategy)}"
            )
        return self

    def spends(self, budget: int) -> int:
        """The budget it spends when listed under ``budget``: its own ``budget``, else ``budget``."""
        return budget if self.budget is None else self.budget

    def n(self, budget: int, pilots: int) -> int:
        """The ``n`` it runs with, listed under ``budget``, with the pilots reused (0: it does not fit)."""
        routed_n = strategy_spec(self.strategy).routed_n
        assert routed_n is not None  # checked on load
        return routed_n(self.options, self.spends(budget), pilots)

    def fits(self, budget: int, pilots: int) -> bool:
        """Whether it runs within ``budget`` with the pilots reused.

        A search needs one subtree left; self-refinement a chain for every pilot (each pilot is a
        chain's first draft).
        """
        return self.n(budget, pilots) >= 1

    def label(self) -> str:
        """A short name such as ``beam_search`` or ``beam_search(beam_width=2)`` for reports."""
        options = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.strategy}({options})" if options else self.strategy


class DifficultyBin(_Strict):
    """One difficulty bin: estimates below ``upper`` (and not in an earlier bin); the last has no bound."""

    name: str
    upper: float | None = None


class StrategyTable(_Strict):
    """A calibrated routing table (see the module docstring for the file's shape)."""

    version: Literal[1] = 1
    estimator: str
    pilots: int = Field(ge=1)
    aggregation: str = "last"
    bins: list[DifficultyBin] = Field(min_length=1)
    budgets: dict[int, dict[str, StrategyChoice]] = Field(min_length=1)
    calibration: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> StrategyTable:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator {self.estimator!r} is not known; use one of {', '.join(ESTIMATORS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} is not known; use one of {', '.join(AGGREGATIONS)}")
        names = [b.name for b in self.bins]
        if len(set(names)) != len(names):
            raise ValueError(f"bin names {names} repeat; give each bin its own name")
        uppers = [b.upper for b in self.bins]
        if uppers[-1] is not None or any(u is None for u in uppers[:-1]):
            raise ValueError(f"bin thresholds {uppers}: every bin but the last needs an upper bound, the last none")
        bounded = [u for u in uppers[:-1] if u is not None]
        if bounded != sorted(set(bounded)):
            raise ValueError(f"bin thresholds {bounded} must increase strictly")
        for budget, choices in self.budgets.items():
            if budget < self.pilots:
                raise ValueError(f"budget {budget} is smaller than the {self.pilots} pilot samples; raise it")
            missing = [n for n in names if n not in choices]
            extra = [n for n in choices if n not in names]
            if missing or extra:
                raise ValueError(
                    f"budget {budget}: bins {missing} have no choice and {extra} are not bins; give one choice "
                    f"per bin ({', '.join(names)})"
                )
            for bin_name, choice in choices.items():
                if choice.budget is not None and not self.pilots <= choice.budget <= budget:
                    raise ValueError(
                        f"budget {budget}, bin {bin_name!r}: its budget {choice.budget} is outside [{self.pilots}, "
                        f"{budget}] (the pilots to the table budget it is listed under); pass a budget in that range, "
                        "or none to spend the table budget"
                    )
                if not choice.fits(budget, self.pilots):
                    raise ValueError(
                        f"budget {budget}, bin {bin_name!r}: {choice.label()} does not fit after {self.pilots} "
                        "pilots (a search needs beams left, self-refinement a chain per pilot); choose another "
                        "strategy, a smaller beam_width or fewer max_revisions there"
                    )
        return self

    def bin_of(self, difficulty: float) -> str:
        """The name of the bin a difficulty estimate falls in."""
        for bin_ in self.bins:
            if bin_.upper is None or difficulty < bin_.upper:
                return bin_.name
        raise AssertionError("the last bin has no bound")  # pragma: no cover - checked on load

    def choices_at(self, budget: int) -> dict[str, StrategyChoice]:
        """The bin -> choice map at ``budget``.

        Raises:
            ValueError: If the table has no such budget.

        """
        if budget not in self.budgets:
            raise ValueError(
                f"budget={budget} is not in the strategy table (budgets {', '.join(map(str, sorted(self.budgets)))}); "
                f"pass one of them, or calibrate a table for it (ttc calibrate --budgets ... {budget})."
            )
        return self.budgets[budget]


def default_table_path() -> Path:
    """The shipped Arith table (calibrated by ``ttc calibrate`` on problems disjoint from evaluation)."""
    return Path(__file__).with_name("arith_table.json")


def load_table(table: str | os.PathLike[str] | dict[str, Any] | StrategyTable | None = None) -> StrategyTable:
    """Load and check a strategy table (the shipped Arith table when ``table`` is ``None``).

    Raises:
        FileNotFoundError: If the path does not exist.
        ValueError: If the table breaks a rule; the message names the file, the rule and the fix.

    """
    if isinstance(table, StrategyTable):
        return table
    source = "the table"
    if table is None or not isinstance(table, dict):
        path = Path(table) if table is not None else default_table_path()
        if not path.is_file():
            raise FileNotFoundError(f"table={str(path)!r} does not exist; pass a table written by ttc calibrate.")
        source = str(path)
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"table={source!r} is not JSON: {error}") from None
    try:
        return StrategyTable.model_validate(table)
    except ValidationError as error:
        raise ValueError(
            f"table={source!r} is not a valid strategy table: {format_validation_error(error, StrategyTable)}"
        ) from None


def save_table(table: StrategyTable, path: str | os.PathLike[str]) -> None:
    """Write ``table`` as indented JSON (budgets in increasing order)."""
    data = table.model_dump(mode="json")
    data["budgets"] = {str(b): data["budgets"][str(b)] for b in sorted(table.budgets)}
    for choices in data["budgets"].values():  # a choice that spends the table budget is written as before
        for choice in choices.values():
            if choice["budget"] is None:
                del choice["budget"]
    Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
