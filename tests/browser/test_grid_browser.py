"""ui.grid in a real JupyterLab and Debian's Chromium, two notebooks on two
ownkernel kernels whose nodes share one doc over 127.0.0.1: a cell edited in
one page recomputes a dependent =SUM in the other; a row inserted in one page
above a filled row keeps that row's cells together in both. Screenshots of
both pages go to a temporary directory when a test fails (the path is printed);
with OWNKERNEL_UI_SHOTS=<dir> they are also taken when it passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

lab = pytest.importorskip("lab", reason="tests/browser/lab.py")
_why = lab.missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

GRID = '[data-own-widget="grid"]'
WAIT = 60_000  # ms: generous, these are conditions, not timings

CELL_A = [
    "from ownkernel import ui\nfrom ownkernel.apps import budget\nimport pathlib\n"
    "node.name = 'ann'\n"
    "doc = node.new_doc('sheets')\ns = doc.sheet('s')\n"
    "s.set('A1', 1); s.set('A2', 2); s.set('B2', 'keep'); s.set('A3', '=SUM(A1:A2)')\n"
    "s.set('B1', '=1/0')\n"
    "b = budget(doc, categories=['Food', 'Fun'], people=['ann', 'ben'], planned={'Food': 100})\n"
    "b.add_expense('2026-11-01', 'lunch', 'Food', 20, paid_by='ann')\n"
    "pathlib.Path('invite.txt').write_text(node.invite(doc))",
    "ui.grid(doc.sheet('s'))",
    "todo = ui.items(doc.list('todo'))\ntodo.add('milk')\ntodo.add('eggs')\ntodo",
    "b.chart()",
]
CELL_B = [
    "from ownkernel import ui\nfrom ownkernel.apps import budget\nimport pathlib\n"
    "node.name = 'ben'\n"
    "doc = node.join(pathlib.Path('invite.txt').read_text(), timeout=60)",
    "doc.sheet('s')",  # a sheet root as the last expression shows as its grid
    "ui.items(doc.list('todo'))",
    "b = budget(doc)\nb.grid()",  # the budget's own sheet, a second grid in this page
]
ITEM = '[data-own-widget="items"] [data-own="item"]'
BUDGET_EXPENSE = "D11"  # first expense row of a 2-category, 2-person budget: its amount


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


Pages = lab.Pages


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    with lab.two_pages(tmp_path_factory.mktemp("gridlab"), CELL_A, CELL_B,
                       lambda _, page: wait_cell(page, "A3", "3"), shots="grid") as p:
        yield p


screenshots = lab.screenshots


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
    # =SUM(A1:A2) moved to A4 and grew to =SUM(A1:A3) with the row inserted inside it
    for page in (a, b):
        wait_cell(page, "A4", "42")
    a.click(cell("A4"))
    a.keyboard.press("Escape")
    assert a.input_value(f'{GRID} [data-own="formula-bar"]') == "=SUM(A1:A3)"
    # and from the context menu in page A: delete that empty row again
    a.click(cell("B2"), button="right")
    a.click(f'{GRID} [data-own="grid-menu"] [data-own-action="row-delete"]')
    for page in (a, b):
        wait_cell(page, "B2", "keep")
        wait_cell(page, "A3", "42")


def test_checking_an_item_in_one_page_shows_checked_in_the_other(pages: Pages) -> None:
    a, b = pages.a, pages.b
    milk_b = b.locator(ITEM, has_text="milk")
    milk_b.wait_for(timeout=WAIT)
    b.locator(ITEM, has_text="eggs").wait_for(timeout=WAIT)
    milk_b.locator('[data-own="item-done"]').click()
    a.locator(f'{ITEM}[data-own-done="true"]', has_text="milk").wait_for(timeout=WAIT)
    assert a.locator(ITEM, has_text="milk").locator('[data-own="item-done"]').is_checked()
    assert a.locator(ITEM, has_text="eggs").get_attribute("data-own-done") == "false"
    # and an item added in page A appears in page B, last
    a.fill('[data-own-widget="items"] [data-own="item-input"]', "bread 🍞")
    a.press('[data-own-widget="items"] [data-own="item-input"]', "Enter")
    b.locator(ITEM, has_text="bread 🍞").wait_for(timeout=WAIT)
    assert b.locator(ITEM).nth(2).inner_text().startswith("⋮⋮")  # grip, then the text
    assert "bread 🍞" in b.locator(ITEM).nth(2).inner_text()


def test_budget_chart_changes_when_a_value_changes(pages: Pages) -> None:
    a, b = pages.a, pages.b
    spent = ('[data-own-widget="budget"] [data-own="bar"][data-own-cat="Food"]'
             '[data-own-kind="spent"]')
    a.wait_for_selector(f'{spent}[data-own-value="20"]', timeout=WAIT)
    height = float(a.get_attribute(spent, "height") or 0)
    grid_b = b.locator(GRID).filter(has_text="Category")  # the budget's sheet in page B
    grid_b.locator(f'[data-own-cell="{BUDGET_EXPENSE}"]').wait_for(timeout=WAIT)
    assert grid_b.locator(f'[data-own-cell="{BUDGET_EXPENSE}"]').inner_text() == "20"
    grid_b.locator(f'[data-own-cell="{BUDGET_EXPENSE}"]').click()
    b.keyboard.press("Control+a")
    b.keyboard.type("80")
    b.keyboard.press("Enter")
    a.wait_for_selector(f'{spent}[data-own-value="80"]', timeout=WAIT)
    assert float(a.get_attribute(spent, "height") or 0) > height
    owes = a.locator('[data-own-widget="budget"] [data-own="owes"]')
    assert owes.inner_text() == "ben owes ann 40"  # 80 paid by ann, shared by two
    lab.keep_shot(a.locator('[data-own-widget="budget"]'), "budget-chart-A.png")
    lab.keep_shot(grid_b, "budget-grid-B.png")


PASTE = """([sel, text]) => {
  const dt = new DataTransfer();
  dt.setData('text/plain', text);
  document.querySelector(sel).dispatchEvent(
    new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
}"""
COPY = """(sel) => {
  const dt = new DataTransfer();
  document.querySelector(sel).dispatchEvent(
    new ClipboardEvent('copy', {clipboardData: dt, bubbles: true, cancelable: true}));
  return [dt.getData('text/plain'), dt.getData('application/x-ownkernel-grid')];
}"""


def test_paste_and_copy_a_tab_separated_range(pages: Pages) -> None:
    a, b = pages.a, pages.b
    a.click(cell("B1"))  # opens the editor; Escape leaves B1 selected
    a.keyboard.press("Escape")
    # what a spreadsheet application puts on the clipboard: tabs, CRLF, a quoted field;
    # the sheet grows a column C to hold it
    # dispatched where a real paste lands: the focused grid (its inner root)
    a.evaluate(PASTE, [f"{GRID} .own-grid", '5\t6\r\n=B1+C1\t"a\tb"\r\n'])
    wait_cell(b, "B2", "11")
    assert texts(b, ["B1", "C1", "C2"]) == ["5", "6", "a\tb"]
    b.click(cell("B1"))
    b.keyboard.press("Escape")
    b.click(cell("C2"), modifiers=["Shift"])  # extends the selection to B1:C2
    plain, raw = b.evaluate(COPY, f"{GRID} .own-grid")
    assert plain == '5\t6\n11\t"a\tb"'  # values, for other applications
    assert raw == '5\t6\n=B1+C1\t"a\tb"'  # raw text, for pasting into a grid


def test_dragging_an_item_moves_it_in_both_pages(pages: Pages) -> None:
    a, b = pages.a, pages.b
    b.locator(ITEM, has_text="bread").wait_for(timeout=WAIT)
    before = [t.split("\n")[0] for t in a.locator(f"{ITEM} [data-own=item-text]").all_inner_texts()]
    assert before[-1].startswith("bread")
    b.locator(ITEM, has_text="bread").drag_to(b.locator(ITEM).first,
                                                 target_position={"x": 40, "y": 2})
    a.wait_for_function(
        "() => { const t = document.querySelector('[data-own-widget=\"items\"] "
        "[data-own=\"item\"] [data-own=\"item-text\"]'); return t && "
        "t.textContent.startsWith('bread'); }", timeout=WAIT)
    after = [t.split("\n")[0] for t in a.locator(f"{ITEM} [data-own=item-text]").all_inner_texts()]
    assert sorted(after) == sorted(before) and len(after) == len(before)  # moved, not copied


def test_a_cell_being_edited_is_not_overwritten_and_shows_the_conflict(pages: Pages) -> None:
    a, b = pages.a, pages.b
    editor = f'{GRID} [data-own="cell-editor"]'
    a.click(cell("A2"))  # page A starts editing A2 ("2") ...
    a.keyboard.press("Control+a")
    a.keyboard.type("mine")
    b.click(cell("A2"))  # ... while page B writes it
    b.keyboard.press("Control+a")
    b.keyboard.type("theirs")
    b.keyboard.press("Enter")
    a.locator(f'{GRID} [data-own="grid-conflict"]').wait_for(timeout=WAIT)
    assert a.input_value(editor) == "mine"  # the editor kept the user's text
    assert "theirs" in a.inner_text(f'{GRID} [data-own="grid-conflict"]')
    wait_cell(a, "A2", "theirs")  # the cell underneath shows the peer's value
    a.keyboard.press("Enter")  # keep mine
    wait_cell(b, "A2", "mine")
    wait_cell(a, "A2", "mine")
    # the formula bar edits the selected cell too
    b.click(cell("A2"))
    b.keyboard.press("Escape")
    b.fill(f'{GRID} [data-own="formula-bar"]', "=A1*2")
    b.press(f'{GRID} [data-own="formula-bar"]', "Enter")
    wait_cell(a, "A2", "80")


def test_typing_below_the_last_row_grows_the_sheet(pages: Pages) -> None:
    a, b = pages.a, pages.b
    rows = int(a.inner_text(f'{GRID} .own-grid-status').split(" × ")[0])
    below = f"A{rows + 1}"  # shown empty under the sheet, to type into
    a.click(cell(below))
    a.keyboard.type("new row")
    a.keyboard.press("Enter")
    wait_cell(b, below, "new row")
    b.wait_for_function(
        f"() => document.querySelector('{GRID} .own-grid-status').textContent"
        f".startsWith('{rows + 1} ×')", timeout=WAIT)
    # the sheet grew under the selection, which Enter moved one row down, not two
    assert a.inner_text(f'{GRID} [data-own="grid-ref"]') == f"A{rows + 2}"


def test_a_column_resized_in_one_page_shows_in_the_other(pages: Pages) -> None:
    a, b = pages.a, pages.b
    head = f'{GRID} [data-own-col="B"]'
    width = "(sel) => parseInt(document.querySelector(sel).style.width)"
    before = a.evaluate(width, head)
    box = a.locator(f"{head} .own-grid-resize").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    a.mouse.move(x, y)
    a.mouse.down()
    a.mouse.move(x + 40, y, steps=4)
    a.mouse.move(x + 70, y, steps=4)
    a.mouse.up()
    want = before + 70
    for page in (b, a):  # shared through the sheet, echoed to the page that dragged
        page.wait_for_function(
            f"(sel) => {{ const e = document.querySelector(sel);"
            f" return !!e && parseInt(e.style.width) === {want}; }}", arg=head, timeout=WAIT)
    # the cells under it are as wide as their header
    assert b.evaluate(width, f'{GRID} [data-own-cell="B1"]') == want
