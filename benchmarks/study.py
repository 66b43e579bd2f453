"""The study (v3): when does a small policy that searches with a verifier beat a policy 3.7x its size.

Every strategy of the Hugging Face write-up (majority vote, best-of-N, weighted best-of-N, beam
search, DVTS) plus particle filtering and the compute-optimal router, at N = 4, 16, 64, 256 (the
searches and the router at 256 with ``--search-256``), under each verifier of the ladder (the
realistic ``prm`` first, then the near-perfect ``prm-in-distribution``), on Arith problems in four
difficulty bands (quartiles of the small policy's exact process pass@1, ``benchmarks/_bands.py``).
Every design choice is a constant below, frozen before any test problem is drawn, and written into
the report; the findings F1-F7 restate the write-up's claims, each met or not by a pre-stated rule on
paired counts with an exact McNemar test (``benchmarks/_stats.py``); where one does not hold the
report shows why, with traces. Compute is counted in FLOPs of every model: 2 x parameters x tokens
the policy generated and read (prompts) plus 2 x parameters x tokens the verifier read.

    python benchmarks/study.py [--models DIR] [--prm-dir NAME=PATH ...] [--verifiers prm prm-in-distribution]
        [--per-band 200] [--per-band-other 60] [--calibration-per-band 40] [--search-256]
        [--only-verifier V ...] [--only-strategy S ...] [--budgets N ...] [--out DIR] [--report-only] [--traces]

Writes ``<out>/study.md`` (default ``benchmarks/results``), ``study_<verifier>.png`` (accuracy against
N per band), ``study_<verifier>_flops.png`` and the records under ``<out>/study_records/``
(``benchmarks/_study_runs.py``: one resumable JSONL file per verifier, strategy and N; rerun the same
command to resume; ``--report-only`` rebuilds the report from them without loading a model).

Time. Measured by a smoke run (2 problems per band, N = 4 and 16, --concurrency 8 --threads 1, both CPU
cores busy with training, the v2 PRM of 919,680 parameters standing in for both verifiers): seconds per
problem (wall time of a stage / its problems): greedy 0.2; the pool 0.026 per sample; a verifier's
scores 0.023 per sample; beam search 0.9 at N=4, 3.3 at 16; DVTS 1.2, 2.2; particle filtering 1.8, 2.1;
the router 0.6, 2.2; the router's calibration 26-47 per problem (every candidate at 4, 16, 64). Taking
64 as 4x the cost of 16 (and 256 as 16x), the defaults (800 test problems, 240 in the nested set, 160
for each calibration) take about 14 hours on these two cores:

- greedy (both policies) 5 min; the pool (70,400 samples) 30 min; scores: prm 27 min, prm-in-distribution 24 min;
- under prm: the three searches and the router at N=4 (800 problems) 1 h, at 16 (800) 2.2 h, at 64 (240) 2.6 h;
- under prm-in-distribution (240 problems): 0.3 h, 0.7 h, 2.6 h;
- the router's calibration: 1.6 h per verifier;
- ``--search-256`` adds about 30 h (the searches and the router at 256 on 240 problems, 10 h per verifier,
  and the calibration at 256). Free cores and the v3 verifiers (at most the large policy's size) are faster.

Commands for the full run, in parts (each resumable: rerun a part to continue it; give every part the same
design options, ``--models``, ``--prm-dir``, ``--verifiers``, the sizes and ``--search-256`` or not; a part run
under another design is refused)::

    M=""  # the package's checkpoints (v3); --models DIR reads a training run's instead
    python benchmarks/study.py $M --only-verifier prm --only-strategy greedy majority_vote best_of_n weighted_best_of_n
    python benchmarks/study.py $M --only-verifier prm-in-distribution --only-strategy majority_vote best_of_n \
        weighted_best_of_n
    python benchmarks/study.py $M --only-verifier prm --only-strategy beam_search dvts particle_filtering --budgets 4 16
    python benchmarks/study.py $M --only-verifier prm --only-strategy beam_search dvts particle_filtering --budgets 64
    python benchmarks/study.py $M --only-verifier prm --only-strategy compute_optimal
    python benchmarks/study.py $M --only-verifier prm-in-distribution --only-strategy beam_search dvts \
        particle_filtering
    python benchmarks/study.py $M --only-verifier prm-in-distribution --only-strategy compute_optimal
    python benchmarks/study.py $M --traces       # traces of the comparisons not met (minutes)
    python benchmarks/study.py --report-only     # the report again from the records, no model loaded

Every part ends by rewriting the report from whatever records exist (a finding whose runs are missing says
"not run"). The records of one study stay in one ``--out``; another design needs another ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _study_report as rep
import _study_runs as runs
import _study_traces as traces
from _bands import BAND_NAMES, CALIBRATION_POOL, CALIBRATION_SEED, STEPS
from _report import RESULTS, header
from _stats import Claim, Paired, Verdict, compare, cross_fitted, stratified_folds, verdict

from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.aggregation import aggregate
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.types import Candidate, ScoreRequest
from langchain_ttc.evaluation.fit import accuracy
from langchain_ttc.evaluation.records import RunInterrupted, read_jsonl
from langchain_ttc.evaluation.run import grade
from langchain_ttc.strategies.config import validated
from langchain_ttc.strategies.context import TTCContext
from langchain_ttc.wiring import applicable, strategy_spec

# ---- The frozen design (decided before any test problem is drawn; every value goes into the report) ----
TEST_SEED = 31_000_000
"""Test problems: ``_bands.problems_by_band`` from this seed (draws seed, seed + 1, ...)."""
ROUTER_SEED = 32_000_000
"""The router's calibration problems (same band sampler, this seed, none of the test problems) and its sampling."""
SAMPLING_SEED = 33_000_000
"""Every run's sampling seed, derived per problem (the same for every strategy and verifier)."""
TEMPERATURE = 0.8
TOP_P = 1.0
AGGREGATION = "last"
BEAM_WIDTH = 4
MAX_TOKENS = 256
"""Per whole solution (samplers, greedy) and per step (searches)."""
DELIMITER = "\n\n"
SAMPLERS = ("majority_vote", "best_of_n", "weighted_best_of_n")
SEARCHES = ("beam_search", "dvts", "particle_filtering")
ROUTER = "compute_optimal"
FIXED = ("beam_search", "best_of_n", "dvts", "majority_vote", "particle_filtering", "weighted_best_of_n")
"""The fixed strategies in the tie order: alphabetical. Ties in every choice (the router's table, the
best fixed strategy on held-out folds, the oracle) go to the earliest; the held-out comparison is
also shown with the reverse order."""
SAMPLER_BUDGETS = (4, 16, 64, 256)
SEARCH_BUDGETS = (4, 16, 64)
"""Searches and the router; 256 too with ``--search-256``."""
MAIN_BUDGETS = (4, 16)
"""Under the first verifier (the realistic PRM) these run on ``--per-band`` problems per band; every
other (verifier, N) on the first ``--per-band-other`` of each band (nested, so comparisons pair)."""
PER_BAND, PER_BAND_OTHER, CALIBRATION_PER_BAND = 200, 60, 40
POOL_MAIN, POOL_OTHER = max(MAIN_BUDGETS), max(SAMPLER_BUDGETS)
"""Samples in a problem's pool: the samplers at N use its first N."""
ROUTER_SETTINGS = {"pilots": 4, "estimator": "prm_score", "bins": 4, "folds": 2, "seed": ROUTER_SEED}
"""As ``ttc calibrate``'s defaults: 4 pilots (counted in the budget), difficulty 1 - mean pilot PRM score,
4 quantile bins, 2 held-out folds for its own accuracy estimate."""
HELD_OUT_FOLDS = 2
"""The best fixed strategy is chosen on held-out folds of the test problems (alternating in draw order, band
after band)."""
MARGIN, ALPHA = 0.02, 0.05
"""A "≥" claim is met when significant (exact McNemar p < ALPHA) or when A is at most MARGIN below B and B
is not significantly better; a ">" claim only when significant."""
HARD, EASY = ("hard", "hardest"), ("easy", "medium")
""""Hard problems": the two hardest quartiles pooled; "easy and medium problems": the two easiest pooled."""
TRACE_PROBLEMS, TRACE_ATTEMPTS = 2, 8
"""Traces per comparison not met: the first problems (draw order) that B got right and A wrong; a search is
rerun with ``record_tree=True`` up to TRACE_ATTEMPTS times (new seeds) until it fails there again."""
VERIFIERS = ("prm", "prm-in-distribution")
SAMPLING = {"temperature": TEMPERATURE, "top_p": TOP_P, "max_tokens": MAX_TOKENS, "aggregation": AGGREGATION}


