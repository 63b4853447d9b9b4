"""Integrating remote changes: buffering, causal planning, validation, execution.

``apply()`` is atomic per call: every blob is decoded and every reference
checked against the current state plus what earlier changes of the same
call create, before anything is touched. Large batches rebuild whole
sequences at once (:func:`.batch.build`); single keystrokes take a fast path
that skips the planning machinery (:mod:`.keystroke`).
"""

from __future__ import annotations

import gc
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from . import codec
from .batch import build
from .codec import APPEND, CELL, DEL, DELKEY, INC, INS, REDACT, SET, Bundle, Change
from .errors import ConflictError, CRDTError, DecodeError, InvalidChangeError
from .history import canon, dep_key, deps_value, from_wire, log_delete, op_end, slice_op
from .keystroke import Keystrokes
from .rga import Sequence
from .starts import Starts
from .text import Delta

BIG_BATCH = 64 * 1024  # bytes in one apply() above which the cyclic GC waits
BATCH_THRESHOLD = 256  # sequence ops in one apply() above which sequences are rebuilt at once


class Unit:
    """Consecutive changes of one actor in doc actor space, ops with lamports."""

    __slots__ = ("actor", "seq", "starts", "end", "deps", "ops", "call", "rle")

    def __init__(
        self,
        actor: int,
        seq: int,
        starts: Starts,
        end: int,
        deps: dict[int, list[tuple[int, int]]],
        ops: list[list[Any]],
        call: int,
    ) -> None:
        self.actor, self.seq, self.starts, self.end = actor, seq, starts, end
        self.deps, self.ops, self.call = deps, ops, call
        self.rle: list[int] | None = None  # starts as sent, when a bundle brought them

    @property
    def last(self) -> int:
        return self.seq + len(self.starts) - 1


