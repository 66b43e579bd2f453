"""``ttc serve`` as users run it: a real subprocess on a free loopback port, called by the official
``openai`` client and by ``langchain_openai.ChatOpenAI`` in an LCEL chain. The default server runs
the offline Arith world with no configuration; a second one is configured by environment variables
to use a real vLLM server as its policy. Servers are stopped by their PIDs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.wiring import STRATEGIES
from tests.servers import free_port, running_server, vllm_requests_served

pytestmark = pytest.mark.integration

PROBLEM = "Keep only the last digit after each step. What is 3+4*3?"
KEY = "sk-ttc-test"


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TTC_* or OpenAI key setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTC_") and k != "OPENAI_API_KEY"}
    return {**env, "LANGSMITH_TRACING": "false", **extra}


def _serve(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "langchain_ttc.cli", "serve", "--port", str(port), *flags]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_port()
    command = _serve(port, "--api-key", KEY, "--max-tokens", "96", "--max-n", "16")
    with running_server(command, f"http://127.0.0.1:{port}/health", env=_clean_env()):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=600)


def _ask(**options: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": PROBLEM}], "seed": 0, **options}


@pytest.fixture(scope="module")
def completion(client: openai.OpenAI) -> Any:
    """One seeded weighted best-of-4 completion, with the whole TTC result."""
    return client.chat.completions.create(
        model="weighted_best_of_n:4", **_ask(), extra_body={"ttc_include_result": True}
    )


def test_a_completion_answers_with_the_chosen_solution_and_counts_every_token(completion: Any) -> None:
    (choice,) = completion.choices
    ttc = completion.model_extra["ttc"]
    result = ttc["result"]
    assert completion.model == "weighted_best_of_n:4" and ttc["strategy"] == "weighted_best_of_n" and ttc["n"] == 4
    assert choice.message.role == "assistant" and choice.message.content == result["solution"]
    assert ttc["answer"] == result["answer"] == extract_boxed(choice.message.content)
    assert choice.finish_reason == ("length" if result["candidates"][result["chosen_index"]]["finish_reason"]
                                    == "length" else "stop")  # fmt: skip
    assert len(result["candidates"]) == 4
    usage, spent = completion.usage, result["usage"]
    assert usage is not None
    assert usage.completion_tokens == spent["completion_tokens"] == sum(c["num_tokens"] for c in result["candidates"])
    assert spent["prm_tokens"] > 0 and usage.prompt_tokens == spent["prompt_tokens"] + spent["prm_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.model_extra["ttc"]["prm_tokens"] == spent["prm_tokens"]
    assert usage.model_extra["ttc"]["policy_prompt_tokens"] == spent["prompt_tokens"]
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == spent["prm_cached_tokens"] == usage.model_extra["ttc"][
        "prm_cached_tokens"]  # fmt: skip


def test_streaming_gives_the_same_answer_in_chunks_then_usage(client: openai.OpenAI, completion: Any) -> None:
    stream = client.chat.completions.create(
        model="weighted_best_of_n:4", **_ask(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and chunks[-1].choices == [] and chunks[-1].usage is not None
    last_choice = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert extract_boxed(content) == last_choice.model_extra["ttc"]["answer"]
    # the same seed: the same samples, the same pick and the same usage as the request that was not streamed
    assert content == completion.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens


def test_streaming_reports_search_progress_as_sse_comments(base_url: str) -> None:
    body = {"model": "beam_search:4", "stream": True, **_ask()}
    lines = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, headers=headers, timeout=600) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    comments = [line for line in lines if line.startswith(":")]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    first_data = lines.index(next(line for line in lines if line.startswith("data: ")))
    iterations = [json.loads(c.split(" ", 2)[2]) for c in comments if c.startswith(": ttc.iteration ")]
    assert iterations and all(lines.index(c) < first_data for c in comments if not c.startswith(": ping"))
    assert [i["iteration"] for i in iterations] == list(range(len(iterations)))
    assert {"active", "finished", "best_score", "tokens"} <= set(iterations[0])
    assert any(c.startswith(": ttc.selected ") for c in comments)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "beam_search:4" for c in chunks)
    assert chunks[-1]["ttc"]["strategy"] == "beam_search"


def test_models_lists_every_strategy(client: openai.OpenAI) -> None:
    listed = client.models.list().data
    assert sorted(m.id for m in listed) == sorted(STRATEGIES)
    assert all(m.owned_by == "langchain-ttc" and m.model_extra["ttc"]["default_n"] == 16 for m in listed)
    assert client.models.retrieve("beam_search:8").id == "beam_search:8"


@pytest.mark.parametrize(
    ("request_options", "error", "param", "says"),
    [
        ({"model": "best_of_the_best:4"}, openai.NotFoundError, "model", "names no strategy"),
        ({"model": "beam_search:0"}, openai.BadRequestError, "model", "pass an integer from 1 to 16"),
        ({"model": "beam_search:64"}, openai.BadRequestError, "model", "pass an integer from 1 to 16"),
        ({"model": "beam_search:many"}, openai.BadRequestError, "model", "pass an integer from 1 to 16"),
        ({"model": "beam_search:6"}, openai.BadRequestError, "model", "beam_width=4 does not divide n=6"),
        ({"messages": []}, openai.BadRequestError, "messages", "at least 1 item"),
        ({"messages": [{"role": "system", "content": "Be brief."}]}, openai.BadRequestError, "messages", "no user"),
        ({"messages": [{"role": "user"}]}, openai.BadRequestError, "messages.0.content", "Field required"),
        ({"messages": [{"role": "tool", "content": "4"}]}, openai.BadRequestError, "messages.0.role", "Input should"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            openai.BadRequestError,
            "messages.0.content",
            "",
        ),
        ({"n": 2}, openai.BadRequestError, "n", "less than or equal to 1"),
        ({"temperature": -1}, openai.BadRequestError, "temperature", "greater than or equal to 0"),
    ],
)
def test_bad_requests_get_openai_errors(
    client: openai.OpenAI, request_options: dict[str, Any], error: type[openai.APIStatusError], param: str, says: str
) -> None:
    body: dict[str, Any] = {"model": "majority_vote:2", "messages": [{"role": "user", "content": PROBLEM}],
                            **request_options}  # fmt: skip
    with pytest.raises(error) as raised:
        client.chat.completions.create(**body)
    details = raised.value.body
    assert isinstance(details, dict) and set(details) == {"message", "type", "param", "code"}
    assert details["type"] == "invalid_request_error" and details["param"].startswith(param)
    assert says in details["message"]
    if error is openai.NotFoundError:
        assert details["code"] == "model_not_found"


@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_a_missing_or_wrong_api_key_is_refused(base_url: str, key: str | None) -> None:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    response = httpx.get(f"{base_url}/models", headers=headers, timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == ("missing_api_key" if key is None else "invalid_api_key")
    if key is not None:  # the openai client itself refuses to send no key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key=key, max_retries=0).models.list()


def test_chat_openai_in_an_lcel_chain(base_url: str) -> None:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=base_url, api_key=KEY, model="weighted_best_of_n:4", seed=1, max_retries=0)
    prompt = ChatPromptTemplate.from_messages([("user", "Keep only the last digit after each step. What is {expr}?")])
    text = (prompt | model | StrOutputParser()).invoke({"expr": "2+3*7"})
    assert isinstance(text, str) and extract_boxed(text) is not None
    message = model.invoke(PROBLEM)
    assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] > 0
    assert message.response_metadata["model_name"] == "weighted_best_of_n:4"


@pytest.fixture(scope="module")
def vllm_backed(arith_vllm_server: str) -> Iterator[str]:
    port = free_port()
    env = _clean_env(TTC_POLICY_URL=arith_vllm_server, TTC_SERVE_MAX_TOKENS="96")  # configured by environment only
    with running_server(_serve(port), f"http://127.0.0.1:{port}/health", env=env):
        yield f"http://127.0.0.1:{port}"


def test_a_server_configured_by_environment_runs_on_the_configured_vllm_policy(
    vllm_backed: str, arith_vllm_server: str
) -> None:
    health = httpx.get(f"{vllm_backed}/health", timeout=30).json()
    assert health["engines"]["policy"] == {"backend": "openai", "url": arith_vllm_server}
    before = vllm_requests_served(arith_vllm_server)
    client = openai.OpenAI(base_url=f"{vllm_backed}/v1", api_key="unused", max_retries=0, timeout=600)
    completion = client.chat.completions.create(model="weighted_best_of_n:2", **_ask())
    assert completion.choices[0].message.content and completion.usage.completion_tokens > 0
    assert vllm_requests_served(arith_vllm_server) >= before + 2  # both samples were written by the vLLM server