def options() -> dict[str, Any]:
    """The options every strategy graph gets (those its config has)."""
    return {**SAMPLING, "beam_width": BEAM_WIDTH, "step_delimiter": DELIMITER}


def strategy_settings() -> dict[str, dict[str, Any]]:
    """Each strategy's validated config at N = 16 with the design's options: the library's defaults, frozen too."""
    return {
        s: validated(strategy_spec(s).config, n=16, **applicable(s, options())).model_dump(exclude={"n", "seed"})
        for s in (*SAMPLERS, *SEARCHES)
    }


def model_paths(args: argparse.Namespace) -> dict[str, Path]:
    overrides = dict(item.split("=", 1) for item in args.prm_dir)
    names = ("small", "large", *args.verifiers)
    return {
        name: Path(overrides[name])
        if name in overrides
        else (args.models / name if args.models else arith_checkpoint(name))
        for name in names
    }


def weights_digest(path: Path) -> str:
    """A checkpoint's identity in the design: the SHA-256 of its weights.

    The same model read from a training run's directory or from the package, once it ships, is the same design.
    """
    return "sha256:" + hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def design_of(args: argparse.Namespace, paths: dict[str, Path]) -> dict[str, Any]:
    """Everything that decides the records (a part run under another design is refused)."""
    return {
        "version": 3,
        "test_seed": TEST_SEED,
        "router_seed": ROUTER_SEED,
        "sampling_seed": SAMPLING_SEED,
        "bands": {
            "names": list(BAND_NAMES),
            "steps": list(STEPS),
            "calibration_pool": CALIBRATION_POOL,
            "calibration_seed": CALIBRATION_SEED,
        },
        "sampling": SAMPLING,
        "beam_width": BEAM_WIDTH,
        "delimiter": DELIMITER,
        "fixed_tie_order": list(FIXED),
        "sampler_budgets": list(SAMPLER_BUDGETS),
        "search_budgets": search_budgets(args),
        "main_budgets": list(MAIN_BUDGETS),
        "per_band": args.per_band,
        "per_band_other": args.per_band_other,
        "calibration_per_band": args.calibration_per_band,
        "pools": [POOL_MAIN, POOL_OTHER],
        "router": ROUTER_SETTINGS,
        "held_out_folds": HELD_OUT_FOLDS,
        "margin": MARGIN,
        "alpha": ALPHA,
        "hard": list(HARD),
        "easy": list(EASY),
        "verifiers": list(args.verifiers),
        "models": {k: weights_digest(v) for k, v in paths.items()},
        "strategies": strategy_settings(),
    }


