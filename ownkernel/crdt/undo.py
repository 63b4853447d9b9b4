"""Undo and redo of this actor's own changes (issue #12 §1); ``history()`` and
``at(version)`` live in history.py, ``Text.blame()`` in text.py.

* ``undo()`` inverts this actor's latest change as a NEW change (so it syncs
  like any edit): an insert's surviving elements are deleted; deleted
  elements are inserted again, as copies, where their tombstones are; a
  map/sheet write is replaced by the value it overwrote, only while it is
  still the winning write; a counter increment by its negation. ``redo()``
  inverts the undo change the same way. Log appends and redactions cannot
  be inverted and are left as they are.
* Every undo/redo change also writes a mark into the reserved map ``_undo``
  (``["u" | "r", inverted seq, copies]``), in the same change, so the undo
  state is part of the document: after a save/load or a node restart,
  ``undo()`` continues exactly where it was (:func:`_rebuild`). To any other
  replica the mark is an ordinary map write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .codec import CELL, DEL, DELKEY, INC, INS, SET

# history() and at() live in history.py; Doc reaches them through here
from .history import (  # noqa: F401
    META_KEYS,
    UNDO_KEY,
    UNDO_ROOT,
    DocView,
    HistoryEntry,
    history,
    summarize,
    view_at,
)

if TYPE_CHECKING:
    from .doc import Doc
    from .text import List, Text

_KINDS = {"t": "text", "l": "list", "m": "map", "n": "counter", "g": "log", "s": "sheet"}


# --------------------------------------------------------------- undo/redo
class _UndoState:
    """Per Doc: which own changes were undone and by which change. Kept in
    memory and rebuilt from the ``_undo`` marks of the own changes when a Doc
    is loaded; only an undo or a redo that found nothing left to invert (it
    makes no change, so leaves no mark) is forgotten then.
    """

    def __init__(self) -> None:
        self.undone: set[int] = set()  # own seqs that an undo inverted
        self.made_by_undo: set[int] = set()  # own seqs that are undo changes
        self.redo: list[int] = []  # undo changes that redo() may invert, latest last
        self.last: int = 0  # own seq of the latest undo/redo change
        # restored copies: (root key, copy lamport, original actor index,
        # original lamport, length). Undoing an insert also deletes the copies
        # an undo made of its elements: to the user they are the same text.
        self.copies: list[tuple[str, int, int, int, int]] = []


def _state(doc: Doc) -> _UndoState:
    st = doc.__dict__.get("_undo_state")
    if st is None:
        st = doc.__dict__["_undo_state"] = _rebuild(doc)
    return st


def _mark(doc: Doc, st: _UndoState, kind: str, seq: int, ncopies: int) -> None:
    """Write the pending change's ``_undo`` mark: what it inverts, the copies it made."""
    copies = [[k, clam, None if oact == 0 else doc._actors[oact], olam, n]
              for k, clam, oact, olam, n in st.copies[ncopies:]]
    doc.map(UNDO_ROOT).set(doc.actor.hex()[:16], [kind, seq, copies])


def _rebuild(doc: Doc) -> _UndoState:
    """The undo state as the ``_undo`` marks of this actor's changes left it."""
    st = _UndoState()
    starts = doc._starts[0]
    marks: list[tuple[int, str, int, list[Any]]] = []
    for op in doc._oplog[0]:
        if op[0] != SET or op[1] != UNDO_KEY:
            continue
        v = op[4]
        if (isinstance(v, list) and len(v) == 3 and v[0] in ("u", "r")
                and type(v[1]) is int and isinstance(v[2], list)):
            marks.append((starts.count_le(op[2]), v[0], v[1], v[2]))
    marks.sort(key=lambda m: m[0])
    for c, kind, target, copies in marks:
        if c > st.last + 1:
            st.redo.clear()  # plain edits between the previous mark and this one
        for cp in copies:
            if not (isinstance(cp, list) and len(cp) == 5 and isinstance(cp[0], str)
                    and all(type(x) is int for x in (cp[1], cp[3], cp[4]))):
                continue
            who = cp[2]
            oact = 0 if who is None else doc._aidx.get(who) if isinstance(who, bytes) else None
            if oact is not None:
                st.copies.append((cp[0], cp[1], oact, cp[3], cp[4]))
        if kind == "u":
            st.undone.add(target)
            st.made_by_undo.add(c)
            st.redo.append(c)
        elif st.redo and st.redo[-1] == target:
            st.redo.pop()
        st.last = c
    return st


