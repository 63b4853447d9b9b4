"""``ui.grid(sheet)``: a live spreadsheet over a sheet root.

Formulas are evaluated only here, in Python, by the sheet's own incremental
evaluator; the browser shows values and edits raw text. State crossing to the
browser is positional (what the user sees), with the row order held stable by
the CRDT's row ids:

  snapshot  ``{"rows": R, "cols": C, "data": [[r, [v, ...]], ...]}`` non-empty
            rows, each value ``null`` (empty), a literal, or ``[formula, value]``
  deltas    ``{"o": "rows"|"cols", "at": P, "del": D, "ins": I}``  structure
            ``{"o": "cells", "c": [cell, ...]}``                   patches
  cell      ``[r, c]`` (now empty), ``[r, c, raw]`` (a literal: number, text or
            boolean shown as it is) or ``[r, c, formula, value]`` where value is a
            number, text, boolean or ``{"e": "#DIV/0!"}``.

Browser → Python (``v`` is the version the browser had applied, so positions
typed against an older layout are moved through the structural deltas since):
  ``{"t": "set", "v": V, "cells": [[r, c, text], ...], "expect": raw?, "force": b}``
  ``{"t": "rows"|"cols", "v": V, "op": "insert"|"delete", "at": P, "n": N}``
  ``{"t": "width", "v": V, "col": C, "px": W}``  (W null: the default width)

Column widths are shared through the sheet (``Sheet.set_col_width``, stored per
column id): the snapshot carries ``"widths": {"C": W, ...}`` and every change
(a peer's resize, or a structural edit moving them) pushes the delta
``{"o": "widths", "w": {"C": W, ...}}`` with all of them by position.
A ``set`` of one cell with ``expect`` (the raw text the user started from) that
finds the cell changed meanwhile writes nothing and answers
``{"t": "conflict", "cell": [r, c], "mine": text, "theirs": raw}``: the browser
shows both and lets the user keep one (``force``).

Which cells to patch: one cell write reports the cells whose value changed
(``Sheet.observe_cells``); after a structural edit formula texts change (their
references follow the cells they named) and some may read other cells, so the
widget compares its mirror of what the browser shows, keyed by stable
(row id, column id), with the sheet.
"""

from __future__ import annotations

import math
import re
from typing import Any

import traitlets

from ownkernel.crdt.formula import FormulaError, is_formula
from ownkernel.node.handle import RootProxy
from ownkernel.ui.base import STATIC, LiveWidget

__all__ = ["Grid", "parse_input", "show"]

MAX_CELLS_PER_MESSAGE = 200_000  # a paste of a whole 10,000 x 10 sheet and then some
MAX_STRUCTURE = 100_000  # rows or columns inserted/deleted by one message
MAX_TEXT = 32767  # Excel's cell limit, as formula.py's

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

Id = tuple[int, int]


def parse_input(text: str) -> Any:
    """What a user typed into a cell, as the value to store.

    ``""`` empties the cell, ``=…`` is a formula, a number is stored as a number
    (int when integral and exact), TRUE/FALSE as booleans, a leading apostrophe
    forces text (``'007``), anything else is text. Line endings become ``\\n``.
    """
    if not isinstance(text, str):
        raise ValueError(f"cell input must be text, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"cell input is at most {MAX_TEXT} characters")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text == "":
        return None
    if text.startswith("'"):
        return text[1:]
    if text.startswith("="):
        return text
    s = text.strip()
    if _NUMBER.fullmatch(s):
        if re.fullmatch(r"[+-]?\d+", s) and abs(int(s)) <= 2**53:
            return int(s)
        f = float(s)
        if math.isfinite(f):
            return int(f) if f.is_integer() and abs(f) <= 2**53 and "e" not in s.lower() \
                and "." not in s else f
    if s.upper() in ("TRUE", "FALSE"):
        return s.upper() == "TRUE"
    return text


def _scalar(v: Any) -> Any:
    """A value as JSON shows it: numbers, text, booleans; anything else as text."""
    if isinstance(v, FormulaError):
        return {"e": v.code}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"e": "#NUM!"}
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def show(raw: Any, value: Any) -> tuple[Any, ...]:
    """The browser's form of one cell, without its position (see module doc)."""
    if raw is None:
        return ()
    if is_formula(raw):
        return (raw, _scalar(value))
    if isinstance(raw, (bool, int, str)) or (isinstance(raw, float) and math.isfinite(raw)):
        return (raw,)
    # lists, maps, bytes written from Python: shown as text; editing replaces them
    return (repr(raw), _scalar(value))