@contextmanager
def gc_paused(pause: bool) -> Iterator[None]:
    """Hold the cyclic garbage collector during a big integration.

    Decoding and building a whole history allocates hundreds of thousands
    of acyclic objects; each allocation burst would otherwise trigger
    full collections that scan everything the process holds (measured:
    the same merge 2-3x slower in a process with a large heap).
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Integrator(Keystrokes):
    """Mixin of :class:`~ownkernel.crdt.doc.Doc`: the remote side of sync."""

    _actors: list[bytes]
    _aidx: dict[bytes, int]
    _vv: list[int]
    _end: list[int]
    _starts: list[Any]
    _deps: dict[int, Any]  # history.dep_key
    _oplog: list[list[list[Any]]]
    _objs: dict[str, Any]
    _buffer: list[Unit]
    _calls: int
    _ctx: list[dict[int, int]]
    _deferred_from: int
    _pending: list[list[Any]]
    _txn_depth: int
    _lamport: int
    _observers: list[Callable[..., None]]
    _actor_index: Callable[[bytes], int]
    _forget_actors_from: Callable[[int], None]
    _seqroot: Callable[[str], Any]
    _notify: Callable[[bool, set[str]], None]
    _ops_in: Callable[[int, int, int], list[list[Any]]]
    _change_range: Callable[[int, int], tuple[int, int]]
    map: Callable[[str], Any]
    counter: Callable[[str], Any]
    log: Callable[[str], Any]
    sheet: Callable[[str], Any]

    def apply(self, changes: Iterable[bytes]) -> None:
        """Integrate encoded changes or bundles: any order, duplicates ignored,
        early arrivals buffered. Atomic: on error nothing of this call is kept."""
        if (
            type(changes) is list
            and len(changes) == 1
            and not self._pending
            and not self._buffer
            and self._apply_keystroke(changes[0])
        ):
            return
        if isinstance(changes, (bytes, bytearray, memoryview)):
            raise TypeError("apply() takes an iterable of encoded changes, not bytes")
        if self._pending and not self._txn_depth:
            # Local ops outside a transaction block are closed into their own
            # change first: a change's ops take consecutive lamports, and
            # remote ops integrated now would push the clock past them.
            self.commit()
        if not isinstance(changes, (list, tuple)):
            changes = list(changes)
        big = sum(len(b) for b in changes if isinstance(b, (bytes, bytearray))) > BIG_BATCH
        with gc_paused(big):
            self._apply_general(changes)

    def apply_decoded(self, decoded: list[Change | Bundle]) -> None:
        """:meth:`apply` for changes already decoded with :func:`codec.decode`
        (a caller that inspected them first need not decode twice)."""
        if self._pending and not self._txn_depth:
            self.commit()
        with gc_paused(len(decoded) > 256):
            self._apply_checked(decoded)

    def _apply_general(self, changes: list[bytes]) -> None:
        self._apply_checked([codec.decode(b) for b in changes])

    def _apply_checked(self, decoded: list[Change | Bundle]) -> None:
        known_actors = len(self._actors)
        try:
            self._apply_decoded(decoded)
        except CRDTError:
            # a refused call leaves no trace, not even new actors in the table
            self._forget_actors_from(known_actors)
            raise

    def _apply_decoded(self, decoded: list[Change | Bundle]) -> None:
        self._calls += 1
        call = self._calls
        units = [self._to_unit(c, call) for c in decoded]
        for u in units:
            self._check_duplicate(u)
        held = {(u.actor, u.seq, len(u.starts)) for u in self._buffer}
        fresh = []
        for u in units:
            key = (u.actor, u.seq, len(u.starts))
            if u.last > self._vv[u.actor] and key not in held:
                held.add(key)
                fresh.append(u)
        units = fresh
        if not units:
            return
        self._buffer.extend(units)
        if self._pending:
            # inside an open transaction block: held until it closes (see
            # Doc.transaction), so the transaction stays one change
            if not self._deferred_from:
                self._deferred_from = call
            return
        self._drain(call)

    def _drain(self, call: int) -> None:
        """Integrate whatever in the buffer has become ready."""
        try:
            plan = self._plan()
            self._validate(plan)
        except InvalidChangeError:
            self._buffer = [u for u in self._buffer if u.call < call]
            raise
        if not plan:
            return
        touched = self._execute(plan)
        if self._observers and touched:
            self._notify(False, touched)

    def check_new(self, decoded: list[Change]) -> list[Unit] | None:
        """Would :meth:`apply_decoded` integrate every one of ``decoded`` into this
        doc, which must be new and empty? The same conversion, duplicate check,
        causal planning and reference checks (:meth:`_validate`), but nothing is
        integrated: for a receiver that stores a newly shared doc's changes without
        building it (node/newdocs.py). Returns the units (ops with their lamports),
        or None when some change would wait for a missing dependency; raises a
        ``ValueError`` where apply would. The doc is spent afterwards (its actor
        table holds the authors): use a throwaway ``Doc`` per call."""
        if self._calls or self._pending or len(self._actors) > 1:
            raise RuntimeError("check_new() needs a new, empty doc")
        units = [self._to_unit(c, 1) for c in decoded]
        for u in units:
            self._check_duplicate(u)
        self._buffer = units
        try:
            plan = self._plan()
            if sum(j - i for _u, i, j in plan) != sum(len(u.starts) for u in units):
                return None  # something would be held for a missing dependency
            self._validate(plan)
        finally:
            self._buffer = []
        return units

    def _to_unit(self, c: Change | Bundle, call: int) -> Unit:
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
                    ops.append(from_wire(op, lam, amap))
                    lam += 1
            deps = {c.seq: [(amap[x], s) for x, s in c.deps]} if c.deps else {}
            return Unit(a, c.seq, Starts((c.lamport,)), lam, deps, ops, call)
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
        if ops and op_end(ops[-1]) > c.end:
            raise DecodeError("malformed change: bundle ops run past its end")
        deps = {s: [(amap[x], v) for x, v in d] for s, d in c.deps.items()}
        u = Unit(a, c.seq, c.starts, c.end, deps, ops, call)
        u.rle = c.starts_rle
        return u

    def _check_duplicate(self, u: Unit) -> None:
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
            if canon(mine, a) != canon(u.ops, a):
                who = self._actors[a].hex()[:12]
                raise ConflictError(f"change {u.seq} of actor {who} contradicts the one known")

    def _plan(self) -> list[tuple[Unit, int, int]]:
        """Ready slices (unit, first index, end index) in a causal order."""
        # versions as planned so far: an overlay, so planning costs O(units),
        # not O(actors known)
        planned: dict[int, int] = {}
        base = self._vv
        plan = []
        # Lamport order extends causal order, so visiting units by their first
        # lamport readies most of a shuffled backlog in a single pass.
        self._buffer.sort(key=lambda u: u.starts[0])
        progress = True
        done: set[int] = set()
        while progress:
            progress = False
            for ui, u in enumerate(self._buffer):
                if ui in done:
                    continue
                known = planned.get(u.actor, base[u.actor])
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
                    if d and any(planned.get(x, base[x]) < s for x, s in d):
                        break
                    j += 1
                if j > i:
                    plan.append((u, i, j))
                    planned[u.actor] = u.seq + j - 1
                    progress = True
                    if j == n:
                        done.add(ui)
        return plan

    def _slice_ops(self, u: Unit, i: int, j: int) -> list[list[Any]]:
        lo = u.starts[i]
        hi = u.starts[j] if j < len(u.starts) else u.end
        ops = u.ops
        if i == 0 and j == len(u.starts):
            return ops
        k = bisect_left(ops, lo, key=lambda op: op[2])
        if k > 0 and op_end(ops[k - 1]) > lo:
            k -= 1
        out = []
        while k < len(ops) and ops[k][2] < hi:
            op = slice_op(ops[k], lo, hi)
            if op[0] == INS and op[4] == -2:
                op[4] = u.actor
            out.append(op)
            k += 1
        return out

    def _validate(self, plan: list[tuple[Unit, int, int]]) -> None:
        """Check every reference before touching anything (so apply is atomic)."""
        virtual: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
        msgs: set[tuple[str, int, int]] = set()
        last_lam: dict[int, int] = {}  # per actor, overlay on self._end

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

        # A change may only refer to elements its author had seen: those of
        # its own chain, or of changes within the deps it declared (merged
        # along its chain). Otherwise a peer could forge deps away and leave
        # a history that no replica can integrate in dependency order.
        ctxs: dict[int, dict[int, int]] = {}
        vstarts: dict[int, Starts] = {}

        def seen(a: int, x: int, lam: int) -> bool:
            if x == a:
                return True
            st = self._starts[x]
            s = st.count_le(lam)
            if s == len(st) and x in vstarts:
                s += vstarts[x].count_le(lam)
            return s <= ctxs[a].get(x, 0)

        for u, i, j in plan:
            a = u.actor
            if u.starts[i] < last_lam.get(a, self._end[a]):
                raise InvalidChangeError("change lamport does not increase along its actor's chain")
            ctx = ctxs.get(a)
            if ctx is None:
                ctx = ctxs[a] = dict(self._ctx[a])
            for s, d in u.deps.items():
                if u.seq + i <= s < u.seq + j:
                    for x, v in d:
                        if v > ctx.get(x, 0):
                            ctx[x] = v
            for op in self._slice_ops(u, i, j):
                k, key, lam = op[0], op[1], op[2]
                if k == INS:
                    oa, ol = op[4], op[3]
                    if oa >= 0:
                        # most origins are the author's own recent elements: look in
                        # what this call inserts first, then the full check
                        vo = virtual.get((key, oa)) if oa == a else None
                        at = bisect_right(vo[0], ol) - 1 if vo is not None else -1
                        if ol >= lam or not (
                            (at >= 0 and ol < vo[1][at])  # type: ignore[index]
                            or (known(key, oa, ol, 1) and seen(a, oa, ol))
                        ):
                            raise InvalidChangeError(f"insert after unknown element {ol} in {key}")
                    vr = virtual.get((key, a))
                    if vr is None:
                        vr = virtual[(key, a)] = ([], [])
                    if vr[0] and lam < vr[0][-1]:  # keep sorted (rare: out-of-order units)
                        at = bisect_right(vr[0], lam)
                        vr[0].insert(at, lam)
                        vr[1].insert(at, lam + len(op[5]))
                    else:
                        vr[0].append(lam)
                        vr[1].append(lam + len(op[5]))
                elif k == DEL:
                    ta, tl, tn = op[3], op[4], op[5]
                    vo = virtual.get((key, ta)) if ta == a else None
                    at = bisect_right(vo[0], tl) - 1 if vo is not None else -1
                    if not (
                        (at >= 0 and tl + tn <= vo[1][at])  # type: ignore[index]
                        or (known(key, ta, tl, tn) and seen(a, ta, tl + tn - 1))
                    ):
                        raise InvalidChangeError(f"delete of unknown elements in {key}")
                elif k == CELL:
                    rk, ck = "r:" + key[2:], "c:" + key[2:]
                    if (
                        not known(rk, op[4], op[3], 1)
                        or not known(ck, op[6], op[5], 1)
                        or not seen(a, op[4], op[3])
                        or not seen(a, op[6], op[5])
                    ):
                        raise InvalidChangeError(f"cell in unknown row or column of {key}")
                elif k == APPEND:
                    msgs.add((key, a, lam))
                elif k == REDACT:
                    lg = self._objs.get(key)
                    tid = (op[4], self._actors[op[3]])
                    if (
                        (key, op[3], op[4]) not in msgs and (lg is None or not lg.has(tid))
                    ) or not seen(a, op[3], op[4]):
                        raise InvalidChangeError(f"redact of unknown message in {key}")
            last_lam[a] = u.starts[j] if j < len(u.starts) else u.end
            vs = vstarts.get(a)
            if vs is None:
                vs = vstarts[a] = Starts()
            if u.rle is not None and i == 0 and j == len(u.starts):
                vs.extend_rle(u.rle)
            else:
                vs.extend(u.starts.slice(i, j))

    def _execute(self, plan: list[tuple[Unit, int, int]]) -> set[str]:
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
                    log_delete(log, op)
                else:
                    self._integrate_other(op, a, author)
                    log.append(op)
            if u.rle is not None and i == 0 and j == len(u.starts):
                self._starts[a].extend_rle(u.rle)  # O(runs), not O(changes)
            else:
                self._starts[a].extend(u.starts.slice(i, j))
            ctx = self._ctx[a]
            for s, d in u.deps.items():
                if u.seq + i <= s < u.seq + j and d:
                    self._deps[dep_key(a, s)] = deps_value(d)
                    for x, v in d:
                        if v > ctx.get(x, 0):
                            ctx[x] = v
            end = u.starts[j] if j < len(u.starts) else u.end
            if ops:
                end = op_end(ops[-1])
            self._end[a] = end
            self._vv[a] = u.seq + j - 1
            if end - 1 > self._lamport:
                self._lamport = end - 1
        self._buffer = [u for u in self._buffer if u.last > self._vv[u.actor]]
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

    def _rebuild(self, keys: set[str], slices: list[tuple[Unit, list[list[Any]]]]) -> None:
        """Rebuild whole sequences from old state plus many new ops (see batch.build)."""
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
