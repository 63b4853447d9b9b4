"""ownkernel.apps.budget: the sheet it builds, its formulas (planned vs spent,
who paid what, equal shares, who owes whom), growth past a block of expense
rows, renames, CSV export, and the live chart's protocol."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from ui_front import Front, until

from ownkernel.apps import budget, settle
from ownkernel.apps.budget import BLOCK
from ownkernel.node import Node


@pytest.fixture
def doc(tmp_path) -> Iterator[Any]:
    n = Node(tmp_path / "n", name="ann", network=False)
    try:
        yield n.new_doc("money")
    finally:
        n.close()


def make(doc: Any) -> Any:
    return budget(doc, categories=["Food", "Rent", "Fun"], people=["ann", "ben", "cy"],
                  planned={"Food": 300, "Rent": 900, "Fun": 100.5})


def test_settle_pays_largest_debts_first() -> None:
    assert settle({"ann": 60.0, "ben": -30.0, "cy": -30.0}) == [("ben", "ann", 30.0),
                                                                 ("cy", "ann", 30.0)]
    assert settle({"a": 0.001, "b": -0.001}) == []
    assert settle({"a": 10, "b": 5, "c": -15}) == [("c", "a", 10.0), ("c", "b", 5.0)]


def test_totals_shares_and_who_owes_whom(doc) -> None:
    b = make(doc)
    b.add_expense("2026-11-02", "rent", "Rent", 900, paid_by="ann")
    b.add_expense("2026-11-01", "groceries", "Food", 45.3, paid_by="ben")
    b.add_expense("2026-11-03", "cinema", "Fun", 30, paid_by="cy")
    b.add_expense("2026-11-03", "market", "Food", 24.7, paid_by="cy")
    s = b.summary()
    assert {x["category"]: (x["planned"], x["spent"]) for x in s["bars"]} == {
        "Food": (300, 70.0), "Rent": (900, 900), "Fun": (100.5, 30)}
    assert s["planned"] == 1300.5 and s["spent"] == 1000
    people = {x["name"]: (x["paid"], round(x["share"], 6), round(x["balance"], 6))
              for x in s["people"]}
    share = round(1000 / 3, 6)
    assert people["ann"] == (900, share, round(900 - 1000 / 3, 6))
    assert people["ben"][0] == 45.3 and people["cy"][0] == 54.7
    owes = b.settle()
    assert {(a, c) for a, c, _ in owes} == {("ben", "ann"), ("cy", "ann")}
    # each transfer is rounded to cents: together within a cent of what ann is owed
    assert abs(sum(x for _, _, x in owes) - (900 - 1000 / 3)) <= 0.01
    # remaining budget over time, by date
    assert s["line"] == [["2026-11-01", 1255.2], ["2026-11-02", 355.2], ["2026-11-03", 300.5]]
    assert s["errors"] == []
    # the sheet is plain: the totals are formulas anyone can read and edit
    assert b.sheet.raw("C2").startswith("=SUM(")
    b.set_planned("Food", 350)
    assert b.sheet.value("D2") == 280  # Left = planned - spent


def test_edits_in_the_grid_and_renames_flow_into_the_totals(doc) -> None:
    b = make(doc)
    row = b.add_expense("2026-11-01", "lunch", "Food", 12, paid_by="ben")
    b.sheet.set(f"D{row}", 20)  # someone corrects the amount in the grid
    b.sheet.set(f"C{row}", "fun")  # and its category (case-insensitive, as formulas are)
    s = b.summary()
    assert [x["spent"] for x in s["bars"]] == [0, 0, 20]
    b.sheet.set("A4", "Outings")  # rename a category: its expenses follow
    assert b.categories == ["Food", "Rent", "Outings"]
    assert b.summary()["bars"][2] == {"category": "Outings", "planned": 100.5, "spent": 0}
    b.sheet.set(f"C{row}", "Outings")
    assert b.summary()["bars"][2]["spent"] == 20
    with pytest.raises(ValueError, match="unknown category 'Fun'"):
        b.add_expense("2026-11-01", "x", "Fun", 1, paid_by="ben")
    with pytest.raises(ValueError, match="unknown person"):
        b.add_expense("2026-11-01", "x", "Food", 1, paid_by="zed")
    with pytest.raises(ValueError, match="finite number"):
        b.add_expense("2026-11-01", "x", "Food", float("nan"), paid_by="ben")


def test_more_expenses_than_a_block_grow_the_sheet(doc) -> None:
    b = make(doc)
    for i in range(BLOCK + 3):
        b.add_expense(f"2026-11-{1 + i % 28:02d}", f"e{i}", "Food", 1, paid_by="cy")
    assert len(b.expenses()) == BLOCK + 3
    s = b.summary()
    assert s["bars"][0]["spent"] == BLOCK + 3
    assert {x["name"]: x["paid"] for x in s["people"]}["cy"] == BLOCK + 3


def test_a_peer_opening_the_budget_reads_the_same_layout(doc) -> None:
    make(doc)
    again = budget(doc, categories=["ignored"])
    assert again.categories == ["Food", "Rent", "Fun"] and again.people == ["ann", "ben", "cy"]
    with pytest.raises(ValueError, match="holds no budget yet"):
        budget(doc, name="empty")
    with pytest.raises(ValueError, match="distinct non-empty"):
        budget(doc, name="other", categories=["a", "a"], people=["p"])
    doc.sheet("notes").set("A1", "hello")
    with pytest.raises(ValueError, match="is not a budget"):
        budget(doc, name="notes").summary()


def test_csv_export_is_exact(doc) -> None:
    b = make(doc)
    b.add_expense("2026-11-01", 'say "cheese", twice', "Food", 0.1, paid_by="ann")
    b.add_expense("2026-11-01", "more", "Food", 0.2, paid_by="ann")
    rows = list(csv.reader(io.StringIO(b.to_csv())))
    assert rows[0][:4] == ["Category", "Planned", "Spent", "Left"]
    assert rows[1][:3] == ["Food", "300", repr(0.1 + 0.2)]  # the float itself, not rounded
    assert rows[3][1] == "100.5"
    exp = [r for r in rows if r and r[1] == 'say "cheese", twice']
    assert exp and exp[0][3] == "0.1"


def test_chart_widget_sends_the_summary_and_updates_live(doc) -> None:
    b = make(doc)
    w = b.chart()
    f = Front(w)
    f.deliver({"t": "ready"})
    snap = f.of_type("snapshot")[0]
    assert snap["summary"]["bars"][0] == {"category": "Food", "planned": 300, "spent": 0}
    b.add_expense("2026-11-01", "x", "Food", 12.5, paid_by="ben")
    until(lambda: f.of_type("deltas"), what="delta")
    last = f.of_type("deltas")[-1]["ops"][-1]
    assert last["bars"][0]["spent"] == 12.5
    assert last["owes"] and last["owes"][0][1] == "ben"
    assert "budget.js" in str(type(w)._esm) or w.kind == "budget"
    w.close()
