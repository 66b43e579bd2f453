"""Train the Arith checkpoints from scratch: two policies of different sizes and two PRMs.

In: nothing but seeds and step counts. Out: Hugging Face directories (``small``, ``large``, ``prm``,
``prm-in-distribution``) with safetensors weights, a standard ``LlamaForCausalLM`` config, the Arith
tokenizer and a chat template, plus a ``training.json`` with the recipe, the command, the commit, the
seeds, the wall time and the measured accuracies. This script is not part of the runtime package
(it imports torch at the top); run it from a checkout.

**The policies imitate a teacher.** A :class:`Teacher` says, for every arithmetic fact, how likely
a policy is to write each result digit: the right one with probability ``1 - slip`` (the slip spread
over the nine wrong digits), except on the policy's *misconceptions*, a fixed set of facts where it
writes one particular wrong result with probability 0.55 and the right one with 0.35. A policy is
trained to reproduce that distribution (soft targets at every result digit), so greedy decoding errs
on exactly the misconceptions while sampling still writes the right result about a third of the
time: every right solution is reachable, which a verifier can recognise and majority voting cannot.

- ``small``: hidden 64, 2 layers (123,456 parameters), 50 misconceptions.
- ``large``: hidden 128, 2 layers (459,904 parameters, 3.7x), 10 misconceptions (a subset of the
  small one's).

**Two verifiers, named by what they are** (both Math-Shepherd PRMs: P("+") at each ``ки`` tag, prefix
labels from the exact checker):

- ``prm`` (the realistic one, the default): trained the way public PRMs are, from scratch (not from a
  policy), at most the large policy's size, on checker-labelled solutions of *another* teacher whose 50
  misconceptions share only 25 with the small policy's, with the step tags' labels only (no auxiliary
  loss). The small policy's other 25 misconceptions (which include all of the large policy's) are facts
  it never saw wrong except by slips: its blind spots, as a real PRM's are the errors of policies it was
  not trained on.
- ``prm-in-distribution``: the previous release's near-perfect recipe. It starts from the large policy
  (two identity layers added), is trained on exactly the small policy's teacher, with dense labels on
  every result digit and an auxiliary loss that teaches every fact. Kept so results can be read against
  verifier quality; it is close to an exact checker.

Models: byte-level Llama, head_dim 64; AdamW, linear warm-up, then a cosine decay to a tenth (policies:
after two thirds of the steps); batch 32 (one difficulty per batch); a curriculum from short chains to
the longest (12 steps).

Runs are resumable: every ``--save-every`` steps the model, the optimiser and the random streams are
written to ``<out>/<name>.partial/``, and a restarted command continues from there: two runs resumed
from the realistic PRM reproduction's state at step 13,750 logged the same losses and ended on the same
held-out metrics as the run that went on without stopping.

Runs are reproducible bit for bit on x86-64 CPUs: the script pins PyTorch's and MKL's kernels to their
AVX2 versions (:data:`PINNED_KERNELS`; it restarts itself with ``ATEN_CPU_CAPABILITY=avx2`` and
``MKL_CBWR=AVX2`` unless they are set). An AVX-512 CPU's wider kernels round differently, and 14,000
steps amplify that: unpinned on an AVX-512 machine the realistic PRM's recorded command logged another
loss from step 300 on (0.6059 against 0.6061), and its first reproduction (``checkpoints/arith-v3-repro``,
unpinned: steps 0-1,000 logged what the pinned run logs, then it was resumed in a later session,
presumably on an AVX-512 machine) drifted from step 1,200 and ended 2.2 points of held-out step accuracy
below the shipped checkpoint. Pinned, the recorded command on an AVX-512 machine logged the shipped
run's loss at every step, ended on its held-out metrics (0.8399, 0.9203) and wrote byte-identical
weights (``checkpoints/arith-v3-pinned``).

Run (2 CPU cores: one chain per core; the PRM in distribution needs the large policy first)::

    out=langchain_ttc/arith/models
    python scripts/train_arith.py --out $out --only small --threads 1 &&
    python scripts/train_arith.py --out $out --only prm --threads 1 &
    python scripts/train_arith.py --out $out --only large --threads 1 &&
    python scripts/train_arith.py --out $out --only prm-in-distribution --threads 1; wait
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from langchain_ttc.arith.problems import (
    MAX_DIFFICULTY,
    STEP_DELIMITER,
    ArithProblem,
    apply_operator,
    arithmetic_facts,
    check_steps,
    make_problem,
    make_problems,
    parse_expression,
    solve_expression,
)
from langchain_ttc.arith.tokenizer import build_tokenizer
from langchain_ttc.core.metrics import auroc
from langchain_ttc.engines.math_shepherd_format import (
    DEFAULT_BAD_TOKEN,
    DEFAULT_GOOD_TOKEN,
    DEFAULT_STEP_TAG,
    math_shepherd_text,
)

Fact = tuple[int, str, int]
MISCONCEPTION_SEED = 1
"""The one shuffle of the facts that every teacher's misconceptions are read from (a window of it)."""


