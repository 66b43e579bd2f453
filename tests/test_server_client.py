"""The server engines' HTTP client on a real loopback HTTP server (uvicorn): Retry-After, the shared
limit, routing keys and the API key."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from langchain_ttc.engines.server_client import ROUTING_HEADER, ServerClient, ServerError
from tests.servers import free_port, serving_in_thread


class Recorder:
    """A loopback server that answers 429 (with Retry-After) to the first ``refuse`` requests."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.seen: list[tuple[float, dict[str, str], dict[str, Any]]] = []
        self.in_flight = self.peak = 0
        app = FastAPI()

        @app.post("/v1/completions")
        async def complete(request: Request) -> JSONResponse:
            self.seen.append((time.monotonic(), dict(request.headers), await request.json()))
            if len(self.seen) <= self.refuse:
                return JSONResponse({"error": "busy"}, status_code=429, headers={"Retry-After": "0.5"})
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            await asyncio.sleep(0.05)
            self.in_flight -= 1
            return JSONResponse({"ok": True})

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def recorder(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    server = Recorder(refuse=getattr(request, "param", 0))
    with serving_in_thread(server.server):
        yield server


@pytest.mark.parametrize("recorder", [2], indirect=True)
def test_retry_after_is_honoured_then_the_request_succeeds(recorder: Recorder) -> None:
    client = ServerClient(recorder.url, max_retries=3, backoff_s=0.01)
    assert client.run(client.apost("/v1/completions", {"prompt": "x"})) == {"ok": True}
    times = [t for t, _, _ in recorder.seen]
    assert len(times) == 3
    # The server asked for 0.5 s twice; the client's own backoff (0.01 s) would have been far shorter.
    assert all(later - earlier >= 0.45 for earlier, later in itertools.pairwise(times))


@pytest.mark.parametrize("recorder", [5], indirect=True)
def test_a_server_that_keeps_refusing_is_reported(recorder: Recorder) -> None:
    client = ServerClient(recorder.url, max_retries=1, backoff_s=0.01)
    with pytest.raises(ServerError, match=r"failed after 2 attempts .*HTTP 429"):
        client.run(client.apost("/v1/completions", {"prompt": "x"}))


def test_the_limit_is_shared_by_concurrent_calls_and_keys_and_api_key_are_sent(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    client = ServerClient(recorder.url, max_concurrency=3)

    async def call(key: str) -> Any:  # one "engine call" of four requests
        return await asyncio.gather(*(client.apost("/v1/completions", {"i": i}, key=key) for i in range(4)))

    async def run() -> None:
        await asyncio.gather(*(call(f"problem-{k}") for k in range(5)))

    asyncio.run(run())
    assert len(recorder.seen) == 20 and recorder.peak == 3  # five calls of four, never more than 3 at once
    headers = [h for _, h, _ in recorder.seen]
    assert {h["authorization"] for h in headers} == {"Bearer sk-test"}
    assert {h[ROUTING_HEADER.lower()] for h in headers} == {f"problem-{k}" for k in range(5)}
    assert all(body["user"] == h[ROUTING_HEADER.lower()] for (_, h, body) in recorder.seen)


def test_replicas_are_chosen_by_key_stably_and_spread() -> None:
    client = ServerClient(["http://a:1", "http://b:1", "http://c:1"])
    orders = {key: client.replica_order(key) for key in (f"problem-{k}" for k in range(30))}
    assert all(client.replica_order(key) == order for key, order in orders.items())  # stable per key
    assert {order[0] for order in orders.values()} == set(client.base_urls)  # problems spread over replicas
    assert all(sorted(order) == sorted(client.base_urls) for order in orders.values())  # failures move on


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrency=0 is out of range; pass max_concurrency >= 1"):
        ServerClient("http://127.0.0.1:1", max_concurrency=0)
    with pytest.raises(ValueError, match=r"base_url='127\.0\.0\.1:1' is not an http"):
        ServerClient("127.0.0.1:1")


def test_each_loop_gets_one_pool_closed_when_the_loop_ends(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    client = ServerClient(recorder.url)
    pools = []

    async def two_calls() -> None:
        await client.apost("/v1/completions", {"i": 0})
        await client.apost("/v1/completions", {"i": 1})
        pools.append(client._per_loop[asyncio.get_running_loop()].http)

    for _ in range(3):
        asyncio.run(two_calls())
    assert len(recorder.seen) == 6 and len(set(map(id, pools))) == 3  # one pool per loop, reused within it
    assert all(pool.closed for pool in pools)  # asyncio.run closed each on the way out
    assert len(client._per_loop) == 1  # finished loops are forgotten when a new one starts
    pools.clear()
    gc.collect()
    assert "Unclosed" not in caplog.text


def test_a_replica_that_refuses_connections_is_skipped(recorder: Recorder) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = ServerClient([dead, recorder.url], max_retries=1, backoff_s=0.01)
    key = next(k for k in (f"p{i}" for i in range(100)) if client.replica_order(k)[0] == dead)
    assert client.run(client.apost("/v1/completions", {"prompt": "x"}, key=key)) == {"ok": True}
    assert len(recorder.seen) == 1
    refused = r"failed after 2 attempts .*: cannot connect \(\[Errno 111\] Connect call failed"
    with pytest.raises(ServerError, match=refused):
        alone = ServerClient(dead, max_retries=1, backoff_s=0.01)
        alone.run(alone.apost("/v1/completions", {"prompt": "x"}))


def test_the_environments_proxy_is_read_once_per_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "local-vllm")
    client = ServerClient(["https://gpu-box:8000", "http://local-vllm:8000"])
    assert client.proxies == {"https://gpu-box:8000": "http://proxy:3128", "http://local-vllm:8000": None}
