"""Comment threads anchored to text ranges and sheet cells (issue #12 §3).

Stored in the document, in the reserved map ``_comments`` (so they sync,
persist and need no new op kind), one key per thing said::

    "<tid>"            {"on": "t:body", "a": [lam, actor], "b": [lam, actor],
                        "text": "...", "time": seconds}       a thread on a text
    "<tid>"            {"on": "s:grid", "row": [lam, actor], "col": [lam, actor],
                        "text": "...", "time": seconds}       a thread on a cell
    "<tid>/r/<rid>"    {"text": "...", "time": seconds}       a reply
    "<tid>/resolved"   true | false                           resolve / reopen

A text anchor names the CRDT ids of the first and last character, not
positions: the range moves with the text around it, grows with what is typed
inside it, and when its characters are deleted it shrinks to where they were
(``start == end``) rather than jumping elsewhere; when an undo brings them
back (as copies, see undo.py) the range follows the copies, found through
the ``_undo`` marks every replica has. A cell anchor names the row
and column ids, so it follows rows and columns moved by inserts and deletes.
Who said something is the actor that wrote its key (the map keeps the
writer of every entry), not a field anyone could fill in. Each key is
written once by its author, so concurrent comments never conflict; resolve
is last-writer-wins.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .doc import Doc
    from .text import Text

ROOT = "_comments"
KEY = "m:" + ROOT
MAX_TEXT = 10_000  # characters in one comment: a comment, not a document


class Reply(NamedTuple):
    id: str
    author: bytes
    text: str
    time: float | None


class Thread(NamedTuple):
    """A comment thread as it stands now (positions resolved against the doc)."""

    id: str
    on: str  # root key: "t:<text>" or "s:<sheet>"
    start: int | None  # text: current range [start, end); None when the root is gone
    end: int | None
    cell: tuple[int, int] | None  # sheet: (row, col) now; None for text / deleted row|col
    quote: str  # the text the range covers now ("" once it was all deleted)
    author: bytes
    text: str
    time: float | None
    replies: list[Reply]
    resolved: bool


def _check_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a comment needs some text (a non-empty str)")
    if len(text) > MAX_TEXT:
        raise ValueError(f"a comment is at most {MAX_TEXT} characters, not {len(text)}")
    return text


def _new_id() -> str:
    return os.urandom(6).hex()


class Comments:
    """The comment threads of a document (``only``: those on one root)."""

    def __init__(self, doc: Doc, only: str | None = None) -> None:
        self._doc = doc
        self._only = only

    def _map(self) -> Any:
        return self._doc.map(ROOT)

    # -------------------------------------------------------------- writing
    def add(self, text: Text, start: int, end: int, comment: str) -> str:
        """Start a thread on characters [start, end) of ``text``; returns its id."""
        comment = _check_text(comment)
        n = len(text)
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= n):
            raise IndexError(f"comment range [{start!r}, {end!r}) is not within text "
                             f"{text.name!r} of length {n} (and not empty)")
        seq, actors = text._seq, self._doc._actors
        a_lam, a_act = seq.element_id(start)
        b_lam, b_act = seq.element_id(end - 1)
        tid = _new_id()
        self._map().set(tid, {"on": text._key, "a": [a_lam, actors[a_act]],
                              "b": [b_lam, actors[b_act]], "text": comment,
                              "time": int(time.time())})
        return tid

    def add_cell(self, sheet: str, ref: str | tuple[int, int], comment: str) -> str:
        """Start a thread on a cell (``"B2"`` or ``(row, col)``) of sheet ``sheet``."""
        comment = _check_text(comment)
        sh = self._doc.sheet(sheet)
        row, col = sh._address(ref)
        if row >= sh.nrows or col >= sh.ncols:
            raise IndexError(f"cell {ref!r} is outside sheet {sheet!r} "
                             f"({sh.nrows} rows x {sh.ncols} columns)")
        rl, ra, cl, ca = sh._cell_key(row, col)
        actors = self._doc._actors
        tid = _new_id()
        self._map().set(tid, {"on": sh._key, "row": [rl, actors[ra]], "col": [cl, actors[ca]],
                              "text": comment, "time": int(time.time())})
        return tid

    def reply(self, tid: str, comment: str) -> str:
        """Add a reply to thread ``tid``; returns the reply's id."""
        self._require(tid)
        rid = _new_id()
        self._map().set(f"{tid}/r/{rid}", {"text": _check_text(comment),
                                           "time": int(time.time())})
        return rid

    def resolve(self, tid: str, resolved: bool = True) -> None:
        """Mark thread ``tid`` resolved (``False``: open it again)."""
        self._require(tid)
        self._map().set(f"{tid}/resolved", bool(resolved))

    def _require(self, tid: Any) -> None:
        m = self._map()
        if not isinstance(tid, str) or "/" in tid or not isinstance(m.get(tid), dict):
            raise KeyError(f"no comment thread {tid!r:.40} in this document")

    # -------------------------------------------------------------- reading
    def threads(self, include_resolved: bool = True) -> list[Thread]:
        """Every thread, in document order (text position, then cell), then by id."""
        doc = self._doc
        if KEY not in doc._objs:
            return []
        m = doc._objs[KEY]
        replies: dict[str, list[Reply]] = {}
        out = []
        for k, (_lam, writer, value, present) in list(m._entries.items()):
            if not present or "/r/" not in k or not isinstance(value, dict):
                continue
            tid, rid = k.split("/r/", 1)
            t = value.get("text")
            if isinstance(t, str):
                replies.setdefault(tid, []).append(Reply(rid, writer, t, _time(value)))
        for k, (_lam, writer, value, present) in list(m._entries.items()):
            if not present or "/" in k or not isinstance(value, dict):
                continue
            on, text = value.get("on"), value.get("text")
            if not isinstance(on, str) or not isinstance(text, str):
                continue  # not a thread this version understands: skip, keep
            if self._only is not None and on != self._only:
                continue
            where = self._locate(on, value)
            if where is None:
                continue
            start, end, cell, quote = where
            resolved = m.get(f"{k}/resolved") is True
            if resolved and not include_resolved:
                continue
            rs = sorted(replies.get(k, []), key=lambda r: (r.time or 0, r.id))
            out.append(Thread(k, on, start, end, cell, quote, writer, text, _time(value), rs,
                              resolved))
        out.sort(key=lambda t: (t.on, t.start if t.start is not None else -1,
                                t.cell or (-1, -1), t.time or 0, t.id))
        return out

    def _locate(self, on: str, v: dict[str, Any]) -> tuple[Any, Any, Any, str] | None:
        doc = self._doc
        kind = on[:2]
        if kind == "t:":
            a, b = _id(doc, v.get("a")), _id(doc, v.get("b"))
            if a is None or b is None or on not in doc._objs:
                return None
            t = doc._objs[on]
            copies = undo_copies(doc)
            start = _where(t._seq, *_live(t._seq, copies.get(on, []), *a), after=False)
            end = _where(t._seq, *_live(t._seq, copies.get(on, []), *b), after=True)
            if start is None or end is None:
                return None
            end = max(start, end)
            return start, end, None, str(t)[start:end] if end > start else ""
        if kind == "s:":
            r, c = _id(doc, v.get("row")), _id(doc, v.get("col"))
            if r is None or c is None or on not in doc._objs:
                return None
            sh = doc._objs[on]
            row = sh._rows._seq.position_of_id(*r)
            col = sh._cols._seq.position_of_id(*c)
            cell = None if row is None or col is None else (row, col)
            quote = "" if cell is None else str(sh.raw(cell) if sh.raw(cell) is not None else "")
            return None, None, cell, quote
        return None