@dataclass(frozen=True, kw_only=True)
class Teacher:
    """The distribution over each step's result digit that a policy is trained to reproduce.

    Attributes:
        misconceptions: How many facts the policy gets wrong more often than right.
        offset: Where its misconceptions start in the one shuffle of the facts: two teachers share the
            facts where their windows overlap.
        right_on_misconception: P(right result) on a misconception.
        wrong_on_misconception: P(the misconception's own wrong result).
        slip: On every other fact, P(a wrong result), spread evenly over the nine wrong digits.

    Example:
        >>> teacher = Teacher(misconceptions=30)
        >>> fact = next(iter(teacher.wrong_results()))
        >>> round(teacher.distribution(fact)[apply_operator(*fact)], 2)
        0.35

    """

    misconceptions: int
    offset: int = 0
    right_on_misconception: float = 0.35
    wrong_on_misconception: float = 0.55
    slip: float = 0.03

    def wrong_results(self) -> dict[Fact, int]:
        """The misconceptions: fact → the wrong result the policy favours."""
        rng = random.Random(MISCONCEPTION_SEED)
        facts = arithmetic_facts()
        order = rng.sample(facts, len(facts))
        shifts = [rng.randint(1, 9) for _ in facts]
        window = list(zip(order, shifts, strict=True))[self.offset : self.offset + self.misconceptions]
        return {fact: (apply_operator(*fact) + shift) % 10 for fact, shift in window}

    def distribution(self, fact: Fact) -> list[float]:
        """P(result digit) for one fact, over the digits 0-9."""
        right = apply_operator(*fact)
        wrong = self.wrong_results().get(fact)
        if wrong is None:
            probs = [self.slip / 9] * 10
            probs[right] = 1 - self.slip
        else:
            rest = (1 - self.right_on_misconception - self.wrong_on_misconception) / 8
            probs = [rest] * 10
            probs[right] = self.right_on_misconception
            probs[wrong] = self.wrong_on_misconception
        return probs


CURRICULUM = ((0.15, 2), (0.3, 4), (0.5, 8), (1.0, MAX_DIFFICULTY))
"""(fraction of the steps, longest chain until then): short chains first, as the policies need."""


@dataclass(kw_only=True)
class PolicyRecipe:
    """How one Arith policy is built and trained."""

    hidden_size: int
    num_layers: int
    steps: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    decay_from: float = 0.0
    """The fraction of the steps after which the cosine decay starts (constant until then)."""
    curriculum: tuple[tuple[float, int], ...] = CURRICULUM
    teacher: Teacher | None = None
    seed: int = 0


