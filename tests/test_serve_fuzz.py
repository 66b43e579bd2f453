"""The request schema of ``ttc serve`` under attack, in process (``hypothesis``, scripted engines): random
and hostile bodies (wrong types, huge numbers, nested junk, odd unicode, missing fields, bytes that are
not JSON) never get a 500 and never hang; every answer is a 2xx or a 4xx in OpenAI's error format."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.settings import ServeLimits
from langchain_ttc.wiring import STRATEGIES
from tests.fakes import ScriptedPolicy, ScriptedPRM

TIMEOUT_S = 10.0
"""No request may take longer (the scripted engines answer at once)."""

APP = create_app(
    StrategyCatalog(
        ScriptedPolicy(["2+3 is 5.\n\nso \\boxed{5}"]), ScriptedPRM(lambda problem, step: 0.5), default_n=2, max_n=8
    ),
    limits=ServeLimits(max_body_bytes=64 * 1024, request_timeout_s=TIMEOUT_S),
)

huge = st.one_of(
    st.integers(), st.integers(min_value=2**63 - 2, max_value=2**70), st.integers(max_value=-(2**63)),
    st.floats(allow_nan=True, allow_infinity=True), st.just(10**300), st.just(1e308),
)  # fmt: skip
text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["", " ", "\x00", "\u202e", "𝔁", "\ufeff", "\\boxed{5}", "a" * 5000, "\n\n" * 100]),
)
junk = st.recursive(
    st.none() | st.booleans() | huge | text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)
models = st.one_of(
    st.sampled_from(sorted(STRATEGIES)),
    st.builds(lambda s, n: f"{s}:{n}", st.sampled_from(sorted(STRATEGIES)), st.one_of(huge, text)),
    text,
    junk,
)
roles = st.one_of(st.sampled_from(["user", "system", "developer", "assistant", "tool", "function"]), junk)
contents = st.one_of(
    text,
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": text}), max_size=3),
    junk,
)
message = st.one_of(st.fixed_dictionaries({"role": roles, "content": contents}), junk)
field = st.sampled_from(
    [
        "model",
        "messages",
        "stream",
        "stream_options",
        "n",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "tools",
        "ttc_include_result",
        "user",
        "logprobs",
    ]
)
optional = {
    "stream": st.one_of(st.booleans(), junk),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), junk),
    "n": st.one_of(st.just(1), huge, junk),
    "temperature": st.one_of(st.floats(0, 2), huge, junk),
    "top_p": st.one_of(st.floats(0.01, 1), huge, junk),
    "max_tokens": st.one_of(st.integers(1, 64), huge, junk),
    "max_completion_tokens": st.one_of(st.integers(1, 64), huge, junk),
    "seed": st.one_of(st.integers(0, 2**32), huge, junk),
    "tools": st.one_of(st.none(), junk),
    "ttc_include_result": st.one_of(st.booleans(), junk),
    "user": junk,
}
valid_models = st.builds(
    lambda strategy, budget: strategy + budget,
    st.sampled_from(sorted(STRATEGIES)),
    st.sampled_from(["", ":1", ":2", ":4"]),
)
valid_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "user", "system", "developer", "assistant"]),
     "content": st.one_of(text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2))},
)  # fmt: skip
valid_options = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "max_tokens": st.integers(1, 64),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "ttc_include_result": st.booleans(),
}
conversations = st.lists(valid_message, max_size=3).map(lambda m: [*m, {"role": "user", "content": "2+3?"}])
one_hostile = st.one_of(
    st.just({}),
    st.dictionaries(field, junk, max_size=1),
    st.dictionaries(st.sampled_from(sorted(optional)), st.one_of(*optional.values()), max_size=1),
)
near_valid = st.builds(
    lambda body, hostile: {**body, **hostile},
    st.fixed_dictionaries({"model": valid_models, "messages": conversations}, optional=valid_options),
    one_hostile,
)
"""A body that would run, with at most one field made hostile: the schema's edges, and the runs behind them."""
bodies = st.one_of(
    st.fixed_dictionaries({"model": models, "messages": st.lists(message, max_size=4)}, optional=optional),
    st.dictionaries(field, junk, max_size=6),
    junk,
)


CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "",
    "application/x-www-form-urlencoded",
    "application/json; charset=utf-16",
]


def _raw(body: Any) -> bytes:
    """The body as the client sends it (``allow_nan``: Python's JSON writes NaN, and servers must cope)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


async def _send(content: bytes, content_type: str = "application/json") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://ttc") as client:
        return await asyncio.wait_for(
            client.post("/v1/chat/completions", content=content, headers={"content-type": content_type}), TIMEOUT_S
        )


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"} and error["message"], error
        assert len(response.content) < 8192  # an error never echoes a hostile input whole
    elif response.headers["content-type"].startswith("application/json"):
        assert response.json()["object"] == "chat.completion"
    else:
        assert response.text.rstrip().endswith("data: [DONE]") and '"server_error"' not in response.text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies)
def test_random_and_hostile_json_bodies_never_get_a_500_or_hang(body: Any) -> None:
    _check(asyncio.run(_send(_raw(body))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(near_valid)
def test_valid_bodies_with_one_hostile_field_never_get_a_500_or_hang(body: Any) -> None:
    _check(asyncio.run(_send(_raw(body))))


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=512),
        st.builds(lambda head, tail: head[: len(head) // 2] + tail, bodies.map(_raw), st.binary(max_size=16)),
        st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(900, 30_000)),
        st.builds(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth, st.integers(900, 10_000)),
    ),
    st.sampled_from(CONTENT_TYPES),
)
def test_bytes_that_are_not_json_never_get_a_500_or_hang(content: bytes, content_type: str) -> None:
    _check(asyncio.run(_send(content, content_type)))


def test_a_valid_body_still_runs_among_the_hostile_ones() -> None:
    body = {"model": "beam_search:4", "messages": [{"role": "user", "content": "What is 2+3?"}], "seed": 2**63 - 1}
    response = asyncio.run(_send(_raw(body)))
    assert response.status_code == 200 and response.json()["ttc"]["answer"] == "5"
