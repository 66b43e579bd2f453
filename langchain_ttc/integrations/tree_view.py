"""Search trees you can see: a search's recorded tree as an interactive HTML page and as a picture.

In: a result of a step-level search run with ``record_tree=True`` (``metadata["tree"]``), or of
self-refinement (its drafts, chain by chain). Out: a self-contained HTML page (every node a native
``<details>`` element: click to collapse or expand a branch; each node shows its step text, score
and fate) and a Graphviz drawing (PNG or SVG through the ``dot`` program; Debian's ``graphviz``).

Fates and colours: kept (blue), pruned (grey), finished (green), truncated (orange), chosen (red).

Example:
    >>> from langchain_ttc.core.tree import TreeNode
    >>> nodes = [TreeNode(id=0, parent=None, fate="kept"), TreeNode(id=1, parent=0, step="1+1=2", fate="chosen")]
    >>> "1+1=2" in tree_html(nodes, title="demo")
    True
    >>> write_tree(result, "out.html")  # doctest: +SKIP
    (PosixPath('out.html'), PosixPath('out.png'))

Without Graphviz (the ``tree`` extra and the ``dot`` program) :func:`write_tree` writes the page
only and warns.

"""

from __future__ import annotations

import html
import os
import shutil
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_ttc.core.tree import Fate, TreeNode
from langchain_ttc.core.types import TTCResult

