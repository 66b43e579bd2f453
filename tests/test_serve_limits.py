"""``ttc serve``'s limits, in process (``httpx.ASGITransport``, scripted engines): each refusal is a 4xx
in OpenAI's format naming the limit, the value and the setting that raises it, found before any engine
call; runs beyond the slots and the queue are 429 with ``Retry-After``; a run past its deadline is
cancelled and answered 504; a run whose every candidate was cut off says so; malformed JSON is named
plainly; ``GET /v1/models/{name}`` agrees with ``POST``."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from langchain_ttc.core.types import GenerationRequest, GenerationResult
from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.settings import ServeLimits, load_serve_settings
from langchain_ttc.wiring import STRATEGIES
from tests.fakes import ScriptedPolicy, ScriptedPRM

ASK = {"model": "majority_vote:2", "messages": [{"role": "user", "content": "What is 2+3?"}]}
ANSWER = "so \\boxed{5}"


class RecordingPolicy(ScriptedPolicy):
    """Answers at once, except a problem holding ``block``: that call waits until it is cancelled (counted)."""

    def __init__(self, texts: list[str] | None = None, finish_reasons: list[str] | None = None) -> None:
        super().__init__(texts or [ANSWER], finish_reasons)
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


class WordTokenizer:
    """A tokenizer with a chat template, one token per word (what the server's prompt check reads)."""

    chat_template = "{% for m in messages %}<{{ m.role }}> {{ m.content }}{% endfor %}<assistant>"
    name_or_path = "words"

    def apply_chat_template(self, messages: list[dict[str, str]], *, tokenize: bool = False, **_: Any) -> str:
        return "".join(f"<{m['role']}> {m['content']} " for m in messages) + "<assistant>"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(range(len(text.split())))


class WindowedPolicy(RecordingPolicy):
    """A policy that exposes its tokenizer and context window, as the vLLM engines do."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.tokenizer = WordTokenizer()
        self.max_model_len = window


def _app(policy: Any = None, **limits: Any) -> Any:
    catalog = StrategyCatalog(policy or RecordingPolicy(), ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8)
    return create_app(catalog, limits=ServeLimits(**limits))


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ttc", timeout=30)


def _post(app: Any, body: Any = None, **options: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        async with _client(app) as client:
            return await client.post("/v1/chat/completions", json=body, **options)

    return asyncio.run(send())


def _ask(content: str, **fields: Any) -> dict[str, Any]:
    return {**ASK, "messages": [{"role": "user", "content": content}], **fields}


def _refusal(response: httpx.Response, status: int, code: str | None, *says: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and set(error) >= {"message", "type", "param", "code"}
    for words in says:
        assert words in error["message"], error["message"]
    return dict(error)


def test_a_100_kb_message_is_refused_by_its_characters_at_once_before_any_engine_call() -> None:
    policy = RecordingPolicy()
    started = time.perf_counter()
    response = _post(_app(policy), _ask("7" * 100_000))
    error = _refusal(
        response, 400, "context_length_exceeded", "100000 characters", "limit of 65536", "TTC_SERVE_MAX_PROMPT_CHARS"
    )
    assert error["param"] == "messages" and policy.calls == [] and time.perf_counter() - started < 2


def test_a_100_kb_message_within_raised_limits_is_served() -> None:
    response = _post(_app(max_prompt_chars=200_000), _ask("7" * 100_000))
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == ANSWER


def test_a_prompt_too_long_for_the_policy_is_refused_by_its_tokens_before_any_engine_call() -> None:
    policy = WindowedPolicy(window=512)
    long = " ".join(["word"] * 600)
    error = _refusal(_post(_app(policy), _ask(long)), 400, "context_length_exceeded", "context window of 512")
    assert "tokens" in error["message"] and error["param"] == "messages" and policy.calls == []
    roomy = WindowedPolicy(window=100_000)  # now the server's own bound applies
    error = _refusal(
        _post(_app(roomy, max_prompt_tokens=100), _ask(long)), 400, "context_length_exceeded",
        "limit of 100", "TTC_SERVE_MAX_PROMPT_TOKENS",
    )  # fmt: skip
    assert roomy.calls == []
    fits = _post(_app(WindowedPolicy(window=512)), _ask("What is 2+3?"))
    assert fits.status_code == 200


def _chunks(total: int, size: int = 65_536) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = min(size, total - sent)
            sent += piece
            yield b" " * piece

    return chunks()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_5_mb_body_is_refused_413_fast_in_bounded_memory_and_the_next_request_succeeds(declared: bool) -> None:
    policy = RecordingPolicy()
    app = _app(policy)
    total = 5 * 2**20
    headers = {"content-type": "application/json", **({"content-length": str(total)} if declared else {})}

    async def send() -> tuple[httpx.Response, float, int, httpx.Response, float]:
        async with _client(app) as client:
            tracemalloc.start()
            started = time.perf_counter()
            big = await client.post("/v1/chat/completions", content=_chunks(total), headers=headers)
            took = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            started = time.perf_counter()
            small = await client.post("/v1/chat/completions", json=ASK)
            return big, took, peak, small, time.perf_counter() - started

    big, took, peak, small, next_took = asyncio.run(send())
    _refusal(big, 413, "body_too_large", "over the limit of 1048576", "TTC_SERVE_MAX_BODY_BYTES")
    assert big.headers["connection"] == "close" and big.headers["x-request-id"]
    # memory bounded by the limit, never by the body: nothing kept with a Content-Length, at most the limit without
    assert took < 2 and peak < (2**18 if declared else 2**21), (took, peak)
    assert len(policy.calls) == 1  # only the small request reached the engine
    assert small.status_code == 200 and next_took < 2


def test_a_body_just_within_the_limit_is_read_and_one_just_over_is_refused() -> None:
    app = _app(max_body_bytes=1024)
    padded = json.dumps(ASK).encode()
    within = padded[:-1] + b" " * (1024 - len(padded)) + b"}"
    assert len(within) == 1024 and _post(app, content=within, headers={"content-type": "application/json"}).is_success
    over = _post(app, content=within + b" ", headers={"content-type": "application/json"})
    _refusal(over, 413, "body_too_large", "1025 bytes", "limit of 1024")


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": "majority_vote:100000"}, "model", ("n='100000'", "from 1 to 8", "TTC_SERVE_MAX_N", "--max-n")),
        ({"n": 100_000}, "n", ("less than or equal to 1", "got 100000")),
        ({"max_tokens": 100_000}, "max_tokens", ("max_tokens=100000", "4096", "TTC_SERVE_MAX_TOKENS_LIMIT")),
        ({"max_completion_tokens": 10**30}, "max_completion_tokens", ("limit of 4096",)),
        ({"model": "majority_vote:" + "9" * 200}, "model", ("from 1 to 8",)),
        ({"model": "m" * 300}, "model", ("at most 256 characters",)),
        ({"seed": 2**64}, "seed", ("less than 9223372036854775808",)),
    ],
)
def test_budgets_and_sizes_over_the_limits_are_400s_naming_them(body: dict[str, Any], param: str, says: Any) -> None:
    policy = RecordingPolicy()
    response = _post(_app(policy), {**ASK, **body})
    assert response.status_code == 400 and policy.calls == [], response.text
    error = response.json()["error"]
    assert error["param"] == param and all(words in error["message"] for words in says), error
    assert len(error["message"]) < 600  # a huge input is never echoed whole


def test_runs_beyond_the_slots_and_the_queue_are_429_with_retry_after() -> None:
    policy = RecordingPolicy()
    app = _app(policy, max_in_flight=1, max_queue=1)

    async def send() -> list[httpx.Response]:
        async with _client(app) as client:
            first = asyncio.create_task(client.post("/v1/chat/completions", json=_ask("block")))
            while not policy.blocked:
                await asyncio.sleep(0.01)
            second = asyncio.create_task(client.post("/v1/chat/completions", json=ASK))  # waits for the slot
            while app.state.limiter.queued < 1:
                await asyncio.sleep(0.01)
            third = await client.post("/v1/chat/completions", json=ASK)
            first.cancel()  # the blocked run's client leaves: its slot goes to the second
            served = await asyncio.wait_for(second, 5)
            return [third, served]

    busy, served = asyncio.run(send())
    error = _refusal(busy, 429, "server_busy", "1 runs in flight and 1 waiting", "TTC_SERVE_MAX_IN_FLIGHT",
                     "TTC_SERVE_MAX_QUEUE")  # fmt: skip
    assert error["type"] == "rate_limit_error" and int(busy.headers["retry-after"]) >= 1
    assert served.status_code == 200 and policy.cancelled == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_run_past_its_deadline_is_cancelled_and_answered_504_naming_the_limit(stream: bool) -> None:
    policy = RecordingPolicy()
    app = _app(policy, request_timeout_s=0.3)
    started = time.perf_counter()
    response = _post(app, _ask("block", stream=stream))
    assert time.perf_counter() - started < 3 and policy.cancelled == 1
    says = ("deadline of 0.3 s", "was cancelled", "while the strategy ran", "TTC_SERVE_REQUEST_TIMEOUT_S")
    if not stream:
        error = _refusal(response, 504, "deadline_exceeded", *says)
        assert error["request_id"] == response.headers["x-request-id"]
    else:
        data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]"
        error = json.loads(data[-2])["error"]
        assert error["code"] == "deadline_exceeded" and all(words in error["message"] for words in says)
    assert app.state.limiter.in_flight == 0
    assert _post(app, ASK).status_code == 200  # the slot is free again


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_run_whose_every_candidate_was_cut_off_says_length_and_why(stream: bool) -> None:
    policy = RecordingPolicy(["2+3 is 5 and then"], ["length"])
    response = _post(_app(policy), {**ASK, "stream": stream, "max_tokens": 8})
    assert response.status_code == 200
    if stream:
        data = [json.loads(d.removeprefix("data: ")) for d in response.text.splitlines() if d.startswith("data: {")]
        last = next(c for c in data if c["choices"][0]["finish_reason"])
        finish, ttc = last["choices"][0]["finish_reason"], last["ttc"]
    else:
        finish, ttc = response.json()["choices"][0]["finish_reason"], response.json()["ttc"]
    assert finish == "length" and ttc["answer"] is None
    why = ttc["no_answer"]
    assert why["reason"] == "length" and "every candidate (2 of 2) was cut off" in why["message"]
    fine = _post(_app(), ASK).json()
    assert "no_answer" not in fine["ttc"] and fine["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"model": "majority_vote:2" "messages": []}', "not valid JSON: Expecting ',' delimiter at line 1 column 29"),
        (b'{"model": "majority_vote:2",\n "messages": [}', "not valid JSON: Expecting value at line 2 column 15"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"n": ' + b"1" * 5000 + b"}", "more than 4300 digits"),
        (b"", "the body: Field required"),
        (b"[]", "the body: Input should be a valid dictionary"),
    ],
)  # fmt: skip
def test_a_malformed_body_is_named_plainly_never_by_a_bare_offset(content: bytes, says: str) -> None:
    response = _post(_app(), content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert says in error["message"] and error["param"] is None, error


def test_a_body_sent_as_another_content_type_is_told_to_send_json() -> None:
    response = _post(_app(), content=json.dumps(ASK).encode(), headers={"content-type": "text/plain"})
    _refusal(response, 400, None, "not read as JSON", "Content-Type: application/json")


def test_text_that_is_not_unicode_is_refused_naming_the_field() -> None:
    content = b'{"model": "majority_vote:2", "messages": [{"role": "user", "content": "2+3\\ud800?"}]}'
    response = _post(_app(), content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages.0.content" and "lone surrogate" in error["message"], error


NAMES = ["beam_search:7", "beam_search:8", "beam_search:9", "majority_vote:0", "majority_vote:8", "majority_vote:9",
         "majority_vote:x", "majority_vote", "nope:2", "dvts:6", "dvts:8", "compute_optimal:3"]  # fmt: skip


@pytest.mark.parametrize("name", NAMES + [f"{s}:{n}" for s in sorted(STRATEGIES) for n in (3, 4)])
def test_get_model_agrees_with_post(name: str) -> None:
    app = _app()

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        async with _client(app) as client:
            got = await client.get(f"/v1/models/{name}")
            return got, await client.post("/v1/chat/completions", json={**ASK, "model": name})

    got, posted = asyncio.run(ask())
    refused = posted.status_code in (400, 404) and posted.json()["error"]["param"] == "model"
    assert posted.status_code in (200, 400, 404), posted.text
    assert (got.status_code == 404) == refused, (got.text, posted.text)
    if refused:
        assert got.json()["error"]["code"] == "model_not_found"
        assert got.json()["error"]["message"] == posted.json()["error"]["message"]
    else:
        assert got.status_code == 200 and got.json()["id"] == name


def test_every_limit_is_a_setting_with_a_safe_default_and_a_variable() -> None:
    settings = load_serve_settings(environ={})
    assert settings.model_dump() == {
        "host": "127.0.0.1", "port": 8000, "api_key": None, "default_n": 16, "max_n": 64, "max_tokens": None,
        "answers": "math",
        "max_tokens_limit": 4096, "max_body_bytes": 1_048_576, "max_prompt_chars": 65_536, "max_prompt_tokens": 16_384,
        "request_timeout_s": 300.0, "max_in_flight": 16, "max_queue": 64, "shutdown_timeout_s": 30.0,
        "max_connections": 1024,
    }  # fmt: skip
    env = {"TTC_SERVE_MAX_BODY_BYTES": "2048", "TTC_SERVE_MAX_IN_FLIGHT": "2", "TTC_SERVE_MAX_QUEUE": "0",
           "TTC_SERVE_REQUEST_TIMEOUT_S": "1.5", "TTC_SERVE_MAX_PROMPT_TOKENS": "99"}  # fmt: skip
    read = load_serve_settings(environ=env)
    assert (read.max_body_bytes, read.max_in_flight, read.max_queue, read.request_timeout_s) == (2048, 2, 0, 1.5)
    assert isinstance(read, ServeLimits) and read.max_prompt_tokens == 99


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TTC_SERVE_MAX_N": "5000", "TTC_SERVE_DEFAULT_N": "4"}, "TTC_SERVE_MAX_N: max_n=5000 is over the limit"),
        ({"TTC_SERVE_MAX_TOKENS_LIMIT": "99999"}, "over the limit of 32768 every run has (TTC_MAX_TOKENS)"),
        ({"TTC_SERVE_MAX_TOKENS": "8000"}, "TTC_SERVE_MAX_TOKENS_LIMIT: max_tokens=8000 (the default per solution"),
        ({"TTC_SERVE_MAX_BODY_BYTES": "0"}, "TTC_SERVE_MAX_BODY_BYTES='0' is invalid"),
        ({"TTC_SERVE_REQUEST_TIMEOUT_S": "-1"}, "TTC_SERVE_REQUEST_TIMEOUT_S='-1' is invalid"),
        ({"TTC_SERVE_MAX_QUEUE": "-1"}, "TTC_SERVE_MAX_QUEUE='-1' is invalid"),
    ],
)  # fmt: skip
def test_limits_that_do_not_fit_fail_at_startup_naming_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError) as raised:
        load_serve_settings(environ=env)
    assert says in str(raised.value)


def test_a_prompt_too_long_for_a_real_policy_is_refused_by_its_own_tokenizer(arith_policy: Any) -> None:
    """The shipped Arith policy (transformers): its chat template and tokenizer count, its config's window bounds."""
    app = create_app(StrategyCatalog(arith_policy, ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8))
    error = _refusal(_post(app, _ask("3+4 " * 2000)), 400, "context_length_exceeded", "context window of 1024")
    assert "8019 tokens" in error["message"]
