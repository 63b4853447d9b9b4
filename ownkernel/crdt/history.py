"""History: regenerating any change, or a bundle of them, from compact state.

A Doc keeps, per actor, the lamport start of each change, the deps of the
changes that have any, and a log of its non-insert ops (deletes merged into
runs). Inserts are not logged at all: the sequences' entries already hold
every inserted element with its id and origin, so a change is regenerated
from its lamport range (:meth:`History._ops_in`).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from . import codec
from .codec import CELL, DEL, INS, REDACT

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
    _deps: dict[tuple[int, int], list[tuple[int, int]]]
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
        for da, ds in self._deps.get((a, seq), ()):
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
            d = self._deps.get((a, s))
            if d:
                table = self._actors
                deps[s] = [x for da, ds in d for x in (amap_index(amap, actors, table, da), ds)]
        return codec.encode_bundle(actors, first, starts_rle, hi, deps, ops)

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