def _candidate(doc: Doc, st: _UndoState) -> int:
    """The own change undo() would invert next (0: none)."""
    s = doc._vv[0]
    while s >= 1 and (s in st.undone or s in st.made_by_undo):
        s -= 1
    return s


def _begin(doc: Doc, what: str, commit: bool) -> _UndoState:
    if doc._txn_depth:
        # committing here would split the caller's transaction in two
        raise RuntimeError(f"{what}() inside an open transaction")
    if commit:
        doc.commit()  # what was just typed is the latest change, the one to undo
    elif doc._pending:
        raise RuntimeError(f"{what}(commit=False) with pending local ops: commit them first")
    st = _state(doc)
    if doc._vv[0] > st.last:
        st.redo.clear()  # a plain edit since the last undo/redo: the redo chain is gone
    return st


def can_undo(doc: Doc) -> bool:
    """Whether undo() has an own change to invert (pending ops count as one)."""
    if doc._pending:
        return True
    return _candidate(doc, _state(doc)) > 0


def can_redo(doc: Doc) -> bool:
    """Whether redo() has an undo to invert (no plain edit since it)."""
    st = _state(doc)
    return bool(st.redo) and not doc._pending and doc._vv[0] <= st.last


def undo(doc: Doc, commit: bool = True) -> bytes | None:
    """Invert this actor's latest change not undone yet; returns the new change
    (None when there is nothing to undo or nothing of it is left to invert).

    ``commit=False`` leaves the inverse ops pending for the caller to commit
    at once (a node commits through its store) and returns None.
    """
    st = _begin(doc, "undo", commit)
    s = _candidate(doc, st)
    if s < 1:
        return None
    ncopies = len(st.copies)
    made = _invert(doc, s)
    st.undone.add(s)
    if not made:
        st.redo.append(0)  # nothing was left to invert: redo() does nothing either
        st.last = doc._vv[0]
        return None
    _mark(doc, st, "u", s, ncopies)
    u = doc._vv[0] + 1  # the seq the pending inverse commits as
    st.made_by_undo.add(u)
    st.redo.append(u)
    st.last = u
    return doc.commit() if commit else None


def redo(doc: Doc, commit: bool = True) -> bytes | None:
    """Invert the latest undo change, if no plain edit was made since it
    (``commit`` as for :func:`undo`)."""
    st = _begin(doc, "redo", commit)
    if not st.redo:
        return None
    u = st.redo.pop()
    ncopies = len(st.copies)
    if not u or not _invert(doc, u):
        return None
    _mark(doc, st, "r", u, ncopies)
    st.last = doc._vv[0] + 1  # the redo change is a plain edit: undo() may invert it
    return doc.commit() if commit else None


def _invert(doc: Doc, seq: int) -> bool:
    """Make the inverse of own change ``seq`` as pending ops (see module docs);
    False when nothing was left to invert."""
    lo, hi = doc._change_range(0, seq)
    ops = doc._ops_in(0, lo, hi)
    seq_ins: dict[str, list[tuple[int, int]]] = {}  # key -> own lamport ranges to delete
    seq_del: dict[str, list[tuple[int, int, int]]] = {}  # key -> (actor, lo, hi) to restore
    writes: list[list[Any]] = []
    for op in ops:
        k, key = op[0], op[1]
        if k == INS:
            seq_ins.setdefault(key, []).append((op[2], op[2] + len(op[5])))
        elif k == DEL:
            t, n = op[4], op[5]
            if op[3] == 0 and lo <= t < hi:
                continue  # typed and deleted in the same change: nothing to restore
            seq_del.setdefault(key, []).append((op[3], t, t + n))
        else:
            if key not in META_KEYS:  # a time or undo mark is no content to invert
                writes.append(op)
    st = _state(doc)
    for key, ranges in seq_ins.items():
        _add_copies(st, key, ranges)
    ncopies = len(st.copies)
    # no root method commits on its own: every op below stays pending, so the
    # inverse becomes one change at the caller's commit
    for key in sorted(set(seq_ins) | set(seq_del)):
        _invert_sequence(doc, st, doc._objs[key], seq_ins.get(key, []), seq_del.get(key, []))
    sheets = {k[2:] for k, *_ in st.copies[ncopies:] if k[0] in "rc"}
    for name in sorted(sheets):
        _carry_cells(doc, st, name)
    for op in reversed(writes):
        _invert_write(doc, op)
    return bool(doc._pending)


