"""Runs stop when their client stops waiting, in process (the ASGI app driven directly, scripted engines): a
client that disconnects, streamed or not, or that times out, cancels its run; the engine call in flight
is cancelled through asyncio; its slot is free at once for the next request."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from langchain_ttc.core.types import GenerationRequest, GenerationResult
from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.settings import ServeLimits
from tests.fakes import ScriptedPolicy, ScriptedPRM

ANSWER = "so \\boxed{5}"


def _body(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "majority_vote:2", "messages": [{"role": "user", "content": content}], **fields}


class BlockingPolicy(ScriptedPolicy):
    """Answers at once, except a problem holding ``block``: that call waits until it is cancelled."""

    def __init__(self) -> None:
        super().__init__([ANSWER])
        self.blocked = 0
        self.cancelled = 0

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if any("block" in str(r.messages) for r in requests):
            self.blocked += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return self._generate(requests)


def _app(policy: BlockingPolicy) -> Any:
    # One slot and no queue: a run that kept its slot would make the next request a 429.
    catalog = StrategyCatalog(policy, ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8)
    return create_app(catalog, limits=ServeLimits(max_in_flight=1, max_queue=0))


async def _call(app: Any, body: dict[str, Any], leave: asyncio.Event | None = None) -> tuple[int, bytes]:
    """Drive one request through the ASGI app; the client disconnects when ``leave`` is set."""
    payload = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
             "client": ("127.0.0.1", 1), "server": ("ttc", 80), "root_path": ""}  # fmt: skip
    sent_body = False
    done = asyncio.Event()
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": payload, "more_body": False}
        waits = [asyncio.ensure_future(done.wait())] + ([asyncio.ensure_future(leave.wait())] if leave else [])
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_client_that_disconnects_cancels_its_run_and_frees_its_slot(stream: bool) -> None:
    policy = BlockingPolicy()
    app = _app(policy)

    async def scenario() -> tuple[float, int, bytes]:
        leave = asyncio.Event()
        abandoned = asyncio.create_task(_call(app, _body("block", stream=stream), leave))
        await _until(lambda: policy.blocked == 1)
        leave.set()
        started = time.perf_counter()
        await asyncio.wait_for(abandoned, 5)
        status, body = await _call(app, _body("What is 2+3?"))
        return time.perf_counter() - started, status, body

    took, status, body = asyncio.run(scenario())
    assert policy.cancelled == 1 and app.state.limiter.in_flight == 0
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == ANSWER
    assert took < 1.0  # the next request started at once: the abandoned run was not waited for


def test_a_client_that_times_out_cancels_its_run() -> None:
    policy = BlockingPolicy()
    app = _app(policy)

    async def scenario() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ttc") as client:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.post("/v1/chat/completions", json=_body("block")), 0.3)
            response = await asyncio.wait_for(client.post("/v1/chat/completions", json=_body("What is 2+3?")), 2)
            return response.status_code

    assert asyncio.run(scenario()) == 200
    assert policy.cancelled == 1 and app.state.limiter.in_flight == 0


def test_a_client_that_leaves_while_queued_gives_up_its_place() -> None:
    policy = BlockingPolicy()
    catalog = StrategyCatalog(policy, ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8)
    app = create_app(catalog, limits=ServeLimits(max_in_flight=1, max_queue=1))

    async def scenario() -> None:
        leave_first, leave_second = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_call(app, _body("block"), leave_first))
        await _until(lambda: policy.blocked == 1)
        second = asyncio.create_task(_call(app, _body("block, queued"), leave_second))
        await _until(lambda: app.state.limiter.queued == 1)
        leave_second.set()
        await asyncio.wait_for(second, 5)
        assert app.state.limiter.queued == 0 and policy.blocked == 1  # it never ran
        leave_first.set()
        await asyncio.wait_for(first, 5)

    asyncio.run(scenario())
    assert policy.cancelled == 1 and app.state.limiter.in_flight == 0