COLORS: dict[Fate, str] = {
    "kept": "#2f6fde",
    "pruned": "#9a9a9a",
    "finished": "#1f9d55",
    "truncated": "#e0891b",
    "chosen": "#d62f2f",
}
_LABEL_CHARS = 48

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 1.4rem; border-left: 1px dashed #ccc; }
ul.tree { border-left: none; padding-left: 0; }
li { margin: 0.15rem 0; }
summary, .leaf { cursor: pointer; display: inline-flex; gap: 0.5rem; align-items: baseline; }
.leaf { cursor: default; padding-left: 1rem; }
.fate { color: #fff; border-radius: 0.6rem; padding: 0 0.5rem; font-size: 0.8rem; }
.step { white-space: pre-wrap; font-family: ui-monospace, monospace; background: #f5f5f5; padding: 0 0.3rem; }
.score { color: #555; font-size: 0.85rem; }
.legend span { margin-right: 0.6rem; }
button { margin-right: 0.4rem; }
"""
_SCRIPT = """
function setAll(open) { document.querySelectorAll('details').forEach(d => { d.open = open; }); }
"""


def tree_of(result: TTCResult | dict[str, Any]) -> list[TreeNode]:
    """The tree of a result: a search's recorded tree, or self-refinement's drafts chain by chain.

    Raises:
        ValueError: If the result holds neither (run the search with ``record_tree=True``).

    """
    result = TTCResult.model_validate(result)
    if "tree" in result.metadata:
        return [TreeNode.model_validate(n) for n in result.metadata["tree"]]
    if "drafts" in result.metadata:  # self-refinement: a root, then each chain's drafts in order
        nodes = [TreeNode(id=0, parent=None, fate="kept")]
        last: dict[int, int] = {}
        for index, (draft, candidate) in enumerate(zip(result.metadata["drafts"], result.candidates, strict=False)):
            fate: Fate = (
                "chosen" if index == result.chosen_index else "truncated" if not candidate.finished else "finished"
            )
            step = f"draft {draft['revision']} of chain {draft['chain']}: {candidate.text}"
            nodes.append(TreeNode(id=index + 1, parent=last.get(draft["chain"], 0), iteration=draft["revision"],
                                  step=step, score=candidate.score, fate=fate))  # fmt: skip
            last[draft["chain"]] = index + 1
        return nodes
    raise ValueError(
        f"the {result.strategy} result has no tree; run a step-level search with record_tree=True "
        "(ttc solve --tree), or self-refinement."
    )


def _children(nodes: Sequence[TreeNode]) -> dict[int | None, list[TreeNode]]:
    children: dict[int | None, list[TreeNode]] = defaultdict(list)
    for node in nodes:
        children[node.parent].append(node)
    return children


def _describe(node: TreeNode) -> str:
    fate = f'<span class="fate" style="background:{COLORS[node.fate]}">{node.fate}</span>'
    step = html.escape(node.step.strip() or "(start)")
    score = "" if node.score is None else f'<span class="score">score {node.score:.3f}</span>'
    return f'{fate}<span class="step">{step}</span>{score}'


def tree_html(nodes: Sequence[TreeNode], *, title: str) -> str:
    """A self-contained HTML page of the tree: nested ``<details>`` elements, one per node with children."""
    children = _children(nodes)

    def render(node: TreeNode) -> str:
        kids = children.get(node.id, [])
        if not kids:
            return f'<li><span class="leaf" data-fate="{node.fate}">{_describe(node)}</span></li>'
        inner = "".join(render(k) for k in kids)
        summary = f"<summary>{_describe(node)}</summary>"
        return f'<li><details open data-fate="{node.fate}">{summary}<ul>{inner}</ul></details></li>'

    legend = "".join(f'<span class="fate" style="background:{c}">{f}</span>' for f, c in COLORS.items())
    roots = "".join(render(root) for root in children.get(None, []))
    counts = ", ".join(f"{sum(n.fate == f for n in nodes)} {f}" for f in COLORS)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(nodes)} nodes: {counts}.</p>"
        f'<p class="legend">{legend}</p>'
        '<p><button onclick="setAll(true)">expand all</button><button onclick="setAll(false)">collapse all</button></p>'
        f'<ul class="tree">{roots}</ul></body></html>'
    )


def tree_graph(nodes: Sequence[TreeNode], *, title: str) -> Any:
    """The tree as a ``graphviz.Digraph`` (top to bottom, nodes coloured by fate).

    Raises:
        ImportError: If the ``graphviz`` Python package is not installed.

    """
    import graphviz

    graph = graphviz.Digraph(graph_attr={"label": title, "labelloc": "t", "rankdir": "TB"})
    graph.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10")
    for node in nodes:
        step = node.step.strip().replace("\n", " ") or "(start)"
        if len(step) > _LABEL_CHARS:
            step = step[: _LABEL_CHARS - 1] + "…"
        step = step.replace("\\", "\\\\")  # a backslash starts an escape in Graphviz labels
        score = "" if node.score is None else f"\n{node.score:.2f}"
        graph.node(
            str(node.id), f"{step}{score}", fillcolor=COLORS[node.fate], fontcolor="white", color=COLORS[node.fate]
        )
        if node.parent is not None:
            graph.edge(str(node.parent), str(node.id))
    return graph


def _missing_drawing_tool() -> str | None:
    """What drawing a PNG lacks (the ``graphviz`` package or Graphviz's ``dot`` program), or ``None``."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return "the graphviz Python package (pip install 'langchain-ttc[tree]')"
    if shutil.which("dot") is None:
        return "Graphviz's dot program (apt-get install graphviz, or brew install graphviz)"
    return None


def write_tree(result: TTCResult | dict[str, Any], path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """Write the result's tree as ``path`` (HTML) and a PNG next to it (same name, ``.png``).

    The picture is optional: without the ``graphviz`` package or Graphviz's ``dot`` program only the
    page is written, a :class:`UserWarning` says what to install, and the picture's path is ``None``.
    Nothing else is written (no Graphviz source file).

    Raises:
        ValueError: If the result has no tree.

    """
    checked = TTCResult.model_validate(result)
    nodes = tree_of(checked)
    title = f"{checked.strategy}: answer {checked.answer}"
    page = Path(path).with_suffix(".html")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(tree_html(nodes, title=title))
    missing = _missing_drawing_tool()
    if missing is None:
        import graphviz

        try:  # piped through dot's stdin and stdout: no source file is left beside the picture
            png = tree_graph(nodes, title=title).pipe(format="png")
        except graphviz.ExecutableNotFound:
            missing = "Graphviz's dot program (apt-get install graphviz, or brew install graphviz)"
        else:
            picture = page.with_suffix(".png")
            picture.write_bytes(png)
            return page, picture
    warnings.warn(f"drawing the tree as a PNG needs {missing}; wrote the HTML page only: {page}", stacklevel=2)
    return page, None