def _add_copies(st: _UndoState, key: str, ranges: list[tuple[int, int]]) -> None:
    """Extend own lamport ranges with the copies undo made of them (transitively)."""
    grew = True
    while grew:
        grew = False
        for k, clam, oact, olam, n in st.copies:
            if k != key or oact != 0:
                continue
            for a, b in _hits(ranges, olam, n):
                r = (clam + a, clam + b)
                if not any(lo <= r[0] and r[1] <= hi for lo, hi in ranges):
                    ranges.append(r)
                    grew = True


def _carry_cells(doc: Doc, st: _UndoState, name: str) -> None:
    """Restored rows/columns are copies with new ids: give them their cells back
    (every author's), since a cell is keyed by the ids of its row and column."""
    sheet = doc.sheet(name)
    key = "s:" + name
    me = doc.actor
    for ck, (_lam, _who, value) in list(sheet._cells.items()):
        if value is None:
            continue
        row = _live_id(doc, st, "r:" + name, ck[0], ck[1])
        col = _live_id(doc, st, "c:" + name, ck[2], ck[3])
        target = (*row, *col)
        if target == ck or sheet._cells.get(target) is not None:
            continue
        nlam = doc._local_op([CELL, key, 0, *target, value])
        sheet._write(target, nlam, me, value)


def _live_id(doc: Doc, st: _UndoState, key: str, lam: int, act: int) -> tuple[int, int]:
    """Element ``(lam, act)`` of sequence ``key``, or its latest live copy made by undo."""
    seq = doc._objs[key]._seq
    seen = 0
    while seq.position_of_id(lam, act) is None and seen < len(st.copies):
        seen += 1
        for k, clam, oact, olam, n in reversed(st.copies):
            if k == key and oact == act and olam <= lam < olam + n:
                lam, act = clam + (lam - olam), 0
                break
        else:
            break
    return lam, act


def _minus(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """``ranges`` without [lo, hi)."""
    out = []
    for a, b in ranges:
        if b <= lo or a >= hi:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo))
        if hi < b:
            out.append((hi, b))
    return out


def _hits(ranges: list[tuple[int, int]], lam: int, n: int) -> list[tuple[int, int]]:
    """Offsets [a, b) of run [lam, lam+n) that fall in one of ``ranges``."""
    out = []
    for lo, hi in ranges:
        a, b = max(lo, lam), min(hi, lam + n)
        if a < b:
            out.append((a - lam, b - lam))
    out.sort()  # in document order within the run, whatever order the ops came in
    return out


