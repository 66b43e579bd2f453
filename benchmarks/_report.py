"""Helpers shared by the benchmark scripts: the report header and confidence intervals."""

from __future__ import annotations

import datetime
import math
import os
import platform
import sys
from pathlib import Path

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


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def write(name: str, lines: list[str]) -> Path:
    """Write a Markdown report under ``benchmarks/results/`` and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path
