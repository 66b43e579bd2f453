"""The chat-model policy, the function PRM, the RLHFlow and Qwen2.5-Math PRM protocols (each on a
tiny model built here with the protocol's special tokens and chat template), and load_prm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification

from langchain_ttc import create_beam_search_graph, create_majority_vote_graph, make_problems
from langchain_ttc.arith import split_steps
from langchain_ttc.arith.checker import arith_checker_prm
from langchain_ttc.arith.tokenizer import build_tokenizer
from langchain_ttc.cli import main
from langchain_ttc.core.types import ScoreRequest
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy
from langchain_ttc.engines.function_prm import FunctionPRM
from langchain_ttc.engines.transformers_prm import QwenMathPRM, RLHFlowPRM, load_prm
from tests.fakes import last_step_prm
from tests.tiny_models import build_qwen_prm

PROBLEMS = make_problems(5, (1, 6), seed=81)
REQUESTS = [ScoreRequest(problem=p.problem, steps=split_steps(p.solution)) for p in PROBLEMS]


def tiny_config(tokenizer: Any, **extra: Any) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, pad_token_id=tokenizer.pad_token_id, **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def rlhflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rlhflow")
    tokenizer = build_tokenizer()  # a chat template, "+" and "-" as single tokens
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(tokenizer)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("qwen")
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<extra_0>"]})
    torch.manual_seed(0)
    LlamaForTokenClassification(tiny_config(tokenizer, num_labels=2)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("protocol", ["rlhflow", "qwen_math"])
def test_protocol_scores_one_per_step_and_batches_exactly(protocol: str, request: pytest.FixtureRequest) -> None:
    directory = request.getfixturevalue("rlhflow_dir" if protocol == "rlhflow" else "qwen_dir")
    prm = load_prm(directory, protocol=protocol, batch_size=3)
    batched = prm.invoke(REQUESTS)
    for req, scores in zip(REQUESTS, batched, strict=True):
        assert len(scores.scores) == len(req.steps) and all(0.0 <= s <= 1.0 for s in scores.scores)
        assert prm.invoke([req])[0].scores == pytest.approx(scores.scores, abs=1e-5)
        assert scores.num_tokens > 0


def test_rlhflow_reads_the_assistant_plus_after_each_step(rlhflow_dir: Path) -> None:
    prm = RLHFlowPRM.from_pretrained(rlhflow_dir)
    ids, positions = prm.prm_format.encode(prm.tokenizer, "p", ["a", "b"])
    plus = prm.tokenizer.encode("+", add_special_tokens=False)[0]
    assert [ids[p] for p in positions] == [plus, plus]
    assert prm.tokenizer.decode(ids[: positions[0]]).endswith("<|im_start|>assistant\n")


def test_protocols_refuse_tokenizers_without_their_tokens(rlhflow_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="step_token='<extra_0>' is not a single token"):
        QwenMathPRM.from_pretrained(rlhflow_dir)  # no <extra_0> in this tokenizer
    with pytest.raises(ValueError, match="protocol='shepherd' is not known; pass one of math_shepherd, rlhflow"):
        load_prm(rlhflow_dir, protocol="shepherd")


def test_function_prm_and_the_arith_checker() -> None:
    problem = PROBLEMS[2]
    steps = split_steps(problem.solution)
    wrong = [*steps[:-1], steps[-1].replace(f"boxed{{{problem.answer}}}", "boxed{x}")]
    checker = arith_checker_prm()
    assert checker.invoke([{"problem": problem.problem, "steps": steps}])[0].scores == [1.0] * len(steps)
    assert checker.invoke([{"problem": problem.problem, "steps": wrong}])[0].scores[-1] == 0.0
    with pytest.raises(TypeError, match="is not callable"):
        FunctionPRM(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must return one score in \\[0, 1\\] per step"):
        FunctionPRM(lambda p, s: [2.0] * len(s)).invoke([{"problem": "p", "steps": ["a"]}])


def test_chat_model_policy_for_whole_solution_strategies() -> None:
    replies = iter([AIMessage(content=f"so \\boxed{{{a}}}") for a in "7797"])
    policy = ChatModelPolicy(GenericFakeChatModel(messages=replies), max_concurrency=1)
    output = create_majority_vote_graph(policy, n=4).invoke({"problem": "What is 3+4?"})
    assert output["answer"] == "7" and len(output["result"]["candidates"]) == 4
    with pytest.raises(TypeError, match="cannot continue a partial assistant message"):
        create_beam_search_graph(policy, last_step_prm({}), n=4, beam_width=2)
    with pytest.raises(TypeError, match="is not a LangChain BaseChatModel"):
        ChatModelPolicy("gpt")  # type: ignore[arg-type]


@pytest.mark.integration
def test_cli_scores_with_a_remote_code_qwen_prm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The published Qwen2.5-Math-PRM ships its own modelling code; --trust-remote-code runs it.
    build_qwen_prm(tmp_path / "qwen")
    problem = make_problems(1, 2, seed=83)[0].problem
    args = ["solve", problem, "--strategy", "best_of_n", "--n", "2", "--max-tokens", "64", "--json"]
    prm_args = ["--prm", str(tmp_path / "qwen"), "--prm-protocol", "qwen_math"]
    assert main([*args, *prm_args, "--trust-remote-code"]) == 0
    result = json.loads(capsys.readouterr().out)
    scores = [c["step_scores"] for c in result["candidates"]]
    assert len(scores) == 2 and all(s and all(0 < x < 1 for x in s) for s in scores)
    assert result["usage"]["prm_calls"] == 1
