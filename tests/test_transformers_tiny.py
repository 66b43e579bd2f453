"""The transformers engines on tiny random models built here: each request's samples depend only on its
own seed (alone, merged with other requests, at any batch size), and a cancelled ``ainvoke`` stops its
generation (after the current token, starting no further batch) and frees the engine for the next call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from langchain_ttc.arith.tokenizer import build_tokenizer
from langchain_ttc.core.types import GenerationRequest, ScoreRequest
from langchain_ttc.engines.batching import MicroBatchingPolicy, StopRequested, stop_signal
from langchain_ttc.engines.transformers_policy import TransformersPolicy, _RowSampler
from langchain_ttc.engines.transformers_prm import MathShepherdPRM


def _tiny_model(tokenizer: Any) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def policy() -> TransformersPolicy:
    tokenizer = build_tokenizer()
    return TransformersPolicy(_tiny_model(tokenizer), tokenizer, batch_size=64)


def _request(content: str, seed: int | None, **fields: Any) -> GenerationRequest:
    messages = [{"role": "user", "content": content}]
    return GenerationRequest(messages=messages, n=3, temperature=1.0, max_tokens=12, seed=seed, **fields)


def _texts(result: Any) -> list[str]:
    return [c.text for c in result.completions]


def test_a_seeded_request_draws_the_same_samples_alone_merged_and_at_any_batch_size(policy: Any) -> None:
    mine = _request("What is 2+3?", seed=11)
    others = [_request("What is 7*8+1?", seed=500), _request("What is 9-4?", seed=None)]
    (alone,) = policy.invoke([mine])
    merged = policy.invoke([others[0], mine, others[1]])
    assert _texts(merged[1]) == _texts(alone)
    policy.batch_size = 2  # the rows split across generate calls at other places
    try:
        assert _texts(policy.invoke([others[0], mine])[1]) == _texts(alone)
    finally:
        policy.batch_size = 64
    assert len(set(_texts(alone))) > 1  # completion k is seeded seed + k: the n samples differ
    assert _texts(policy.invoke([mine.model_copy(update={"seed": 12})])[0]) != _texts(alone)


def test_a_seeded_request_draws_the_same_samples_under_the_micro_batcher(policy: Any) -> None:
    mine = _request("What is 2+3?", seed=11, top_p=0.9)
    (alone,) = policy.invoke([mine])
    batching = MicroBatchingPolicy(policy, max_wait_s=0.5)
    results: dict[int, Any] = {}
    requests = [mine, _request("What is 7*8+1?", seed=3, top_p=0.9), _request("9-4?", seed=None, top_p=0.9)]
    threads = [
        threading.Thread(target=lambda i=i, r=r: results.__setitem__(i, batching.invoke([r])[0]))
        for i, r in enumerate(requests)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batching.batcher.backend_calls == 1  # all three in one merged call
    assert _texts(results[0]) == _texts(alone)


def test_the_row_sampler_draws_from_the_tempered_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0]]))
    nucleus = _RowSampler([torch.Generator().manual_seed(0)], temperature=1.0, top_p=0.8)
    draws = [int(nucleus(torch.zeros((1, 1), dtype=torch.long), logits.clone()).argmax()) for _ in range(400)]
    assert set(draws) == {0, 1}  # 0.7 + 0.2 reaches 0.8: token 2 is outside the nucleus
    assert 0.6 < draws.count(0) / len(draws) < 0.85  # 0.7 / 0.9 of the mass, about 0.78
    full = _RowSampler([torch.Generator().manual_seed(1)] * 1, temperature=1.0, top_p=1.0)
    assert {int(full(torch.zeros((1, 1), dtype=torch.long), logits.clone()).argmax()) for _ in range(400)} == {0, 1, 2}
    greedyish = _RowSampler([torch.Generator().manual_seed(2)], temperature=0.05, top_p=1.0)
    assert {int(greedyish(torch.zeros((1, 1), dtype=torch.long), logits.clone()).argmax()) for _ in range(50)} == {0}


async def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_cancelled_ainvoke_stops_generating_and_frees_the_engine() -> None:
    tokenizer = build_tokenizer()
    policy = TransformersPolicy(_tiny_model(tokenizer), tokenizer, batch_size=2)
    generate = policy.model.generate
    release, new_tokens, outcome = threading.Event(), [], []

    def held_generate(**kwargs: Any) -> Any:  # the first batch waits until the test lets it run
        release.wait(30)
        output = generate(**kwargs)
        new_tokens.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    policy.model.generate = held_generate  # type: ignore[method-assign]
    inner = policy._generate

    def recorded(requests: list[GenerationRequest]) -> Any:
        try:
            return inner(requests)
        except StopRequested:
            outcome.append("stopped")
            raise

    policy._generate = recorded  # type: ignore[method-assign]
    long = GenerationRequest(prompt="1+1=", n=20, temperature=1.0, max_tokens=200, seed=0)  # 10 batches

    async def scenario() -> Any:
        task = asyncio.create_task(policy.ainvoke([long]))
        await _until(policy._lock.locked)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await _until(lambda: bool(outcome))
        return await policy.ainvoke([long.model_copy(update={"n": 1, "max_tokens": 4})])

    (after,) = asyncio.run(scenario())
    assert outcome == ["stopped"]
    # The held generate stopped after one token and none of the other 9 batches started; the
    # second generate is the next call's, which found the engine free.
    assert new_tokens[0] == 1 and len(new_tokens) == 2
    assert len(after.completions) == 1


def test_engines_stop_before_any_batch_when_their_call_is_already_cancelled(tmp_path: Path, policy: Any) -> None:
    event = threading.Event()
    event.set()
    with stop_signal(event), pytest.raises(StopRequested):
        policy._generate([_request("What is 2+3?", seed=1)])
    tokenizer = build_tokenizer()
    _tiny_model(tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    prm = MathShepherdPRM.from_pretrained(tmp_path)
    request = ScoreRequest(problem="What is 2+3?", steps=["2+3=5."])
    with stop_signal(event), pytest.raises(StopRequested):
        prm._score([request])
    assert len(prm.invoke([request])[0].scores) == 1  # without a signal it scores