def search_budgets(args: argparse.Namespace) -> list[int]:
    return [*SEARCH_BUDGETS, 256] if args.search_256 else list(SEARCH_BUDGETS)


@dataclass
class Plan:
    """Which problems each (verifier, N) runs on."""

    design: dict[str, Any]
    test: list[runs.StudyProblem]

    @property
    def other(self) -> list[runs.StudyProblem]:
        """The nested set: the first ``per_band_other`` problems of each band."""
        return [p for p in self.test if p.rank < self.design["per_band_other"]]

    def problems(self, verifier: str, n: int) -> list[runs.StudyProblem]:
        """The problems ``verifier`` runs at ``n``: all of them under the first verifier at the main budgets."""
        main = verifier == self.design["verifiers"][0] and n in self.design["main_budgets"]
        return self.test if main else self.other

    def pool_size(self, problem: runs.StudyProblem) -> int:
        """Samples in the problem's pool: enough for every N it is scored at."""
        return POOL_OTHER if problem.rank < self.design["per_band_other"] else POOL_MAIN


# ---- Running ----
def run_sampling(runner: runs.Runner, models: runs.Models, plan: Plan, verifier: str, budgets: Sequence[int]) -> None:
    """The pool (shared by the verifiers), the verifier's scores of it, and the samplers' and ceilings' records."""
    needed = {p.id: p for n in budgets for p in plan.problems(verifier, n)}
    problems = [p for p in plan.test if p.id in needed]
    sizes = {p.id: plan.pool_size(p) for p in plan.test}
    sampling = {k: v for k, v in SAMPLING.items() if k != "aggregation"}
    pool = runner.run(
        "policy", "pool", problems, runs.pool_work(models.policy("small"), sizes, seed=SAMPLING_SEED, **sampling)
    )
    scores = runner.run(
        verifier,
        "scores",
        problems,
        runs.scores_work(models.verifier(verifier), pool, aggregation=AGGREGATION, delimiter=DELIMITER),
    )
    derive(runner, plan, verifier, pool, scores)


def derive(runner: runs.Runner, plan: Plan, verifier: str, pool: dict[str, Any], scores: dict[str, Any]) -> None:
    """Rewrite the samplers' records at every N from the pool and the scores, and the ceilings pass@N."""
    rows: dict[str, list[dict[str, Any]]] = {}
    ceilings: dict[str, list[dict[str, Any]]] = {}
    scored_at = {n: {p.id for p in plan.problems(verifier, n)} for n in SAMPLER_BUDGETS}
    for problem in plan.test:
        if problem.id not in pool:
            continue
        line = pool[problem.id]
        candidates = runs.pool_candidates(line, DELIMITER)
        if problem.id in scores:
            candidates = [
                c.model_copy(update={"score": s}) for c, s in zip(candidates, scores[problem.id]["scores"], strict=True)
            ]
        prm_tokens = scores[problem.id]["prm_tokens"] if problem.id in scores else None
        for n in SAMPLER_BUDGETS:
            if n > len(candidates):
                continue
            first = candidates[:n]
            usage = {
                "prompt_tokens": line["prompt_tokens"],
                "completion_tokens": sum(c.num_tokens for c in first),
                "policy_calls": 1,
            }
            right = [grade(c.answer, problem.answer) for c in first]
            process = [runs.process_right(problem, c) for c in first]
            common = {"id": problem.id, "band": problem.band, "usage": {k: usage.get(k, 0) for k in runs.USAGE_KEYS}}
            ceilings.setdefault(f"pass@{n}", []).append({**common, "correct": any(right)})
            ceilings.setdefault(f"process_pass@{n}", []).append({**common, "correct": any(process)})
            if problem.id not in scored_at[n]:
                continue
            for strategy in SAMPLERS:
                needs = strategy_spec(strategy).needs_prm
                if needs and prm_tokens is None:
                    continue
                chosen = strategy_spec(strategy).vote(first).chosen_index  # type: ignore[misc]
                spent = {**usage, "prm_tokens": sum(prm_tokens[:n]), "prm_calls": 1} if needs else usage
                rows.setdefault(f"{strategy}@{n}", []).append(
                    runs.outcome(
                        problem,
                        None if chosen is None else first[chosen].answer,
                        spent,
                        process=chosen is not None and process[chosen],
                    )
                )
    for key, records in rows.items():
        runner.rewrite(verifier, key, records)
    for key, records in ceilings.items():
        runner.rewrite("policy", key, records)