SMALL_TEACHER = Teacher(misconceptions=50)
RECIPES = {
    # Hidden 64 (one head of 64, the least vLLM allows) and 2 layers: a quarter of the large one's size.
    "small": PolicyRecipe(hidden_size=64, num_layers=2, steps=4000, decay_from=2 / 3, teacher=SMALL_TEACHER, seed=1),
    # The previous release's architecture (which learned 8-step chains in 3000 steps) with a fifth of the
    # small one's misconceptions (a subset). Wider large policies (hidden 256) never learned chains of three
    # or more steps in the time this script may take on 2 cores.
    "large": PolicyRecipe(
        hidden_size=128, num_layers=2, steps=4000, decay_from=2 / 3, teacher=Teacher(misconceptions=10), seed=1
    ),
}


@dataclass(kw_only=True)
class PRMRecipe:
    """How a PRM is built and trained (the optimiser and schedule are the policies')."""

    teacher: Teacher
    """The teacher whose solutions (labelled by the exact checker) the PRM learns from."""
    init: str | None = None
    """A trained policy to start from (with ``extra_layers`` identity layers added), or None: from scratch."""
    hidden_size: int = 128
    num_layers: int = 2
    intermediate_size: int = 384
    """From-scratch sizes (ignored with ``init``)."""
    extra_layers: int = 2
    steps: int = 3500
    learning_rate: float = 1e-3
    temperatures: tuple[float, ...] = (0.8, 1.0)
    """The temperatures the teacher samples the training solutions at."""
    wrong_weight: float = 1.0
    """The loss weight of a bad label against a good one's 1."""
    digit_labels: bool = False
    """Also label each step's result digit (is the solution still right once it is written?)."""
    fact_weight: float = 0.0
    """The weight of an auxiliary loss: before each result digit, predict the right result of the step's operation."""
    seed: int = 3


PRM_RECIPES = {
    # The way public PRMs are trained: another policy's solutions (a teacher sharing 25 of the small policy's
    # 50 misconceptions), checker labels on the step tags only, from scratch, untied read-out, and an MLP
    # of 320 so that it is no larger than the large policy (444,032 parameters against 459,904).
    # 14000 steps. The first run, 4000 steps, ended at held-out AUROC 0.789 (on its own teacher's solutions)
    # and was still rising; the second, 6000 steps, reached 0.824 there but 0.780 on the small policy's own
    # samples (benchmarks/arith_models.py, 1-12 steps; 0.751 on the study's bands), below the 0.80-0.92 the
    # study asks of a realistic verifier, and was still rising (+0.01 per 500 steps at the end). Only the
    # training length changes, to reach that stated verifier-quality range; no study result was looked at.
    # The 14000-step run: 0.920 on its teacher's solutions, 0.829 on the small policy's (study bands), 0.841 (1-12).
    "prm": PRMRecipe(teacher=Teacher(misconceptions=50, offset=25), intermediate_size=320, steps=14000, seed=5),
    # The previous release's shipped recipe: the large policy plus two layers, the small policy's own
    # teacher, dense digit labels, bad labels weighted twice, and the auxiliary fact loss.
    # 2000 steps (the previous release's 3500 at 8-step chains took 49 min alone; this one shares the machine).
    "prm-in-distribution": PRMRecipe(
        teacher=SMALL_TEACHER, init="large", steps=2000, wrong_weight=2.0, digit_labels=True, fact_weight=1.0, seed=3
    ),
}


class _Tables:
    """Each fact's teacher distribution, computed once."""

    def __init__(self, teacher: Teacher) -> None:
        self.probs = {fact: teacher.distribution(fact) for fact in arithmetic_facts()}

    def sample(self, fact: Fact, rng: random.Random, temperature: float) -> int:
        weights = [p ** (1 / temperature) for p in self.probs[fact]]
        return rng.choices(range(10), weights=weights)[0]


