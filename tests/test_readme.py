"""The README's first steps run as written, offline, on the shipped Arith models, in a scratch directory.

- Every Python snippet runs: in a fresh namespace, or, after ``<!-- continues the previous snippet -->``,
  in the namespace of the snippet before it (the README says so in words too).
- Every shell snippet of ``ttc`` commands runs, each command as a subprocess; shell snippets of
  other commands (installing, the test suite, ``mkdocs``) are not run.
- A snippet right after ``<!-- not run: <why> -->`` is skipped (it needs the network, a GPU or a
  running server); the reason is required.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MARKER = re.compile(r"^<!--\s*(?P<kind>not run|continues)\b(?P<rest>[^>]*)-->$")


@dataclass(frozen=True)
class Snippet:
    language: str
    code: str
    line: int
    marker: str | None  # "not run: <why>", "continues the previous snippet", or None
    reason: str = ""

    @property
    def runs(self) -> bool:
        return self.marker is None or not self.marker.startswith("not run")

    @property
    def continues(self) -> bool:
        return self.marker is not None and self.marker.startswith("continues")

    @property
    def is_ttc(self) -> bool:
        lines = [line for line in self.code.splitlines() if line.strip()]
        return self.language == "bash" and bool(lines) and all(line.startswith("ttc ") for line in lines)


def snippets(text: str) -> list[Snippet]:
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marker = MARKER.match(before[-1].strip()) if before else None
        found.append(
            Snippet(
                language=match.group(1),
                code=match.group(2),
                line=text.count("\n", 0, match.start()) + 1,
                marker=None if marker is None else (marker["kind"] + marker["rest"]).strip(),
                reason="" if marker is None else marker["rest"].strip(" :"),
            )
        )
    return found


ALL = snippets(README.read_text())
PYTHON = [s for s in ALL if s.language == "python"]
COMMANDS = [s for s in ALL if s.is_ttc and s.runs]


def test_the_readme_parser_honours_the_markers() -> None:
    text = "a\n\n```python\nx = 1\n```\n\n<!-- continues the previous snippet -->\n```python\ny = x\n```\n"
    text += "<!-- not run: needs a GPU -->\n```bash\nttc solve x\n```\n"
    first, second, third = snippets(text)
    assert (first.runs, first.continues, first.line) == (True, False, 3)
    assert second.continues and second.code == "y = x\n"
    assert not third.runs and third.reason == "needs a GPU" and third.is_ttc


def test_every_skipped_snippet_says_why_and_every_python_snippet_compiles() -> None:
    assert PYTHON and COMMANDS
    for snippet in ALL:
        if not snippet.runs:
            assert snippet.reason, f"README.md:{snippet.line}: say why the snippet is not run"
    for snippet in PYTHON:
        compile(snippet.code, f"README.md:{snippet.line}", "exec")
    assert not PYTHON[0].continues, "the first Python snippet must stand alone"


def test_commands_write_outside_tracked_files() -> None:
    for snippet in COMMANDS:
        for line in snippet.code.splitlines():
            words = shlex.split(line)
            for flag in ("--tree", "--output", "--records", "--plot"):
                if flag in words:
                    target = Path(words[words.index(flag) + 1])
                    assert not target.is_absolute() or str(target).startswith("/tmp/"), line
                    assert not str(target).startswith(("docs", "benchmarks", "tests", "langchain_ttc")), line


@pytest.mark.integration
def test_the_python_snippets_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes lands here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict[str, Any] = {}
    ran = 0
    for snippet in PYTHON:
        if not snippet.runs:
            continue
        if not snippet.continues:
            namespace = {"__name__": "__readme__"}
        exec(compile(snippet.code, f"README.md:{snippet.line}", "exec"), namespace)
        ran += 1
    assert ran >= 3


@pytest.mark.integration
@pytest.mark.parametrize("snippet", COMMANDS, ids=[f"README.md:{s.line}" for s in COMMANDS])
def test_the_ttc_commands_run_as_written(snippet: Snippet, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for line in snippet.code.splitlines():
        if not line.strip():
            continue
        words = shlex.split(line)
        run = subprocess.run(
            [sys.executable, "-m", "langchain_ttc.cli", *words[1:]],
            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, f"README.md:{snippet.line}: {line}\n{run.stderr[-3000:]}"
        assert "Traceback" not in run.stderr
        if "--tree" in words:
            page = tmp_path / words[words.index("--tree") + 1]
            assert page.is_file()
            if shutil.which("dot") is None:
                assert "warning: drawing the tree as a PNG needs Graphviz's dot program" in run.stderr
            else:
                assert page.with_suffix(".png").is_file()
        if words[1] == "eval":
            assert (tmp_path / "ttc_eval" / "arith.jsonl").is_file()
