"""A real ``langgraph dev`` server on a free loopback port serves every strategy graph offline with no
configuration; each runs through ``langgraph_sdk`` with its progress events; a cancelled run stops its
engine work (the server's CPU goes idle) and the next run on the thread completes. A second one,
configured by environment variables only, runs its graphs on a real vLLM policy server. Servers are
stopped by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_ttc.strategies.routing.table import load_table
from langchain_ttc.wiring import STRATEGIES, strategy_spec
from tests.servers import free_port, running_server, vllm_requests_served

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "Keep only the last digit after each step. What is 2+3*7?"
LONG_PROBLEM = "Keep only the last digit after each step. What is 6+4*7-4-5*3*3-2+9-8*9+4+1?"  # 12 steps


def _langgraph_dev(**env: str) -> tuple[list[str], str, dict[str, str]]:
    """The command, URL and environment of a ``langgraph dev`` on a free port (no TTC_* settings but ``env``)."""
    port = free_port()
    langgraph = Path(sys.executable).parent / "langgraph"
    command = [str(langgraph), "dev", "--no-browser", "--no-reload", "--port", str(port), "--host", "127.0.0.1"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TTC_")}
    return command, f"http://127.0.0.1:{port}", {**clean, "LANGSMITH_TRACING": "false", **env}


@pytest.fixture(scope="module")
def server_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    command, url, env = _langgraph_dev()  # langgraph.json forces no offline mode: the Arith world is package data
    with running_server(command, f"{url}/ok", cwd=ROOT, env=env) as process:
        yield url, process


@pytest.fixture(scope="module")
def server(server_process: tuple[str, subprocess.Popen[bytes]]) -> str:
    return server_process[0]


GRAPHS = json.loads((ROOT / "langgraph.json").read_text())["graphs"]


def test_every_strategy_is_served(server: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assert sorted(a["graph_id"] for a in client.assistants.search(limit=100)) == sorted(GRAPHS)
    assert sorted(GRAPHS) == sorted(STRATEGIES)  # every registered strategy has a Studio graph


@pytest.mark.parametrize("graph_id", sorted(GRAPHS))
def test_graph_runs_through_the_sdk_with_progress_events(server: str, graph_id: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assistant = next(a for a in client.assistants.search(limit=100) if a["graph_id"] == graph_id)
    context_schema = client.assistants.get_schemas(assistant["assistant_id"])["context_schema"]["properties"]
    for field in ("policy_model", "prm_model", "backend", "n", "temperature", "max_tokens", "beam_width"):
        assert context_schema[field]["description"], field
    assert "reference-math" in context_schema["answers"]["description"]  # the keys a run may name
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
    if strategy_spec(graph_id).family == "search":
        assert any(e["type"] == "ttc.iteration" for e in events)
    elif graph_id == "self_refine":  # every draft and critique is announced
        assert events[0]["type"] == "ttc.draft" and any(e["type"] == "ttc.critique" for e in events)
        assert len(result["metadata"]["drafts"]) == len(result["candidates"])
    elif strategy_spec(graph_id).vote is not None or graph_id == "compute_optimal":  # the router: pilots first
        count = load_table().pilots if graph_id == "compute_optimal" else 4
        assert events[0] == {"type": "ttc.generated", "candidates": count, "tokens": events[0]["tokens"]}
    if graph_id == "compute_optimal":  # the context's n is the router's budget
        (routed,) = [e for e in events if e["type"] == "ttc.routed"]
        assert routed["budget"] == 4 and result["metadata"]["routing"] == {
            k: v for k, v in routed.items() if k != "type"
        }


def _cpu_seconds(pid: int) -> float:
    """CPU time used so far by the process ``pid`` and its children."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _cpu_used(pid: int, over_s: float = 3.0) -> float:
    """CPU seconds the server spends over the next ``over_s`` seconds (its engine work, when it has any)."""
    before = _cpu_seconds(pid)
    time.sleep(over_s)
    return _cpu_seconds(pid) - before


def _status(client: Any, thread_id: str, run_id: str, wanted: set[str], timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := client.runs.get(thread_id, run_id)["status"]) not in wanted:
        assert time.monotonic() < deadline, f"the run stayed {status!r}, not one of {sorted(wanted)}"
        time.sleep(0.2)
    return str(status)


@pytest.mark.parametrize(("action", "wait"), [("interrupt", False), ("rollback", True)])
def test_a_cancelled_run_stops_its_engine_work(
    server_process: tuple[str, subprocess.Popen[bytes]], action: str, wait: bool
) -> None:
    from langgraph_sdk import get_sync_client
    from langgraph_sdk.errors import NotFoundError

    url, process = server_process
    client = get_sync_client(url=url)
    thread_id = client.threads.create()["thread_id"]
    # 1024 samples (the largest budget) of a 12-step problem, about 250 tokens each: 16 batches of 64 rows,
    # half a minute or more on 2 cores (the 3-step problem's 1024 samples take 2 s: done before the cancel).
    run = client.runs.create(thread_id, "majority_vote", input={"problem": LONG_PROBLEM}, context={"n": 1024})
    _status(client, thread_id, run["run_id"], {"running"})
    busy = _cpu_used(process.pid)  # the engine generating
    client.runs.cancel(thread_id, run["run_id"], wait=wait, action=action)  # type: ignore[arg-type]
    if action == "interrupt":
        assert _status(client, thread_id, run["run_id"], {"interrupted", "success", "error"}) == "interrupted"
    else:  # a rolled-back run is deleted
        with pytest.raises(NotFoundError):
            client.runs.get(thread_id, run["run_id"])
    idle = _cpu_used(process.pid)  # nothing left running: the cancelled run's generation stopped
    assert idle < busy / 4, f"the server used {idle:.2f} CPU s in 3 s after the cancel, {busy:.2f} before it"
    short = client.runs.create(thread_id, "majority_vote", input={"problem": PROBLEM}, context={"n": 2, "seed": 0})
    assert _status(client, thread_id, short["run_id"], {"success", "error", "interrupted"}) == "success"
    values = client.threads.get_state(thread_id)["values"]
    assert len(values["result"]["candidates"]) == 2  # the next run on the thread ran to the end


@pytest.fixture(scope="module")
def configured_server(arith_vllm_server: str) -> Iterator[str]:
    command, url, env = _langgraph_dev(TTC_POLICY_URL=arith_vllm_server)
    with running_server(command, f"{url}/ok", cwd=ROOT, env=env):
        yield url


def test_graphs_run_on_the_policy_server_the_environment_names(configured_server: str, arith_vllm_server: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=configured_server)
    before = vllm_requests_served(arith_vllm_server)
    values = client.runs.wait(None, "majority_vote", input={"problem": PROBLEM}, context={"n": 2, "seed": 0})
    assert isinstance(values, dict) and len(values["result"]["candidates"]) == 2
    assert vllm_requests_served(arith_vllm_server) >= before + 2  # both samples were written by the vLLM server
