"""A real ``langgraph dev`` server on a free loopback port serves every strategy graph offline;
each runs through ``langgraph_sdk`` with its progress events. The server is stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "Keep only the last digit after each step. What is 2+3*4?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    langgraph = Path(sys.executable).parent / "langgraph"
    log = open(ROOT / ".pytest-langgraph-dev.log", "w")
    process = subprocess.Popen(
        [str(langgraph), "dev", "--no-browser", "--no-reload", "--port", str(port), "--host", "127.0.0.1"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(
                    f"langgraph dev did not start: {(ROOT / '.pytest-langgraph-dev.log').read_text()[-2000:]}"
                )
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        (ROOT / ".pytest-langgraph-dev.log").unlink(missing_ok=True)


GRAPHS = json.loads((ROOT / "langgraph.json").read_text())["graphs"]


def test_every_strategy_is_served(server: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assert sorted(a["graph_id"] for a in client.assistants.search()) == sorted(GRAPHS)
    assert sorted(GRAPHS) == ["beam_search", "best_of_n", "dvts", "majority_vote", "weighted_best_of_n"]


@pytest.mark.parametrize("graph_id", sorted(GRAPHS))
def test_graph_runs_through_the_sdk_with_progress_events(server: str, graph_id: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assistant = next(a for a in client.assistants.search() if a["graph_id"] == graph_id)
    context_schema = client.assistants.get_schemas(assistant["assistant_id"])["context_schema"]["properties"]
    for field in ("policy_model", "prm_model", "backend", "n", "temperature", "max_tokens", "beam_width"):
        assert context_schema[field]["description"], field
    thread = client.threads.create()
    events: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for chunk in client.runs.stream(
        thread["thread_id"], graph_id, input={"problem": PROBLEM}, stream_mode=["custom", "values"], context={"n": 4}
    ):
        if chunk.event == "custom":
            events.append(chunk.data)
        elif chunk.event == "values":
            values = chunk.data
    result = values["result"]
    assert values["answer"] == result["answer"] and result["strategy"] == graph_id
    assert len(result["candidates"]) >= 1 and result["usage"]["policy_calls"] >= 1
    assert events[-1]["type"] == "ttc.selected" and events[-1]["answer"] == values["answer"]
    if graph_id in ("beam_search", "dvts"):
        assert any(e["type"] == "ttc.iteration" for e in events)
    else:
        assert events[0] == {"type": "ttc.generated", "candidates": 4, "tokens": events[0]["tokens"]}