def _time(v: dict[str, Any]) -> float | None:
    t = v.get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def _id(doc: Doc, v: Any) -> tuple[int, int] | None:
    """``[lam, actor bytes]`` as an element id of this doc (None if malformed)."""
    if not (isinstance(v, list) and len(v) == 2 and type(v[0]) is int
            and isinstance(v[1], bytes)):
        return None
    a = doc._aidx.get(v[1])
    return None if a is None else (v[0], a)


def _live(seq: Any, copies: list[tuple[int, int, int, int, int]], lam: int,
          act: int) -> tuple[int, int]:
    """Element ``(lam, act)`` or, when it is deleted, its live copy made by an undo."""
    for _ in range(16):  # a copy of a copy of ...: bounded, marks come from peers
        r = seq.find_id(lam, act)
        if r is not None and not r.dead:
            break
        for oact, olam, n, clam, cact in copies:
            if oact == act and olam <= lam < olam + n:
                lam, act = clam + (lam - olam), cact
                break
        else:
            break
    return lam, act


def _where(seq: Any, lam: int, act: int, after: bool) -> int | None:
    """Visible position of element ``(lam, act)`` (``after``: just past it); a
    deleted element stands where it was: the position of what follows it."""
    r = seq.find_id(lam, act)
    if r is None:
        return None
    pos = seq._pos_of_run(r)
    if r.dead:
        return pos
    return pos + (lam - r.lam) + (1 if after else 0)


