"""ui.grid in a real JupyterLab and Debian's Chromium, two notebooks on two
ownkernel kernels whose nodes share one doc over 127.0.0.1: a cell edited in
one page recomputes a dependent =SUM in the other; a row inserted in one page
above a filled row keeps that row's cells together in both. Screenshots of
both pages go to a temporary directory when a test fails (the path is printed);
with OWNKERNEL_UI_SHOTS=<dir> they are also taken when it passes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import kernel_sandbox

lab = pytest.importorskip("lab", reason="tests/browser/lab.py")
_why = lab.missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

GRID = '[data-own-widget="grid"]'
WAIT = 60_000  # ms: generous, these are conditions, not timings

CELL_A = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ann'\n"
    "doc = node.new_doc('sheets')\ns = doc.sheet('s')\n"
    "s.set('A1', 1); s.set('A2', 2); s.set('B2', 'keep'); s.set('A3', '=SUM(A1:A2)')\n"
    "s.set('B1', '=1/0')\n"
    "pathlib.Path('invite.txt').write_text(node.invite(doc))",
    "ui.grid(doc.sheet('s'))",
]
CELL_B = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ben'\n"
    "doc = node.join(pathlib.Path('invite.txt').read_text(), timeout=60)",
    "doc.sheet('s')",  # a sheet root as the last expression shows as its grid
]


def cell(ref: str) -> str:
    return f'{GRID} [data-own-cell="{ref}"]'


def wait_cell(page: Any, ref: str, text: str) -> None:
    page.wait_for_function(
        f"() => {{ const e = document.querySelector({json.dumps(cell(ref))});"
        f" return !!e && e.textContent === {json.dumps(text)}; }}", timeout=WAIT)


def texts(page: Any, refs: list[str]) -> list[str | None]:
    return page.evaluate(
        "(refs) => refs.map(r => { const e = document.querySelector("
        "`[data-own-widget=\"grid\"] [data-own-cell=\"${r}\"]`); return e && e.textContent; })",
        refs)


class Pages:
    def __init__(self, a: Any, b: Any, shots: Path) -> None:
        self.a, self.b, self.shots = a, b, shots


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("gridlab")
    shots = Path(tempfile.mkdtemp(prefix="ownkernel-grid-shots-"))
    with kernel_sandbox(root / "sandbox"):
        os.environ["OWNKERNEL_LISTEN"] = "tcp://127.0.0.1:0"
        work = root / "work"
        work.mkdir()
        lab.notebook(work / "A.ipynb", CELL_A)
        lab.notebook(work / "B.ipynb", CELL_B)
        server = lab.Lab(work, ["--YDocExtension.disable_rtc=True"])
        try:
            with sync_playwright() as pw:
                browser = lab.launch(pw)
                a = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
                b = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
                lab.open_and_run(a, server.url("a", "A.ipynb"))
                wait_cell(a, "A3", "3")
                lab.open_and_run(b, server.url("b", "B.ipynb"))
                wait_cell(b, "A3", "3")
                yield Pages(a, b, shots)
                browser.close()
        finally:
            server.stop()
            os.environ.pop("OWNKERNEL_LISTEN", None)


@pytest.fixture(autouse=True)
def screenshots(request: pytest.FixtureRequest, pages: Pages) -> Iterator[None]:
    failed = request.session.testsfailed
    yield
    keep = os.environ.get("OWNKERNEL_UI_SHOTS")
    if request.session.testsfailed > failed or keep:
        d = Path(keep) if keep and request.session.testsfailed == failed else pages.shots
        for name, page in (("A", pages.a), ("B", pages.b)):
            page.locator(GRID).screenshot(path=str(d / f"{request.node.name}-{name}.png"))
        if request.session.testsfailed > failed:
            print(f"screenshots of the failure in {pages.shots}", file=sys.__stderr__)


def test_snapshot_shows_computed_values_and_errors(pages: Pages) -> None:
    for page in (pages.a, pages.b):
        assert texts(page, ["A1", "A2", "A3", "B1", "B2"]) == ["1", "2", "3", "#DIV/0!", "keep"]
        assert "own-num" in page.get_attribute(cell("A3"), "class")
        assert "own-err" in page.get_attribute(cell("B1"), "class")
        assert page.inner_text(f'{GRID} [data-own-col="B"]') == "B"
        assert page.inner_text(f'{GRID} [data-own-row="3"]') == "3"


def test_editing_a_cell_recomputes_the_sum_in_the_other_page(pages: Pages) -> None:
    a, b = pages.a, pages.b
    a.click(cell("A3"))  # the editor holds the raw formula, as does the formula bar
    editor = f'{GRID} [data-own="cell-editor"]'
    assert a.input_value(editor) == "=SUM(A1:A2)"
    assert a.input_value(f'{GRID} [data-own="formula-bar"]') == "=SUM(A1:A2)"
    a.keyboard.press("Escape")
    a.click(cell("A1"))
    a.keyboard.press("Control+a")
    a.keyboard.type("40")
    a.keyboard.press("Enter")
    wait_cell(b, "A3", "42")
    wait_cell(a, "A3", "42")
    assert "own-num" in b.get_attribute(cell("A1"), "class")  # stored as a number
    # Tab moves right: B1 gets a formula, its error clears in the other page
    a.click(cell("A2"))
    a.keyboard.press("Tab")  # commits unchanged A2, moves to B2
    a.keyboard.press("ArrowUp")
    a.keyboard.type("=A1/2")  # typing on a selected cell replaces it
    a.keyboard.press("Enter")
    wait_cell(b, "B1", "20")


def test_row_inserted_above_a_filled_row_keeps_its_cells_together(pages: Pages) -> None:
    a, b = pages.a, pages.b
    b.click(cell("A2"))
    b.keyboard.press("Escape")
    b.click(f'{GRID} [data-own-action="row-above"]')
    for page in (a, b):  # row 2 (2, keep) moved to row 3 whole; row 2 is new and empty
        wait_cell(page, "B3", "keep")
        wait_cell(page, "A3", "2")
        assert texts(page, ["A2", "B2"]) == ["", ""]
    # the positional =SUM(A1:A2) moved to A4 and now reads A1 and the new row
    wait_cell(a, "A4", "40")
    # and from the context menu in page A: delete that empty row again
    a.click(cell("B2"), button="right")
    a.click(f'{GRID} [data-own="grid-menu"] [data-own-action="row-delete"]')
    for page in (a, b):
        wait_cell(page, "B2", "keep")
        wait_cell(page, "A3", "42")
