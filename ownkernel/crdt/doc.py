"""Doc: named CRDT roots, local transactions and commits.

The other halves of a Doc live beside it: :mod:`.history` turns the compact
history back into changes and bundles, :mod:`.integrate` applies remote
ones, :mod:`.snapshot` saves and loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import cbor2

from . import codec, snapshot, undo
from .codec import APPEND, CELL, CHANGE, DEL, INS, SET
from .errors import DecodeError
from .history import DEP_SHIFT, History, amap_index, deps_value, log_delete, op_end, to_wire
from .integrate import Integrator, Unit
from .log import Log
from .map import Counter, Map
from .starts import Starts
from .text import List, PendingRun, Text
from .values import check_decoded, check_key

_dumps = cbor2.dumps


class DocEvent(NamedTuple):
    local: bool
    objects: frozenset[str]


class Doc(History, Integrator):
    """A collaborative document: see :mod:`ownkernel.crdt` for the API."""

    def __init__(self, actor: bytes | None = None) -> None:
        if actor is None:
            actor = os.urandom(16)
        if not isinstance(actor, bytes) or not 1 <= len(actor) <= codec.MAX_ACTOR:
            raise ValueError("actor must be 1 to 32 bytes")
        self.actor = actor
        self._actors: list[bytes] = [actor]
        self._aidx: dict[bytes, int] = {actor: 0}
        self._me = 0
        self._lamport = 0
        self._vv: list[int] = [0]
        self._starts: list[Starts] = [Starts()]
        self._my_starts = self._starts[0]
        self._end: list[int] = [0]
        self._deps: dict[int, Any] = {}  # history.dep_key -> history.deps_value
        self._oplog: list[list[list[Any]]] = [[]]
        self._objs: dict[str, Any] = {}
        self._pending: list[list[Any]] = []
        # per actor: the highest seq of each other actor it declared as seen
        # (index 0: what this replica declared in its own changes)
        self._ctx: list[dict[int, int]] = [{}]
        self._buffer: list[Unit] = []
        self._calls = 0
        self._deferred_from = 0  # first apply() call held by an open transaction
        self._observers: list[Callable[[DocEvent], None]] = []
        self._txn_depth = 0
        self._pending_runs = False  # some pending insert holds a PendingRun

    # ------------------------------------------------------------- actors
    def _actor_index(self, actor: bytes) -> int:
        i = self._aidx.get(actor)
        if i is None:
            i = len(self._actors)
            self._actors.append(actor)
            self._aidx[actor] = i
            self._vv.append(0)
            self._starts.append(Starts())
            self._end.append(0)
            self._oplog.append([])
            self._ctx.append({})
        return i

    def _forget_actors_from(self, n: int) -> None:
        """Drop actors from index ``n`` on, when nothing refers to them."""
        if len(self._actors) <= n or any(u.actor >= n for u in self._buffer):
            return
        for a in self._actors[n:]:
            del self._aidx[a]
        for lst in (
            self._actors,
            self._vv,
            self._starts,
            self._end,
            self._oplog,
            self._ctx,
        ):
            del lst[n:]

    # -------------------------------------------------------------- roots
    def _root(self, key: str, cls: Callable[[Doc, str], Any]) -> Any:
        obj = self._objs.get(key)
        if obj is None:
            if not isinstance(key, str) or len(key) < 3:
                raise ValueError("root names must be non-empty strings")
            obj = self._objs[key] = cls(self, key)
        return obj

    def text(self, name: str) -> Text:
        return self._root("t:" + _name(name), Text)

    def list(self, name: str) -> List:
        return self._root("l:" + _name(name), List)

    def map(self, name: str) -> Map:
        return self._root("m:" + _name(name), Map)

    def counter(self, name: str) -> Counter:
        return self._root("n:" + _name(name), Counter)

    def log(self, name: str) -> Log:
        return self._root("g:" + _name(name), Log)

    def sheet(self, name: str) -> Any:
        from .sheet import Sheet

        return self._root("s:" + _name(name), Sheet)

    def roots(self) -> dict[str, Any]:
        """Every root that exists, keyed ``"<type>:<name>"``."""
        return {k: v for k, v in self._objs.items() if k[0] in "tlmngs"}

    def _seqroot(self, key: str) -> Any:
        t = key[0]
        if t == "t":
            return self.text(key[2:])
        if t == "l":
            return self.list(key[2:])
        self.sheet(key[2:])  # a sheet registers its rows ("r:") and columns ("c:")
        return self._objs[key]

    # --------------------------------------------------------- local ops
    def _local_op(self, op: list[Any]) -> int:
        """Record a one-lamport op (op[2] is filled in); returns its lamport."""
        self._lamport += 1
        op[2] = self._lamport
        self._pending.append(op)
        return self._lamport

    @property
    def pending_ops(self) -> int:
        return len(self._pending)

    def commit(self) -> bytes | None:
        """Close the open transaction into one encoded change (None if empty)."""
        ops = self._pending
        if not ops:
            return None
        if self._pending_runs:
            for op in ops:
                if op[0] == INS and type(op[5]) is PendingRun:
                    op[5] = op[5].joined()
            self._pending_runs = False
        # this replica's actor is always index 0 of the actor table
        seq = self._vv[0] + 1
        op = ops[0]
        start = op[2]
        k = op[0]
        if len(ops) == 1 and k <= DEL:
            # one keystroke, the common case: a single cbor2 call. It refers
            # to no other actor (names no one, no deps), or to one, named
            # second in its table and declared as its dep when newly seen.
            x = op[4] if k == INS else op[3]
            if x <= 0:
                actors: Any = self.actor
                deps: Any = 0
                xi = x
            else:
                actors = [self.actor, self._actors[x]]
                xi = 1
                v = self._vv[x]
                declared = self._ctx[0]
                if v > declared.get(x, 0):
                    declared[x] = v
                    self._deps[seq] = x << DEP_SHIFT | v  # ints (history.dep_key, actor 0)
                    deps = [1, v]
                else:
                    deps = 0
            if k == INS:
                blob = _dumps([CHANGE, actors, seq, start, deps, INS, op[1], op[3], xi, op[5]])
                end = start + len(op[5])
            else:
                blob = _dumps([CHANGE, actors, seq, start, deps, DEL, op[1], xi, op[4], op[5]])
                log_delete(self._oplog[0], op)
                end = start + op[5]
        else:
            blob = self._commit_general(ops, seq, start)
            end = op_end(ops[-1])
        buf = self._my_starts.buf
        buf.append(start)
        if len(buf) >= 1024:
            self._my_starts.fold()
        self._end[0] = end
        self._vv[0] = seq
        if self._observers:
            self._notify(True, {op[1] for op in ops})
        ops.clear()
        return blob

    def _commit_general(self, ops: list[list[Any]], seq: int, start: int) -> bytes:
        """Encode a change whose actor table is built from what its ops refer to.

        Deps name only those actors: for each one, the version this replica
        has of it, when higher than what its earlier changes declared. That
        is all a receiver needs (every referenced element lies within the
        declared versions), so a change after merging a hundred writers
        names one or two of them, not all (issue #15).
        """
        actors = [self.actor]
        amap = {0: 0}
        table = self._actors
        wire = []
        log = self._oplog[0]
        for op in ops:
            k = op[0]
            if k == INS:
                oact = op[4]
                oa = -1 if oact < 0 else amap_index(amap, actors, table, oact)
                wire.append([INS, op[1], op[3], oa, op[5]])
            elif k == DEL:
                wire.append([DEL, op[1], amap_index(amap, actors, table, op[3]), op[4], op[5]])
                log_delete(log, op)
            else:
                wire.append(to_wire(op, amap, actors, table))
                log.append(op)
        deps_flat: list[int] = []
        if len(actors) > 1:
            declared = self._ctx[0]
            dl = []
            for x, i in amap.items():
                v = self._vv[x]
                if i and v > declared.get(x, 0):
                    declared[x] = v
                    dl.append((x, v))
                    deps_flat += (i, v)
            if dl:
                self._deps[seq] = deps_value(dl)  # history.dep_key(0, seq)
        return codec.encode_change(actors, seq, start, deps_flat, wire)

    def _autocommit(self) -> None:
        if not self._txn_depth:
            self.commit()

    @contextmanager
    def transaction(self) -> Iterator[Doc]:
        """Group every op made inside into one change, committed on exit."""
        self._txn_depth += 1
        try:
            yield self
        finally:
            # ops already applied stay applied even if the block raised, so
            # they are committed rather than left dangling
            self._txn_depth -= 1
            if self._txn_depth == 0:
                self.commit()
                if self._deferred_from:  # remote changes that arrived meanwhile
                    first, self._deferred_from = self._deferred_from, 0
                    self._drain(first)

    # ------------------------------------------------------------ reading
    @property
    def version(self) -> dict[bytes, int]:
        return {a: s for a, s in zip(self._actors, self._vv) if s}

    @property
    def pending_count(self) -> int:
        """Changes received but waiting for their dependencies."""
        return sum(len(u.starts) for u in self._buffer)

    def observe(self, callback: Callable[[DocEvent], None]) -> Callable[[], None]:
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    def _notify(self, local: bool, keys: set[str]) -> None:
        ev = DocEvent(local, frozenset(keys))
        for cb in list(self._observers):
            cb(ev)

    # ------------------------------------------------ walking the history
    # (issue #12 §1; the work is in undo.py, these are its entry points)
    def history(self, times: Any = None) -> list[Any]:
        """Every change, oldest first: ``.actor, .seq, .version, .time, .summary``.

        ``times`` maps ``(actor, seq)`` to the wall time the authoring node
        recorded (a bare Doc has no clock, so ``.time`` is None without it).
        """
        return undo.history(self, times)

    def at(self, version: dict[bytes, int]) -> Any:
        """A read-only :class:`~.undo.DocView` of the document at ``version``."""
        return undo.view_at(self, version)

    def undo(self, commit: bool = True) -> bytes | None:
        """Undo this actor's latest change as a new change (returned; None if nothing).

        ``commit=False`` leaves the new ops pending for the caller's
        ``commit()`` (how a node stores it like any edit) and returns None.
        """
        return undo.undo(self, commit)

    def redo(self, commit: bool = True) -> bytes | None:
        """Redo what the latest ``undo()`` undid, as a new change (None if nothing)."""
        return undo.redo(self, commit)

    def can_undo(self) -> bool:
        return undo.can_undo(self)

    def can_redo(self) -> bool:
        return undo.can_redo(self)

    def save(self) -> bytes:
        """State and whole history as compact bytes (see :mod:`.snapshot`).

        Pending local ops are committed first. Changes still waiting for
        their dependencies are not part of the document yet and not saved.
        """
        return snapshot.save(self)

    @classmethod
    def load(cls, data: bytes, actor: bytes | None = None) -> Doc:
        """A document from :meth:`save` bytes; ``actor`` continues as that actor."""
        doc = snapshot.load(cls, data, actor)
        _check_saved(doc)
        return doc


def _name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("root names must be non-empty strings")
    if not name.isascii():
        check_key(name)  # a name UTF-8 cannot encode would break every commit
    return name


def _check_saved(doc: Doc) -> None:
    """Every value a loaded document holds is a tree (DecodeError otherwise).

    Values live in the actors' op logs (map writes, log messages, cells)
    and in the runs of lists; text runs hold str only.
    """
    seen: set[int] = set()
    for log in doc._oplog:
        for op in log:
            k = op[0]
            if k == DEL:  # most of a text's log, and holds no value
                continue
            v = op[4] if k == SET else op[3] if k == APPEND else op[7] if k == CELL else None
            problem = check_decoded(v, seen)
            if problem is not None:
                raise DecodeError(f"corrupt saved document: a value in {op[1]!r} holds {problem}")
    for key, obj in doc._objs.items():
        if key[0] in "lrc":
            for r in obj._seq.runs():
                problem = check_decoded(r.content, seen)
                if problem is not None:
                    raise DecodeError(f"corrupt saved document: an item of {key!r} holds {problem}")
