"""Doc: named CRDT roots, local transactions, changes, sync and persistence.

History is kept compactly rather than as a list of change blobs: for every
actor, the lamport start of each of its changes (an ``array``), the deps of
the changes that have any, and a log of its non-insert ops (deletes merged
into runs). Inserts are not logged at all: the sequences' entries already
hold every inserted element with its id and origin, so a change is
regenerated on demand from its lamport range (see :meth:`Doc._ops_in`).
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import cbor2

from . import codec, snapshot
from .codec import APPEND, CELL, CHANGE, DEL, DELKEY, INC, INS, REDACT, SET, Bundle, Change
from .errors import ConflictError, DecodeError, InvalidChangeError
from .log import Log
from .map import Counter, Map
from .rga import Sequence, build
from .text import Delta, List, Text

BATCH_THRESHOLD = 256  # ops in one apply() above which sequences are rebuilt at once


class DocEvent(NamedTuple):
    local: bool
    objects: frozenset[str]


class _Unit:
    """Consecutive changes of one actor in doc actor space, ops with lamports."""

    __slots__ = ("actor", "seq", "starts", "end", "deps", "ops", "call")

    def __init__(
        self,
        actor: int,
        seq: int,
        starts: list[int],
        end: int,
        deps: dict[int, list[tuple[int, int]]],
        ops: list[list[Any]],
        call: int,
    ) -> None:
        self.actor, self.seq, self.starts, self.end = actor, seq, starts, end
        self.deps, self.ops, self.call = deps, ops, call

    @property
    def last(self) -> int:
        return self.seq + len(self.starts) - 1


def _op_end(op: list[Any]) -> int:
    k = op[0]
    if k == INS:
        return op[2] + len(op[5])
    if k == DEL:
        return op[2] + op[5]
    return op[2] + 1


def _slice_op(op: list[Any], lo: int, hi: int) -> list[Any]:
    """The part of a (bundle-form) op whose lamports fall in [lo, hi)."""
    lam, end = op[2], _op_end(op)
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


class Doc:
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
        self._starts: list[array] = [array("q")]
        self._my_starts = self._starts[0]
        self._end: list[int] = [0]
        self._deps: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._oplog: list[list[list[Any]]] = [[]]
        self._objs: dict[str, Any] = {}
        self._pending: list[list[Any]] = []
        self._seen: list[int] = [0]  # versions of others at our last commit
        self._remote_since_commit = False
        self._pending_vv: list[int] | None = None
        self._buffer: list[_Unit] = []
        self._calls = 0
        self._observers: list[Callable[[DocEvent], None]] = []
        self._txn_depth = 0

    # ------------------------------------------------------------- actors
    def _actor_index(self, actor: bytes) -> int:
        i = self._aidx.get(actor)
        if i is None:
            i = len(self._actors)
            self._actors.append(actor)
            self._aidx[actor] = i
            self._vv.append(0)
            self._starts.append(array("q"))
            self._end.append(0)
            self._oplog.append([])
            self._seen.append(0)
        return i

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
    def _begin(self) -> None:
        """First op of a transaction: remember what we had seen (its deps)."""
        if self._remote_since_commit:
            self._pending_vv = list(self._vv)

    def _local_op(self, op: list[Any]) -> int:
        """Record a one-lamport op (op[2] is filled in); returns its lamport."""
        if not self._pending:
            self._begin()
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
        # this replica's actor is always index 0 of the actor table
        seq = self._vv[0] + 1
        op = ops[0]
        start = op[2]
        k = op[0]
        if len(ops) == 1 and self._pending_vv is None and k <= DEL:
            # one keystroke, the common case: a single cbor2 call
            if k == INS:
                oact = op[4]
                if oact > 0:
                    blob = self._commit_general(ops, seq, start)
                else:
                    blob = cbor2.dumps(
                        [CHANGE, self.actor, seq, start, 0, INS, op[1], op[3], oact, op[5]]
                    )
                end = start + len(op[5])
            else:
                if op[3]:
                    blob = self._commit_general(ops, seq, start)
                else:
                    blob = cbor2.dumps(
                        [CHANGE, self.actor, seq, start, 0, DEL, op[1], 0, op[4], op[5]]
                    )
                    _log_delete(self._oplog[0], op)
                end = start + op[5]
        else:
            blob = self._commit_general(ops, seq, start)
            end = _op_end(ops[-1])
        self._my_starts.append(start)
        self._end[0] = end
        self._vv[0] = seq
        self._pending = []
        if self._remote_since_commit:
            # remote changes integrated while this transaction was open are
            # not its deps, but the next transaction will have seen them
            seen = self._seen
            self._remote_since_commit = any(v > seen[a] for a, v in enumerate(self._vv) if a)
        if self._observers:
            self._notify(True, {op[1] for op in ops})
        return blob

    def _commit_general(self, ops: list[list[Any]], seq: int, start: int) -> bytes:
        me = 0
        actors = [self.actor]
        amap = {me: 0}
        deps_flat: list[int] = []
        if self._pending_vv is not None:
            seen = self._seen
            dl = [(a, v) for a, v in enumerate(self._pending_vv) if a != me and v > seen[a]]
            for a, v in dl:
                deps_flat += (_amap(amap, actors, self._actors, a), v)
                seen[a] = v
            if dl:
                self._deps[(me, seq)] = dl
            self._pending_vv = None
        wire = []
        log = self._oplog[me]
        for op in ops:
            k = op[0]
            if k == INS:
                oact = op[4]
                oa = -1 if oact < 0 else _amap(amap, actors, self._actors, oact)
                wire.append([INS, op[1], op[3], oa, op[5]])
            elif k == DEL:
                wire.append([DEL, op[1], _amap(amap, actors, self._actors, op[3]), op[4], op[5]])
                _log_delete(log, op)
            else:
                wire.append(_to_wire(op, amap, actors, self._actors))
                log.append(op)
        return codec.encode_change(actors, seq, start, deps_flat, wire)

    @contextmanager
    def transaction(self) -> Iterator[Doc]:
        """Group every op made inside into one change, committed on exit."""
        self._txn_depth += 1
        try:
            yield self
        finally:
            self._txn_depth -= 1
        if self._txn_depth == 0:
            self.commit()

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

    # ------------------------------------------------------- history reads
    def _ops_in(self, a: int, lo: int, hi: int) -> list[list[Any]]:
        """Bundle-form ops (doc actor space) of actor ``a`` with lamports in [lo, hi)."""
        out: list[list[Any]] = []
        for key, obj in self._objs.items():
            if key[0] in "tlrc":
                for lam, olam, oact, content in obj._seq.inserts_in(a, lo, hi):
                    out.append([INS, key, lam, olam, oact, content])
        log = self._oplog[a]
        i = bisect_left(log, lo, key=lambda op: op[2]) if log else 0
        if i > 0 and _op_end(log[i - 1]) > lo:
            i -= 1
        while i < len(log) and log[i][2] < hi:
            out.append(_slice_op(log[i], lo, hi))
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
                        -1 if oact < 0 else _amap(amap, actors, self._actors, oact),
                        op[5],
                    ]
                )
            elif k == DEL:
                ta = _amap(amap, actors, self._actors, op[3])
                if op[6] == 1 or op[5] == 1:
                    wire.append([DEL, op[1], ta, op[4], op[5]])
                else:  # a backspace run: one delete per lamport, highest target first
                    for i in range(op[5]):
                        wire.append([DEL, op[1], ta, op[4] + op[5] - 1 - i, 1])
            else:
                wire.append(_to_wire(op, amap, actors, self._actors))
        deps_flat: list[int] = []
        for da, ds in self._deps.get((a, seq), ()):
            deps_flat += (_amap(amap, actors, self._actors, da), ds)
        return codec.encode_change(actors, seq, lo, deps_flat, wire)

    def _encode_bundle(self, a: int, first: int, last: int) -> bytes:
        starts = list(self._starts[a][first - 1 : last])
        lo = starts[0]
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
                    op[4] = _amap(amap, actors, self._actors, op[4])
            elif op[0] == DEL:
                op[3] = _amap(amap, actors, self._actors, op[3])
            elif op[0] == CELL:
                op[4] = _amap(amap, actors, self._actors, op[4])
                op[6] = _amap(amap, actors, self._actors, op[6])
            elif op[0] == REDACT:
                op[3] = _amap(amap, actors, self._actors, op[3])
            ops.append(op)
        deps: dict[int, list[int]] = {}
        for s in range(first, last + 1):
            d = self._deps.get((a, s))
            if d:
                deps[s] = [x for da, ds in d for x in (_amap(amap, actors, self._actors, da), ds)]
        return codec.encode_bundle(actors, first, starts, hi, deps, ops)

    def changes(self, since: dict[bytes, int] | None = None) -> list[bytes]:
        """Encoded changes that a replica at version ``since`` lacks.

        One blob per actor: a single change, or a bundle when several are missing.
        """
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

    def save(self) -> bytes:
        """State and whole history as compact bytes (see :mod:`.snapshot`).

        Pending local ops are committed first. Changes still waiting for
        their dependencies are not part of the document yet and not saved.
        """
        return snapshot.save(self)

    @classmethod
    def load(cls, data: bytes, actor: bytes | None = None) -> Doc:
        """A document from :meth:`save` bytes; ``actor`` continues as that actor."""
        return snapshot.load(cls, data, actor)

    # --------------------------------------------------------------- apply
    def apply(self, changes: Iterable[bytes]) -> None:
        """Integrate encoded changes or bundles: any order, duplicates ignored,
        early arrivals buffered. Atomic: on error nothing of this call is kept."""
        if isinstance(changes, (bytes, bytearray, memoryview)):
            raise TypeError("apply() takes an iterable of encoded changes, not bytes")
        if (
            type(changes) is list
            and len(changes) == 1
            and not self._buffer
            and self._apply_keystroke(changes[0])
        ):
            return
        decoded = [codec.decode(b) for b in changes]
        self._calls += 1
        call = self._calls
        units = [self._to_unit(c, call) for c in decoded]
        for u in units:
            self._check_duplicate(u)
        units = [u for u in units if u.last > self._vv[u.actor]]
        if not units:
            return
        self._buffer.extend(units)
        try:
            plan = self._plan()
            self._validate(plan)
        except InvalidChangeError:
            self._buffer = [u for u in self._buffer if u.call != call]
            raise
        if not plan:
            return
        touched = self._execute(plan)
        if self._observers and touched:
            self._notify(False, touched)

    def _apply_keystroke(self, blob: bytes) -> bool:
        """Fast path for the live case: the next change of a known actor, one
        insert or delete, no deps. Returns False, having changed nothing,
        when the change is anything else (the general path then decides)."""
        if type(blob) is not bytes:
            return False
        try:
            v = cbor2.loads(blob)
        except Exception:
            return False
        if type(v) is not list or len(v) != 10 or v[0] != CHANGE or v[4] != 0:
            return False
        actors, seq, lam, k, key, x, y, z = v[1], v[2], v[3], v[5], v[6], v[7], v[8], v[9]
        aidx = self._aidx
        if type(actors) is bytes:
            a = aidx.get(actors)
            other = None
        elif type(actors) is list and len(actors) == 2 and type(actors[1]) is bytes:
            a = aidx.get(actors[0]) if type(actors[0]) is bytes else None
            other = aidx.get(actors[1])
            if other is None or other == a:
                return False
        else:
            return False
        if a is None or seq != self._vv[a] + 1 or type(lam) is not int or lam < self._end[a]:
            return False
        root = self._objs.get(key) if type(key) is str else None
        if root is None or key[0] not in "tl" or type(x) is not int:
            return False
        seq_ = root._seq
        if k == INS and type(z) is (str if key[0] == "t" else list) and z:
            if y == -1 and x == 0:
                oact = -1
            elif 0 < x < lam and (y == 0 or (y == 1 and other is not None)):
                oact = a if y == 0 else other  # type: ignore[assignment]
            else:
                return False
            try:
                pos = seq_.integrate(lam, a, x, oact, z)
            except KeyError:
                raise InvalidChangeError(f"insert after unknown element {x} in {key}") from None
            if pos is not None and root._observers:
                root._emit(Delta(pos[0], 0, z, False))
            end = lam + len(z)
        elif k == DEL and type(y) is int and y > 0 and type(z) is int and z > 0:
            if x == 0:
                tact = a
            elif x == 1 and other is not None:
                tact = other
            else:
                return False
            if not seq_.covers(tact, y, z):
                raise InvalidChangeError(f"delete of unknown elements in {key}")
            for p, m in seq_.remote_delete(tact, y, z):
                if root._observers:
                    root._emit(Delta(p, m, seq_.empty, False))
            _log_delete(self._oplog[a], [DEL, key, lam, tact, y, z, 1])
            end = lam + z
        else:
            return False
        self._starts[a].append(lam)
        self._end[a] = end
        self._vv[a] = seq
        if end - 1 > self._lamport:
            self._lamport = end - 1
        self._remote_since_commit = True
        if self._observers:
            self._notify(False, {key})
        return True

    def _to_unit(self, c: Change | Bundle, call: int) -> _Unit:
        amap = [self._actor_index(x) for x in c.actors]
        a = amap[0]
        if isinstance(c, Change):
            ops = []
            lam = c.lamport
            for op in c.ops:
                k = op[0]
                if k == INS:
                    ops.append([INS, op[1], lam, op[2], amap[op[3]] if op[3] >= 0 else -1, op[4]])
                    lam += len(op[4])
                elif k == DEL:
                    ops.append([DEL, op[1], lam, amap[op[2]], op[3], op[4], 1])
                    lam += op[4]
                else:
                    ops.append(_from_wire(op, lam, amap))
                    lam += 1
            deps = {c.seq: [(amap[x], s) for x, s in c.deps]} if c.deps else {}
            return _Unit(a, c.seq, [c.lamport], lam, deps, ops, call)
        ops = []
        for op in c.ops:
            op = list(op)
            k = op[0]
            if k == INS and op[4] >= 0:
                op[4] = amap[op[4]]
            elif k in (DEL, REDACT):
                op[3] = amap[op[3]]
            elif k == CELL:
                op[4], op[6] = amap[op[4]], amap[op[6]]
            ops.append(op)
        if ops and _op_end(ops[-1]) > c.end:
            raise DecodeError("malformed change: bundle ops run past its end")
        deps = {s: [(amap[x], v) for x, v in d] for s, d in c.deps.items()}
        return _Unit(a, c.seq, list(c.starts), c.end, deps, ops, call)

    def _check_duplicate(self, u: _Unit) -> None:
        a = u.actor
        known = self._vv[a]
        if u.seq > known:
            return
        starts = self._starts[a]
        for i, s in enumerate(u.starts):
            seq = u.seq + i
            if seq > known:
                break
            if starts[seq - 1] != s:
                raise ConflictError(
                    f"change {seq} of actor {self._actors[a].hex()[:12]} contradicts the one known"
                )
        if len(u.starts) == 1:  # a single change: compare it whole
            lo, hi = self._change_range(a, u.seq)
            mine = self._ops_in(a, lo, hi)
            if _canon(mine, a) != _canon(u.ops, a):
                who = self._actors[a].hex()[:12]
                raise ConflictError(f"change {u.seq} of actor {who} contradicts the one known")

    def _plan(self) -> list[tuple[_Unit, int, int]]:
        """Ready slices (unit, first index, end index) in a causal order."""
        vv = list(self._vv)
        plan = []
        progress = True
        done: set[int] = set()
        while progress:
            progress = False
            for ui, u in enumerate(self._buffer):
                if ui in done:
                    continue
                known = vv[u.actor]
                if u.last <= known:
                    done.add(ui)
                    continue
                if u.seq > known + 1:
                    continue
                i = j = known + 1 - u.seq
                n = len(u.starts)
                if not u.deps:
                    j = n
                while j < n:
                    d = u.deps.get(u.seq + j)
                    if d and any(vv[x] < s for x, s in d):
                        break
                    j += 1
                if j > i:
                    plan.append((u, i, j))
                    vv[u.actor] = u.seq + j - 1
                    progress = True
                    if j == n:
                        done.add(ui)
        return plan

    def _slice_ops(self, u: _Unit, i: int, j: int) -> list[list[Any]]:
        lo = u.starts[i]
        hi = u.starts[j] if j < len(u.starts) else u.end
        ops = u.ops
        if i == 0 and j == len(u.starts):
            return ops
        k = bisect_left(ops, lo, key=lambda op: op[2])
        if k > 0 and _op_end(ops[k - 1]) > lo:
            k -= 1
        out = []
        while k < len(ops) and ops[k][2] < hi:
            op = _slice_op(ops[k], lo, hi)
            if op[0] == INS and op[4] == -2:
                op[4] = u.actor
            out.append(op)
            k += 1
        return out

    def _validate(self, plan: list[tuple[_Unit, int, int]]) -> None:
        """Check every reference before touching anything (so apply is atomic)."""
        virtual: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
        msgs: set[tuple[str, int, int]] = set()
        last_lam = list(self._end)

        def known(key: str, act: int, lam: int, n: int) -> bool:
            end = lam + n
            obj = self._objs.get(key)
            seq = obj._seq if obj is not None else None
            while lam < end:
                r = seq.find_id(lam, act) if seq is not None else None
                if r is not None:
                    lam = r.lam + r.n
                    continue
                rngs = virtual.get((key, act))
                if rngs is None:
                    return False
                i = bisect_right(rngs[0], lam) - 1
                if i < 0 or lam >= rngs[1][i]:
                    return False
                lam = rngs[1][i]
            return True

        for u, i, j in plan:
            a = u.actor
            if u.starts[i] < last_lam[a]:
                raise InvalidChangeError("change lamport does not increase along its actor's chain")
            for op in self._slice_ops(u, i, j):
                k, key, lam = op[0], op[1], op[2]
                if k == INS:
                    if op[4] >= 0 and (op[3] >= lam or not known(key, op[4], op[3], 1)):
                        raise InvalidChangeError(f"insert after unknown element {op[3]} in {key}")
                    vr = virtual.get((key, a))
                    if vr is None:
                        vr = virtual[(key, a)] = ([], [])
                    if vr[0] and lam < vr[0][-1]:  # keep sorted (rare: out-of-order units)
                        i = bisect_right(vr[0], lam)
                        vr[0].insert(i, lam)
                        vr[1].insert(i, lam + len(op[5]))
                    else:
                        vr[0].append(lam)
                        vr[1].append(lam + len(op[5]))
                elif k == DEL:
                    if not known(key, op[3], op[4], op[5]):
                        raise InvalidChangeError(f"delete of unknown elements in {key}")
                elif k == CELL:
                    rk, ck = "r:" + key[2:], "c:" + key[2:]
                    if not known(rk, op[4], op[3], 1) or not known(ck, op[6], op[5], 1):
                        raise InvalidChangeError(f"cell in unknown row or column of {key}")
                elif k == APPEND:
                    msgs.add((key, a, lam))
                elif k == REDACT:
                    lg = self._objs.get(key)
                    tid = (op[4], self._actors[op[3]])
                    if (key, op[3], op[4]) not in msgs and (lg is None or not lg.has(tid)):
                        raise InvalidChangeError(f"redact of unknown message in {key}")
            last_lam[a] = u.starts[j] if j < len(u.starts) else u.end

    def _execute(self, plan: list[tuple[_Unit, int, int]]) -> set[str]:
        touched: set[str] = set()
        slices = [(u, self._slice_ops(u, i, j)) for u, i, j in plan]
        nseq = sum(1 for _, ops in slices for op in ops if op[0] in (INS, DEL))
        batch_keys: set[str] = set()
        if nseq >= BATCH_THRESHOLD:
            for _, ops in slices:
                for op in ops:
                    if op[0] in (INS, DEL):
                        batch_keys.add(op[1])
            self._rebuild(batch_keys, slices)
            touched |= batch_keys
        for (u, i, j), (_, ops) in zip(plan, slices):
            a = u.actor
            author = self._actors[a]
            log = self._oplog[a]
            for op in ops:
                k, key = op[0], op[1]
                touched.add(key)
                if k == INS:
                    if key not in batch_keys:
                        root = self._seqroot(key)
                        pos = root._seq.integrate(op[2], a, op[3], op[4], op[5])
                        if pos is not None and root._observers:
                            root._emit(Delta(pos[0], 0, op[5], False))
                elif k == DEL:
                    if key not in batch_keys:
                        root = self._seqroot(key)
                        for p, m in root._seq.remote_delete(op[3], op[4], op[5]):
                            if root._observers:
                                root._emit(Delta(p, m, root._seq.empty, False))
                    _log_delete(log, op)
                else:
                    self._integrate_other(op, a, author)
                    log.append(op)
            self._starts[a].extend(u.starts[i:j])
            for s, d in u.deps.items():
                if u.seq + i <= s < u.seq + j and d:
                    self._deps[(a, s)] = d
            end = u.starts[j] if j < len(u.starts) else u.end
            if ops:
                end = _op_end(ops[-1])
            self._end[a] = end
            self._vv[a] = u.seq + j - 1
            if end - 1 > self._lamport:
                self._lamport = end - 1
        self._buffer = [u for u in self._buffer if u.last > self._vv[u.actor]]
        self._remote_since_commit = True
        return touched

    def _integrate_other(self, op: list[Any], a: int, author: bytes) -> None:
        k, key, lam = op[0], op[1], op[2]
        if k == SET:
            self.map(key[2:])._write(lam, author, op[3], op[4], True, False)
        elif k == DELKEY:
            self.map(key[2:])._write(lam, author, op[3], None, False, False)
        elif k == INC:
            self.counter(key[2:]).value += op[3]
        elif k == APPEND:
            self.log(key[2:])._add((lam, author), op[3], False)
        elif k == REDACT:
            self.log(key[2:])._hidden.add((op[4], self._actors[op[3]]))
        elif k == CELL:
            self.sheet(key[2:])._remote_cell(lam, author, op)

    def _rebuild(self, keys: set[str], slices: list[tuple[_Unit, list[list[Any]]]]) -> None:
        """Rebuild whole sequences from old state plus many new ops (see rga.build)."""
        for key in keys:
            root = self._seqroot(key)
            seq = root._seq
            old_len = seq.length
            old_value = seq.value() if root._observers else None
            inserts = list(seq.all_inserts())
            dead: dict[int, list[tuple[int, int]]] = {}
            for r in seq.runs():
                if r.dead:
                    dead.setdefault(r.act, []).append((r.lam, r.lam + r.n))
            for u, ops in slices:
                for op in ops:
                    if op[1] != key:
                        continue
                    if op[0] == INS:
                        inserts.append((u.actor, op[2], op[3], op[4], op[5]))
                    elif op[0] == DEL:
                        dead.setdefault(op[3], []).append((op[4], op[4] + op[5]))
            merged = {a: _merge_ranges(r) for a, r in dead.items()}
            fresh = Sequence(self._actors, seq.empty)
            build(fresh, inserts, merged, self._actors.__getitem__)
            fresh.want_positions = seq.want_positions
            root._seq = fresh
            if root._observers:
                root._emit(Delta(0, old_len, fresh.value(), False))
                del old_value


def _name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("root names must be non-empty strings")
    return name


def _amap(amap: dict[int, int], actors: list[bytes], table: list[bytes], a: int) -> int:
    i = amap.get(a)
    if i is None:
        i = amap[a] = len(actors)
        actors.append(table[a])
    return i


def _to_wire(op: list[Any], amap: dict[int, int], actors: list[bytes], table: list[bytes]) -> list:
    k = op[0]
    if k == CELL:
        return [
            CELL,
            op[1],
            op[3],
            _amap(amap, actors, table, op[4]),
            op[5],
            _amap(amap, actors, table, op[6]),
            op[7],
        ]
    if k == REDACT:
        return [REDACT, op[1], _amap(amap, actors, table, op[3]), op[4]]
    return [k, op[1], *op[3:]]


def _from_wire(op: list[Any], lam: int, amap: list[int]) -> list[Any]:
    k = op[0]
    if k == CELL:
        return [CELL, op[1], lam, op[2], amap[op[3]], op[4], amap[op[5]], op[6]]
    if k == REDACT:
        return [REDACT, op[1], lam, amap[op[2]], op[3]]
    return [k, op[1], lam, *op[2:]]


def _log_delete(log: list[list[Any]], op: list[Any]) -> None:
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


def _merge_ranges(rs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    rs.sort()
    out: list[tuple[int, int]] = []
    for lo, hi in rs:
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _canon(ops: list[list[Any]], author: int) -> list[tuple]:
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
            out.append(tuple(repr(x) for x in op))
    out.sort(key=lambda t: t[2])
    return out