def teacher_solution(
    expression: str, tables: _Tables, rng: random.Random, temperature: float = 1.0
) -> tuple[str, list[tuple[int, list[float]]]]:
    """A solution drawn from the teacher, with each result digit's offset and distribution."""
    results: list[tuple[Fact, int]] = []

    def compute(left: int, op: str, right: int) -> int:
        result = tables.sample((left, op, right), rng, temperature)
        results.append(((left, op, right), result))
        return result

    steps, _ = solve_expression(expression, compute)
    targets = []
    offset = 0
    for step, (fact, _) in zip(steps, results, strict=True):
        targets.append((offset + step.index("=") + 1, tables.probs[fact]))
        offset += len(step) + len(STEP_DELIMITER)
    return STEP_DELIMITER.join(steps), targets


def _model_config(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int,
    num_layers: int,
    *,
    intermediate_size: int | None = None,
    tie_word_embeddings: bool = True,
) -> LlamaConfig:
    head_dim = 64
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 3,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // head_dim,
        num_key_value_heads=hidden_size // head_dim,
        head_dim=head_dim,
        max_position_embeddings=1024,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def _prompt(tokenizer: PreTrainedTokenizerBase, problem: str) -> str:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True
    )
    assert isinstance(text, str)
    return text


def _padded(tokenizer: PreTrainedTokenizerBase, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def _learning_rate(step: int, recipe: PolicyRecipe) -> float:
    """Linear warm-up, constant until ``decay_from``, then a cosine decay to a tenth of the peak."""
    if step < recipe.warmup_steps:
        return recipe.learning_rate * (step + 1) / recipe.warmup_steps
    start = max(recipe.warmup_steps, int(recipe.decay_from * recipe.steps))
    progress = max(0.0, (step - start) / max(1, recipe.steps - start))
    return recipe.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def _difficulty_cap(step: int, recipe: PolicyRecipe) -> int:
    for fraction, cap in recipe.curriculum:
        if step < fraction * recipe.steps:
            return cap
    return MAX_DIFFICULTY


@torch.no_grad()
def greedy_accuracy(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[ArithProblem],
    *,
    batch_size: int = 64,
) -> float:
    """Fraction of problems whose greedy solution ends in the right boxed answer."""
    from langchain_ttc.core.answers import extract_boxed

    model.eval()
    correct = 0
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        encoded = tokenizer(
            [_prompt(tokenizer, p.problem) for p in chunk], return_tensors="pt", padding=True, add_special_tokens=False
        )
        out = model.generate(**encoded, max_new_tokens=512, do_sample=False, pad_token_id=tokenizer.pad_token_id)  # type: ignore[misc]
        texts = tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        correct += sum(extract_boxed(t) == p.answer for t, p in zip(texts, chunk, strict=True))
    model.train()
    return correct / len(problems)


def accuracy_by_difficulty(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, *, per_difficulty: int, seed: int
) -> dict[int, float]:
    """Greedy accuracy at each difficulty 1..8 on fresh problems."""
    return {
        d: greedy_accuracy(model, tokenizer, make_problems(per_difficulty, d, seed=seed + d))
        for d in range(1, MAX_DIFFICULTY + 1)
    }


def _train_loop(
    model: LlamaForCausalLM,
    recipe: PolicyRecipe,
    make_batch: Callable[[random.Random, int], tuple[torch.Tensor, ...]],
    loss_fn: Callable[..., torch.Tensor],
    *,
    partial: Path,
    save_every: int,
    log_every: int = 100,
    on_log: Callable[[int], None] | None = None,
) -> float:
    """Train for ``recipe.steps`` steps, resuming from ``partial`` if an earlier run left a state there.

    Returns the seconds spent training, summed over every resumed run.
    """
    rng = random.Random(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    first, spent = 0, 0.0
    state_file = partial / "state.pt"
    if state_file.exists():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        first, spent = state["step"], state["seconds"]
        print(f"resuming from {state_file} at step {first}", flush=True)
    model.train()
    started = time.time()
    running, logged = 0.0, 0
    for step in range(first, recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, recipe)
        loss = loss_fn(model, *make_batch(rng, step))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running, logged = running + loss.item(), logged + 1
        done = step + 1
        if done % log_every == 0:
            rate = (time.time() - started) / (done - first)
            print(f"step {done}/{recipe.steps} loss {running / logged:.4f} {rate:.2f}s/step", flush=True)
            running, logged = 0.0, 0
            if on_log is not None:
                on_log(done)
        if done % save_every == 0 and done < recipe.steps:
            partial.mkdir(parents=True, exist_ok=True)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "step": done,
                "seconds": spent + time.time() - started,
            }
            torch.save(state, partial / "state.tmp")
            (partial / "state.tmp").replace(state_file)
    return spent + time.time() - started


def _provenance(seeds: dict[str, int]) -> dict[str, Any]:
    """The command, the commit (and whether the tree had changes) and the seeds a checkpoint was trained with."""
    import subprocess
    import sys

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "command": "python " + " ".join(sys.argv),
        "commit": git("rev-parse", "HEAD"),
        "tree_changed": bool(git("status", "--porcelain", "--untracked-files=no")),
        "seeds": seeds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_kernels": {"torch": torch.backends.cpu.get_cpu_capability(), "MKL_CBWR": os.environ.get("MKL_CBWR")},
    }


