"""What the server policy sends: copies of one prompt go out as one request, and the prompt ids stay exact.

A scripted loopback server (FastAPI in a thread) records every ``/v1/completions`` body and answers each
choice with a text of its own, so a test can tell which continuation went to which request. The
tokenizer is the Arith one (a real fast tokenizer with a chat template).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from transformers import AutoTokenizer

from langchain_ttc import create_particle_filtering_graph
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.chat_template import encode_text, prompt_token_ids, render_prompt
from langchain_ttc.engines.function_prm import FunctionPRM
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
from tests.servers import free_port, serving_in_thread

CHAT = [{"role": "user", "content": "What is 2+2?"}]


class Scripted:
    """Answers each choice with its own answer (with ``first_step``: the first request, one good step, bad ones)."""

    def __init__(self) -> None:
        self.first_step = False
        self.bodies: list[dict[str, Any]] = []
        self.texts = (f"\\boxed{{{k}}}" for k in itertools.count())
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> JSONResponse:
            return JSONResponse({"data": []})

        @app.post("/v1/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            self.bodies.append(body)
            choices = []
            for index in range(body["n"]):
                if self.first_step and len(self.bodies) == 1:  # the first step: "good" once, the rest "bad"
                    text, reason = ("good\n\n" if index == 0 else "bad\n\n"), "\n\n"
                else:
                    text, reason = next(self.texts), None
                choices.append(
                    {"index": index, "text": text, "token_ids": [1], "finish_reason": "stop", "stop_reason": reason}
                )
            return JSONResponse({"choices": choices, "usage": {"prompt_tokens": len(body["prompt"])}})

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    with serving_in_thread(server.server):
        yield server


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(arith_checkpoint("small"))


def policy_for(server: Scripted, tokenizer: Any) -> OpenAICompatiblePolicy:
    return OpenAICompatiblePolicy(f"http://127.0.0.1:{server.port}", model="m", tokenizer=tokenizer)


def request(partial: str = "", **fields: Any) -> GenerationRequest:
    return GenerationRequest(messages=CHAT, partial=partial, stop=["\n\n"], **fields)  # type: ignore[arg-type]


def test_copies_of_a_prompt_go_out_as_one_request_and_each_gets_its_own_choices(
    scripted: Scripted, tokenizer: Any
) -> None:
    a, b = request("a\n\n"), request("b\n\n")
    results = policy_for(scripted, tokenizer).invoke([a, b, a, a.model_copy(update={"n": 2})])
    assert sorted(body["n"] for body in scripted.bodies) == [1, 4]  # two requests: b, and a's four samples
    (merged,) = [body for body in scripted.bodies if body["n"] == 4]
    assert merged["prompt"] == prompt_token_ids(tokenizer, a)
    assert [len(r.completions) for r in results] == [1, 1, 1, 2]
    texts = [c.text for i in (0, 2, 3) for c in results[i].completions]
    assert len(set(texts)) == 4  # every copy its own continuation, none shared


def test_seeded_copies_merge_only_when_their_seed_blocks_follow_each_other(scripted: Scripted, tokenizer: Any) -> None:
    a, b = request("a\n\n"), request("b\n\n")
    seeded = [a.model_copy(update={"seed": 10}), a.model_copy(update={"seed": 11}), b.model_copy(update={"seed": 12})]
    seeded.append(a.model_copy(update={"seed": 14}))  # its block does not follow the first a's (10, 11)
    policy_for(scripted, tokenizer).invoke(seeded)
    # vLLM seeds the k-th sample seed + k: (10, n=2) samples exactly what (10, n=1) and (11, n=1) would.
    assert sorted((body["seed"], body["n"]) for body in scripted.bodies) == [(10, 2), (12, 1), (14, 1)]


def test_greedy_copies_are_not_merged(scripted: Scripted, tokenizer: Any) -> None:
    greedy = request("a\n\n", temperature=0.0)
    policy_for(scripted, tokenizer).invoke([greedy, greedy])
    assert [body["n"] for body in scripted.bodies] == [1, 1]


def test_resampled_particles_that_are_copies_share_one_request(scripted: Scripted, tokenizer: Any) -> None:
    # The first step: one "good" particle (score .99) among "bad" ones (.01): resampling draws it four times.
    scripted.first_step = True
    prm = FunctionPRM(lambda problem, steps: [0.99 if s.startswith("good") else 0.01 for s in steps])
    policy = policy_for(scripted, tokenizer)
    sent: list[list[GenerationRequest]] = []
    answered: list[list[str]] = []
    original = policy._agenerate

    async def recording(requests: list[GenerationRequest]) -> Any:
        sent.append(requests)
        results = await original(requests)
        answered.append([c.text for r in results for c in r.completions])
        return results

    policy._agenerate = recording  # type: ignore[method-assign]
    graph = create_particle_filtering_graph(policy, prm, n=4, seed=1, max_iterations=3)
    graph.invoke({"problem": "What is 2+2?"})
    first, second = sent[0], sent[1]
    assert [r.n for r in first] == [4] and len(second) == 4  # the strategy asks for one step per particle...
    assert {r.partial for r in second} == {"good\n\n"}  # ...and every particle is a copy of the good one
    assert [body["n"] for body in scripted.bodies] == [4, 4]  # ...so the server gets one request of four samples
    assert sum(body["n"] for body in scripted.bodies) == sum(r.n for call in sent for r in call)
    assert len(answered[1]) == 4 and len(set(answered[1])) == 4  # each copy got its own continuation


def test_encode_text_gives_the_tokenizers_ids(tokenizer: Any) -> None:
    rng = random.Random(0)
    pieces = ["a", "b ", "\n\n", "\n", "12", "+", "=", " ", "\\boxed{", "é", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        for special in (False, True):
            assert encode_text(tokenizer, text, add_special_tokens=special) == tokenizer.encode(
                text, add_special_tokens=special
            )
    chat = render_prompt(tokenizer, request("1+1=2\n\n"))
    assert prompt_token_ids(tokenizer, request("1+1=2\n\n")) == tokenizer.encode(chat, add_special_tokens=False)


def test_encode_text_leaves_a_truncating_tokenizer_to_its_wrapper() -> None:
    truncating = AutoTokenizer.from_pretrained(arith_checkpoint("small"))
    truncating.backend_tokenizer.enable_truncation(max_length=3)  # a state the wrapper would reset per call
    text = "1+1=2, so 2+2=4"
    assert encode_text(truncating, text, add_special_tokens=False) == truncating.encode(text, add_special_tokens=False)
    assert len(encode_text(truncating, text, add_special_tokens=False)) > 3
