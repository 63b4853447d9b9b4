"""ui.grid against real nodes (no browser): snapshot, cell patches with raw vs
computed values, structural deltas, positions typed against an old layout,
conflicts while editing, bad input. A Python stand-in applies the messages as
widgets/src/grid.js does, and must end equal to the sheet.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ui_front import Front, fast_node, two_nodes, until

from ownkernel import ui
from ownkernel.node import Node
from ownkernel.ui.grid import parse_input, show


class GridFront(Front):
    """What grid.js keeps: a row-major list of cells (tuples as in the protocol)."""

    def __init__(self, widget: Any) -> None:
        super().__init__(widget)
        self.version = -1
        self.rows: list[list[tuple[Any, ...]]] = []
        self.ncols = 0
        self.seen = 0
        self.widths: dict[str, int] = {}

    def pump(self) -> None:
        with self.lock:
            new = [m for _, m in self.sent[self.seen:]]
            self.seen = len(self.sent)
        for m in new:
            if m["t"] == "snapshot":
                self.version = m["v"]
                self.ncols = m["cols"]
                self.widths = m["widths"]
                self.rows = [[() for _ in range(m["cols"])] for _ in range(m["rows"])]
                for r, row in m["data"]:
                    for c, v in enumerate(row):
                        self.rows[r][c] = () if v is None else tuple(v) if isinstance(
                            v, list) else (v,)
            elif m["t"] == "deltas" and self.version >= 0:
                assert m["from"] <= self.version + 1, "gap"
                for op in m["ops"][self.version + 1 - m["from"]:]:
                    self.apply(op)
                    self.version += 1

    def apply(self, op: dict[str, Any]) -> None:
        if op["o"] == "rows":
            del self.rows[op["at"]:op["at"] + op["del"]]
            self.rows[op["at"]:op["at"]] = [[() for _ in range(self.ncols)]
                                            for _ in range(op["ins"])]
        elif op["o"] == "cols":
            for row in self.rows:
                del row[op["at"]:op["at"] + op["del"]]
                row[op["at"]:op["at"]] = [()] * op["ins"]
            self.ncols += op["ins"] - op["del"]
        elif op["o"] == "widths":
            self.widths = op["w"]
        else:
            for cell in op["c"]:
                self.rows[cell[0]][cell[1]] = tuple(cell[2:])

    def shown(self, r: int, c: int) -> Any:
        """The value the page displays (computed for a formula)."""
        cell = self.rows[r][c]
        return None if not cell else cell[-1]

    def settle(self, sheet: Any) -> None:
        until(lambda: (self.pump(), self.equals(sheet))[1], what="grid equal to the sheet")

    def equals(self, sheet: Any) -> bool:
        raws, vals = sheet.raws(), sheet.values()
        want = [[show(raw, val) for raw, val in zip(rr, vv)] for rr, vv in zip(raws, vals)]
        return [list(r) for r in self.rows] == want


@pytest.fixture
def node(tmp_path) -> Iterator[Node]:
    n = fast_node(tmp_path / "n", "ann")
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[Node, Node, Any, Any]]:
    with two_nodes(tmp_path, lambda d: d.sheet("s").set("A1", 1)) as p:
        yield p


def ready(w: Any) -> GridFront:
    f = GridFront(w)
    f.deliver({"t": "ready"})
    until(lambda: f.of_type("snapshot"), what="snapshot")
    f.pump()
    return f


def test_parse_input_stores_numbers_as_numbers() -> None:
    assert parse_input("42") == 42 and type(parse_input("42")) is int
    assert parse_input(" -1.5 ") == -1.5 and parse_input("1e3") == 1000.0
    assert parse_input("=SUM(A1:A2)") == "=SUM(A1:A2)"
    assert parse_input("'007") == "007" and parse_input("007") == 7
    assert parse_input("TRUE") is True and parse_input("false") is False
    assert parse_input("") is None and parse_input("a\r\nb") == "a\nb"
    assert parse_input("12 apples") == "12 apples" and parse_input("nan") == "nan"
    with pytest.raises(ValueError, match="must be text"):
        parse_input(5)  # type: ignore[arg-type]


def test_snapshot_has_raw_and_computed_values(node: Node) -> None:
    doc = node.new_doc("d")
    s = doc.sheet("s")
    s.set("A1", 2)
    s.set("A2", 3)
    s.set("A3", "=SUM(A1:A2)")
    s.set("B1", "=1/0")
    s.set("B2", "text")
    s.set("B3", 0.5)
    w = ui.grid(s)
    f = ready(w)
    snap = f.of_type("snapshot")[0]
    assert snap["rows"] == 3 and snap["cols"] == 2
    assert snap["data"] == [[0, [2, ["=1/0", {"e": "#DIV/0!"}]]], [1, [3, "text"]],
                            [2, [["=SUM(A1:A2)", 5], 0.5]]]
    assert f.equals(s)
    w.close()


def test_edit_patches_the_cell_and_its_dependents_only(node: Node) -> None:
    doc = node.new_doc("d")
    s = doc.sheet("s")
    for i in range(1, 21):
        s.set(f"A{i}", i)
        s.set(f"B{i}", f"=A{i}*2")
    s.set("C1", "=SUM(A1:A20)")
    w = ui.grid(s)
    f = ready(w)
    n = len(f.sent)
    f.deliver({"t": "set", "v": f.version, "cells": [[4, 0, "100"]]})  # A5: 5 -> 100
    until(lambda: s.raw("A5") == 100, what="edit written")
    f.settle(s)
    assert s.value("C1") == 210 - 5 + 100
    patches = [c for m in f.sent[n:] if m[1]["t"] == "deltas" for op in m[1]["ops"]
               for c in op["c"]]
    assert sorted(patches) == sorted([[4, 0, 100], [4, 1, "=A5*2", 200],
                                      [0, 2, "=SUM(A1:A20)", 305]])
    w.close()


def test_remote_edit_and_row_insert_reach_the_other_grid(pair) -> None:
    a, b, da, db = pair
    sa, sb = da.sheet("s"), db.sheet("s")
    wa, wb = ui.grid(sa), ui.grid(sb)
    fa, fb = ready(wa), ready(wb)
    fa.deliver({"t": "set", "v": fa.version,
                "cells": [[0, 0, "10"], [1, 0, "20"], [2, 0, "=SUM(A1:A2)"], [1, 1, "row2"]]})
    until(lambda: db.sheet("s").nrows == 3 and sb.value("A3") == 30, what="sync to B")
    fb.settle(sb)
    assert fb.shown(2, 0) == 30
    # page B inserts a row above row 2: row 2's cells move down together
    fb.deliver({"t": "rows", "v": fb.version, "op": "insert", "at": 1, "n": 1})
    until(lambda: sa.nrows == 4, what="insert reached A")
    fa.settle(sa)
    assert fa.rows[2] == [(20,), ("row2",)]
    assert fa.rows[1] == [(), ()]
    # the range grew with the row inserted inside it: still 10 + 20, in both pages
    assert fa.rows[3][0] == ("=SUM(A1:A3)", 30) and sa.value("A4") == 30
    fb.settle(sb)
    assert fb.rows[3][0] == ("=SUM(A1:A3)", 30)
    fb.settle(sb)
    wa.close()
    wb.close()


def test_positions_typed_against_an_old_layout_are_moved(node: Node) -> None:
    doc = node.new_doc("d")
    s = doc.sheet("s")
    s.set("A3", "mine")
    w = ui.grid(s)
    f = ready(w)
    v = f.version
    s.insert_rows(0, 2)  # arrives after the page typed, before Python read it
    until(lambda: w._version == v + 1, what="structure delta")
    f.deliver({"t": "set", "v": v, "cells": [[2, 1, "next to mine"]]})
    until(lambda: s.ncols == 2, what="edit written")
    f.settle(s)
    assert s.raw("B5") == "next to mine" and s.raw("A5") == "mine"
    # a cell typed in a row deleted meanwhile is dropped, not written elsewhere
    v = f.version
    s.delete_rows(4, 1)
    until(lambda: w._version == v + 1, what="delete delta")
    f.deliver({"t": "set", "v": v, "cells": [[4, 0, "lost"]]})
    f.deliver({"t": "set", "v": f.version, "cells": [[0, 0, "after"]]})  # handled in order
    until(lambda: s.raw("A1") == "after", what="later edit written")
    f.settle(s)
    assert "lost" not in [x for row in s.raws() for x in row]
    w.close()


def test_conflict_while_editing_writes_nothing_until_forced(node: Node) -> None:
    doc = node.new_doc("d")
    s = doc.sheet("s")
    s.set("A1", 1)
    w = ui.grid(s)
    f = ready(w)
    s.set("A1", "=2+2")  # a peer changed it while the user was editing "1"
    f.deliver({"t": "set", "v": f.version, "cells": [[0, 0, "7"]], "expect": 1})
    until(lambda: f.of_type("conflict"), what="conflict")
    c = f.of_type("conflict")[0]
    assert c["cell"] == [0, 0] and c["mine"] == "7" and c["theirs"] == "=2+2"
    assert s.raw("A1") == "=2+2"
    f.deliver({"t": "set", "v": f.version, "cells": [[0, 0, "7"]], "expect": 1, "force": True})
    until(lambda: s.raw("A1") == 7, what="forced write")
    f.settle(s)
    assert s.raw("A1") == 7
    # expect matching what is there: written at once (1 == 1.0 in JSON, True is not 1)
    f.deliver({"t": "set", "v": f.version, "cells": [[0, 0, "8"]], "expect": 7.0})
    until(lambda: s.raw("A1") == 8, what="write")
    f.settle(s)
    assert s.raw("A1") == 8
    f.deliver({"t": "set", "v": f.version, "cells": [[0, 0, "9"]], "expect": True})
    until(lambda: len(f.of_type("conflict")) == 2, what="second conflict")
    assert s.raw("A1") == 8
    w.close()


def test_column_insert_delete_and_paste_of_a_range(node: Node) -> None:
    doc = node.new_doc("d")
    s = doc.sheet("s")
    w = ui.grid(s)
    f = ready(w)
    rows = ["1\t2\t=A1+B1", "3\t4\t=A2+B2"]
    cells = [[r, c, t] for r, line in enumerate(rows) for c, t in enumerate(line.split("\t"))]
    f.deliver({"t": "set", "v": f.version, "cells": cells})
    until(lambda: s.nrows == 2, what="paste")
    f.settle(s)
    assert s.values() == [[1, 2, 3], [3, 4, 7]]
    f.deliver({"t": "cols", "v": f.version, "op": "insert", "at": 1, "n": 1})
    until(lambda: s.ncols == 4, what="column insert")
    f.settle(s)
    # references follow their cells: B1 moved to C1, the formula with it
    assert s.raws()[0] == [1, None, 2, "=A1+C1"] and f.rows[0][3] == ("=A1+C1", 3)
    f.deliver({"t": "cols", "v": f.version, "op": "delete", "at": 1, "n": 1})
    until(lambda: s.ncols == 3, what="column delete")
    f.settle(s)
    assert s.values() == [[1, 2, 3], [3, 4, 7]]
    f.deliver({"t": "set", "v": f.version, "cells": [[0, 0, ""]]})  # clearing
    until(lambda: s.raw("A1") is None, what="clear")
    f.settle(s)
    assert f.rows[0][0] == () and f.shown(0, 2) == 2
    w.close()


def test_bad_messages_are_refused_clearly_and_lose_nothing(node: Node) -> None:
    doc = node.new_doc("d")
    s = doc.sheet("s")
    s.set("A1", 5)
    w = ui.grid(s)
    f = ready(w)
    bad = [{"t": "set", "cells": []}, {"t": "set", "cells": [[0, "x", "1"]]},
           {"t": "set", "cells": [[0, 0, "ok"], [0, -1, "1"]]},
           {"t": "set", "cells": [[0, 0, 5]]},
           {"t": "rows", "op": "shuffle", "at": 0}, {"t": "rows", "op": "insert", "at": -1},
           {"t": "cols", "op": "insert", "at": 0, "n": 10**9}, {"t": "paint"}]
    for i, msg in enumerate(bad):
        f.deliver(msg)
        until(lambda i=i: len(f.of_type("error")) == i + 1, what=f"error for {msg}")
    errors = [e["error"] for e in f.of_type("error")]
    assert "non-empty list" in errors[0] and "cell 0 is not" in errors[1]
    assert "cell 1 is not" in errors[2] and "must be text" in errors[3]
    assert "insert or delete" in errors[4] and "unknown message type" in errors[7]
    assert s.raws() == [[5]]  # the valid first cell of a bad batch was not written
    f.settle(s)
    w.close()


def test_many_dependents_in_one_batched_patch(node: Node) -> None:
    doc = node.new_doc("d")
    s = doc.sheet("s")
    with doc.transaction():
        for i in range(2, 1002):
            s.set(f"A{i}", f"=A1+{i}")
    s.set("A1", 1)
    w = ui.grid(s)
    f = ready(w)
    n = len(f.sent)
    f.deliver({"t": "set", "v": f.version, "cells": [[0, 0, "2"]]})
    until(lambda: s.raw("A1") == 2, what="edit")
    f.settle(s)
    assert f.shown(1000, 0) == 2 + 1001
    deltas = [m for _, m in f.sent[n:] if m["t"] == "deltas"]
    assert sum(len(op["c"]) for m in deltas for op in m["ops"]) == 1001
    assert len(deltas) <= 2  # one batch (two if a flush timer split it)
    w.close()


def test_widget_for_a_sheet_root_is_a_grid(node: Node) -> None:
    doc = node.new_doc("d")
    w = ui.widget_for(doc.sheet("s"))
    assert isinstance(w, ui.Grid) and w.kind == "grid" and w.root == "s"
    w.close()
    with pytest.raises(TypeError, match="needs a sheet root"):
        ui.grid(doc.text("body"))


def test_a_column_resized_in_one_page_shows_in_the_other(pair) -> None:
    a, b, da, db = pair
    sa, sb = da.sheet("s"), db.sheet("s")
    sa.set("C1", "c")
    until(lambda: sb.ncols == 3, what="sync to B")
    wa, wb = ui.grid(sa), ui.grid(sb)
    fa, fb = ready(wa), ready(wb)
    assert fa.widths == {} and fb.widths == {}
    fa.deliver({"t": "width", "v": fa.version, "col": 2, "px": 180})
    until(lambda: (fb.pump(), fb.widths)[1] == {"2": 180}, what="width reached B")
    until(lambda: (fa.pump(), fa.widths)[1] == {"2": 180}, what="width echoed to A")
    # B inserts a column before it: the width moves with its column, in both
    fb.deliver({"t": "cols", "v": fb.version, "op": "insert", "at": 0, "n": 1})
    until(lambda: (fa.pump(), fa.widths)[1] == {"3": 180}, what="width moved in A")
    until(lambda: (fb.pump(), fb.widths)[1] == {"3": 180}, what="width moved in B")
    # a width typed against the old layout lands on the column the user saw
    v = fa.version
    sa.insert_cols(0, 1)
    until(lambda: wa._version > v, what="structure delta")
    fa.deliver({"t": "width", "v": v, "col": 3, "px": 60})
    until(lambda: sa.col_widths() == {4: 60}, what="moved width written")
    # a fresh page gets them in its snapshot; resetting goes back to the default
    wc = ui.grid(sb)
    assert ready(wc).widths in ({"4": 180}, {"4": 60})
    wc.close()
    fb.deliver({"t": "width", "v": fb.version + 100, "col": 0, "px": None})
    fa.deliver({"t": "width", "v": fa.version, "col": 1, "px": 10})  # too narrow
    until(lambda: any("column width" in m["error"] for m in fa.of_type("error")),
          what="error for a bad width")
    until(lambda: sb.col_widths() == sa.col_widths() == {4: 60}, what="converged")
    wa.close()
    wb.close()
