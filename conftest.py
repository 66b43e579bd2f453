"""The doctests of ``langchain_ttc/`` in the test tiers (the tests' own rule: ``tests/conftest.py``).

Doctests are fast unit tests, except those whose examples load a real trained checkpoint (the
shipped Arith models, through ``from_pretrained`` or ``load_policy``/``load_prm``): they are in the
``integration`` tier. They are listed by name in :data:`INTEGRATION_DOCTESTS`. A doctest that is
not listed but whose examples (those not skipped) call one of :data:`LOADERS` is reported with a
warning, so that a new or moved example does not slip into the fast tier unnoticed.

This file sits at the repository root so that it also applies when only the package is collected
(``python -m pytest langchain_ttc``).
"""

from __future__ import annotations

import doctest

import pytest

INTEGRATION_DOCTESTS = frozenset(
    {
        "langchain_ttc.engines.self_verification",
        "langchain_ttc.engines.transformers_policy",
        "langchain_ttc.engines.transformers_prm",
        "langchain_ttc.strategies.context.with_tools",
        "langchain_ttc.strategies.refine.self_refine",
        "langchain_ttc.strategies.routing.compute_optimal",
        "langchain_ttc.strategies.sampling.best_of_n",
        "langchain_ttc.strategies.sampling.majority_vote",
    }
)
"""The doctests (by their dotted names, as pytest shows them) whose examples load a shipped checkpoint."""

LOADERS = ("from_pretrained(", "load_policy(", "load_prm(")
"""Calls in an example that load a model (``arith_checkpoint(...)`` alone only names a directory)."""


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the listed doctests ``integration``; warn about unlisted doctests that load a model."""
    for item in items:
        if not isinstance(item, pytest.DoctestItem) or item.dtest is None:
            continue
        if item.dtest.name in INTEGRATION_DOCTESTS:
            item.add_marker(pytest.mark.integration)
        elif any(
            loader in example.source
            for example in item.dtest.examples
            if not example.options.get(doctest.SKIP)
            for loader in LOADERS
        ):
            item.warn(
                pytest.PytestWarning(
                    f"doctest {item.dtest.name} loads a model but is not in INTEGRATION_DOCTESTS (conftest.py): "
                    "add it there to put it in the integration tier"
                )
            )
