"""Difficulty bands of the Arith study: the small policy's own exact process pass@1 (Snell et al.'s oracle difficulty).

Snell et al. (2024) bin problems by the base policy's pass@1, estimated from 2048 samples. In the Arith
world the right derivation is one exact text (the gold solution), so the policy's process pass@1 at a
temperature is the probability of that text, computed exactly from one forward pass: the product of
the gold tokens' probabilities under the softmax of the logits over the temperature (top_p 1).

Bands are the quartiles of that probability over a calibration pool of problems of 1-9 steps (drawn
with their own seed, never reused for a test), so each band holds a quarter of the problems; the
thresholds are written into every report that uses them. Chains of 10-12 steps are left out: the
small policy miscopies their long remaining expression at every temperature (its process pass@64 at
11 and 12 steps is 0% on 16 problems each, `benchmarks/results/arith_models_v3.md`), so search has
nothing to find.

Example (needs the checkpoints)::

    policy = TransformersPolicy.from_pretrained(arith_checkpoint("small"))
    thresholds = band_thresholds(policy)
    band_of(exact_pass_at_1(policy, problems)[0], thresholds)
"""

from __future__ import annotations

import torch

from langchain_ttc.arith import make_problems
from langchain_ttc.arith.problems import ArithProblem
from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.engines.transformers_policy import TransformersPolicy

BAND_NAMES = ("easy", "medium", "hard", "hardest")
STEPS = (1, 9)
"""The chain lengths the study draws from."""
CALIBRATION_SEED = 424_242
CALIBRATION_POOL = 400


@torch.no_grad()
def exact_pass_at_1(
    policy: TransformersPolicy, problems: list[ArithProblem], *, temperature: float = 0.8, batch_size: int = 32
) -> list[float]:
    """P(the policy samples the gold solution, then end of sequence) at ``temperature``, per problem."""
    tokenizer, model = policy.tokenizer, policy.model
    rows, spans = [], []
    for problem in problems:
        request = GenerationRequest(messages=[{"role": "user", "content": problem.problem}])
        before = prompt_token_ids(tokenizer, request)  # exactly what the engines feed the model
        target = tokenizer(problem.solution + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append(before + target)
        spans.append((len(before), len(before) + len(target)))
    probabilities = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, row in enumerate(chunk):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float() / temperature, dim=-1)
        for i, row in enumerate(chunk):
            low, high = spans[start + i]
            picked = logp[i, low - 1 : high - 1].gather(-1, torch.tensor(row[low:high]).unsqueeze(-1))
            probabilities.append(float(picked.sum().exp()))
    return probabilities


def band_thresholds(policy: TransformersPolicy) -> list[float]:
    """The quartiles of the exact pass@1 over the calibration pool: a problem above the first is easy, ..."""
    pool = make_problems(CALIBRATION_POOL, STEPS, seed=CALIBRATION_SEED)
    ordered = sorted(exact_pass_at_1(policy, pool), reverse=True)
    return [ordered[len(ordered) * q // 4] for q in (1, 2, 3)]


def band_of(pass_at_1: float, thresholds: list[float]) -> str:
    """The band of a problem with this exact pass@1 (thresholds from :func:`band_thresholds`, decreasing)."""
    return next((name for name, low in zip(BAND_NAMES, thresholds, strict=False) if pass_at_1 >= low), BAND_NAMES[-1])


def problems_by_band(
    policy: TransformersPolicy, per_band: int, *, seed: int, thresholds: list[float]
) -> dict[str, list[tuple[ArithProblem, float]]]:
    """``per_band`` fresh problems of 1-9 steps in each band (drawn in order from ``seed``, each with its pass@1)."""
    bands: dict[str, list[tuple[ArithProblem, float]]] = {name: [] for name in BAND_NAMES}
    draw = 0
    while any(len(found) < per_band for found in bands.values()):
        batch = make_problems(4 * per_band, STEPS, seed=seed + draw)
        draw += 1
        for problem, p in zip(batch, exact_pass_at_1(policy, batch), strict=True):
            found = bands[band_of(p, thresholds)]
            if len(found) < per_band:
                found.append((problem, p))
    return bands
