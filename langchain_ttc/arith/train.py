"""Train the Arith checkpoints from scratch: a small and a large policy, and a Math-Shepherd PRM.

In: nothing but seeds and step counts. Out: three Hugging Face directories (``small``, ``large``,
``prm``) with safetensors weights, a standard ``LlamaForCausalLM`` config, the Arith tokenizer and a
chat template, plus a ``training.json`` with the recipe and the measured accuracies.

The recipe (measured on 2 CPU cores): byte-level Llama models (hidden 128, 2 layers, head_dim 64,
0.46M parameters), AdamW at 1e-3 constant after a warm-up, batch 32 (one difficulty per batch),
2400 steps, the loss on solution tokens only, a curriculum (1-2 steps for the first 15%, then 1-4
until 30%, then 1-8). Training these tiny models is seed-sensitive: both policies use seed 1.

The policies are imperfect on purpose, in a way that makes accuracy fall gradually with the number
of steps instead of at a cliff: each policy has *misconceptions*, a fixed random set of arithmetic
facts (12% of the 300 for the small policy, 4% for the large one) for which its training solutions
write a wrong result 75% of the time and carry on consistently from it. Greedy decoding then errs
on about that fraction of steps wherever they occur, so accuracy decays roughly like (1 - f)^steps;
sampling still finds the right result 25% of the time, which a PRM can recognise and majority
voting cannot (the wrong result is the mode), the situation where verifier-guided search pays.
The PRM starts from the small policy's weights and learns P("+") at each step tag (1200 steps, lr
5e-4) on 6000 solutions sampled from the small policy at temperature 1, each step labelled by the
exact checker (Math-Shepherd-style automatic labels).

Run (regenerates the shipped checkpoints; measured here: 18 min per policy on one core each, the
policies in parallel, then 15 min for the PRM; about 35 minutes in all on 2 CPU cores)::

    python -m langchain_ttc.arith.train --out langchain_ttc/arith/models --only small --threads 1 &
    python -m langchain_ttc.arith.train --out langchain_ttc/arith/models --only large --threads 1
    python -m langchain_ttc.arith.train --out langchain_ttc/arith/models --only prm
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from langchain_ttc.arith.problems import (
    MAX_DIFFICULTY,
    OPERATORS,
    STEP_DELIMITER,
    ArithProblem,
    apply_operator,
    check_steps,
    make_problem,
    make_problems,
    parse_expression,
    solve_expression,
    split_steps,
)
from langchain_ttc.arith.tokenizer import build_tokenizer
from langchain_ttc.engines.math_shepherd_format import (
    DEFAULT_BAD_TOKEN,
    DEFAULT_GOOD_TOKEN,
    DEFAULT_STEP_TAG,
    math_shepherd_text,
)


@dataclass(kw_only=True)
class PolicyRecipe:
    """How one Arith policy is built and trained."""

    hidden_size: int
    num_layers: int
    steps: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    curriculum: tuple[tuple[float, int], ...] = ((0.15, 2), (0.3, 4), (1.0, MAX_DIFFICULTY))
    misconception_fraction: float = 0.0
    misconception_rate: float = 0.75
    misconception_seed: int = 0
    seed: int = 0


RECIPES = {
    "small": PolicyRecipe(
        hidden_size=128, num_layers=2, steps=2400, misconception_fraction=0.12, misconception_seed=1, seed=1
    ),
    # Same size and training seed, a third of the misconceptions: a stronger model. (In our runs a wider
    # model, hidden 192, learned long chains worse than the small one, and seed 2 did not learn in 1800
    # steps: training these tiny models is seed-sensitive.)
    "large": PolicyRecipe(
        hidden_size=128, num_layers=2, steps=2400, misconception_fraction=0.04, misconception_seed=2, seed=1
    ),
}


def misconceptions(fraction: float, seed: int) -> dict[tuple[int, str, int], int]:
    """A fixed random set of arithmetic facts, each mapped to a wrong result."""
    rng = random.Random(seed)
    facts = [(a, op, b) for a in range(10) for op in OPERATORS for b in range(10)]
    chosen = rng.sample(facts, round(fraction * len(facts)))
    return {fact: (apply_operator(*fact) + rng.randint(1, 9)) % 10 for fact in chosen}


def training_solution(expression: str, recipe: PolicyRecipe, rng: random.Random) -> str:
    """A training solution: exact, except on the recipe's misconceptions (wrong at its rate)."""
    wrong = misconceptions(recipe.misconception_fraction, recipe.misconception_seed)

    def compute(left: int, op: str, right: int) -> int:
        fact = (left, op, right)
        if fact in wrong and rng.random() < recipe.misconception_rate:
            return wrong[fact]
        return apply_operator(left, op, right)

    steps, _ = solve_expression(expression, compute)
    return STEP_DELIMITER.join(steps)


