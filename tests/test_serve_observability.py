"""What ``ttc serve`` tells its operator, in process (scripted engines): ``/metrics`` in Prometheus text
format (requests by strategy and status, runs in flight and queued, latency, tokens by engine, refusals
by limit) and one JSON log line per request with its id, model, status, latency and tokens."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from langchain_ttc.core.types import GenerationRequest, GenerationResult
from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.settings import ServeLimits
from tests.fakes import ScriptedPolicy, ScriptedPRM

ASK = {"model": "weighted_best_of_n:2", "messages": [{"role": "user", "content": "What is 2+3?"}]}


class GatedPolicy(ScriptedPolicy):
    """Answers once ``gate`` is open (a problem holding ``wait``); otherwise at once."""

    def __init__(self) -> None:
        super().__init__(["so \\boxed{5}"])
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self.gate is not None and any("wait" in str(r.messages) for r in requests):
            self.waiting += 1
            await self.gate.wait()
        return self._generate(requests)


def _app(policy: Any = None, **limits: Any) -> Any:
    catalog = StrategyCatalog(policy or GatedPolicy(), ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8)
    return create_app(catalog, limits=ServeLimits(**limits))


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_latency_tokens_and_refusals() -> None:
    app = _app()

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ttc") as client:
            for body in [ASK, ASK, {**ASK, "stream": True}, {**ASK, "model": "weighted_best_of_n:99"},
                         {**ASK, "model": "nope"}, {**ASK, "max_tokens": 10**6}]:  # fmt: skip
                await client.post("/v1/chat/completions", json=body)
            await client.post("/v1/chat/completions", content=b" " * (2**20 + 1))
            return await client.get("/metrics")

    response = asyncio.run(scenario())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert _value(samples, "ttc_requests_total", model="weighted_best_of_n", status="200") == 3
    assert _value(samples, "ttc_requests_total", model="weighted_best_of_n", status="400") == 2
    assert _value(samples, "ttc_requests_total", model="unknown", status="404") == 1
    assert _value(samples, "ttc_requests_total", model="unknown", status="413") == 1
    assert _value(samples, "ttc_request_duration_seconds_count", model="weighted_best_of_n") == 5
    # 3 runs: 2 samples of 12 characters each (the scripted policy counts characters), 10 prompt tokens a call
    assert _value(samples, "ttc_tokens_total", model="weighted_best_of_n", engine="policy", kind="completion") == 72
    assert _value(samples, "ttc_tokens_total", model="weighted_best_of_n", engine="policy", kind="prompt") == 30
    assert _value(samples, "ttc_tokens_total", model="weighted_best_of_n", engine="prm", kind="read") == 72
    for limit in ("max_n", "max_tokens_limit", "max_body_bytes"):
        assert _value(samples, "ttc_refusals_total", limit=limit) == 1
    assert _value(samples, "ttc_runs_in_flight") == 0 and _value(samples, "ttc_runs_queued") == 0


def test_metrics_show_the_runs_in_flight_and_queued_while_they_run() -> None:
    policy = GatedPolicy()
    app = _app(policy, max_in_flight=1, max_queue=4)

    async def scenario() -> tuple[dict[Any, float], dict[Any, float]]:
        policy.gate = asyncio.Event()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ttc") as client:
            wait = {**ASK, "messages": [{"role": "user", "content": "wait"}]}
            runs = [asyncio.create_task(client.post("/v1/chat/completions", json=wait)) for _ in range(3)]
            while app.state.limiter.queued < 2:
                await asyncio.sleep(0.01)
            during = _samples((await client.get("/metrics")).text)
            policy.gate.set()
            assert all(r.status_code == 200 for r in await asyncio.gather(*runs))
            return during, _samples((await client.get("/metrics")).text)

    during, after = asyncio.run(scenario())
    assert _value(during, "ttc_runs_in_flight") == 1 and _value(during, "ttc_runs_queued") == 2
    assert _value(after, "ttc_runs_in_flight") == 0 and _value(after, "ttc_runs_queued") == 0


def test_each_request_is_one_json_log_line(caplog: pytest.LogCaptureFixture) -> None:
    app = _app()

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ttc") as client:
            ok = await client.post("/v1/chat/completions", json=ASK, headers={"X-Request-ID": "req-1"})
            bad = await client.post("/v1/chat/completions", json={**ASK, "model": "weighted_best_of_n:99"})
            await client.get("/health")
            return [ok, bad]

    with caplog.at_level(logging.INFO, logger="langchain_ttc.serving.requests"):
        ok, bad = asyncio.run(scenario())
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "langchain_ttc.serving.requests"]
    assert len(lines) == 2  # /health logs at DEBUG only
    served, refused = lines
    assert served["request_id"] == "req-1" == ok.headers["x-request-id"]
    assert served["model"] == "weighted_best_of_n:2" and served["strategy"] == "weighted_best_of_n"
    assert served["status"] == 200 and served["latency_s"] > 0 and served["error"] is None
    assert served["tokens"] == {"policy_prompt": 10, "policy_completion": 24, "prm": 24}
    assert refused["request_id"] == bad.headers["x-request-id"] and refused["status"] == 400
    assert refused["limit"] == "max_n" and refused["error"] == "invalid_budget" and refused["tokens"] is None
    assert all("\n" not in r.getMessage() for r in caplog.records)
