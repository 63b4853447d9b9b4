"""Sheet: a grid whose rows and columns are RGA lists of stable ids.

A cell is an LWW register keyed by ``(row id, column id)``, not by its A1
position, so when two people insert rows concurrently every cell stays with
the row it was typed into. A1 addresses are resolved against the current
row and column order at the moment of reading or writing.

Formulas (``"=..."``) are evaluated by :mod:`.formula` over the current A1
grid. Their references follow the cells they named, as in a desktop
spreadsheet, without ever rewriting a formula: ``set`` stores a formula as
``{"=f": text, "=a": anchors}``, one anchor per cell reference (a range has
two, its corners), each the (row id, column id) of the cell the reference named
when it was written (``None`` for a reference outside the sheet then: it stays
positional). Reading renders the text again from where those rows and columns
are now (``=A1*10`` reads ``=A2*10`` once a row is inserted above; a reference
to a deleted row or column, or a range with a deleted corner, reads ``#REF!``).
Rewriting the text on each insert instead would be wrong under concurrency: two
peers inserting a row would each rewrite the formula by one, and
last-writer-wins would keep only one of the shifts; and a formula typed
concurrently with an insert would not move at all. Ids make every replica render
the same text from the same state. A formula stored as plain text (an older
document, or one naming no cell of the sheet) stays positional.
Evaluation is incremental for cell edits (only dependents recompute) and
rebuilt after structural edits.

Column widths are shared too: they live in the map root ``_layout:<sheet>``
(as a list's records live in ``_records:<list>``), one LWW entry per column
*id*, so a width follows its column through inserts and deletes, and two
people resizing the same column converge on the later write. A map and not a
new op kind: every replica, snapshot and undo path already handles map writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .codec import CELL
from .formula import Evaluator, is_formula, parse_a1, ref_a1, ref_groups, to_a1
from .text import List
from .values import tree_copy

if TYPE_CHECKING:
    from .types import DocCore

CellKey = tuple[int, int, int, int]  # row lamport, row actor, col lamport, col actor

MIN_WIDTH, MAX_WIDTH = 16, 4000  # px: a column still grabbable / not absurd
_F, _A = "=f", "=a"  # an anchored formula's keys (a user's own dict never has both alone)


class Sheet:
    __slots__ = ("_doc", "_key", "_rows", "_cols", "_cells", "_ev", "_texts", "_observers",
                 "_cell_observers")

    def __init__(self, doc: DocCore, key: str) -> None:
        self._doc = doc
        self._key = key
        name = key[2:]
        self._rows = List(doc, "r:" + name)
        self._cols = List(doc, "c:" + name)
        doc._objs["r:" + name] = self._rows
        doc._objs["c:" + name] = self._cols
        self._cells: dict[CellKey, tuple[int, bytes, Any]] = {}
        self._ev: Evaluator | None = None
        # anchored formulas rendered as text, until the next structural edit: a
        # view re-reads a thousand dependents per edit, rendering each costs ~15 us
        self._texts: dict[CellKey, Any] = {}
        self._observers: list[Callable[[], None]] = []
        self._cell_observers: list[Callable[[set[tuple[int, int]]], None]] = []
        self._rows.observe(self._structure_changed)
        self._cols.observe(self._structure_changed)

    @property
    def name(self) -> str:
        return self._key[2:]

    # ------------------------------------------------------------ structure
    @property
    def nrows(self) -> int:
        return len(self._rows)

    @property
    def ncols(self) -> int:
        return len(self._cols)

    def _structure_changed(self, _delta: Any) -> None:
        self._ev = None
        self._texts.clear()
        self._fire()

    def observe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback()`` after any change of cells, rows or columns."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    def observe_cells(self, callback: Callable[[set[tuple[int, int]]], None]
                      ) -> Callable[[], None]:
        """``callback(positions)`` with the (row, col) cells whose *value* changed
        through one cell write (the cell and its recomputed dependents), before the
        ``observe`` callbacks of that write. Only while the evaluator is live: a
        write after a structural edit (or to a deleted row) fires ``observe``
        alone, and a view must then compare everything. For live views
        (``ownkernel.ui.grid``), which would otherwise rescan the whole sheet."""
        self._cell_observers.append(callback)
        return lambda: (self._cell_observers.remove(callback)
                        if callback in self._cell_observers else None)

    def observe_structure(self, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        """``callback("rows" | "cols", Delta)`` after rows or columns are inserted or
        deleted (locally or by a peer), before the ``observe`` callbacks."""
        offs = [self._rows.observe(lambda d: callback("rows", d)),
                self._cols.observe(lambda d: callback("cols", d))]

        def unsubscribe() -> None:
            for off in offs:
                off()

        return unsubscribe

    def position_of(self, row_id: tuple[int, int], col_id: tuple[int, int]
                    ) -> tuple[int, int] | None:
        """Where the cell with these ids is now (None: its row or column was deleted)."""
        return self._position((*row_id, *col_id))

    def row_ids(self) -> list[tuple[int, int]]:
        """The rows' stable ids in order (a cell keeps its row's id when rows move)."""
        return self._ids(self._rows)

    def col_ids(self) -> list[tuple[int, int]]:
        return self._ids(self._cols)

    def id_of(self, row: int, col: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The (row id, column id) of the cell now at (row, col)."""
        return self._rows._seq.element_id(row), self._cols._seq.element_id(col)

    def raw_cells(self) -> dict[tuple[int, int], Any]:
        """Every non-empty raw cell by current (row, col) position."""
        # the evaluator holds exactly this, kept current by every write and
        # rebuilt from _grid() after structural edits: copying it is cheaper
        return dict(self._evaluator()._raw)

    def value_cells(self) -> dict[tuple[int, int], Any]:
        """Every evaluated cell by position (builds the evaluator if a structural
        edit dropped it, so later cell writes report through ``observe_cells``)."""
        return self._evaluator().values()

    def _fire(self) -> None:
        for cb in list(self._observers):
            cb()

    def insert_rows(self, index: int, count: int = 1) -> None:
        self._rows.insert_many(index, [None] * count)

    def delete_rows(self, index: int, count: int = 1) -> None:
        self._rows.delete(index, count)

    def insert_cols(self, index: int, count: int = 1) -> None:
        self._cols.insert_many(index, [None] * count)

    def delete_cols(self, index: int, count: int = 1) -> None:
        self._cols.delete(index, count)

    def resize(self, nrows: int, ncols: int) -> None:
        """Grow to at least ``nrows`` x ``ncols`` (never shrinks: deleting is explicit)."""
        if nrows > self.nrows:
            self.insert_rows(self.nrows, nrows - self.nrows)
        if ncols > self.ncols:
            self.insert_cols(self.ncols, ncols - self.ncols)

    # ---------------------------------------------------------------- cells
    def _cell_key(self, row: int, col: int) -> CellKey:
        rl, ra = self._rows._seq.element_id(row)
        cl, ca = self._cols._seq.element_id(col)
        return rl, ra, cl, ca

    @staticmethod
    def _address(ref: str | tuple[int, int]) -> tuple[int, int]:
        if isinstance(ref, str):
            return parse_a1(ref)
        row, col = ref
        if not isinstance(row, int) or not isinstance(col, int) or row < 0 or col < 0:
            raise IndexError(f"bad cell address {ref!r}")
        return row, col

    def set(self, ref: str | tuple[int, int], value: Any) -> None:
        """Write a value or formula; the sheet grows to hold the cell."""
        row, col = self._address(ref)
        value = tree_copy(value, f"value for cell {ref!r} of sheet {self.name!r}")
        self.resize(row + 1, col + 1)
        if is_formula(value):
            value = self._anchored(value)
        rl, ra, cl, ca = self._cell_key(row, col)
        doc = self._doc
        lam = doc._local_op([CELL, self._key, 0, rl, ra, cl, ca, value])
        self._write((rl, ra, cl, ca), lam, doc.actor, value)

    __setitem__ = set

    def _remote_cell(self, lam: int, author: bytes, op: list[Any]) -> None:
        self._write((op[3], op[4], op[5], op[6]), lam, author, op[7])

    def _write(self, key: CellKey, lam: int, actor: bytes, value: Any) -> None:
        cur = self._cells.get(key)
        if cur is not None and (cur[0], cur[1]) >= (lam, actor):
            return
        self._cells[key] = (lam, actor, value)
        self._texts.pop(key, None)
        if self._ev is not None:
            pos = self._position(key)
            if pos is not None:
                changed = self._ev.set(pos[0], pos[1], self._shown(key, value))
                for cb in list(self._cell_observers):
                    cb(changed)
        self._fire()

    def _position(self, key: CellKey) -> tuple[int, int] | None:
        r = self._rows._seq.position_of_id(key[0], key[1])
        c = self._cols._seq.position_of_id(key[2], key[3])
        return None if r is None or c is None else (r, c)

    def raw(self, ref: str | tuple[int, int]) -> Any:
        """The stored value or formula text of a cell (None when empty)."""
        row, col = self._address(ref)
        if row >= self.nrows or col >= self.ncols:
            return None
        key = self._cell_key(row, col)
        e = self._cells.get(key)
        return None if e is None else self._shown(key, e[2])

    def _grid(self) -> dict[tuple[int, int], Any]:
        rows = {}
        for i, (lam, act) in enumerate(self._ids(self._rows)):
            rows[(lam, act)] = i
        cols = {}
        for j, (lam, act) in enumerate(self._ids(self._cols)):
            cols[(lam, act)] = j
        grid = {}
        for key, (_, _, value) in self._cells.items():
            r = rows.get((key[0], key[1]))
            c = cols.get((key[2], key[3]))
            if r is not None and c is not None and value is not None:
                grid[(r, c)] = self._shown(key, value)
        return grid

    # ------------------------------------------------- anchored references
    def _anchored(self, text: str) -> Any:
        """``text`` with each cell it names anchored to that cell's ids (see module doc)."""
        anchors: list[Any] = []
        actors = self._doc._actors  # type: ignore[attr-defined]
        for _, _, refs, _ in ref_groups(text):
            for ref in refs:
                if ref.row < self.nrows and ref.col < self.ncols:
                    rl, ra = self._rows._seq.element_id(ref.row)
                    cl, ca = self._cols._seq.element_id(ref.col)
                    anchors.append([rl, actors[ra], cl, actors[ca]])
                else:
                    anchors.append(None)
        return {_F: text, _A: anchors} if any(a is not None for a in anchors) else text

    def _shown(self, key: CellKey, value: Any) -> Any:
        if type(value) is not dict:
            return value
        t = self._texts.get(key)
        if t is None:
            t = self._texts[key] = self._render(value)
        return t

    def _render(self, value: Any) -> Any:
        """A stored cell value as users see it: an anchored formula as its text now."""
        if type(value) is not dict or len(value) != 2:
            return value
        text, anchors = value.get(_F), value.get(_A)
        if not isinstance(text, str) or not isinstance(anchors, list):
            return value  # a user's own dict
        groups = ref_groups(text)
        if sum(len(g[2]) for g in groups) != len(anchors):
            return text  # not written by _anchored: its references as typed
        out, last, k = [], 0, 0
        for start, end, refs, texts in groups:
            parts, gone = [], False
            for ref, typed in zip(refs, texts):
                at = self._anchor_position(anchors[k])
                k += 1
                if anchors[k - 1] is None or at == (ref.row, ref.col):
                    parts.append(typed)  # unmoved (or positional): as typed
                elif at is None:
                    gone = True
                else:
                    parts.append(ref_a1(ref, *at))
            out.append(text[last:start])
            out.append("#REF!" if gone else ":".join(parts))
            last = end
        out.append(text[last:])
        return "".join(out)

    def _anchor_position(self, anchor: Any) -> tuple[int, int] | None:
        if not isinstance(anchor, list) or len(anchor) != 4:
            return None
        rl, rab, cl, cab = anchor
        aidx = self._doc._aidx  # type: ignore[attr-defined]
        ra, ca = aidx.get(rab), aidx.get(cab)
        if ra is None or ca is None or not isinstance(rl, int) or not isinstance(cl, int):
            return None
        r = self._rows._seq.position_of_id(rl, ra)
        c = self._cols._seq.position_of_id(cl, ca)
        return None if r is None or c is None else (r, c)

    @staticmethod
    def _ids(lst: List) -> list[tuple[int, int]]:
        out = []
        for r in lst._seq.runs():
            if not r.dead:
                out.extend((r.lam + k, r.act) for k in range(r.n))
        return out

    def _evaluator(self) -> Evaluator:
        if self._ev is None:
            self._ev = Evaluator(self.nrows, self.ncols, self._grid())
        return self._ev

    def value(self, ref: str | tuple[int, int]) -> Any:
        """The evaluated value of a cell (formula errors as FormulaError values)."""
        row, col = self._address(ref)
        if row >= self.nrows or col >= self.ncols:
            return None
        return self._evaluator().value(row, col)

    __getitem__ = value

    def values(self) -> list[list[Any]]:
        """Evaluated grid, rows of column values."""
        ev = self._evaluator()
        return [[ev.value(r, c) for c in range(self.ncols)] for r in range(self.nrows)]

    def raws(self) -> list[list[Any]]:
        grid = self._grid()
        return [[grid.get((r, c)) for c in range(self.ncols)] for r in range(self.nrows)]

    # --------------------------------------------------------- column widths
    def _layout(self, create: bool) -> Any:
        # created on first use only: a sheet nobody resized adds no root
        key = "m:_layout:" + self.name
        if create or key in self._doc._objs:
            return self._doc.map("_layout:" + self.name)  # type: ignore[attr-defined]
        return None

    def set_col_width(self, col: int, px: int | None) -> None:
        """Share column ``col``'s width in pixels (None: back to the default)."""
        if not isinstance(col, int) or isinstance(col, bool) or not 0 <= col < self.ncols:
            raise IndexError(f"no column {col!r} in sheet {self.name!r} ({self.ncols} columns)")
        if px is not None and (not isinstance(px, int) or isinstance(px, bool)
                               or not MIN_WIDTH <= px <= MAX_WIDTH):
            raise ValueError(f"column width must be an int of {MIN_WIDTH}..{MAX_WIDTH} px "
                             f"or None, not {px!r}")
        lam, act = self._cols._seq.element_id(col)
        key = f"w{lam}.{self._doc._actors[act].hex()}"  # type: ignore[attr-defined]
        layout = self._layout(True)
        if px is None:
            if key in layout:
                layout.delete(key)
        else:
            layout.set(key, px)

    def col_widths(self) -> dict[int, int]:
        """Shared widths by current column position (columns at the default are absent)."""
        layout = self._layout(False)
        if layout is None:
            return {}
        aidx = self._doc._aidx  # type: ignore[attr-defined]
        seq = self._cols._seq
        out = {}
        for key, px in layout.to_dict().items():
            lam, _, hexa = key[1:].partition(".")
            try:
                act = aidx.get(bytes.fromhex(hexa))
                pos = None if act is None else seq.position_of_id(int(lam), act)
            except ValueError:  # not a width entry (written by hand): ignored
                continue
            if pos is not None and isinstance(px, int) and not isinstance(px, bool):
                out[pos] = max(MIN_WIDTH, min(MAX_WIDTH, px))
        return out

    def observe_layout(self, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback()`` after a column width changes (locally or by a peer)."""
        return self._layout(True).observe(lambda _k, _v, _local: callback())

    def __repr__(self) -> str:
        return f"Sheet({self.name!r}, {self.nrows}x{self.ncols})"

    @staticmethod
    def a1(row: int, col: int) -> str:
        return to_a1(row, col)
