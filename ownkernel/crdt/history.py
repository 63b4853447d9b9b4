"""History: regenerating any change, or a bundle of them, from compact state;
walking it (``history()``, ``at(version)``, wall-time marks).

A Doc keeps, per actor, the lamport start of each change, the deps of the
changes that have any, and a log of its non-insert ops (deletes merged into
runs). Inserts are not logged at all: the sequences' entries already hold
every inserted element with its id and origin, so a change is regenerated
from its lamport range (:meth:`History._ops_in`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from . import codec
from .codec import CELL, DEL, DELKEY, INC, INS, REDACT, SET

if TYPE_CHECKING:
    from .doc import Doc

# Reserved map roots that carry history metadata inside ordinary changes, so
# every old decoder reads them as plain map writes (no format change):
# ``_time`` holds each author's wall clock (whole seconds) -- written by a
# node into the first change after a pause and then at most every
# ``MARK_EVERY`` seconds of continuous editing, and ``_undo`` marks
# undo/redo changes (see undo.py). Neither is user content: summaries,
# views and undo skip them.
TIME_ROOT = "_time"
TIME_KEY = "m:" + TIME_ROOT
UNDO_ROOT = "_undo"
UNDO_KEY = "m:" + UNDO_ROOT
META_KEYS = frozenset((TIME_KEY, UNDO_KEY))
# A mark costs one map write (~25 bytes); a keystroke is a change. Marking
# every change would double what typing stores, so a change is marked when
# MARK_EVERY seconds passed since this author's last mark or last commit
# (a pause): the first change of a burst has its exact second, the ones
# during continuous typing are at most MARK_EVERY s late.
MARK_EVERY = 10.0

op_end = codec.bundle_op_end  # lamport after an op's last (bundle form)


def slice_op(op: list[Any], lo: int, hi: int) -> list[Any]:
    """The part of a (bundle-form) op whose lamports fall in [lo, hi)."""
    lam, end = op[2], op_end(op)
    if lam >= lo and end <= hi:
        return op
    a, b = max(lo, lam) - lam, min(hi, end) - lam
    if op[0] == INS:
        olam, oact = (op[3], op[4]) if a == 0 else (lam + a - 1, -2)  # -2: author, patched
        return [INS, op[1], lam + a, olam, oact, op[5][a:b]]
    # DEL run
    n, tlam = op[5], op[4]
    if op[6] == 1:
        return [DEL, op[1], lam + a, op[3], tlam + a, b - a, 1]
    return [DEL, op[1], lam + a, op[3], tlam + n - b, b - a, -1]


class History:
    """Mixin of :class:`~ownkernel.crdt.doc.Doc`: reading its history back as changes."""

    _actors: list[bytes]
    _aidx: dict[bytes, int]
    _vv: list[int]
    _end: list[int]
    _deps: dict[int, Any]  # see dep_key
    _oplog: list[list[list[Any]]]
    _objs: dict[str, Any]
    _starts: list[Any]
    _autocommit: Any

    def _ops_in(self, a: int, lo: int, hi: int) -> list[list[Any]]:
        """Bundle-form ops (doc actor space) of actor ``a`` with lamports in [lo, hi)."""
        out: list[list[Any]] = []
        for key, obj in self._objs.items():
            if key[0] in "tlrc":
                for lam, olam, oact, content in obj._seq.inserts_in(a, lo, hi):
                    out.append([INS, key, lam, olam, oact, content])
        log = self._oplog[a]
        i = bisect_left(log, lo, key=lambda op: op[2]) if log else 0
        if i > 0 and op_end(log[i - 1]) > lo:
            i -= 1
        while i < len(log) and log[i][2] < hi:
            out.append(slice_op(log[i], lo, hi))
            i += 1
        out.sort(key=lambda op: op[2])
        return out

    def _change_range(self, a: int, seq: int) -> tuple[int, int]:
        starts = self._starts[a]
        lo = starts[seq - 1]
        hi = starts[seq] if seq < len(starts) else self._end[a]
        return lo, hi

    def _encode_change(self, a: int, seq: int) -> bytes:
        lo, hi = self._change_range(a, seq)
        actors = [self._actors[a]]
        amap = {a: 0}
        wire: list[list[Any]] = []
        for op in self._ops_in(a, lo, hi):
            k = op[0]
            if k == INS:
                oact = a if op[4] == -2 else op[4]
                wire.append(
                    [
                        INS,
                        op[1],
                        op[3],
                        -1 if oact < 0 else amap_index(amap, actors, self._actors, oact),
                        op[5],
                    ]
                )
            elif k == DEL:
                ta = amap_index(amap, actors, self._actors, op[3])
                if op[6] == 1 or op[5] == 1:
                    wire.append([DEL, op[1], ta, op[4], op[5]])
                else:  # a backspace run: one delete per lamport, highest target first
                    for i in range(op[5]):
                        wire.append([DEL, op[1], ta, op[4] + op[5] - 1 - i, 1])
            else:
                wire.append(to_wire(op, amap, actors, self._actors))
        deps_flat: list[int] = []
        for da, ds in dep_pairs(self._deps.get(dep_key(a, seq))):
            deps_flat += (amap_index(amap, actors, self._actors, da), ds)
        return codec.encode_change(actors, seq, lo, deps_flat, wire)

    def _encode_bundle(self, a: int, first: int, last: int) -> bytes:
        starts_rle = self._starts[a].rle_range(first - 1, last)
        lo = starts_rle[0]
        hi = self._change_range(a, last)[1]
        actors = [self._actors[a]]
        amap = {a: 0}
        ops = []
        for op in self._ops_in(a, lo, hi):
            op = list(op)
            if op[0] == INS:
                if op[4] == -2:
                    op[4] = a
                if op[4] >= 0:
                    op[4] = amap_index(amap, actors, self._actors, op[4])
            elif op[0] == DEL:
                op[3] = amap_index(amap, actors, self._actors, op[3])
            elif op[0] == CELL:
                op[4] = amap_index(amap, actors, self._actors, op[4])
                op[6] = amap_index(amap, actors, self._actors, op[6])
            elif op[0] == REDACT:
                op[3] = amap_index(amap, actors, self._actors, op[3])
            ops.append(op)
        deps: dict[int, list[int]] = {}
        for s in range(first, last + 1):
            d = dep_pairs(self._deps.get(dep_key(a, s)))
            if d:
                table = self._actors
                deps[s] = [x for da, ds in d for x in (amap_index(amap, actors, table, da), ds)]
        # the end is where the last op ends: ``hi`` is the next change's start when
        # ``last`` is not the latest, and the author may have jumped its lamport
        # past others' ops in between (a bundle that ends early is malformed)
        end = op_end(ops[-1]) if ops else hi
        return codec.encode_bundle(actors, first, starts_rle, end, deps, ops)

    def changes(self, since: dict[bytes, int] | None = None) -> list[bytes]:
        """Encoded changes that a replica at version ``since`` lacks.

        One blob per actor: a single change, or a bundle when several are
        missing. Ops made outside a ``transaction()`` block are committed
        first (as ``save()`` does), so what was edited is what is sent; ops
        of an open transaction are not included until it closes.
        """
        self._autocommit()
        since = since or {}
        out = []
        for a, actor in enumerate(self._actors):
            have, mine = since.get(actor, 0), self._vv[a]
            if mine > have:
                if mine - have == 1:
                    out.append(self._encode_change(a, mine))
                else:
                    out.append(self._encode_bundle(a, have + 1, mine))
        return out

    def change(self, actor: bytes, seq: int) -> bytes:
        """The encoded change ``seq`` of ``actor`` (KeyError if unknown)."""
        a = self._aidx.get(actor)
        if a is None or not 1 <= seq <= self._vv[a]:
            raise KeyError((actor, seq))
        return self._encode_change(a, seq)


def amap_index(amap: dict[int, int], actors: list[bytes], table: list[bytes], a: int) -> int:
    i = amap.get(a)
    if i is None:
        i = amap[a] = len(actors)
        actors.append(table[a])
    return i


def to_wire(op: list[Any], amap: dict[int, int], actors: list[bytes], table: list[bytes]) -> list:
    k = op[0]
    if k == CELL:
        return [
            CELL,
            op[1],
            op[3],
            amap_index(amap, actors, table, op[4]),
            op[5],
            amap_index(amap, actors, table, op[6]),
            op[7],
        ]
    if k == REDACT:
        return [REDACT, op[1], amap_index(amap, actors, table, op[3]), op[4]]
    return [k, op[1], *op[3:]]


def from_wire(op: list[Any], lam: int, amap: list[int]) -> list[Any]:
    k = op[0]
    if k == CELL:
        return [CELL, op[1], lam, op[2], amap[op[3]], op[4], amap[op[5]], op[6]]
    if k == REDACT:
        return [REDACT, op[1], lam, amap[op[2]], op[3]]
    return [k, op[1], lam, *op[2:]]


# ``_deps`` (what each change declared of other actors) holds ints only, for
# the common case of one dep: key ``actor << 53 | seq``, value ``other << 53 |
# version`` (seqs and versions stay below 2**53, codec.MAX_INT); a change
# declaring several holds a tuple of pairs. Tuples as keys and values made
# every merged keystroke allocate three GC-tracked tuples, and each replica's
# dict of them, untracked by a full collection, was re-tracked as young by
# the next insert: the gen-0 collections that then landed in local edits
# scanned hundreds of entries per replica (issue #15, 100 writers).
DEP_SHIFT = 53
DEP_MASK = (1 << DEP_SHIFT) - 1


def dep_key(a: int, seq: int) -> int:
    return a << DEP_SHIFT | seq


def dep_key_split(k: int) -> tuple[int, int]:
    """``(actor, seq)`` of a ``_deps`` key."""
    return k >> DEP_SHIFT, k & DEP_MASK


def deps_value(pairs: Any) -> Any:
    """The stored form of a change's deps ``[(actor, version), ...]``."""
    if len(pairs) == 1:
        x, v = pairs[0]
        if type(x) is int and type(v) is int and x >= 0 and 0 <= v <= DEP_MASK:
            return x << DEP_SHIFT | v
    return tuple(pairs)  # anything the int form cannot hold stays as it was