def run_all(args: argparse.Namespace, paths: dict[str, Path], design: dict[str, Any], records: Path) -> None:
    digest = runs.check_design(records, design)
    models = runs.Models(paths, records)
    _, test, calibration = runs.load_or_draw(models, records, design=design)
    plan = Plan(design, test)
    runner = runs.Runner(records, digest, concurrency=args.concurrency)
    chosen = set(args.only_strategy or ["greedy", *SAMPLERS, *SEARCHES, ROUTER])
    budgets = [n for n in args.budgets or SAMPLER_BUDGETS]
    if "greedy" in chosen:
        for name in ("small", "large"):
            work = runs.greedy_work(models.policy(name), max_tokens=MAX_TOKENS, delimiter=DELIMITER)
            runner.run("policy", f"{name}_greedy@1", plan.test, work)
    for verifier in args.only_verifier or args.verifiers:
        if chosen & set(SAMPLERS):
            run_sampling(runner, models, plan, verifier, [n for n in budgets if n in SAMPLER_BUDGETS])
        prm = models.verifier(verifier) if chosen & {*SEARCHES, ROUTER} else None
        for strategy in (s for s in SEARCHES if s in chosen):
            for n in (n for n in budgets if n in design["search_budgets"]):
                graph = runs.strategy_graph(strategy, models.policy("small"), prm, n, options())
                runner.run(
                    verifier, f"{strategy}@{n}", plan.problems(verifier, n), runs.graph_work(graph, seed=SAMPLING_SEED)
                )
        if ROUTER in chosen:
            table, _ = calibrate(models, verifier, calibration, records, digest, design, args.concurrency)
            for n in (n for n in budgets if n in design["search_budgets"]):
                graph = runs.strategy_graph(ROUTER, models.policy("small"), prm, n, {**options(), "table": str(table)})
                runner.run(
                    verifier, f"{ROUTER}@{n}", plan.problems(verifier, n), runs.graph_work(graph, seed=SAMPLING_SEED)
                )


def calibrate(
    models: runs.Models,
    verifier: str,
    problems: list[runs.StudyProblem],
    records: Path,
    digest: str,
    design: dict[str, Any],
    concurrency: int,
) -> tuple[Path, list[dict[str, Any]]]:
    return runs.calibrate_router(
        models,
        verifier,
        problems,
        directory=records / verifier / "router",
        digest=digest,
        concurrency=concurrency,
        budgets=design["search_budgets"],
        candidates=runs.router_candidates(FIXED, BEAM_WIDTH),
        router=ROUTER_SETTINGS,
        sampling={**SAMPLING},
    )


# ---- Findings ----
@dataclass(frozen=True)
class Row:
    """One paired comparison of a finding: A's key against B's, on the problems of ``bands``."""

    label: str
    paired: Paired
    claim: Claim
    verdict: Verdict
    counted: bool = True


@dataclass
class Finding:
    """A claim of the write-up under one verifier: its comparisons and whether they meet it."""

    id: str
    claim: str
    rule: str  # "all": every counted comparison met; "any": at least one
    rows: list[Row] = field(default_factory=list)
    note: str = ""
    vacuous: bool = False  # the runs exist but no comparison fits the claim: not met

    @property
    def met(self) -> bool | None:
        """Met by its rule over the counted comparisons; ``None`` when none was run."""
        counted = [r for r in self.rows if r.counted and r.paired.n]
        if not counted:
            return False if self.vacuous else None
        hits = [r.verdict.met for r in counted]
        return all(hits) if self.rule == "all" else any(hits)


CLAIMS = {
    "F1": "majority voting plateaus: majority_vote@64 ≥ majority_vote@256 (the gain from 64 to 256 within the margin)",
    "F2": "weighted best-of-N ≥ best-of-N at every N",
    "F3": "best-of-N degrades at large N under an imperfect verifier: best_of_n@16 > best_of_n@256",
    "F4": "beam search ≥ best-of-N at small N (4, 16) on hard problems",
    "F5": "DVTS ≥ beam search at large N (64, and 256 where run) on easy and medium problems",
    "F6": "the compute-optimal router ≥ every fixed strategy at each N, and ≥ the best fixed one chosen held out",
    "F7": "small + search (any strategy) at some N ≥ the large policy's greedy answer at equal or lower FLOPs",
}


def comparison(
    data: rep.StudyData,
    group: str,
    a: str,
    b: str,
    claim: Claim,
    label: str,
    *,
    bands: Sequence[str] | None = None,
    group_b: str | None = None,
    counted: bool = True,
) -> Row:
    paired = compare(data.correct(group, a, bands), data.correct(group_b or group, b, bands), a, b)
    return Row(label, paired, claim, verdict(paired, claim, margin=MARGIN, alpha=ALPHA), counted)


def router_baselines(data: rep.StudyData, group: str, n: int, records: Path) -> list[Row]:
    """The router against the best fixed strategy chosen on held-out folds (both tie orders) and the oracle."""
    router = data.correct(group, f"{ROUTER}@{n}")
    if len(router) < HELD_OUT_FOLDS:
        return []
    outcomes = {s: data.correct(group, f"{s}@{n}") for s in FIXED}
    by_band = {b: [p["id"] for p in data.problems if p["band"] == b and p["id"] in router] for b in BAND_NAMES}
    folds = stratified_folds(by_band, HELD_OUT_FOLDS)
    rows = []
    verdicts = []
    for name, order in (("alphabetical", FIXED), ("reverse alphabetical", tuple(reversed(FIXED)))):
        held_out, choices = cross_fitted(outcomes, folds, order)
        paired = compare(router, held_out, f"{ROUTER}@{n}", f"best fixed, held out ({name} ties: {', '.join(choices)})")
        v = verdict(paired, "at_least", margin=MARGIN, alpha=ALPHA)
        verdicts.append(v.met)
        rows.append(Row(f"N={n}, held-out best fixed, {name} tie order", paired, "at_least", v, counted=order == FIXED))
    if verdicts[0] == verdicts[1]:
        rows = rows[:1]  # the reverse order does not change the outcome: shown once (the note says so)
    oracle = oracle_outcomes(data, group, n, records)
    if oracle:
        paired = compare(router, oracle, f"{ROUTER}@{n}", "router given the true band (oracle)")
        rows.append(Row(f"N={n}, oracle", paired, "at_least", verdict(paired, "at_least", margin=MARGIN), False))
    return rows


