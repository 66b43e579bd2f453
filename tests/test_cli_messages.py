"""What ``ttc`` says when something is off, in-process (``main([...])``) with scripted engines: budget
caps refused before any model loads, one-line argument errors, one-line warnings where a missing
optional part is not fatal (Graphviz, the Arith-only default models), a torn records line reported
and dropped, and the missing ``datasets`` package named with how to install it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from langchain_ttc.cli import main
from langchain_ttc.engines.settings import EngineSettings
from tests.fakes import ScriptedPolicy, ScriptedPRM

ARITH = "Keep only the last digit after each step. What is 2+3?"
SOLUTION = "2+3=5. The answer is \\boxed{5}."


def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: EngineSettings) -> Any:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(EngineSettings, "load_policy", refuse)
    monkeypatch.setattr(EngineSettings, "load_prm", refuse)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], None]:
    """Make the CLI's engines scripted ones (no weights load)."""

    def use(texts: list[str]) -> None:
        monkeypatch.setattr(EngineSettings, "load_policy", lambda self: ScriptedPolicy(texts))
        monkeypatch.setattr(EngineSettings, "load_prm", lambda self: ScriptedPRM(lambda _p, _s: 0.9))

    return use


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", ARITH, "--n", "100000"], "ttc solve: error: n=100000 is over the limit of 1024; pass a smaller n, "
         "or raise the limit with the environment variable TTC_MAX_N (e.g. TTC_MAX_N=100000)."),
        (["solve", ARITH, "--strategy", "beam_search", "--n", "2048"], "n=2048 is over the limit of 1024"),
        (["solve", ARITH, "--max-tokens", "100000"], "environment variable TTC_MAX_TOKENS"),
        (["eval", "--dataset", "arith", "--n-max", "2048"], "ttc eval: error: --n-max=2048 is over the limit of 1024"),
        (["calibrate", "--budgets", "4", "4096", "--output", "t.json"],
         "ttc calibrate: error: --budgets has 4096, which is over the limit of 1024"),
    ],
)  # fmt: skip
def test_budgets_over_the_caps_are_refused_before_any_model_loads(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_models(monkeypatch)
    assert main(args) == 2
    (line,) = error_lines(capsys)
    assert message in line


def test_raising_the_cap_lets_the_budget_through(monkeypatch: pytest.MonkeyPatch, scripted: Any, capsys: Any) -> None:
    from langchain_ttc.strategies.config import limits

    monkeypatch.setenv("TTC_MAX_N", "2048")
    limits.cache_clear()
    try:
        scripted([SOLUTION])
        assert main(["solve", ARITH, "--strategy", "majority_vote", "--n", "2048"]) == 0
    finally:
        monkeypatch.delenv("TTC_MAX_N")
        limits.cache_clear()
    assert capsys.readouterr().out.startswith("answer: 5")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", ARITH, "--n", "0"], "ttc solve: error: argument --n: 0 must be at least 1 (see 'ttc solve --help')"),
        (["solve"], "ttc solve: error: the following arguments are required: problem (see 'ttc solve --help')"),
        (["eval", "--n-max", "x"], "ttc eval: error: argument --n-max: 'x' is not an integer (see 'ttc eval --help')"),
        ([], "ttc: error: the following arguments are required: command (see 'ttc --help')"),
    ],
)
def test_argument_errors_are_one_line_with_a_pointer_to_help(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert error_lines(capsys) == [message]


def test_the_arith_models_warn_once_about_a_problem_they_do_not_know(
    scripted: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted(["Paris. The answer is \\boxed{Paris}."])
    assert main(["solve", "What is the capital of France?", "--strategy", "majority_vote", "--n", "2"]) == 0
    warnings = [line for line in error_lines(capsys) if "warning" in line]
    assert warnings == [
        "ttc solve: warning: the policy arith:small only knows the built-in Arith task ('Keep only the last digit "
        "after each step. What is 3+4*3?'), and this problem is not an Arith problem; its answer will be meaningless: "
        "pass --policy (or set TTC_POLICY_MODEL / TTC_POLICY_URL) for another model."
    ]
    assert main(["solve", ARITH, "--strategy", "majority_vote", "--n", "2"]) == 0  # an Arith problem: no warning
    assert "warning" not in capsys.readouterr().err


def test_tree_without_graphviz_writes_the_page_warns_once_and_exits_0(
    scripted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else which(name, *a, **k))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no dot on the PATH either
    scripted(["2+3=5. The answer is \\boxed{5}.", "2+3=6. The answer is \\boxed{6}."])
    args = ["solve", ARITH, "--strategy", "beam_search", "--n", "4", "--beam-width", "2", "--tree"]
    assert main([*args, str(tmp_path / "out.html")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.html"]  # no out.png, no out.gv
    assert 'data-fate="chosen"' in (tmp_path / "out.html").read_text()
    lines = error_lines(capsys)
    assert [line for line in lines if "warning" in line] == [
        "ttc solve: warning: drawing the tree as a PNG needs Graphviz's dot program (apt-get install graphviz, or "
        f"brew install graphviz); wrote the HTML page only: {tmp_path / 'out.html'}"
    ]
    assert f"tree: {tmp_path / 'out.html'}" in lines


def test_a_torn_last_line_of_the_results_is_reported_and_dropped(
    scripted: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted([SOLUTION])
    output = tmp_path / "arith.jsonl"
    args = ["eval", "--dataset", "arith", "--strategy", "majority_vote", "--n-max", "2", "--limit", "3"]
    args += ["--output", str(output)]
    assert main(args) == 0
    rows = output.read_text().splitlines()
    output.write_text("\n".join(rows[:-1]) + "\n" + rows[-1][: len(rows[-1]) // 2])  # killed while writing the last
    capsys.readouterr()
    assert main(args) == 0
    assert (
        f"ttc eval: warning: {output}:4: dropped an incomplete last line (a run was stopped while writing it); its "
        "problem runs again." in error_lines(capsys)
    )
    again = [json.loads(line) for line in output.read_text().splitlines()]
    torn = json.loads(rows[-1])
    assert len(again) == 4 and (again[3]["id"], again[3]["predictions"]) == (torn["id"], torn["predictions"])


def test_a_hub_dataset_without_the_datasets_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_models(monkeypatch)
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    assert main(["eval", "--dataset", "HuggingFaceH4/MATH-500"]) == 2
    (line,) = error_lines(capsys)
    assert "needs the 'datasets' package (no extra of langchain-ttc installs it): pip install datasets" in line
