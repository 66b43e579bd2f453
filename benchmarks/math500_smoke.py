"""The real pipeline on MATH-500 with the real SmolLM2-135M-Instruct, on CPU (a smoke test, not accuracy).

SmolLM2-135M is weak at math: this proves the pipeline end to end on real data (the chat template,
sampling, ``\\boxed{}`` extraction, math-verify grading against LaTeX answers, JSONL records), not
accuracy. The report also gives the command that reproduces the Hugging Face study's setting on a GPU.

    python benchmarks/math500_smoke.py [--problems 5] [--n-max 4]

Writes ``benchmarks/results/math500_smoke.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _report import RESULTS, header, write

from langchain_ttc.engines.loading import load_policy
from langchain_ttc.evaluation.datasets import load_problems
from langchain_ttc.evaluation.run import EvalConfig, run_evaluation

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "math500.jsonl"
SYSTEM = "Solve the problem step by step. Put the final answer in \\boxed{}."
GPU_COMMAND = """\
pip install "langchain-ttc[vllm]"
python -m vllm.entrypoints.openai.api_server --model meta-llama/Llama-3.2-1B-Instruct \\
    --port 8000 --enable-prefix-caching &
python -m vllm.entrypoints.openai.api_server --model RLHFlow/Llama3.1-8B-PRM-Deepseek-Data \\
    --port 8001 --enable-prefix-caching &
ttc eval --dataset HuggingFaceH4/MATH-500 --backend openai --policy http://127.0.0.1:8000 \\
    --prm http://127.0.0.1:8001 --prm-protocol rlhflow \\
    --strategy majority_vote best_of_n weighted_best_of_n beam_search dvts \\
    --n-max 256 --max-tokens 2048 --temperature 0.8 --beam-width 4 --concurrency 32"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=5)
    parser.add_argument("--n-max", type=int, default=4)
    args = parser.parse_args()
    problems = load_problems(str(DATA), limit=args.problems)
    config = EvalConfig(
        dataset="math500", strategies=["majority_vote"], n_max=args.n_max, policy="smollm2", max_tokens=384,
        system_prompt=SYSTEM,
    )  # fmt: skip
    output = RESULTS / "math500_smoke.jsonl"
    output.unlink(missing_ok=True)
    started = time.time()
    records = run_evaluation(config, problems, output, policy=load_policy("smollm2"), prm=None, concurrency=1)
    seconds = time.time() - started
    lines = header("MATH-500 smoke test: SmolLM2-135M-Instruct on CPU", __file__)
    lines += [
        f"- {len(records)} MATH-500 problems, majority vote with N up to {args.n_max}, max 384 tokens, "
        f"{seconds:.0f} s; graded with math-verify against the LaTeX answers",
        "",
        "| problem | level | gold | majority@1 | majority@N | correct@N |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    for r in sorted(records, key=lambda r: r["id"]):
        top = f"majority_vote@{args.n_max}"
        lines.append(
            f"| {r['id']} | {r['level']} | `{r['gold']}` | `{r['predictions']['majority_vote@1']}` | "
            f"`{r['predictions'][top]}` | {r['correct'][top]} |"
        )
    lines += ["", "Reproducing the Hugging Face study's setting on GPUs (Llama-3.2-1B-Instruct + RLHFlow 8B PRM):", ""]
    lines += ["```bash", GPU_COMMAND, "```"]
    write("math500_smoke.md", lines)


if __name__ == "__main__":
    main()