class Grid(LiveWidget):
    _esm = STATIC / "grid.js"
    root = traitlets.Unicode("").tag(sync=True)

    def __init__(self, sheet: Any) -> None:
        handle = sheet.handle if isinstance(sheet, RootProxy) else None
        if handle is None or not hasattr(sheet, "observe_cells"):
            raise TypeError(f"ui.grid needs a sheet root (doc.sheet('budget')), "
                            f"not {type(sheet).__name__}")
        super().__init__(handle.node, kind="grid", root=sheet.name)
        self._watch_first_sync(handle)
        self._sheet = sheet
        self._handle = handle
        self._name = sheet.name
        # what the browser shows, by (row id, column id): its cell tuple
        self._mirror: dict[tuple[Id, Id], tuple[Any, ...]] = {}
        self._events: list[Any] = []  # queued in order under the node lock
        self._explained = False
        self._drain_scheduled = False
        self._off: list[Any] = []
        with handle.transaction():
            obj = self._obj()
            self._off.append(obj.observe_structure(self._on_structure))
            self._off.append(obj.observe_cells(self._on_cells))
            self._off.append(obj.observe(self._on_any))
            self._off.append(obj.observe_layout(self._on_layout))
            obj.value_cells()  # a live evaluator: later writes report their cells

    def _obj(self) -> Any:
        return self._handle.crdt.sheet(self._name)

    # -- CRDT observers: any thread, under the node lock; only record and schedule ---
    def _on_structure(self, what: str, d: Any) -> None:
        ins = len(d.inserted) if d.inserted is not None else 0
        self._events.append((what, d.pos, d.deleted, ins))
        self._schedule()

    def _on_cells(self, changed: set[tuple[int, int]]) -> None:
        # positions are valid now (inside the write); the ids stay valid later
        obj = self._obj()
        self._events.append(("cells", [obj.id_of(r, c) for r, c in changed]))
        self._explained = True

    def _on_any(self) -> None:
        if not self._explained:  # a write the evaluator did not report: compare all
            self._events.append(("full",))
        self._explained = False
        self._schedule()

    def _on_layout(self) -> None:
        self._events.append(("widths",))
        self._schedule()

    def _schedule(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._node.call_soon(self._drain)

    # -- node thread: turn the queued events into deltas -----------------------------
    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        with self._handle.transaction():
            events, self._events = self._events, []
            if not events:
                return
            full = widths = False
            ids: set[tuple[Id, Id]] = set()
            for ev in events:
                if ev[0] in ("rows", "cols"):
                    _, pos, deleted, ins = ev
                    self._push({"o": ev[0], "at": pos, "del": deleted, "ins": ins})
                    full = True  # positional references may now read other cells
                    # a concurrent column insert/delete may have moved shared widths
                    widths = widths or (ev[0] == "cols")
                elif ev[0] == "widths":
                    widths = True
                elif ev[0] == "cells":
                    ids.update(ev[1])
                else:
                    full = True
            patches = self._compare_all() if full else self._compare(ids)
            if widths:
                self._push({"o": "widths", "w": self._widths()})
        if patches:
            self._push({"o": "cells", "c": patches})

    def _compare(self, ids: set[tuple[Id, Id]]) -> list[list[Any]]:
        obj = self._obj()
        out = []
        for key in ids:
            pos = obj.position_of(*key)
            if pos is None:
                self._mirror.pop(key, None)
                continue
            r, c = pos
            cell = show(obj.raw((r, c)), obj.value((r, c)))
            if self._mirror.get(key, ()) != cell:
                self._remember(key, cell)
                out.append([r, c, *cell])
        return out

    def _compare_all(self) -> list[list[Any]]:
        obj = self._obj()
        raws, values = obj.raw_cells(), obj.value_cells()
        rids, cids = obj.row_ids(), obj.col_ids()
        out = []
        now: dict[tuple[Id, Id], tuple[Any, ...]] = {}
        for (r, c), raw in raws.items():
            cell = show(raw, values.get((r, c)))
            key = (rids[r], cids[c])
            now[key] = cell
            if self._mirror.get(key) != cell:
                out.append([r, c, *cell])
        rpos = {rid: i for i, rid in enumerate(rids)}
        cpos = {cid: j for j, cid in enumerate(cids)}
        for key in self._mirror.keys() - now.keys():
            r, c = rpos.get(key[0]), cpos.get(key[1])
            if r is not None and c is not None:  # emptied (a deleted row went with it)
                out.append([r, c])
        self._mirror = now
        return out

    def _remember(self, key: tuple[Id, Id], cell: tuple[Any, ...]) -> None:
        if cell:
            self._mirror[key] = cell
        else:
            self._mirror.pop(key, None)

    def _snapshot(self) -> dict[str, Any]:
        # The hot path of first paint (100,000 cells): plain literals skip show()
        # and rows go out as arrays, about half the bytes of [r, c, raw] triples.
        with self._handle.transaction():
            self._events.clear()  # the snapshot covers them
            obj = self._obj()
            raws, values = obj.raw_cells(), obj.value_cells()
            rids, cids = obj.row_ids(), obj.col_ids()
            ncols = obj.ncols
            mirror: dict[tuple[Id, Id], tuple[Any, ...]] = {}
            rows: dict[int, list[Any]] = {}
            for (r, c), raw in raws.items():
                t = type(raw)
                if t is int or t is bool or (t is str and not raw.startswith("=")):
                    cell: tuple[Any, ...] = (raw,)
                    out: Any = raw
                else:
                    cell = show(raw, values.get((r, c)))
                    out = list(cell) if len(cell) > 1 else cell[0]
                mirror[(rids[r], cids[c])] = cell
                row = rows.get(r)
                if row is None:
                    row = rows[r] = [None] * ncols
                row[c] = out
            self._mirror = mirror
            return {"rows": obj.nrows, "cols": ncols, "widths": self._widths(),
                    "data": [[r, rows[r]] for r in sorted(rows)]}

    def _widths(self) -> dict[str, int]:
        return {str(c): px for c, px in sorted(self._obj().col_widths().items())}

    # -- browser -> Python (node thread) ---------------------------------------------
    def _moved(self, axis: str, pos: int, since: Any) -> int | None:
        """``pos`` on ``axis`` as typed at version ``since``, in today's layout
        (None: that row or column was deleted meanwhile)."""
        if not isinstance(since, int) or isinstance(since, bool) or since >= self._version:
            return pos
        first = self._version - len(self._history) + 1
        if since + 1 < first:
            raise ValueError("edit against a layout too old to place; resynced")
        for delta in list(self._history)[since + 1 - first:]:
            if delta.get("o") != axis:
                continue
            at, deleted, ins = delta["at"], delta["del"], delta["ins"]
            if pos >= at + deleted:
                pos += ins - deleted
            elif pos >= at:
                if deleted:
                    return None
                pos += ins
        return pos

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        if t == "set":
            self._on_set(content)
        elif t in ("rows", "cols"):
            self._on_structure_msg(t, content)
        elif t == "width":
            self._on_width(content)
        else:
            super()._on_message(t, content)

    def _on_set(self, content: dict[str, Any]) -> None:
        cells = content.get("cells")
        if not isinstance(cells, list) or not cells:
            raise ValueError("set needs a non-empty list of [row, col, text] cells")
        if len(cells) > MAX_CELLS_PER_MESSAGE:
            raise ValueError(f"set takes at most {MAX_CELLS_PER_MESSAGE} cells at once")
        todo = []
        for i, cell in enumerate(cells):
            if (not isinstance(cell, list) or len(cell) != 3 or not _index(cell[0])
                    or not _index(cell[1])):
                raise ValueError(f"set: cell {i} is not [row, col, text]: {cell!r:.80}")
            todo.append((cell[0], cell[1], parse_input(cell[2])))  # check all first
        v = content.get("v")
        with self._handle.transaction():
            obj = self._obj()
            placed = []
            for r, c, value in todo:
                r2, c2 = self._moved("rows", r, v), self._moved("cols", c, v)
                if r2 is not None and c2 is not None:
                    placed.append((r2, c2, value))
            if len(placed) == 1 and "expect" in content and not content.get("force"):
                r, c, value = placed[0]
                raw = obj.raw((r, c)) if r < obj.nrows and c < obj.ncols else None
                theirs = show(raw, None)[0] if raw is not None else None
                if not _same(theirs, content["expect"]):
                    self._post({"t": "conflict", "cell": [r, c], "v": self._version,
                                "mine": cells[0][2], "theirs": theirs})
                    return
            for r, c, value in placed:
                if value is None and (r >= obj.nrows or c >= obj.ncols):
                    continue  # emptying a cell outside the sheet: nothing to grow for
                obj.set((r, c), value)

    def _on_width(self, content: dict[str, Any]) -> None:
        col, px = content.get("col"), content.get("px")
        if not _index(col):
            raise ValueError(f"width: bad column {col!r}")
        if px is not None and not (isinstance(px, int) and not isinstance(px, bool)):
            raise ValueError(f"width: px must be an integer or null, not {px!r}")
        with self._handle.transaction():
            obj = self._obj()
            c = self._moved("cols", col, content.get("v"))
            if c is None or c >= obj.ncols:
                # its column was deleted meanwhile, or it is the empty column
                # shown past the end: nothing to keep the width with
                self._push({"o": "widths", "w": self._widths()})
                return
            obj.set_col_width(c, px)  # range errors raise here, naming the limits

    def _on_structure_msg(self, axis: str, content: dict[str, Any]) -> None:
        op, at, n = content.get("op"), content.get("at"), content.get("n", 1)
        if op not in ("insert", "delete"):
            raise ValueError(f"{axis}: op must be insert or delete, not {op!r}")
        if not _index(at) or not _index(n) or not 1 <= n <= MAX_STRUCTURE:
            raise ValueError(f"{axis}: bad position or count ({at!r}, {n!r})")
        with self._handle.transaction():
            obj = self._obj()
            size = obj.nrows if axis == "rows" else obj.ncols
            pos = self._moved(axis, at, content.get("v"))
            if pos is None:
                return  # the row it was relative to is gone
            if op == "insert":
                pos = min(pos, size)
                (obj.insert_rows if axis == "rows" else obj.insert_cols)(pos, n)
            else:
                n = min(n, size - pos)
                if n > 0:
                    (obj.delete_rows if axis == "rows" else obj.delete_cols)(pos, n)

    # -- life --------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<ui.grid of sheet {self._name!r}>"


def _index(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 10**7


def _same(a: Any, b: Any) -> bool:
    """Equal raw cells as JSON carries them (1 == 1.0, but True is not 1, nor "1")."""
    if isinstance(a, str) or isinstance(b, str) or isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