def oracle_choices(records: list[dict[str, Any]], n: int) -> dict[str, str]:
    """Per true band, the calibration's best candidate at ``n``.

    The rule of ``fit_choices``: ties go to the more accurate over all the records, then to the tie order.
    """
    labels = [c.label() for c in runs.router_candidates(FIXED, BEAM_WIDTH)]
    available = [label for label in labels if all(label in r["correct"].get(str(n), {}) for r in records)]
    choices = {}
    for band in BAND_NAMES:
        members = [r for r in records if r["level"] == band]
        choices[band] = max(
            available, key=lambda la: (accuracy(members, n, la), accuracy(records, n, la), -labels.index(la))
        )
    return choices


def oracle_outcomes(data: rep.StudyData, group: str, n: int, records: Path) -> dict[str, bool]:
    path = records / group / "router" / "calibration_records.jsonl"
    calibration = [r for r in read_jsonl(path) if "correct" in r] if path.exists() else []
    if not calibration or str(n) not in calibration[0]["correct"]:
        return {}
    choices = {band: label.split("(")[0] for band, label in oracle_choices(calibration, n).items()}
    result = {}
    for i in data.correct(group, f"{ROUTER}@{n}"):
        fixed = data.correct(group, f"{choices[data.band_of(i)]}@{n}")
        if i in fixed:
            result[i] = fixed[i]
    return result


def findings(data: rep.StudyData, group: str, records: Path) -> list[Finding]:
    """F1-F7 under one verifier, from the records (a finding whose runs are missing is "not run")."""
    f = {fid: Finding(fid, text, "any" if fid == "F7" else "all") for fid, text in CLAIMS.items()}
    f["F1"].rows.append(comparison(data, group, "majority_vote@64", "majority_vote@256", "at_least", "N=64 vs 256"))
    f["F1"].rows.append(
        comparison(data, "policy", "pass@256", "pass@64", "better", "pass@N still rising (context)", counted=False)
    )
    for n in SAMPLER_BUDGETS:
        f["F2"].rows.append(comparison(data, group, f"weighted_best_of_n@{n}", f"best_of_n@{n}", "at_least", f"N={n}"))
    f["F3"].rows.append(comparison(data, group, "best_of_n@16", "best_of_n@256", "better", "N=16 vs 256"))
    f["F3"].rows.append(
        comparison(
            data,
            group,
            "weighted_best_of_n@256",
            "weighted_best_of_n@16",
            "at_least",
            "the weighted vote holds (context)",
            counted=False,
        )
    )
    for n in (4, 16):
        f["F4"].rows.append(
            comparison(
                data, group, f"beam_search@{n}", f"best_of_n@{n}", "at_least", f"N={n}, {'+'.join(HARD)}", bands=HARD
            )
        )
    for n in (64, 256):
        f["F5"].rows.append(
            comparison(data, group, f"dvts@{n}", f"beam_search@{n}", "at_least", f"N={n}, {'+'.join(EASY)}", bands=EASY)
        )
    for n in data.design["search_budgets"]:
        for s in FIXED:
            f["F6"].rows.append(comparison(data, group, f"{ROUTER}@{n}", f"{s}@{n}", "at_least", f"N={n}"))
        f["F6"].rows += router_baselines(data, group, n, records)
    costlier = []
    for key in data.keys(group):
        if key.rsplit("@", 1)[0] not in (*FIXED, ROUTER):
            continue
        mine, theirs = data.flops(group, key), data.flops("policy", "large_greedy@1", list(data.records(group, key)))
        if mine and theirs:
            ratio = mine.total / theirs.total
            row = comparison(
                data,
                group,
                key,
                "large_greedy@1",
                "at_least",
                f"{ratio:.2f}x its FLOPs",
                group_b="policy",
                counted=ratio <= 1.0,
            )
            if ratio <= 1.0:
                f["F7"].rows.append(row)
            elif row.verdict.met:
                costlier.append((ratio, row))
    if data.records("policy", "large_greedy@1") and not f["F7"].rows:
        f["F7"].note = "no configuration of the small policy spends at most the large policy's greedy FLOPs"
        f["F7"].vacuous = True
    f["F7"].rows += [
        row for _, row in sorted(costlier, key=lambda item: item[0])[:1]
    ]  # the cheapest that is ≥ (context)
    for finding in f.values():
        finding.rows = [r for r in finding.rows if r.paired.n]
    return list(f.values())


