"""The wiring of every strategy graph, pinned as its Mermaid drawing (syrupy snapshots).

Each graph is built with the scripted engines of ``tests/fakes.py`` (building calls no engine) and
drawn with ``graph.get_graph().draw_mermaid()``: every strategy in the registry, the compute-optimal
router, the particle Gibbs configuration (``particle_filtering`` with ``rounds=2``) and the
self-refinement variants (each critic, each final pick). The router is drawn with the shipped
strategy table, so a recalibrated table shows here too. The drawings live in
``tests/__snapshots__/test_graph_structure.ambr``.

A change to a graph's nodes or edges fails here on purpose, so that it shows in review as a
snapshot diff. When the change is meant (a refactor of ``langchain_ttc/strategies/``, a new
strategy, a LangGraph upgrade that draws differently), regenerate the snapshots and commit the
diff with the change::

    python -m pytest tests/test_graph_structure.py --snapshot-update
"""

from __future__ import annotations

from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from langchain_ttc import create_compute_optimal_graph, create_self_refine_graph, create_strategy_graph
from langchain_ttc.strategies.registry import STRATEGIES
from tests.fakes import ScriptedChatModel, StepTreePolicy, last_step_prm

N = 4
OPTIONS: dict[str, dict[str, Any]] = {"beam_search": {"beam_width": 2}, "dvts": {"beam_width": 2}}
"""Options a strategy needs besides ``n`` to build (the others build on their defaults)."""


def policy() -> StepTreePolicy:
    return StepTreePolicy({})  # an empty script: drawing a graph samples nothing


@pytest.mark.parametrize("strategy", sorted(set(STRATEGIES) - {"compute_optimal"}))
def test_every_registered_strategy(strategy: str, snapshot: SnapshotAssertion) -> None:
    graph = create_strategy_graph(strategy, policy(), last_step_prm({}), n=N, **OPTIONS.get(strategy, {}))
    assert graph.get_graph().draw_mermaid() == snapshot


def test_the_compute_optimal_router(snapshot: SnapshotAssertion) -> None:
    # The router is not in the registry (the composition root adds it above the families): built by its factory.
    graph = create_compute_optimal_graph(policy(), last_step_prm({}), budget=N)
    assert graph.get_graph().draw_mermaid() == snapshot


def test_particle_gibbs(snapshot: SnapshotAssertion) -> None:
    graph = create_strategy_graph("particle_filtering", policy(), last_step_prm({}), n=N, rounds=2)
    assert graph.get_graph().draw_mermaid() == snapshot


@pytest.mark.parametrize(
    "options",
    [
        {"critic": "self"},
        {"critic": "prm"},
        {"critic": "policy"},
        {"critic": "prm", "selection": "vote"},
        {"critic": "policy", "max_revisions": 0},
    ],
    ids=lambda options: ",".join(f"{k}={v}" for k, v in options.items()),
)
def test_self_refinement_from_the_registry(options: dict[str, Any], snapshot: SnapshotAssertion) -> None:
    graph = create_strategy_graph("self_refine", policy(), last_step_prm({}), n=N, **options)
    assert graph.get_graph().draw_mermaid() == snapshot


@pytest.mark.parametrize("critic", ["callable", "chat_model", "prm"])
def test_self_refinement_with_a_critic_object(critic: str, snapshot: SnapshotAssertion) -> None:
    critics: dict[str, Any] = {
        "callable": lambda _problem, _steps: "No error.",
        "chat_model": ScriptedChatModel(replies=["No error."]),
        "prm": last_step_prm({}),
    }
    graph = create_self_refine_graph(policy(), critics[critic], verifier=last_step_prm({}), chains=2)
    assert graph.get_graph().draw_mermaid() == snapshot