def dep_pairs(value: Any) -> Any:
    """``((actor, version), ...)`` of a stored deps value (``()`` for None)."""
    if type(value) is int:
        return ((value >> DEP_SHIFT, value & DEP_MASK),)
    return value or ()


def log_delete(log: list[list[Any]], op: list[Any]) -> None:
    """Append a delete to an actor's op log, merging typing-style runs."""
    if log:
        last = log[-1]
        if last[0] == DEL and last[1] == op[1] and last[3] == op[3] and last[2] + last[5] == op[2]:
            if last[6] == 1 and op[6] == 1 and last[4] + last[5] == op[4]:
                last[5] += op[5]
                return
            if op[5] == 1 and (last[6] == -1 or last[5] == 1) and op[4] + 1 == last[4]:
                last[4] = op[4]
                last[5] += 1
                last[6] = -1
                return
    log.append(list(op))


def canon(ops: list[list[Any]], author: int) -> list[tuple]:
    """Ops as comparable tuples: deletes split per element, inserts per element run."""
    out: list[tuple] = []
    for op in ops:
        if op[0] == INS:
            oact = author if op[4] == -2 else op[4]
            for i, x in enumerate(op[5]):
                origin = (op[3], oact) if i == 0 else (op[2] + i - 1, author)
                out.append((INS, op[1], op[2] + i, origin, repr(x)))
        elif op[0] == DEL:
            for i in range(op[5]):
                t = op[4] + i if op[6] == 1 else op[4] + op[5] - 1 - i
                out.append((DEL, op[1], op[2] + i, op[3], t))
        else:
            out.append((op[0], op[1], op[2], repr(op[3:])))
    out.sort(key=lambda t: t[2])
    return out