# ---- Traces ----
def run_traces(args: argparse.Namespace, paths: dict[str, Path], design: dict[str, Any], records: Path) -> None:
    """For each counted "≥" comparison not met: the first problems B got right and A wrong, traced."""
    runs.check_design(records, design)
    data = rep.load(records)
    models = runs.Models(paths, records)
    order = {p["id"]: k for k, p in enumerate(data.problems)}
    problems = {p["id"]: runs.StudyProblem(**p) for p in data.problems}
    for group in args.only_verifier or args.verifiers:
        out = records / group / "traces"
        out.mkdir(parents=True, exist_ok=True)
        for finding in findings(data, group, records):
            for row in (r for r in finding.rows if r.counted and r.claim == "at_least" and not r.verdict.met):
                a, b = row.paired.a, row.paired.b
                if a.rsplit("@", 1)[0] not in (*FIXED, ROUTER) or "@" not in b:
                    continue
                mine = data.correct(group, a)
                theirs = data.correct("policy" if b.startswith(("large", "small", "pass")) else group, b)
                lost = sorted((i for i in mine if i in theirs and theirs[i] and not mine[i]), key=order.__getitem__)
                for i in lost[:TRACE_PROBLEMS]:
                    path = out / f"{a}_{i}.json"
                    if not path.exists():
                        trace = trace_one(models, group, a, problems[i], records, design)
                        trace |= {"finding": finding.id, "other": b, "comparison": row.label}
                        path.write_text(json.dumps(trace, indent=1) + "\n")


def trace_one(
    models: runs.Models, group: str, key: str, problem: runs.StudyProblem, records: Path, design: dict[str, Any]
) -> dict[str, Any]:
    strategy, n = key.rsplit("@", 1)[0], int(key.rsplit("@", 1)[1])
    prm = models.verifier(group)
    routing = None
    if strategy in SAMPLERS:
        line = runs.read_outcomes(records / "policy" / "pool.jsonl")[problem.id]
        first = runs.pool_candidates(line, DELIMITER)[:n]
        todo = [i for i, c in enumerate(first) if c.steps]
        scored = prm.invoke([ScoreRequest(problem=problem.problem, steps=first[i].steps) for i in todo])
        for i, s in zip(todo, scored, strict=True):
            first[i] = first[i].model_copy(update={"step_scores": s.scores, "score": aggregate(s.scores, AGGREGATION)})
        chosen, tree = strategy_spec(strategy).vote(first).chosen_index, None  # type: ignore[misc]
        candidates = first
        attempt = 0
    else:
        # The transformers engine seeds each merged batch, not each request: a rerun alone draws other samples
        # than the concurrent run did. Rerun (the record's seed, then fresh ones) until a run fails as the record
        # did, and trace that run.
        extra = {"table": str(records / group / "router" / "table.json")} if strategy == ROUTER else {}
        graph = runs.strategy_graph(strategy, models.policy("small"), prm, n, {**options(), **extra})
        for attempt in range(TRACE_ATTEMPTS):
            seed = derive_seed(SAMPLING_SEED, "strategy", problem.id, *([attempt] if attempt else []))
            context = TTCContext(seed=seed, record_tree=True)
            result = graph.invoke({"problem": problem.problem}, context=context)["result"]
            if not grade(result["answer"], problem.answer):
                break
        candidates = [Candidate.model_validate(c) for c in result["candidates"]]
        chosen, tree = result.get("chosen_index"), result.get("metadata", {}).get("tree")
        routing = result.get("metadata", {}).get("routing")
        if grade(result["answer"], problem.answer):
            attempt = -1  # every rerun got it right: the record's failure was a rare draw
    summary = traces.summarize(
        problem=problem.problem,
        gold=problem.answer,
        candidates=candidates,
        chosen=chosen,
        tree=tree,
        delimiter=DELIMITER,
        vote=strategy,
    )
    return {
        "id": problem.id,
        "band": problem.band,
        "strategy": key,
        "problem": problem.problem,
        "gold": problem.answer,
        "summary": summary,
        "routing": routing,
        "attempt": attempt,
        "tree": tree,
    }


