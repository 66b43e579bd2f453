"""The study's statistics (benchmarks/_stats.py): exact McNemar p-values, verdict rules, cross-fitting, FLOPs."""

from __future__ import annotations

import importlib.util
import math
import sys
from fractions import Fraction
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_stats.py"
_SPEC = importlib.util.spec_from_file_location("study_stats", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
stats = importlib.util.module_from_spec(_SPEC)
sys.modules["study_stats"] = stats
_SPEC.loader.exec_module(stats)


def _binomial_two_sided(b: int, c: int) -> float:
    """The textbook exact two-sided binomial test at 1/2: the outcomes no more likely than b, in exact fractions."""
    n = b + c
    if n == 0:
        return 1.0
    probability = [Fraction(math.comb(n, k), 2**n) for k in range(n + 1)]
    return float(min(Fraction(1), sum(p for p in probability if p <= probability[b])))


@pytest.mark.parametrize(("b", "c", "expected"), [(0, 0, 1.0), (1, 0, 1.0), (10, 1, 0.01171875), (0, 6, 0.03125)])
def test_mcnemar_known_values(b: int, c: int, expected: float) -> None:
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, abs=1e-12)


def test_mcnemar_matches_the_binomial_test_and_is_symmetric() -> None:
    for b in range(0, 30):
        for c in range(0, 30):
            p = stats.mcnemar_exact(b, c)
            assert p == pytest.approx(_binomial_two_sided(b, c), rel=1e-9)
            assert p == stats.mcnemar_exact(c, b)
            assert 0.0 < p <= 1.0
    assert stats.mcnemar_exact(20, 5) == pytest.approx(2 * 68406 / 2**25)


def test_mcnemar_large_counts_stay_finite() -> None:
    assert 0.0 <= stats.mcnemar_exact(900, 700) < 1e-5
    with pytest.raises(ValueError, match="negative"):
        stats.mcnemar_exact(-1, 2)


def test_compare_counts_only_common_problems() -> None:
    a = {"1": True, "2": True, "3": False, "4": True}
    b = {"1": False, "2": True, "3": True, "5": False}
    paired = stats.compare(a, b, "A", "B")
    assert (paired.n, paired.right_a, paired.right_b, paired.a_only, paired.b_only) == (3, 2, 2, 1, 1)
    assert paired.difference == 0.0
    assert paired.p == 1.0
    assert math.isnan(stats.compare({}, {}, "A", "B").accuracy_a)


def _paired(n: int, a_only: int, b_only: int, both: int = 0) -> object:
    return stats.Paired("A", "B", n, both + a_only, both + b_only, a_only, b_only, stats.mcnemar_exact(a_only, b_only))


def test_verdict_rules() -> None:
    margin = 0.02
    significant = _paired(100, 12, 1)
    assert stats.verdict(significant, "better", margin=margin).met
    assert stats.verdict(significant, "at_least", margin=margin).why.startswith("significant")
    tie = _paired(100, 3, 3)
    assert not stats.verdict(tie, "better", margin=margin).met
    assert stats.verdict(tie, "at_least", margin=margin).why.startswith("margin rule: at most 2 points below")
    slightly_worse = _paired(100, 1, 3)  # -2 points exactly, not significant: within the margin
    assert stats.verdict(slightly_worse, "at_least", margin=margin).met
    worse = _paired(100, 1, 4)  # -3 points, not significant: below the margin
    assert not stats.verdict(worse, "at_least", margin=margin).met
    reversed_ = _paired(100, 1, 12)
    assert stats.verdict(reversed_, "better", margin=margin).why.startswith("reversed")
    assert not stats.verdict(reversed_, "at_least", margin=margin).met
    # B significantly better by less than the margin on many problems: "≥" is still not met.
    large = _paired(10_000, 100, 190)
    assert large.p < 0.05 and large.difference > -margin
    assert not stats.verdict(large, "at_least", margin=margin).met
    assert not stats.verdict(_paired(0, 0, 0), "at_least", margin=margin).met


def test_folds_alternate_within_each_band() -> None:
    folds = stats.stratified_folds({"easy": ["e0", "e1", "e2", "e3"], "hard": ["h0", "h1", "h2"]})
    assert folds == {"e0": 0, "e1": 1, "e2": 0, "e3": 1, "h0": 0, "h1": 1, "h2": 0}
    # one problem per band still gives two non-empty folds
    assert sorted(stats.stratified_folds({"a": ["1"], "b": ["2"], "c": ["3"]}).values()) == [0, 0, 1]


def test_best_strategy_breaks_ties_by_the_stated_order_and_skips_partial_runs() -> None:
    outcomes = {"x": {"1": True, "2": False}, "y": {"1": False, "2": True}, "z": {"1": True}}
    assert stats.best_strategy(outcomes, ["1", "2"], ["x", "y", "z"]) == "x"
    assert stats.best_strategy(outcomes, ["1", "2"], ["y", "x", "z"]) == "y"
    assert stats.best_strategy(outcomes, ["1"], ["y", "z", "x"]) == "z"
    with pytest.raises(ValueError, match="no strategy"):
        stats.best_strategy(outcomes, ["3"], ["x"])


def test_cross_fitting_chooses_without_the_scored_fold() -> None:
    # x is right on fold 0 only, y on fold 1 only: each fold gets the other fold's winner, so both lose.
    outcomes = {
        "x": {"a": True, "b": True, "c": False, "d": False},
        "y": {"a": False, "b": False, "c": True, "d": True},
    }
    folds = {"a": 0, "b": 0, "c": 1, "d": 1}
    held_out, choices = stats.cross_fitted(outcomes, folds, ["x", "y"])
    assert choices == ["y", "x"]
    assert held_out == {"a": False, "b": False, "c": False, "d": False}
    with pytest.raises(ValueError, match="two folds"):
        stats.cross_fitted(outcomes, {"a": 0, "b": 0}, ["x", "y"])


def test_share_closed_and_flops() -> None:
    assert stats.share_closed(0.9, 0.5, 0.9) == 1.0
    assert math.isnan(stats.share_closed(0.5, 0.5, 0.5))
    f = stats.flops(
        {"completion_tokens": 100, "prompt_tokens": 20, "prm_tokens": 300}, policy_parameters=10, verifier_parameters=7
    )
    assert (f.policy_generated, f.policy_prompt, f.verifier) == (2000.0, 400.0, 4200.0)
    assert f.policy == 2400.0 and f.total == 6600.0
    assert stats.flops({}, policy_parameters=10, verifier_parameters=7).total == 0.0
