"""Helpers shared by the benchmark scripts: the report header, writing reports, and (re-exported) Wilson intervals."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

from langchain_ttc.evaluation.report import wilson

__all__ = ["RESULTS", "header", "wilson", "write"]

RESULTS = Path(__file__).parent / "results"


def header(title: str, script: str) -> list[str]:
    """The first lines of a report: title, date, machine and the command that produced it."""
    command = " ".join(["python", f"benchmarks/{Path(script).name}", *sys.argv[1:]])
    return [
        f"# {title}",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        f"- command: `{command}`",
    ]


def write(name: str, lines: list[str]) -> Path:
    """Write a Markdown report under ``benchmarks/results/`` and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path