# ---- Report ----
def design_lines(data: rep.StudyData) -> list[str]:
    d = data.design
    per_band = {b: [p for p in data.problems if p["band"] == b] for b in BAND_NAMES}
    lines = [
        "## The frozen design",
        "",
        "Fixed in `benchmarks/study.py` before any test problem was drawn:",
        "",
        f"- bands: quartiles of the small policy's exact process pass@1 at temperature {TEMPERATURE} over "
        f"{CALIBRATION_POOL} problems of {STEPS[0]}-{STEPS[1]} steps (seed {CALIBRATION_SEED}); thresholds "
        + ", ".join(f"{t:.3%}" for t in data.thresholds),
        f"- test problems: `_bands.problems_by_band` from seed {d['test_seed']}, distinct; {d['per_band']} per band "
        f"for N in {d['main_budgets']} under `{d['verifiers'][0]}`, the first {d['per_band_other']} of each band "
        "elsewhere (nested: every comparison pairs on the problems both ran)",
        f"- router calibration: {d['calibration_per_band']} per band from seed {d['router_seed']} (same sampler, none "
        f"of the test problems); {ROUTER_SETTINGS['pilots']} pilots in the budget, estimator "
        f"`{ROUTER_SETTINGS['estimator']}`, {ROUTER_SETTINGS['bins']} quantile bins (`ttc calibrate`'s code)",
        f"- sampling: temperature {TEMPERATURE}, top_p {TOP_P}, at most {MAX_TOKENS} tokens per solution (per step "
        f"in the searches), aggregation `{AGGREGATION}`, beam width {BEAM_WIDTH}; one pool per problem "
        f"({POOL_OTHER} samples on the nested set, {POOL_MAIN} elsewhere), the samplers at N use its first N",
        f"- budgets: samplers {list(SAMPLER_BUDGETS)}, searches and router {d['search_budgets']}",
        f"- tie order of every choice among fixed strategies: {', '.join(FIXED)} (alphabetical); the held-out best "
        f"fixed strategy: {HELD_OUT_FOLDS}-fold cross-fitting (folds alternate in draw order, band after band)",
        f'- rules: "≥" met when significant (exact two-sided McNemar p < {ALPHA}) or within a {MARGIN * 100:g}-point '
        'margin without B significantly better; ">" only when significant; "hard problems": '
        f'{" + ".join(HARD)}; "easy and medium": {" + ".join(EASY)}',
        "- FLOPs: 2 x parameters x (tokens the policy generated + its prompt tokens) + 2 x verifier parameters x "
        "tokens the verifier read (`prm_tokens`); the policy's share beside it; the router's include its pilots",
        "- F7 counts every strategy of the small policy (majority vote too); a run is seeded per problem, but the "
        "transformers engine seeds each merged batch, so a rerun at another concurrency draws other samples: the "
        "records are the result, and a trace reruns a search until it fails as its record did",
        "",
        "| band | problems | mean steps | mean exact pass@1 |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {b} | {len(ps)} | {sum(p['steps'] for p in ps) / max(1, len(ps)):.1f} | "
            f"{sum(p['pass_at_1'] for p in ps) / max(1, len(ps)):.2%} |"
            for b, ps in per_band.items()
        ),
        "",
        "| model | parameters | path |",
        "| --- | ---: | --- |",
        *(f"| {name} | {m['parameters']:,} | `{m['path']}` |" for name, m in data.models.items()),
        "",
        "Strategy settings (validated configs at N=16; the library's defaults for the rest):",
        "",
        *(f"- `{s}`: " + ", ".join(f"{k}={v!r}" for k, v in c.items()) for s, c in d["strategies"].items()),
        "",
    ]
    return lines


def finding_lines(found: list[Finding]) -> list[str]:
    lines = ["| | claim | verdict | comparisons (A vs B: problems, A, B, b, c, p, rule) |", "| --- | --- | --- | --- |"]
    for f in found:
        verdict_text = {None: "not run", True: "**met**", False: "not met"}[f.met]
        parts = [
            f"{r.label}: {r.paired.a} vs {r.paired.b}: n={r.paired.n}, {rep.pct(r.paired.accuracy_a)} vs "
            f"{rep.pct(r.paired.accuracy_b)}, b={r.paired.a_only}, c={r.paired.b_only}, p={r.paired.p:.3g}: "
            f"{'met' if r.verdict.met else 'not met'}, {r.verdict.why}{'' if r.counted else ' [not counted]'}"
            for r in f.rows
        ]
        if f.note:
            parts.append(f.note)
        lines.append(f"| {f.id} | {f.claim} | {verdict_text} | " + "<br>".join(parts) + " |")
    return [*lines, ""]


def router_lines(data: rep.StudyData, group: str, records: Path) -> list[str]:
    table_path = records / group / "router" / "table.json"
    if not table_path.exists():
        return []
    table = json.loads(table_path.read_text())
    lines = [
        "### The router",
        "",
        f"Calibrated on {table['calibration']['problems']} problems; its choices (bins of `{table['estimator']}`, "
        "upper bounds " + ", ".join(f"{b['upper']:.3f}" for b in table["bins"] if b["upper"] is not None) + "):",
        "",
    ]
    for n, choices in table["budgets"].items():
        lines.append(
            f"- N={n}: " + ", ".join(f"{b}: {c['strategy']}" for b, c in choices.items()) + f"; held-out "
            f"accuracy on the calibration set {table['calibration']['held_out_router_accuracy'][n]:.1%}"
        )
    path = records / group / "router" / "calibration_records.jsonl"
    calibration = [r for r in read_jsonl(path) if "correct" in r]
    for n in (int(n) for n in table["budgets"]):
        decisions: dict[str, int] = {}
        for r in data.records(group, f"{ROUTER}@{n}").values():
            decisions[r.get("routing", {}).get("strategy", "?")] = (
                decisions.get(r.get("routing", {}).get("strategy", "?"), 0) + 1
            )
        total = sum(decisions.values())
        if total:
            lines.append(
                f"- N={n}, test: "
                + ", ".join(f"{s} {c / total:.0%}" for s, c in sorted(decisions.items()))
                + "; oracle (true band) choices: "
                + ", ".join(f"{b}: {c}" for b, c in oracle_choices(calibration, n).items())
            )
    return [*lines, "", f"![calibration](study_records/{group}/router/table.png)", ""]


def trace_lines(records: Path, group: str) -> list[str]:
    found = sorted((records / group / "traces").glob("*.json")) if (records / group / "traces").exists() else []
    if not found:
        return []
    lines = ["### Traces (why findings do not hold)", ""]
    by_finding: dict[str, list[dict[str, Any]]] = {}
    for path in found:
        trace = json.loads(path.read_text())
        by_finding.setdefault(trace["finding"], []).append(trace)
    for fid, items in sorted(by_finding.items()):
        lines.append(f"{fid}:")
        lines.append("")
        for trace in items:
            lines += traces.markdown(trace)
        lines.append("")
    return lines