# ------------------------------------------------------ walking the history
class HistoryEntry(NamedTuple):
    """One change of a document's history (see :meth:`Doc.history`)."""

    actor: bytes
    seq: int
    lamport: int  # lamport of the change's first op
    version: dict[bytes, int]  # the document right after this change (and all before it)
    time: float | None  # wall time recorded by the authoring node; None in a bare Doc
    summary: str  # e.g. "+12 −3 in body"


# ------------------------------------------------------------------ history
def _root_name(key: str) -> str:
    # rows and columns of a sheet are lists "r:<sheet>" / "c:<sheet>"
    return key[2:]


def summarize(ops: list[list[Any]]) -> str:
    """A one-line human summary of a change's ops, per root, in first-touched order."""
    per: dict[str, list[int]] = {}  # root name -> [inserted, deleted, cells, messages]
    words: dict[str, list[str]] = {}
    prefix = ""
    for op in ops:
        k, key = op[0], op[1]
        if key in META_KEYS:
            if key == UNDO_KEY and k == SET and isinstance(op[4], list) and op[4]:
                prefix = "undo: " if op[4][0] == "u" else "redo: "
            continue
        name = _root_name(key)
        c = per.setdefault(name, [0, 0, 0, 0])
        if k == INS:
            c[0] += len(op[5])
        elif k == DEL:
            c[1] += op[5]
        elif k in (SET, DELKEY):
            w = words.setdefault(name, [])
            verb = ("set " if k == SET else "delete ") + str(op[3])
            if verb not in w:
                w.append(verb)
        elif k == INC:
            words.setdefault(name, []).append(f"{op[3]:+}")
        elif k == CELL:
            c[2] += 1
        else:  # log append / redact
            c[3] += 1
    parts = []
    for name, (ins, dele, cells, msgs) in per.items():
        bits = []
        if ins or dele:
            bits.append(f"+{ins} −{dele}")
        if cells:
            bits.append(f"{cells} cell{'s' if cells > 1 else ''}")
        if msgs:
            bits.append(f"{msgs} message op{'s' if msgs > 1 else ''}")
        bits.extend(words.get(name, [])[:3])
        parts.append(" ".join(bits) + f" in {name}")
    return prefix + ("; ".join(parts) or "empty")


