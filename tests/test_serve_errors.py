"""``ttc serve``'s errors, in process (``httpx.ASGITransport``, scripted engines): what the request got
wrong is 4xx before the strategy runs; a fault during the run is 500 ``"internal error"`` with the
request's id (body and ``X-Request-ID``), its details only in the server's log; a failing model server
is 502; a stream that fails ends with the same generic error event."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from pydantic import Field

from langchain_ttc.core.types import GenerationRequest, GenerationResult
from langchain_ttc.engines.server_client import ServerError
from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.strategies.sampling.majority_vote import MajorityVoteConfig
from langchain_ttc.wiring import STRATEGIES
from tests.fakes import ScriptedPolicy, ScriptedPRM

ASK = {"model": "majority_vote:2", "messages": [{"role": "user", "content": "What is 2+3?"}]}


class FailingPolicy(ScriptedPolicy):
    """A policy whose every call raises ``error`` (an internal bug, as the server sees it)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(["x"])
        self.error = error

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(requests)
        raise self.error


def _post(policy: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    app = create_app(StrategyCatalog(policy, ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8))

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ttc") as client:
            return await client.post("/v1/chat/completions", json=body, headers=headers or {})

    return asyncio.run(send())


def _stream_data(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("error", [RuntimeError("secret internal detail"), ValueError("internal"), TypeError("bug")])
def test_a_fault_during_the_run_is_a_500_with_a_request_id_and_no_details(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="langchain_ttc.serving.app"):
        response = _post(FailingPolicy(error), ASK)
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    assert uuid.UUID(request_id).version == 4
    assert response.json() == {
        "error": {"message": "internal error", "type": "server_error", "param": None, "code": "internal_error",
                  "request_id": request_id}
    }  # fmt: skip
    assert "secret" not in response.text and type(error).__name__ not in response.text  # nothing of the exception
    (record,) = [r for r in caplog.records if r.exc_info]
    assert request_id in record.getMessage() and record.exc_info is not None and record.exc_info[1] is error


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_passes_the_checks_before_the_run_and_its_faults_are_500s(strategy: str) -> None:
    policy = FailingPolicy(RuntimeError("secret internal detail"))
    response = _post(policy, {**ASK, "model": f"{strategy}:4", "temperature": 0.7, "max_tokens": 32, "seed": 1})
    assert response.status_code == 500 and policy.calls, response.text  # it ran, and its fault is the server's
    assert response.json()["error"]["message"] == "internal error"


def test_the_clients_request_id_is_kept_and_a_malformed_one_replaced() -> None:
    response = _post(FailingPolicy(RuntimeError("secret")), ASK, headers={"X-Request-ID": "req_abc-123"})
    assert response.headers["X-Request-ID"] == "req_abc-123" == response.json()["error"]["request_id"]
    response = _post(FailingPolicy(RuntimeError("secret")), ASK, headers={"X-Request-ID": "bad id\tinjected"})
    assert uuid.UUID(response.headers["X-Request-ID"]).version == 4
    ok = _post(ScriptedPolicy(["so \\boxed{5}"]), ASK, headers={"X-Request-ID": "req-ok"})
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "req-ok" and "error" not in ok.json()


def test_a_failing_model_server_is_a_502_with_the_request_id() -> None:
    response = _post(FailingPolicy(ServerError("http://127.0.0.1:1: failed after 3 attempts")), ASK)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error" and error["message"].startswith("a model server failed: ")
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_a_stream_that_fails_ends_with_the_generic_error_event(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="langchain_ttc.serving.app"):
        response = _post(FailingPolicy(RuntimeError("secret internal detail")), {**ASK, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    request_id = response.headers["X-Request-ID"]
    *events, done = _stream_data(response)
    assert done == "[DONE]" and "secret" not in response.text
    assert json.loads(events[-1]) == {
        "error": {"message": "internal error", "type": "server_error", "param": None, "code": "internal_error",
                  "request_id": request_id}
    }  # fmt: skip
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"model": "no_such_strategy"}, 404, "model", "names no strategy"),
        ({"model": "majority_vote:99"}, 400, "model", "pass an integer from 1 to 8"),
        ({"n": 2}, 400, "n", "less than or equal to 1"),
        ({"temperature": -1}, 400, "temperature", "greater than or equal to 0"),
        ({"messages": [{"role": "system", "content": "Be brief."}]}, 400, "messages", "no user message"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools", "tools are not supported"),
    ],
)
def test_client_errors_stay_4xx_and_never_start_the_run(
    body: dict[str, Any], status: int, param: str, says: str
) -> None:
    policy = FailingPolicy(RuntimeError("secret"))
    response = _post(policy, {**ASK, **body})
    assert response.status_code == status and policy.calls == []
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"].startswith(param) and says in error["message"]
    assert response.headers["X-Request-ID"]


class NarrowConfig(MajorityVoteConfig):
    """Majority voting that refuses temperatures above 1 (narrower than the request body allows)."""

    temperature: float = Field(0.8, ge=0.0, le=1.0, description="Sampling temperature, at most 1.")


def test_an_option_the_strategy_refuses_is_a_400_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(STRATEGIES["majority_vote"], config=NarrowConfig)
    monkeypatch.setitem(STRATEGIES, "majority_vote", spec)
    policy = FailingPolicy(RuntimeError("secret"))
    for body, param in [({"temperature": 1.5}, "temperature"), ({"temperature": 1.5, "stream": True}, "temperature")]:
        response = _post(policy, {**ASK, **body})
        assert response.status_code == 400 and policy.calls == []
        error = response.json()["error"]
        assert error["param"] == param and error["code"] == "invalid_value"
        assert "temperature=1.5 is invalid: input should be less than or equal to 1" in error["message"]