def time_lines(data: rep.StudyData) -> list[str]:
    if not data.timings:
        return []
    lines = [
        "## Time",
        "",
        "| records | problems | seconds | s per problem | concurrency |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for t in data.timings:
        lines.append(
            f"| {t['group']}/{t['key']} | {t['problems']} | {t['seconds']:.0f} | "
            f"{t['seconds'] / max(1, t['problems']):.2f} | {t['concurrency']} |"
        )
    return [*lines, ""]


def report(args: argparse.Namespace, out: Path, records: Path) -> Path:
    data = rep.load(records)
    strategies = [*SAMPLERS, *SEARCHES, ROUTER]
    budgets = sorted({*SAMPLER_BUDGETS, *data.design["search_budgets"]})
    lines = header(
        "Test-time compute on the Arith world v3: a small policy that searches against a 3.7x larger one", __file__
    )
    small, large = data.parameters("small"), data.parameters("large")
    if small and large:
        lines.append(f"- small policy {small:,} parameters, large {large:,} ({large / small:.1f}x)")
    lines += [
        f"- {len(data.problems)} test problems, {len(BAND_NAMES)} bands; verifiers: "
        + ", ".join(f"`{v}`" for v in data.design["verifiers"]),
        "",
    ]
    for group in (v for v in data.design["verifiers"] if v in data.outcomes):
        lines += [f"## Findings under `{group}`", "", *finding_lines(findings(data, group, records))]
    for group in (v for v in data.design["verifiers"] if v in data.outcomes):
        rep.plot_accuracy(data, group, strategies, BAND_NAMES, out / f"study_{group}.png")
        rep.plot_flops(data, group, strategies, BAND_NAMES, out / f"study_{group}_flops.png")
        lines += [
            f"## Verifier `{group}`",
            "",
            f"![accuracy against N](study_{group}.png)",
            "",
            "### Accuracy against N",
            "",
            f"On the nested set (the first {data.design['per_band_other']} problems of each band: the same problems "
            "at every N; accuracy, 95% Wilson interval, problems):",
            "",
        ]
        rows = [*strategies, "pass", "process_pass"]
        for name, bands in (("All bands", None), *((band.capitalize(), [band]) for band in BAND_NAMES)):
            lines += [f"{name}:", "", *rep.accuracy_table(data, group, rows, budgets, bands, data.nested)]
        if group == data.design["verifiers"][0] and data.design["per_band"] > data.design["per_band_other"]:
            main = data.design["main_budgets"]
            lines += [f"At N = {', '.join(map(str, main))} on all {data.design['per_band']} problems per band:", ""]
            for name, bands in (("All bands", None), *((band.capitalize(), [band]) for band in BAND_NAMES)):
                lines += [f"{name}:", "", *rep.accuracy_table(data, group, rows, main, bands)]
        lines += ["### Against inference compute", "", f"![accuracy against FLOPs](study_{group}_flops.png)", ""]
        lines += rep.flops_table(data, group, strategies, budgets)
        lines += [
            "### The gap to pass@N",
            "",
            "pass@N: some of the pool's first N samples has the right answer "
            "(process pass@N: is right at every step); on the problems each run was scored on.",
            "",
        ]
        lines += rep.gap_table(data, group, strategies, budgets)
        lines += router_lines(data, group, records)
        lines += trace_lines(records, group)
    lines += design_lines(data) + time_lines(data)
    path = out / "study.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"report: {path}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=None, help="Checkpoint directory (default: the package's).")
    parser.add_argument(
        "--prm-dir",
        "--model-dir",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="One model's directory (a verifier, small or large), over --models.",
    )
    parser.add_argument("--verifiers", nargs="+", default=list(VERIFIERS), help="The ladder, the realistic one first.")
    parser.add_argument("--per-band", type=int, default=PER_BAND, help="Problems per band at N=4, 16 (first verifier).")
    parser.add_argument("--per-band-other", type=int, default=PER_BAND_OTHER, help="Problems per band elsewhere.")
    parser.add_argument("--calibration-per-band", type=int, default=CALIBRATION_PER_BAND)
    parser.add_argument("--search-256", action="store_true", help="Searches and the router at N=256 too.")
    parser.add_argument("--only-verifier", nargs="+", default=None)
    parser.add_argument("--only-strategy", nargs="+", default=None, choices=["greedy", *SAMPLERS, *SEARCHES, ROUTER])
    parser.add_argument("--budgets", type=int, nargs="+", default=None, choices=sorted({*SAMPLER_BUDGETS, 256}))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Report, plots and study_records/ go here.")
    parser.add_argument("--report-only", action="store_true", help="Rebuild the report from the records.")
    parser.add_argument("--traces", action="store_true", help="Only trace the comparisons not met (after the runs).")
    args = parser.parse_args()
    unknown = set(args.only_verifier or []) - set(args.verifiers)
    if unknown:
        parser.error(f"--only-verifier {' '.join(sorted(unknown))} is not in --verifiers {' '.join(args.verifiers)}")
    records = args.out / "study_records"
    paths = model_paths(args)
    if not args.report_only:
        import torch

        torch.set_num_threads(args.threads)
        design = design_of(args, paths)
        try:
            (run_traces if args.traces else run_all)(args, paths, design, records)
        except RunInterrupted as stopped:
            sys.exit(f"stopped: {stopped}; run the same command again to resume.")
    elif not (records / "design.json").exists():
        sys.exit(f"{records} holds no study records; run without --report-only first.")
    report(args, args.out, records)


if __name__ == "__main__":
    main()