def _change_ops(doc: Doc, a: int, seq: int) -> list[list[Any]]:
    lo, hi = doc._change_range(a, seq)
    return doc._ops_in(a, lo, hi)


def history(
    doc: Doc, times: Mapping[tuple[bytes, int], float] | None = None
) -> list[HistoryEntry]:
    """Every integrated change, oldest first; ``times`` maps (actor, seq) to wall time.

    Without ``times``, a change's time is the ``_time`` mark its author's node
    put in it or, failing that, in the author's latest earlier change that
    has one (a node marks the first change after a pause, then one every
    ``MARK_EVERY`` s): None when the author never marked any (a bare Doc)."""
    doc._autocommit()
    order = []
    for a, actor in enumerate(doc._actors):
        starts = doc._starts[a]
        for s in range(1, doc._vv[a] + 1):
            order.append((starts[s - 1], actor, a, s))
    order.sort()
    version: dict[bytes, int] = {}
    last_time: dict[int, float] = {}  # actor index -> its latest mark so far
    out = []
    for lam, actor, a, s in order:
        version[actor] = s
        ops = _change_ops(doc, a, s)
        t: float | None
        if times is not None:
            t = times.get((actor, s))
        else:
            mark = _time_mark(ops)
            if mark is not None:
                last_time[a] = mark
            t = last_time.get(a)
        out.append(HistoryEntry(actor, s, lam, dict(version), t, summarize(ops)))
    return out


def _time_mark(ops: list[list[Any]]) -> float | None:
    for op in ops:
        if op[0] == SET and op[1] == TIME_KEY:
            v = op[4]
            # anyone may write any value into a map: only a number is a time
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
    return None


def stamp(doc: Doc, now: float) -> None:
    """Add this author's wall-clock mark (whole seconds) to the pending change
    when one is due (see ``MARK_EVERY``). A node calls it before each commit;
    the mark is a plain map write, so every peer decodes it."""
    if not doc._pending:
        return
    st = doc.__dict__
    marked, last = st.get("_time_marked"), st.get("_time_last", 0.0)
    st["_time_last"] = now
    if marked is not None and now - marked < MARK_EVERY and now - last < MARK_EVERY:
        return
    st["_time_marked"] = now
    doc.map(TIME_ROOT).set(doc.actor.hex()[:16], int(now))


# ----------------------------------------------------------------------- at
class DocView:
    """A read-only picture of a document at one version: plain values, no writes."""

    def __init__(self, replica: Doc, version: dict[bytes, int]) -> None:
        self._d = replica
        self.version = dict(version)

    def _has(self, key: str) -> bool:
        return key in self._d._objs

    def text(self, name: str) -> str:
        return str(self._d.text(name)) if self._has("t:" + name) else ""

    def list(self, name: str) -> list[Any]:
        return self._d.list(name).to_list() if self._has("l:" + name) else []

    def map(self, name: str) -> dict[str, Any]:
        return self._d.map(name).to_dict() if self._has("m:" + name) else {}

    def counter(self, name: str) -> int | float:
        return self._d.counter(name).value if self._has("n:" + name) else 0

    def log(self, name: str) -> list[Any]:
        return self._d.log(name).messages() if self._has("g:" + name) else []

    def sheet(self, name: str) -> list[list[Any]]:
        """The raw cells (values or formula text) by row, as they were."""
        return self._d.sheet(name).raws() if self._has("s:" + name) else []

    def sheet_values(self, name: str) -> list[list[Any]]:
        """The evaluated cells by row, as they were."""
        return self._d.sheet(name).values() if self._has("s:" + name) else []

    def roots(self) -> dict[str, Any]:
        """Every root that existed, ``"<type>:<name>"`` -> its plain value."""
        read = {"t": self.text, "l": self.list, "m": self.map, "n": self.counter,
                "g": self.log, "s": self.sheet}
        return {k: read[k[0]](k[2:]) for k in self._d.roots() if k not in META_KEYS}

    def __repr__(self) -> str:
        return f"DocView({self.version!r})"


