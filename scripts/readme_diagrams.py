"""Regenerate the Mermaid diagrams of every strategy graph in docs/strategies.md (``draw_mermaid()``, offline).

The diagrams lived in the README before the documentation site; the script keeps its name.

python scripts/readme_diagrams.py          # rewrite the diagrams section of docs/strategies.md
python scripts/readme_diagrams.py --check  # exit 1 if docs/strategies.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_ttc.core.types import GenerationRequest, GenerationResult, ScoreRequest, StepScores
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.registry import STRATEGIES, create_strategy_graph

PAGE = Path(__file__).resolve().parent.parent / "docs" / "strategies.md"
START, END = "<!-- diagrams:start -->", "<!-- diagrams:end -->"


class _Unused(PolicyEngine, PRMEngine):  # drawing a graph calls no engine
    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        raise NotImplementedError

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        raise NotImplementedError


def diagrams() -> str:
    """The page's diagrams section: one Mermaid block per strategy."""
    parts = [START]
    for name in STRATEGIES:
        graph = create_strategy_graph(
            name, _Unused(), _Unused(), n=4, **({"beam_width": 2} if name in ("beam_search", "dvts") else {})
        )
        parts += [f"**{name}**", "", "```mermaid", graph.get_graph().draw_mermaid().strip(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def main() -> int:
    """Rewrite (or, with ``--check``, compare) the diagrams section of docs/strategies.md."""
    text = PAGE.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    updated = before + diagrams() + after
    if "--check" in sys.argv:
        return 0 if updated == text else 1
    PAGE.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
