"""The transformers policy and the Math-Shepherd PRM, on the real shipped Arith checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from langchain_ttc.arith import make_problems, split_steps
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.types import GenerationRequest, ScoreRequest
from langchain_ttc.engines.chat_template import render_prompt
from langchain_ttc.engines.transformers_policy import TransformersPolicy
from langchain_ttc.engines.transformers_prm import MathShepherdPRM


def chat(problem: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": problem}]


def test_n_completions_reproducible_with_seed(arith_policy: Any) -> None:
    problem = make_problems(1, 8, seed=5)[0].problem
    request = {"messages": chat(problem), "n": 6, "temperature": 1.0, "max_tokens": 300, "seed": 123}
    first = arith_policy.invoke([request])[0]
    again = arith_policy.invoke([request])[0]
    other = arith_policy.invoke([{**request, "seed": 124}])[0]
    assert len(first.completions) == 6
    assert [c.text for c in first.completions] == [c.text for c in again.completions]
    assert [c.text for c in first.completions] != [c.text for c in other.completions]
    assert first.prompt_tokens > 0 and all(c.num_tokens > 0 for c in first.completions)


def test_finish_reasons_tell_stop_eos_and_length_apart(arith_policy: Any) -> None:
    problem = make_problems(1, 3, seed=1)[0].problem
    stop, eos, length = arith_policy.invoke(
        [
            {"messages": chat(problem), "stop": ["\n\n", "="], "temperature": 0, "max_tokens": 200},
            {"messages": chat(problem), "temperature": 0, "max_tokens": 300},
            {"messages": chat(problem), "temperature": 0, "max_tokens": 3},
        ]
    )
    (s,), (e,), (t,) = stop.completions, eos.completions, length.completions
    # Every Arith step has "=" before its first "\n\n": the earliest matching stop string wins.
    assert s.finish_reason == "stop" and s.stop_string == "=" and s.text.endswith("=")
    assert s.text.count("=") == 1 and "\n\n" not in s.text and s.finished
    assert e.finish_reason == "eos" and "\\boxed{" in e.text and "<|im_end|>" not in e.text
    assert t.finish_reason == "length" and t.num_tokens == 3 and not t.finished


def test_partial_assistant_text_is_continued_in_place(arith_policy: Any) -> None:
    problem = make_problems(1, 4, seed=2)[0].problem
    (whole,) = arith_policy.invoke([{"messages": chat(problem), "temperature": 0, "max_tokens": 200}])
    text = whole.completions[0].text
    cut = text.index("\n\n") + 2 if "\n\n" in text else len(text) // 2
    request = GenerationRequest(messages=chat(problem), partial=text[:cut], temperature=0, max_tokens=200)
    prompt = render_prompt(arith_policy.tokenizer, request)
    assert prompt.endswith("<|im_start|>assistant\n" + text[:cut])
    assert prompt.count("<|im_start|>assistant") == 1  # the final message is continued, no new turn
    (continued,) = arith_policy.invoke([request])
    # Greedy decoding: continuing the model's own prefix reproduces the rest of its solution exactly.
    assert text[:cut] + continued.completions[0].text == text
    assert continued.completions[0].finish_reason == whole.completions[0].finish_reason


def test_batched_generation_equals_one_at_a_time(arith_policy: Any) -> None:
    problems = [p.problem for p in make_problems(4, (1, 8), seed=9)]
    requests = [{"messages": chat(p), "temperature": 0, "max_tokens": 200} for p in problems]
    batched = [r.completions[0] for r in arith_policy.invoke(requests)]
    single = [arith_policy.invoke([r])[0].completions[0] for r in requests]
    assert batched == single


def test_mixed_settings_in_one_call_keep_request_order(arith_policy: Any) -> None:
    problem = make_problems(1, 2, seed=3)[0].problem
    results = arith_policy.invoke(
        [
            {"messages": chat(problem), "n": 2, "temperature": 0, "max_tokens": 2},
            {"messages": chat(problem), "n": 3, "temperature": 0.7, "max_tokens": 200, "seed": 1},
            {"messages": chat(problem), "n": 1, "temperature": 0, "max_tokens": 1},
        ]
    )
    assert [len(r.completions) for r in results] == [2, 3, 1]
    assert [c.num_tokens for c in results[0].completions] == [2, 2]
    assert results[2].completions[0].num_tokens == 1


def test_prm_scores_one_per_step_in_unit_interval(arith_prm: Any) -> None:
    problem = make_problems(1, 5, seed=4)[0]
    (scores,) = arith_prm.invoke([ScoreRequest(problem=problem.problem, steps=split_steps(problem.solution))])
    assert len(scores.scores) == 5 and scores.num_tokens > 0
    assert all(0.0 <= s <= 1.0 for s in scores.scores)
    assert arith_prm.invoke([{"problem": problem.problem, "steps": []}])[0].scores == []


def test_batched_prm_scores_equal_one_at_a_time(arith_prm: Any) -> None:
    problems = make_problems(6, (1, 8), seed=11)
    requests = [ScoreRequest(problem=p.problem, steps=split_steps(p.solution)) for p in problems]
    batched = arith_prm.invoke(requests)
    for request, scores in zip(requests, batched, strict=True):
        assert arith_prm.invoke([request])[0].scores == pytest.approx(scores.scores, abs=1e-5)


def test_missing_model_path_names_the_parameter(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=r"model='.*no-such-model' does not exist"):
        TransformersPolicy.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match=r"prm='.*no-such-model' does not exist"):
        MathShepherdPRM.from_pretrained(missing)


@pytest.mark.integration
def test_prm_tokenizer_without_step_tag_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "prm-without-tag"
    shutil.copytree(arith_checkpoint("prm"), target)
    tokenizer_file = target / "tokenizer.json"
    data = json.loads(tokenizer_file.read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "ки"]
    tokenizer_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"step_tag='ки' is not a single token"):
        MathShepherdPRM.from_pretrained(target)
    with pytest.raises(ValueError, match=r"step_tag='<step>' is not a single token"):
        MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), step_tag="<step>")


@pytest.mark.integration
def test_chat_without_template_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "no-template"
    shutil.copytree(arith_checkpoint("small"), target)
    (target / "chat_template.jinja").unlink()
    policy = TransformersPolicy.from_pretrained(target)
    with pytest.raises(ValueError, match="has no chat_template; pass prompt="):
        policy.invoke([{"messages": chat("What is 1+1?")}])
    assert policy.invoke([{"prompt": "1+1=", "max_tokens": 2, "temperature": 0}])[0].completions[0].num_tokens == 2