def _model_config(tokenizer: PreTrainedTokenizerBase, hidden_size: int, num_layers: int) -> LlamaConfig:
    head_dim = 64
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_layers,
        num_attention_heads=hidden_size // head_dim,
        num_key_value_heads=hidden_size // head_dim,
        head_dim=head_dim,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
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


def _batch(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], targets: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 outside the targets)."""
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    rows = [p + t for p, t in zip(prompt_ids, target_ids, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, row) in enumerate(zip(prompt_ids, rows, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, len(p) : len(row)] = torch.tensor(row[len(p) :])
    return ids, mask, labels


def _learning_rate(step: int, recipe: PolicyRecipe) -> float:
    return recipe.learning_rate * min(1.0, (step + 1) / recipe.warmup_steps)


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
        out = model.generate(**encoded, max_new_tokens=200, do_sample=False, pad_token_id=tokenizer.pad_token_id)  # type: ignore[misc]
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
    loss_fn: Callable[[LlamaForCausalLM, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    log_every: int = 100,
    on_log: Callable[[int], None] | None = None,
) -> None:
    rng = random.Random(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    started = time.time()
    running = 0.0
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, recipe)
        ids, mask, labels = make_batch(rng, step)
        loss = loss_fn(model, ids, mask, labels)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        if (step + 1) % log_every == 0:
            rate = (time.time() - started) / (step + 1)
            print(f"step {step + 1}/{recipe.steps} loss {running / log_every:.4f} {rate:.2f}s/step", flush=True)
            running = 0.0
            if on_log is not None:
                on_log(step + 1)


def train_policy(name: str, out: Path, *, recipe: PolicyRecipe) -> dict[str, Any]:
    """Train one policy from scratch and save it to ``out / name``."""
    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM(_model_config(tokenizer, recipe.hidden_size, recipe.num_layers))

    def make_batch(rng: random.Random, step: int) -> tuple[torch.Tensor, ...]:
        difficulty = rng.randint(1, _difficulty_cap(step, recipe))  # one difficulty per batch: little padding
        problems = [make_problem(rng, difficulty) for _ in range(recipe.batch_size)]
        solutions = [training_solution(parse_expression(p.problem), recipe, rng) for p in problems]
        return _batch(
            tokenizer,
            [_prompt(tokenizer, p.problem) for p in problems],
            [solution + tokenizer.eos_token for solution in solutions],
        )

    def log(step: int) -> None:
        if step % 300 == 0 or step == recipe.steps:
            acc = accuracy_by_difficulty(model, tokenizer, per_difficulty=16, seed=10_000 + step)
            report = " ".join(f"{d}:{a:.2f}" for d, a in acc.items())
            print(f"[{name}] step {step} greedy accuracy {report}", flush=True)

    started = time.time()
    _train_loop(model, recipe, make_batch, _lm_loss, on_log=log)
    seconds = time.time() - started
    target = out / name
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    accuracy = accuracy_by_difficulty(model, tokenizer, per_difficulty=100, seed=777)
    info = {"name": name, "recipe": asdict(recipe), "train_seconds": round(seconds, 1), "greedy_accuracy": accuracy}
    (target / "training.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return info


def _lm_loss(model: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


@torch.no_grad()
def sample_solutions(
    policy_dir: Path, problems: list[ArithProblem], *, samples: int, temperature: float, seed: int
) -> list[tuple[ArithProblem, list[str]]]:
    """Sample ``samples`` solutions per problem from a saved policy; return (problem, steps) pairs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir))
    model = LlamaForCausalLM.from_pretrained(str(policy_dir))
    model.eval()
    torch.manual_seed(seed)
    pairs = []
    for start in range(0, len(problems), 32):
        chunk = problems[start : start + 32]
        encoded = tokenizer(
            [_prompt(tokenizer, p.problem) for p in chunk], return_tensors="pt", padding=True, add_special_tokens=False
        )
        out = model.generate(  # type: ignore[misc]
            **encoded,
            max_new_tokens=200,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            num_return_sequences=samples,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in enumerate(texts):
            steps = split_steps(text)
            if steps:
                pairs.append((chunk[i // samples], steps))
    return pairs


def train_prm(out: Path, *, init: Path, sampler: Path, steps: int = 1200, seed: int = 3) -> dict[str, Any]:
    """Fine-tune a Math-Shepherd PRM from ``init`` on checker-labelled samples of ``sampler``."""
    from transformers import AutoTokenizer

    started = time.time()
    rng = random.Random(seed)
    problems = [make_problem(rng, rng.randint(1, MAX_DIFFICULTY)) for _ in range(1500)]
    pairs = sample_solutions(sampler, problems, samples=4, temperature=1.0, seed=seed)
    held_out = pairs[-400:]
    pairs = pairs[:-400]
    print(f"sampled {len(pairs) + len(held_out)} solutions in {time.time() - started:.0f}s", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(str(init))
    model = LlamaForCausalLM.from_pretrained(str(init))
    tag_id = tokenizer.convert_tokens_to_ids(DEFAULT_STEP_TAG)
    good_id = tokenizer.encode(DEFAULT_GOOD_TOKEN, add_special_tokens=False)[0]
    bad_id = tokenizer.encode(DEFAULT_BAD_TOKEN, add_special_tokens=False)[0]
    recipe = PolicyRecipe(hidden_size=0, num_layers=0, steps=steps, batch_size=32, learning_rate=5e-4, seed=seed)

    def encode(batch_pairs: list[tuple[ArithProblem, list[str]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        texts = [math_shepherd_text(p.problem, s) for p, s in batch_pairs]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = torch.full_like(enc["input_ids"], -100)
        for row, (p, s) in enumerate(batch_pairs):
            positions = (enc["input_ids"][row] == tag_id).nonzero().flatten().tolist()
            for pos, ok in zip(positions, check_steps(p.problem, s), strict=True):
                labels[row, pos] = 0 if ok else 1
        return enc["input_ids"], enc["attention_mask"], labels

    def make_batch(r: random.Random, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return encode(r.sample(pairs, recipe.batch_size))

    def pair_logits(m: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = m(input_ids=ids, attention_mask=mask).logits
        return logits[..., [good_id, bad_id]]

    def prm_loss(m: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = pair_logits(m, ids, mask)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def step_accuracy(data: list[tuple[ArithProblem, list[str]]]) -> dict[str, float]:
        model.eval()
        hits = total = positives = 0
        for start in range(0, len(data), 64):
            ids, mask, labels = encode(data[start : start + 64])
            pred = pair_logits(model, ids, mask).argmax(-1)
            keep = labels != -100
            hits += int((pred[keep] == labels[keep]).sum())
            total += int(keep.sum())
            positives += int((labels[keep] == 0).sum())
        model.train()
        return {"step_accuracy": hits / total, "positive_fraction": positives / total, "steps": total}

    def log(step: int) -> None:
        if step % 400 == 0:
            print(f"[prm] step {step} held-out {step_accuracy(held_out)}", flush=True)

    _train_loop(model, recipe, make_batch, prm_loss, on_log=log)
    target = out / "prm"
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    info = {
        "name": "prm",
        "init": init.name,
        "sampler": sampler.name,
        "train_solutions": len(pairs),
        "steps": steps,
        "train_seconds": round(time.time() - started, 1),
        "held_out": step_accuracy(held_out),
    }
    (target / "training.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return info


def main(argv: list[str] | None = None) -> None:
    """Command line: train one or all checkpoints."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="Directory that receives small/, large/ and prm/.")
    parser.add_argument("--only", choices=["small", "large", "prm"], help="Train just this checkpoint.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("small", "large"):
        if args.only in (None, name):
            train_policy(name, args.out, recipe=RECIPES[name])
    if args.only in (None, "prm"):
        train_prm(args.out, init=args.out / "small", sampler=args.out / "small")


if __name__ == "__main__":
    main()