def _invert_sequence(
    doc: Doc,
    st: _UndoState,
    root: Text | List,
    ins: list[tuple[int, int]],
    dels: list[tuple[int, int, int]],
) -> None:
    """Delete the surviving own elements of ``ins``; insert copies of the ``dels``
    targets where their tombstones are. One walk over the runs finds both."""
    to_delete: list[tuple[int, int]] = []  # (pos, count)
    # (visible pos, [(actor, lamport, content)]), in document order
    groups: list[tuple[int, list[tuple[int, int, Any]]]] = []
    by_actor: dict[int, list[tuple[int, int]]] = {}
    for act, lo, hi in dels:
        by_actor.setdefault(act, []).append((lo, hi))
    if by_actor:
        # elements another actor deleted too stay deleted: restoring them
        # would undo that actor's delete, not just ours
        for a in range(1, len(doc._oplog)):
            for op in doc._oplog[a]:
                if op[0] == DEL and op[1] == root._key and op[3] in by_actor:
                    by_actor[op[3]] = _minus(by_actor[op[3]], op[4], op[4] + op[5])
    pos = 0
    for r in root._seq.runs():
        if not r.dead:
            if r.act == 0 and ins:
                for a, b in _hits(ins, r.lam, r.n):
                    to_delete.append((pos + a, b - a))
            pos += r.n
        elif r.act in by_actor:
            for a, b in _hits(by_actor[r.act], r.lam, r.n):
                piece = (r.act, r.lam + a, r.content[a:b])
                if groups and groups[-1][0] == pos:
                    groups[-1][1].append(piece)  # no visible element between: one insert
                else:
                    groups.append((pos, [piece]))
    # inserts first, from the end, so the positions found above stay right; the
    # deletes' positions then shift by what was inserted before them
    inserted: list[tuple[int, int]] = []
    empty = root._seq.empty
    for p, pieces in reversed(groups):
        parts = [pc[2] for pc in pieces]
        content = "".join(parts) if isinstance(empty, str) else [x for pc in parts for x in pc]
        lam = doc._lamport + 1  # the copy takes the next lamports, in order
        for act, olam, part in pieces:
            st.copies.append((root._key, lam, act, olam, len(part)))
            lam += len(part)
        root._insert(p, content)
        inserted.append((p, len(content)))
    for p, n in sorted(to_delete, reverse=True):
        shift = sum(m for q, m in inserted if q <= p)
        root.delete(p + shift, n)


def _previous(doc: Doc, root_key: str, kind: int, match: Any, lam: int, actor: bytes) -> Any:
    """The write to the same map key / sheet cell that ``(lam, actor)`` overwrote:
    (found, present, value) of the greatest write with a smaller id."""
    best: tuple[int, bytes] | None = None
    found: tuple[bool, Any] = (False, None)
    for a, log in enumerate(doc._oplog):
        who = doc._actors[a]
        for op in log:
            if op[1] != root_key or (op[2], who) >= (lam, actor):
                continue
            if kind == CELL:
                if op[0] != CELL or tuple(op[3:7]) != match:
                    continue
                cand: tuple[bool, Any] = (True, op[7])
            else:
                if op[0] not in (SET, DELKEY) or op[3] != match:
                    continue
                cand = (op[0] == SET, op[4] if op[0] == SET else None)
            if best is None or (op[2], who) > best:
                best, found = (op[2], who), cand
    return found


def _invert_write(doc: Doc, op: list[Any]) -> None:
    k, key, lam = op[0], op[1], op[2]
    me = doc.actor
    if k == INC:
        doc.counter(key[2:]).increment(-op[3])
    elif k in (SET, DELKEY):
        m = doc.map(key[2:])
        cur = m._entries.get(op[3])
        if cur is None or cur[1] != me:
            return  # someone else wrote this key since: their write stays
        present, value = _previous(doc, key, SET, op[3], lam, me)
        if present:
            m.set(op[3], value)
        else:
            m.delete(op[3])
    elif k == CELL:
        name = key[2:]
        sheet = doc.sheet(name)
        ck = tuple(op[3:7])
        cur = sheet._cells.get(ck)
        if cur is None or cur[1] != me:
            return
        _found, value = _previous(doc, key, CELL, ck, lam, me)
        # a row or column this same undo restored is a copy with a new id:
        # the cell goes with the copy, where the user sees it
        st = _state(doc)
        row = _live_id(doc, st, "r:" + name, ck[0], ck[1])
        col = _live_id(doc, st, "c:" + name, ck[2], ck[3])
        target = (*row, *col)
        if target != ck:
            cur = sheet._cells.get(target)
            if cur is not None and cur[1] != me:
                return
        nlam = doc._local_op([CELL, key, 0, *target, value])
        sheet._write(target, nlam, me, value)
    # APPEND / REDACT: a log keeps what was said (see module docs)
