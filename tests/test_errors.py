"""One formatter for pydantic's validation errors: the parameter, its value and the fix, for strategy
configs, routing tables and settings alike."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_ttc.core.errors import format_validation_error
from langchain_ttc.strategies.config import SearchConfig, StrategyConfig, validated


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: str

    @model_validator(mode="after")
    def _known(self) -> Choice:
        if self.strategy != "vote":
            raise ValueError(f"strategy {self.strategy!r} cannot be routed to; use vote")
        return self


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pilots: int = Field(ge=1, description="Samples drawn before routing.")
    kind: Literal["a", "b"] = "a"
    budgets: dict[int, dict[str, Choice]] = Field(default_factory=dict)


def message(cls: type[BaseModel], names: dict[str, str] | None = None, **values: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        cls(**values)
    return format_validation_error(raised.value, cls, names=names)


def test_each_kind_of_problem_names_the_parameter_the_value_and_the_fix() -> None:
    assert message(Table, pilots=0) == (
        "pilots=0 is invalid: input should be greater than or equal to 1 (Samples drawn before routing.)."
    )
    assert message(Table, pilots=1, kind="c") == "kind='c' is invalid: input should be 'a' or 'b'."
    assert message(Table) == "pilots is required (Samples drawn before routing.)."
    assert message(Table, pilots=1, extra=2) == "extra=2 is not an option of Table; pass one of budgets, kind, pilots."
    nested = message(Table, pilots=1, budgets={"4": {"hard": {"strategy": "tree", "x": 1}}})
    assert nested == "budgets.4.hard.x=1 is not an option; remove it."
    nested = message(Table, pilots=1, budgets={"4": {"hard": {"strategy": "tree"}}})
    assert nested == "budgets.4.hard: strategy 'tree' cannot be routed to; use vote"
    assert message(Table, pilots=0, kind="c").count("; ") == 1  # every problem, in pydantic's order


def test_names_rename_parameters_and_the_empty_location_names_the_model() -> None:
    names = {"pilots": "TTC_PILOTS", "": "TTC_N / TTC_BEAM_WIDTH"}
    assert message(Table, names, pilots="x").startswith("TTC_PILOTS='x' is invalid: input should be a valid integer")
    assert message(SearchConfig, names, n=6, beam_width=4).startswith(
        "TTC_N / TTC_BEAM_WIDTH: beam_width=4 does not divide n=6"
    )
    without_model = message(Table, pilots=0)
    with pytest.raises(ValidationError) as raised:
        Table(pilots=0)
    assert (
        format_validation_error(raised.value) == without_model.removesuffix(" (Samples drawn before routing.).") + "."
    )


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (SearchConfig, {"n": 0}),
        (SearchConfig, {"n": 8, "lookahead": -1, "selection": "vote"}),
        (SearchConfig, {"n": 6, "beam_width": 4}),
        (SearchConfig, {"n": 8, "beam": 2}),
        (SearchConfig, {}),
        (SearchConfig, {"n": 4, "aggregation": "sum", "record_tree": "maybe"}),
    ],
)
def test_it_words_strategy_configs_as_validated_does(cls: type[StrategyConfig], values: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as expected:
        validated(cls, **values)
    assert message(cls, **values) == str(expected.value)