def view_at(doc: Doc, version: Mapping[bytes, int]) -> DocView:
    """The document as it was at ``version``, replayed into a private replica."""
    from .doc import Doc as DocClass

    if not isinstance(version, Mapping):
        raise TypeError("version must be a mapping {actor bytes: seq}")
    doc._autocommit()
    blobs = []
    for actor, seq in version.items():
        a = doc._aidx.get(actor) if isinstance(actor, bytes) else None
        if a is None:
            raise KeyError(f"version names an actor this document does not know: {actor!r}")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"version seq for actor {actor.hex()} must be an int >= 0")
        if seq > doc._vv[a]:
            raise KeyError(f"version asks for change {seq} of {actor.hex()}; "
                           f"this document has {doc._vv[a]}")
        if seq == 1:
            blobs.append(doc._encode_change(a, 1))
        elif seq > 1:
            blobs.append(doc._encode_bundle(a, 1, seq))
    replica = DocClass(b"\x00view")
    if blobs:
        replica.apply(blobs)
    if replica.pending_count:
        # a version that is not causally closed would silently show less
        raise ValueError("version is not causally closed: some changes in it depend on "
                         "changes outside it (use a version from history())")
    return DocView(replica, dict(version))


# ------------------------------------------------------------------ restore
def restore(doc: Doc, version: Mapping[bytes, int]) -> bool:
    """Make the user roots look as they did at ``version``, as pending NEW ops
    (nothing is rewritten; the caller commits them as one change). Texts and
    lists get a minimal diff, so what others wrote since into parts that did
    not change stays theirs; maps, counters and sheet cells are set back.
    Logs keep what was said, and reserved ``_`` roots (the access list, the
    history marks) are left alone. False when nothing differed."""
    from difflib import SequenceMatcher

    view = view_at(doc, version)
    old_keys = view._d.roots()
    before = len(doc._pending)
    for key in sorted(set(doc.roots()) | set(old_keys)):
        kind, name = key[0], key[2:]
        if name.startswith("_") or kind == "g":
            continue
        if kind == "t":
            cur, want = str(doc.text(name)), view.text(name)
            t = doc.text(name)
            ops = SequenceMatcher(None, cur, want, autojunk=False).get_opcodes()
            for tag, i1, i2, j1, j2 in reversed(ops):  # from the end: positions stay right
                if tag in ("replace", "delete"):
                    t.delete(i1, i2 - i1)
                if tag in ("replace", "insert"):
                    t.insert(i1, want[j1:j2])
        elif kind == "l":
            lst = doc.list(name)
            cur_l, want_l = lst.to_list(), view.list(name)
            ops = SequenceMatcher(None, [repr(x) for x in cur_l], [repr(x) for x in want_l],
                                  autojunk=False).get_opcodes()
            for tag, i1, i2, j1, j2 in reversed(ops):
                if tag in ("replace", "delete"):
                    lst.delete(i1, i2 - i1)
                if tag in ("replace", "insert"):
                    lst.insert_many(i1, want_l[j1:j2])
        elif kind == "m":
            m, want_m = doc.map(name), view.map(name)
            for k in list(m):
                if k not in want_m:
                    m.delete(k)
            for k, v in want_m.items():
                if k not in m or m[k] != v:
                    m.set(k, v)
        elif kind == "n":
            c = doc.counter(name)
            diff = view.counter(name) - c.value
            if diff:
                c.increment(diff)
        elif kind == "s":
            sh, want_s = doc.sheet(name), view.sheet(name)
            cur_s = sh.raws()
            for r in range(max(len(cur_s), len(want_s))):
                cur_row = cur_s[r] if r < len(cur_s) else []
                want_row = want_s[r] if r < len(want_s) else []
                for c in range(max(len(cur_row), len(want_row))):
                    a = cur_row[c] if c < len(cur_row) else None
                    b = want_row[c] if c < len(want_row) else None
                    if a != b:
                        sh.set((r, c), b)
    return len(doc._pending) > before