def train_policy(name: str, out: Path, *, recipe: PolicyRecipe, save_every: int = 250) -> dict[str, Any]:
    """Train one policy from scratch to imitate its teacher, and save it to ``out / name``."""
    assert recipe.teacher is not None
    provenance = _provenance({"recipe": recipe.seed, "misconceptions": MISCONCEPTION_SEED})  # the tree it starts from
    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM(_model_config(tokenizer, recipe.hidden_size, recipe.num_layers))
    tables = _Tables(recipe.teacher)
    digit_ids = torch.tensor([tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])

    def make_batch(rng: random.Random, step: int) -> tuple[torch.Tensor, ...]:
        difficulty = rng.randint(1, _difficulty_cap(step, recipe))  # one difficulty per batch: little padding
        problems = [make_problem(rng, difficulty) for _ in range(recipe.batch_size)]
        rows, hard, soft_at, soft = [], [], [], []
        for i, problem in enumerate(problems):
            solution, targets = teacher_solution(parse_expression(problem.problem), tables, rng)
            prompt = tokenizer(_prompt(tokenizer, problem.problem), add_special_tokens=False)["input_ids"]
            target = tokenizer(solution + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
            rows.append(prompt + target)
            labels = [-100] * len(prompt) + target
            for offset, probs in targets:  # one token per character: offsets in the text are token offsets
                labels[len(prompt) + offset] = -100
                soft_at.append((i, len(prompt) + offset))
                soft.append(probs)
            hard.append(labels)
        ids, mask = _padded(tokenizer, rows)
        labels_t = torch.full_like(ids, -100)
        for i, labels in enumerate(hard):
            labels_t[i, : len(labels)] = torch.tensor(labels)
        return ids, mask, labels_t, torch.tensor(soft_at), torch.tensor(soft)

    def loss_fn(
        m: LlamaForCausalLM,
        ids: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        at: torch.Tensor,
        soft: torch.Tensor,
    ) -> torch.Tensor:
        logp = torch.log_softmax(m(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        targets = labels[:, 1:]
        keep = targets != -100
        hard = -logp[:, :-1].gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[keep]
        predicted = logp[at[:, 0], at[:, 1] - 1][:, digit_ids]  # the distribution over digits before each result
        soft_loss = -(soft * predicted).sum(-1)
        return (hard.sum() + soft_loss.sum()) / (hard.numel() + soft_loss.numel())

    def log(step: int) -> None:
        if step % 500 == 0 or step == recipe.steps:
            acc = accuracy_by_difficulty(model, tokenizer, per_difficulty=16, seed=10_000 + step)
            report = " ".join(f"{d}:{a:.2f}" for d, a in acc.items())
            print(f"[{name}] step {step} greedy accuracy {report}", flush=True)

    target = out / name
    seconds = _train_loop(
        model, recipe, make_batch, loss_fn, partial=out / f"{name}.partial", save_every=save_every, on_log=log
    )
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    accuracy = accuracy_by_difficulty(model, tokenizer, per_difficulty=100, seed=777)
    info = {
        "name": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "recipe": asdict(recipe),
        "train_seconds": round(seconds, 1),
        "greedy_accuracy": accuracy,
        "provenance": provenance,
    }
    (target / "training.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return info


def reevaluate(target: Path) -> dict[str, Any]:
    """Measure a trained policy's greedy accuracy again and record it (with the command) in its training.json."""
    model = LlamaForCausalLM.from_pretrained(str(target))
    info = json.loads((target / "training.json").read_text())
    info["greedy_accuracy"] = accuracy_by_difficulty(model, build_tokenizer(), per_difficulty=100, seed=777)
    info.setdefault("provenance", {})["evaluated_with"] = _provenance({})
    (target / "training.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info["greedy_accuracy"]), flush=True)
    return info


def _miscopy(steps: list[str], rng: random.Random) -> list[str]:
    """Cut a solution after one step whose copied digits were changed (a copy error, not an arithmetic one)."""
    index = rng.randrange(len(steps))
    step = steps[index]
    positions = [i for i, ch in enumerate(step) if ch.isdigit() and i != step.index("=") + 1]
    at = rng.choice(positions)
    changed = step[:at] + str((int(step[at]) + rng.randint(1, 9)) % 10) + step[at + 1 :]
    return [*steps[:index], changed]


def _fact_results(problem: str, steps: list[str]) -> list[tuple[int, int]]:
    """Where each step's result digit sits in the Math-Shepherd text, and the right result of its own operation."""
    offset = len(problem.strip()) + 1
    facts = []
    for step in (s.strip() for s in steps):
        at = step.find("=") + 1
        if at == 4 and step[0].isdigit() and step[1] in "+-*" and step[2].isdigit() and at < len(step):
            facts.append((offset + at, apply_operator(int(step[0]), step[1], int(step[2]))))
        offset += len(step) + len(f" {DEFAULT_STEP_TAG}\n")
    return facts


def _result_digits(problem: str, steps: list[str]) -> list[tuple[int, bool]]:
    """Where each step's result digit sits in the Math-Shepherd text, and whether the solution is still right there."""
    gold, _ = solve_expression(parse_expression(problem))
    offset = len(problem.strip()) + 1
    still_right = True
    digits = []
    for index, step in enumerate(s.strip() for s in steps):
        at = step.find("=") + 1
        if 0 < at < len(step):
            still_right = still_right and index < len(gold) and step[: at + 1] == gold[index][: at + 1]
            digits.append((offset + at, still_right))
        offset += len(step) + len(f" {DEFAULT_STEP_TAG}\n")
        still_right = still_right and index < len(gold) and step == gold[index]
    return digits


def prm_solutions(
    count: int,
    teacher: Teacher,
    rng: random.Random,
    difficulty: int,
    temperatures: tuple[float, ...] = (0.8, 1.0),
) -> list[tuple[ArithProblem, list[str]]]:
    """Solutions drawn from a policy's teacher at one of ``temperatures``; one in ten miscopies a step."""
    tables = _Tables(teacher)
    pairs = []
    for _ in range(count):
        problem = make_problem(rng, difficulty)
        solution, _ = teacher_solution(parse_expression(problem.problem), tables, rng, rng.choice(temperatures))
        steps = solution.split(STEP_DELIMITER)
        pairs.append((problem, _miscopy(steps, rng) if rng.random() < 0.1 else steps))
    return pairs


def train_prm(name: str, out: Path, *, recipe: PRMRecipe, save_every: int = 250) -> dict[str, Any]:
    """Train a Math-Shepherd PRM on checker-labelled teacher samples, from scratch or from a trained policy."""
    prm = recipe
    provenance = _provenance({"recipe": prm.seed, "held_out": prm.seed + 1, "misconceptions": MISCONCEPTION_SEED})
    torch.manual_seed(prm.seed)
    tokenizer = build_tokenizer()
    if prm.init is None:
        mlp = prm.intermediate_size
        config = _model_config(
            tokenizer, prm.hidden_size, prm.num_layers, intermediate_size=mlp, tie_word_embeddings=False
        )
        model = LlamaForCausalLM(config)
    else:
        base = LlamaForCausalLM.from_pretrained(str(out / prm.init))
        config = base.config
        config.num_hidden_layers += prm.extra_layers
        config.tie_word_embeddings = False  # the verdict tokens "+"/"-" are also operators: read them out separately
        model = LlamaForCausalLM(config)
        model.load_state_dict(base.state_dict(), strict=False)
        model.lm_head.weight.data.copy_(base.get_input_embeddings().weight.data)
        for layer in model.model.layers[len(model.model.layers) - prm.extra_layers :]:  # new layers start as identity
            torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
            torch.nn.init.zeros_(layer.mlp.down_proj.weight)
    tag_id = tokenizer.convert_tokens_to_ids(DEFAULT_STEP_TAG)
    good_id = tokenizer.encode(DEFAULT_GOOD_TOKEN, add_special_tokens=False)[0]
    bad_id = tokenizer.encode(DEFAULT_BAD_TOKEN, add_special_tokens=False)[0]
    digit_ids = torch.tensor([tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])
    loop = PolicyRecipe(hidden_size=0, num_layers=0, steps=prm.steps, learning_rate=prm.learning_rate, seed=prm.seed)
    held_out_rng = random.Random(prm.seed + 1)
    held_out = [pair for d in range(1, MAX_DIFFICULTY + 1) for pair in prm_solutions(60, prm.teacher, held_out_rng, d)]
    weights = torch.tensor([1.0, prm.wrong_weight])

    def encode(batch: list[tuple[ArithProblem, list[str]]]) -> tuple[torch.Tensor, ...]:
        """Ids, mask, the step tags' labels and the result digits' labels (0 good, 1 bad, -100 none)."""
        texts = [math_shepherd_text(p.problem, s) for p, s in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, return_offsets_mapping=True)
        labels = torch.full_like(enc["input_ids"], -100)
        digits = torch.full_like(enc["input_ids"], -100)
        facts = torch.full_like(enc["input_ids"], -100)
        for row, (p, s) in enumerate(batch):
            positions = (enc["input_ids"][row] == tag_id).nonzero().flatten().tolist()
            for pos, ok in zip(positions, check_steps(p.problem, s), strict=True):
                labels[row, pos] = 0 if ok else 1
            if not (prm.digit_labels or prm.fact_weight):
                continue
            token_at = {start: i for i, (start, end) in enumerate(enc["offset_mapping"][row].tolist()) if end > start}
            if prm.digit_labels:
                for offset, ok in _result_digits(p.problem, s):
                    digits[row, token_at[offset]] = 0 if ok else 1
            if prm.fact_weight:
                for offset, result in _fact_results(p.problem, s):
                    facts[row, token_at[offset] - 1] = result  # read out where the digit is predicted
        return enc["input_ids"], enc["attention_mask"], labels, digits, facts

    def make_batch(r: random.Random, step: int) -> tuple[torch.Tensor, ...]:
        return encode(prm_solutions(loop.batch_size, prm.teacher, r, r.randint(1, MAX_DIFFICULTY), prm.temperatures))

    def pair_logits(m: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return m(input_ids=ids, attention_mask=mask).logits[..., [good_id, bad_id]]

    def prm_loss(
        m: LlamaForCausalLM,
        ids: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        digits: torch.Tensor,
        facts: torch.Tensor,
    ) -> torch.Tensor:
        logits = m(input_ids=ids, attention_mask=mask).logits
        targets = torch.where(labels != -100, labels, digits).reshape(-1)
        verdicts = logits[..., [good_id, bad_id]].reshape(-1, 2)
        loss = torch.nn.functional.cross_entropy(verdicts, targets, weight=weights, ignore_index=-100)
        if prm.fact_weight:
            at = facts != -100
            loss = loss + prm.fact_weight * torch.nn.functional.cross_entropy(logits[at][:, digit_ids], facts[at])
        return loss

    @torch.no_grad()
    def evaluate(data: list[tuple[ArithProblem, list[str]]]) -> dict[str, float]:
        model.eval()
        right: list[float] = []
        wrong: list[float] = []
        for start in range(0, len(data), 64):
            ids, mask, labels, *_ = encode(data[start : start + 64])
            good = torch.softmax(pair_logits(model, ids, mask).float(), -1)[..., 0]
            keep = labels != -100
            right += good[keep & (labels == 0)].tolist()
            wrong += good[keep & (labels == 1)].tolist()
        model.train()
        hits = sum(s >= 0.5 for s in right) + sum(s < 0.5 for s in wrong)
        return {
            "step_accuracy": round(hits / (len(right) + len(wrong)), 4),
            "right_steps": len(right),
            "wrong_steps": len(wrong),
            "auroc": round(auroc(right, wrong), 4),
        }

    def log(step: int) -> None:
        if step % 500 == 0:
            print(f"[{name}] step {step} held-out {evaluate(held_out)}", flush=True)

    seconds = _train_loop(
        model, loop, make_batch, prm_loss, partial=out / f"{name}.partial", save_every=save_every, on_log=log
    )
    target = out / name
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    info = {
        "name": name,
        "init": f"{prm.init} + {prm.extra_layers} layers" if prm.init else "from scratch",
        "parameters": sum(p.numel() for p in model.parameters()),
        "recipe": asdict(prm),
        "train_seconds": round(seconds, 1),
        "held_out_teacher_samples": evaluate(held_out),
        "provenance": provenance,
    }
    (target / "training.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return info


def main(argv: list[str] | None = None) -> None:
    """Command line: train one or all checkpoints."""
    names = [*RECIPES, *PRM_RECIPES]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="Directory that receives one folder per checkpoint.")
    parser.add_argument("--only", choices=names, help="Train just this checkpoint.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--steps", type=int, default=0, help="Override the number of training steps (trials).")
    parser.add_argument("--save-every", type=int, default=250, help="Steps between resumable states.")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="Re-measure a trained policy's greedy accuracy and update its training.json (no training).",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if args.only not in (None, name):
            continue
        if name in RECIPES and args.evaluate_only:
            reevaluate(args.out / name)
        elif name in RECIPES:
            recipe = RECIPES[name]
            if args.steps:
                recipe = replace(recipe, steps=args.steps)
            train_policy(name, args.out, recipe=recipe, save_every=args.save_every)
        else:
            prm = PRM_RECIPES[name]
            prm = replace(prm, steps=args.steps) if args.steps else prm
            train_prm(name, args.out, recipe=prm, save_every=args.save_every)


PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
"""PyTorch's and MKL's AVX2 kernels on every x86-64 CPU: the same rounding, so the same weights.

On an AVX-512 CPU both libraries otherwise pick wider kernels that round differently: the realistic
PRM's log then differs from step 300 on and ends about 2 points of held-out step accuracy away. Both
are read when torch loads, so :func:`pinned` restarts the script with them set.
"""


def pinned() -> None:
    """Restart this script with :data:`PINNED_KERNELS` in the environment unless they are set already."""
    missing = {k: v for k, v in PINNED_KERNELS.items() if k not in os.environ}
    if missing:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **missing})


if __name__ == "__main__":
    pinned()
    main()