def undo_copies(doc: Doc) -> dict[str, list[tuple[int, int, int, int, int]]]:
    """Per root: (original actor, original lamport, length, copy lamport, copy
    actor) of every run of elements an undo re-inserted, from all ``_undo`` marks
    (cached until the doc's version moves)."""
    cached = doc.__dict__.get("_comment_copies")
    if cached is not None and cached[0] == doc._vv:
        return cached[1]
    from .codec import SET
    from .history import UNDO_KEY

    out: dict[str, list[tuple[int, int, int, int, int]]] = {}
    for a, log in enumerate(doc._oplog):
        for op in log:
            if op[0] != SET or op[1] != UNDO_KEY:
                continue
            v = op[4]
            if not (isinstance(v, list) and len(v) == 3 and isinstance(v[2], list)):
                continue
            for cp in v[2]:
                if not (isinstance(cp, list) and len(cp) == 5 and isinstance(cp[0], str)
                        and all(type(x) is int for x in (cp[1], cp[3], cp[4]))):
                    continue
                who = cp[2]
                oact = a if who is None else doc._aidx.get(who) if isinstance(
                    who, bytes) else None
                if oact is not None:
                    out.setdefault(cp[0], []).append((oact, cp[3], cp[4], cp[1], a))
    doc.__dict__["_comment_copies"] = (list(doc._vv), out)
    return out


def original_author(copies: list[tuple[int, int, int, int, int]], act: int, lam: int,
                    n: int) -> list[tuple[int, int]]:
    """Who first wrote elements ``(act, lam) .. (act, lam + n - 1)`` of one root:
    ``[(actor index, count), ...]`` in order, following undo's copies back (an
    undo that brings text back does not make its author the text's writer)."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < n:
        here = lam + i
        hit = next(((oact, olam + here - clam, clam + length - here)
                    for oact, olam, length, clam, cact in copies
                    if cact == act and clam <= here < clam + length), None)
        if hit is None:  # not a copy: act wrote it, up to the next copy that starts
            nxt = min((clam for _o, _l, _n, clam, cact in copies
                       if cact == act and here < clam < lam + n), default=lam + n)
            take = nxt - here
            who = act
        else:
            oact, olam, left = hit
            take = min(left, n - i)
            # (a copy of a copy: follow it back, bounded by the copies there are)
            who = act
            for _ in range(len(copies) + 1):
                step = next(((o, ol + olam - cl) for o, ol, ln, cl, ca in copies
                             if ca == oact and cl <= olam < cl + ln), None)
                if step is None:
                    who = oact
                    break
                oact, olam = step
        if out and out[-1][0] == who:
            out[-1] = (who, out[-1][1] + take)
        else:
            out.append((who, take))
        i += take
    return out
