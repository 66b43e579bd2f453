"""Search trees you can see: a real beam search on the shipped Arith checkpoints, drawn as a PNG by
Graphviz and as an HTML page checked in a real headless Chromium (a screenshot, clicks)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from langchain_ttc import TTCResult, create_beam_search_graph, make_problems
from langchain_ttc.cli import main
from langchain_ttc.core.tree import TreeNode
from langchain_ttc.integrations.tree_view import COLORS, tree_of, write_tree

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HARD = make_problems(1, 8, seed=76)[0]  # the small policy is unsure here: the search branches
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program (apt-get install graphviz)")


@pytest.fixture(scope="module")
def searched(arith_policy: Any, arith_prm: Any) -> tuple[TTCResult, list[dict[str, Any]]]:
    graph = create_beam_search_graph(
        arith_policy, arith_prm, n=8, beam_width=2, max_tokens=64, seed=0, record_tree=True
    )
    events, output = [], {}
    for mode, chunk in graph.stream({"problem": HARD.problem}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            output = chunk
    return TTCResult.model_validate(output["result"]), events


def _has_colour(image: Any, hex_colour: str, tolerance: int = 12) -> bool:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    pixels = image.convert("RGB").get_flattened_data()
    return any(all(abs(p[c] - target[c]) <= tolerance for c in range(3)) for p in pixels)


def test_a_real_search_streams_and_returns_its_tree(searched: tuple[TTCResult, list[dict[str, Any]]]) -> None:
    result, events = searched
    nodes = tree_of(result)
    streamed = [n for e in events if e["type"] == "ttc.tree" for n in e.get("nodes", [])]
    assert len(streamed) == len(nodes) - 1  # every node but the root came as a ttc.tree event
    assert events[-2]["type"] == "ttc.tree" and events[-1]["type"] == "ttc.selected"
    chosen = [n for n in nodes if n.fate == "chosen"]
    assert len(chosen) == 1 and {n.fate for n in nodes} >= {"kept", "pruned", "finished", "chosen"}


@needs_dot
def test_the_png_draws_every_node_coloured_by_fate(
    searched: tuple[TTCResult, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from PIL import Image

    page, picture = write_tree(searched[0], tmp_path / "tree.html")
    image = Image.open(picture)
    assert page.is_file() and image.width > 400 and image.height > 200
    assert _has_colour(image, COLORS["chosen"]) and _has_colour(image, COLORS["kept"])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium for the headless browser test")
@needs_dot
def test_the_page_shows_the_tree_in_a_headless_browser(
    searched: tuple[TTCResult, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    result = searched[0]
    nodes = tree_of(result)
    page_path, _ = write_tree(result, tmp_path / "tree.html")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--disable-sync"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(page_path.as_uri())
        assert page.locator("details").count() + page.locator(".leaf").count() == len(nodes)
        chosen = page.locator('[data-fate="chosen"]')
        assert chosen.count() == 1 and chosen.is_visible()
        shot = tmp_path / "open.png"
        page.screenshot(path=str(shot), full_page=True)
        image = Image.open(shot)
        assert _has_colour(image, COLORS["chosen"]) and _has_colour(image, COLORS["pruned"])
        assert len(set(image.convert("RGB").get_flattened_data())) > 50  # a drawn page, not a blank one
        # Collapsing the root hides the whole search; expanding all shows the chosen leaf again.
        page.locator("summary").first.click()
        assert not page.locator("details").first.evaluate("d => d.open") and not chosen.is_visible()
        page.get_by_role("button", name="expand all").click()
        assert chosen.is_visible()
        page.get_by_role("button", name="collapse all").click()
        assert page.locator("details[open]").count() == 0
        browser.close()


@pytest.mark.integration
@needs_dot
def test_ttc_solve_writes_the_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["solve", HARD.problem, "--strategy", "beam_search", "--n", "4", "--beam-width", "2", "--seed", "0"]
    assert main([*args, "--max-tokens", "64", "--tree", str(tmp_path / "out.html")]) == 0
    html = (tmp_path / "out.html").read_text()
    assert (tmp_path / "out.png").stat().st_size > 1000 and 'data-fate="chosen"' in html
    assert main(["solve", HARD.problem, "--strategy", "majority_vote", "--tree", str(tmp_path / "x.html")]) == 2
    assert "--tree needs a strategy that searches step by step" in capsys.readouterr().err


def test_self_refinement_drafts_form_a_tree() -> None:
    from langchain_ttc import create_self_refine_graph
    from tests.fakes import ScriptedPolicy

    policy = ScriptedPolicy(["A.\n\nThe answer is \\boxed{1}.", "B.\n\nThe answer is \\boxed{2}."])
    output = create_self_refine_graph(policy, lambda _p, _s: "Step 1 is wrong.", max_revisions=1, chains=2).invoke(
        {"problem": "p"}
    )
    nodes = tree_of(output["result"])
    assert [n.parent for n in nodes] == [
        None,
        0,
        1,
        0,
        3,
    ]  # a root, two chains (drafts in chain order), each revised once
    assert sum(n.fate == "chosen" for n in nodes) == 1 and isinstance(nodes[0], TreeNode)


def test_without_dot_only_the_page_is_written_and_one_warning_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import sys

    from langchain_ttc import create_self_refine_graph
    from tests.fakes import ScriptedPolicy

    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else which(name, *a, **k))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # dot cannot be found by graphviz either
    policy = ScriptedPolicy(["A.\n\nThe answer is \\boxed{1}."])
    output = create_self_refine_graph(policy, lambda _p, _s: "Step 1 is wrong.", max_revisions=1).invoke(
        {"problem": "p"}
    )
    with pytest.warns(UserWarning) as caught:
        page, picture = write_tree(output["result"], tmp_path / "tree.html")
    assert picture is None and page == tmp_path / "tree.html" and "data-fate" in page.read_text()
    assert [str(w.message) for w in caught] == [
        "drawing the tree as a PNG needs Graphviz's dot program (apt-get install graphviz, or brew install graphviz); "
        f"wrote the HTML page only: {page}"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.html"]  # no tree.png, no tree.gv
