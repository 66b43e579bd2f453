"""``ttc serve`` on a real socket (uvicorn in a thread on a free loopback port, scripted engines): a load of
concurrent requests far beyond the slots is answered or refused 429, none lost, in bounded memory; a
5 MB body is refused 413 fast and the connection after it is served; a client that times out cancels its
run; a shutdown lets the requests in flight finish, up to its deadline, then cancels them. One test
sends a real SIGTERM to a subprocess (``integration``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_ttc.core.types import GenerationRequest, GenerationResult
from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.server import uvicorn_config
from langchain_ttc.serving.settings import ServeSettings
from tests.fakes import ScriptedPolicy, ScriptedPRM
from tests.servers import free_port, running_server, stop

ASK = {"model": "majority_vote:2", "messages": [{"role": "user", "content": "What is 2+3?"}]}
ROOT = Path(__file__).resolve().parent.parent


class SlowPolicy(ScriptedPolicy):
    """Answers after ``delay_s`` (an awaited sleep, as a model server's reply); ``block`` problems never do."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(["so \\boxed{5}"])
        self.delay_s = delay_s
        self.cancelled = 0
        self.most_at_once = self._at_once = 0

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self._at_once += 1
        self.most_at_once = max(self.most_at_once, self._at_once)
        try:
            await asyncio.sleep(3600 if any("block" in str(r.messages) for r in requests) else self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self._at_once -= 1
        return self._generate(requests)


def _settings(**values: Any) -> ServeSettings:
    return ServeSettings.model_validate({"port": free_port(), **values})


@contextmanager
def serving(policy: Any, settings: ServeSettings) -> Iterator[tuple[str, Any]]:
    """``ttc serve``'s app under uvicorn (``ttc serve``'s own configuration) in a thread; stopped on exit."""
    import uvicorn

    catalog = StrategyCatalog(policy, ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8)
    app = create_app(catalog, limits=settings)
    server = uvicorn.Server(uvicorn_config(app, settings, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{settings.port}", server
    finally:
        server.should_exit = True  # what uvicorn's SIGTERM handler does
        thread.join(timeout=30)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _load(url: str, requests: int) -> list[httpx.Response | BaseException]:
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        calls = [client.post("/v1/chat/completions", json=ASK) for _ in range(requests)]
        return await asyncio.gather(*calls, return_exceptions=True)


def test_a_load_far_beyond_the_slots_is_answered_or_refused_429_none_lost_in_bounded_memory() -> None:
    policy = SlowPolicy(delay_s=0.05)
    settings = _settings(max_in_flight=8, max_queue=16)
    with serving(policy, settings) as (url, _):
        before = _rss_bytes()
        replies = asyncio.run(_load(url, 256))
        grown = _rss_bytes() - before
        after = httpx.get(f"{url}/metrics").text
        started = time.perf_counter()
        small = httpx.post(f"{url}/v1/chat/completions", json=ASK, timeout=10)
        small_took = time.perf_counter() - started
    failures = [r for r in replies if isinstance(r, BaseException)]
    assert failures == [], failures[:3]
    statuses = [r.status_code for r in replies if isinstance(r, httpx.Response)]
    assert len(statuses) == 256 and set(statuses) <= {200, 429}, sorted(set(statuses))
    served, refused = statuses.count(200), statuses.count(429)
    assert served >= 8 + 16 and refused >= 200 - 24, (served, refused)
    busy = [r for r in replies if isinstance(r, httpx.Response) and r.status_code == 429]
    assert all(int(r.headers["retry-after"]) >= 1 and r.json()["error"]["code"] == "server_busy" for r in busy)
    assert policy.most_at_once <= 8
    assert "ttc_runs_in_flight 0.0" in after and "ttc_runs_queued 0.0" in after
    assert small.status_code == 200 and small_took < 2
    assert grown < 100 * 2**20, grown


def _big_body(total: int) -> Iterator[bytes]:
    yield b'{"model": "majority_vote:2", "messages": [{"role": "user", "content": "'
    for _ in range(total // 65_536):
        yield b"7" * 65_536
    yield b'"}]}'


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_5_mb_body_is_refused_413_fast_and_the_next_request_is_served(declared: bool) -> None:
    policy = SlowPolicy(delay_s=0)
    total = 5 * 2**20
    with serving(policy, _settings()) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        body = b"".join(_big_body(total)) if declared else _big_body(total)
        started = time.perf_counter()
        big = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        took = time.perf_counter() - started
        started = time.perf_counter()
        small = client.post("/v1/chat/completions", json=ASK)
        small_took = time.perf_counter() - started
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large", big.text
    assert "TTC_SERVE_MAX_BODY_BYTES" in big.json()["error"]["message"] and took < 3
    assert small.status_code == 200 and small_took < 2 and len(policy.calls) == 1


def test_a_client_that_times_out_on_the_socket_cancels_its_run() -> None:
    policy = SlowPolicy(delay_s=0)
    blocked = {**ASK, "messages": [{"role": "user", "content": "block"}]}
    with serving(policy, _settings(max_in_flight=1, max_queue=0)) as (url, _):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=blocked, timeout=0.5)
        deadline = time.monotonic() + 5
        while policy.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        response = httpx.post(f"{url}/v1/chat/completions", json=ASK, timeout=5)
    assert policy.cancelled == 1 and response.status_code == 200  # one slot, no queue: it was given back


def test_a_shutdown_lets_requests_in_flight_finish() -> None:
    policy = SlowPolicy(delay_s=1.0)
    with serving(policy, _settings(shutdown_timeout_s=10)) as (url, server):
        replies: list[Any] = []
        worker = threading.Thread(target=lambda: replies.append(httpx.post(f"{url}/v1/chat/completions", json=ASK)))
        worker.start()
        while not policy._at_once:
            time.sleep(0.01)
        server.should_exit = True  # SIGTERM
        worker.join(timeout=20)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # no new connections while it drains, or after
            httpx.get(f"{url}/health", timeout=2)
    assert replies and replies[0].status_code == 200 and policy.cancelled == 0


def test_a_shutdown_cancels_what_is_still_running_at_its_deadline() -> None:
    policy = SlowPolicy(delay_s=0)
    blocked = {**ASK, "messages": [{"role": "user", "content": "block"}]}
    with serving(policy, _settings(shutdown_timeout_s=1)) as (url, server):
        replies: list[Any] = []

        def call() -> None:
            try:
                replies.append(httpx.post(f"{url}/v1/chat/completions", json=blocked, timeout=20))
            except httpx.HTTPError as error:
                replies.append(error)

        worker = threading.Thread(target=call)
        worker.start()
        while not policy._at_once:
            time.sleep(0.01)
        started = time.monotonic()
        server.should_exit = True
        worker.join(timeout=20)
        took = time.monotonic() - started
    assert 0.9 < took < 5 and policy.cancelled == 1, (took, replies)


@pytest.mark.integration
def test_sigterm_drains_a_real_ttc_serve_process() -> None:
    """A subprocess serving ``ttc serve``'s app with its own ``serve_app`` drains on a real SIGTERM."""
    port = free_port()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from langchain_ttc.serving.app import create_app
        from langchain_ttc.serving.catalog import StrategyCatalog
        from langchain_ttc.serving.server import serve_app
        from langchain_ttc.serving.settings import ServeSettings
        from tests.fakes import ScriptedPRM
        from tests.test_serve_loopback import SlowPolicy

        settings = ServeSettings.model_validate({{"port": {port}, "shutdown_timeout_s": 20}})
        catalog = StrategyCatalog(SlowPolicy(2.0), ScriptedPRM(lambda p, s: 0.5), default_n=2, max_n=8)
        serve_app(create_app(catalog, limits=settings), settings)
    """)
    env = {**os.environ, "LANGSMITH_TRACING": "false"}
    with running_server([sys.executable, "-c", script], f"http://127.0.0.1:{port}/health", env=env) as process:
        replies: list[Any] = []
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        worker = threading.Thread(target=lambda: replies.append(httpx.post(url, json=ASK, timeout=30)))
        worker.start()
        time.sleep(0.5)  # the run is in flight
        os.killpg(process.pid, signal.SIGTERM)
        worker.join(timeout=30)
        code = process.wait(timeout=30)
        stop(process)
    # uvicorn re-raises the signal once it has drained: the process ends "killed by SIGTERM", after the answer
    assert replies and replies[0].status_code == 200 and code in (0, -signal.SIGTERM)
