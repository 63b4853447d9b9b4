"""Wire formats of changes, bundles and saved documents (CBOR via cbor2).

A **change** is one actor's batch of ops from one transaction, as one flat
CBOR array (every nested array costs cbor2 about a microsecond, and a
keystroke is one change)::

    [1, actors, seq, lamport, deps, op, op, ...]   each op spread in place

``actors`` is the change's actor table: the author's id (bytes) alone, or a
list whose first item is the author and whose others are the actors the
ops and deps refer to (by index), so a 32-byte key appears once per change
rather than once per op. ``deps`` is ``0`` or a flat list ``[actor_index,
seq, ...]`` of what the author had seen from others since its previous
change (its own previous change is implied by ``seq``). Ops consume
consecutive lamports starting at ``lamport``: an insert one per element, a
delete one per element deleted, everything else one.

Ops (``obj`` is the root's key, ``"<type>:<name>"``), shown as lists but
spread into the change array, the kind telling how many fields follow::

    [INS, obj, origin_lamport, origin_actor, content]   origin_actor -1: the head
    [DEL, obj, target_actor, target_lamport, count]     ascending id range
    [SET, obj, key, value] [DELKEY, obj, key] [INC, obj, amount]
    [APPEND, obj, value]   [CELL, obj, row_lam, row_act, col_lam, col_act, value]
    [REDACT, obj, target_actor, target_lamport]          hide a log message

A **bundle** carries many consecutive changes of one actor compactly: ops
carry their lamport explicitly and are merged across change boundaries
(typing runs become one insert, backspace runs one delete with ``dir=-1``);
change boundaries are the run-length-encoded lamport starts::

    [2, actors, first_seq, starts_rle, end, deps, ops]
    ops: [INS, obj, lam, olam, oact, content] | [DEL, obj, lam, tact, tlam, n, dir] | ...

``Doc.save()`` is described in :mod:`.snapshot`.
"""

from __future__ import annotations

from itertools import accumulate, chain, repeat
from typing import Any, NamedTuple

import cbor2

from .errors import DecodeError
from .starts import Starts
from .values import check_decoded

INS, DEL, SET, DELKEY, INC, APPEND, CELL, REDACT = range(8)
OP_KINDS = frozenset(range(8))
CHANGE, BUNDLE, SAVED = 1, 2, 3
MAX_ACTOR = 32
TYPE_CODES = frozenset("tlmngsrc")  # text list map counter log sheet-cells rows cols


class ChangeInfo(NamedTuple):
    actor: bytes
    seq: int
    lamport: int
    deps: dict[bytes, int]
    nseq: int


class Change(NamedTuple):
    actors: list[bytes]
    seq: int
    lamport: int
    deps: list[tuple[int, int]]
    ops: list[list[Any]]


class Bundle(NamedTuple):
    actors: list[bytes]
    seq: int
    starts: Starts  # lamport start of each change (run-length encoded)
    end: int
    deps: dict[int, list[tuple[int, int]]]  # seq -> [(actor index, seq)]
    ops: list[list[Any]]
    starts_rle: list[int]  # the same starts as sent: [s0, delta, count, ...]


ARITY = (4, 4, 3, 2, 2, 2, 6, 3)  # fields after the kind, per op kind
_SEQ_KEYS = frozenset(("t:", "l:", "r:", "c:"))


def encode_change(actors: list[bytes], seq: int, lamport: int, deps: list[int], ops: list) -> bytes:
    flat: list[Any] = [CHANGE, actors[0] if len(actors) == 1 else actors, seq, lamport, deps or 0]
    for op in ops:
        flat += op
    return cbor2.dumps(flat)


def op_width(op: list[Any]) -> int:
    """Lamports an op consumes (change form)."""
    k = op[0]
    if k == INS:
        return len(op[4])
    if k == DEL:
        return op[4]
    return 1


def _fail(msg: str) -> DecodeError:
    return DecodeError(f"malformed change: {msg}")


def _check_actors(actors: Any) -> None:
    if not isinstance(actors, list) or not actors:
        raise _fail("actor table must be a non-empty list")
    for a in actors:
        if not isinstance(a, bytes) or not 1 <= len(a) <= MAX_ACTOR:
            raise _fail("actor ids must be 1-32 bytes")
    if len(set(actors)) != len(actors):
        raise _fail("duplicate actor in actor table")


# Integers on the wire stay below 2**53: lamports and seqs are stored in
# 64-bit arrays and must have room to grow; anything larger is hostile.
MAX_INT = 2**53


def _is_int(x: Any) -> bool:
    return type(x) is int and -MAX_INT < x < MAX_INT


def _check_obj(obj: Any) -> None:
    if not isinstance(obj, str) or len(obj) < 2 or obj[1] != ":" or obj[0] not in TYPE_CODES:
        raise _fail(f"bad object key {obj!r}")


def _check_value(v: Any, obj: str, seen: set[int]) -> None:
    problem = check_decoded(v, seen)
    if problem is not None:
        raise _fail(f"a value in {obj!r} is not a tree of plain values: it holds {problem}")


def _check_op(op: Any, nact: int, lamported: bool, seen: set[int]) -> None:
    """Validate one op's shape and values; ``lamported``: bundle form (explicit lamport).

    ``seen``: ids of the containers already met in this blob (see :mod:`.values`).
    """
    if not isinstance(op, list) or len(op) < 3 or not _is_int(op[0]) or op[0] not in OP_KINDS:
        raise _fail(f"bad op {op!r:.80}")
    _check_obj(op[1])
    a = op[3:] if lamported else op[2:]
    if lamported and (not _is_int(op[2]) or op[2] < 1):
        raise _fail("bad op lamport")
    k = op[0]
    t = op[1][0]

    def actor(i: Any, head_ok: bool = False) -> None:
        if not _is_int(i) or not (-1 if head_ok else 0) <= i < nact:
            raise _fail("op refers to an actor outside the actor table")

    if k == INS:
        if len(a) != 3 or not _is_int(a[0]) or a[0] < 0:
            raise _fail("bad insert")
        actor(a[1], head_ok=True)
        if (a[1] < 0) != (a[0] == 0):
            raise _fail("bad insert origin")
        c = a[2]
        if t == "t":
            if not isinstance(c, str) or not c:
                raise _fail("text insert needs a non-empty string")
        elif t in "lrc":
            if not isinstance(c, list) or not c:
                raise _fail("list insert needs a non-empty list")
            _check_value(c, op[1], seen)
        else:
            raise _fail("insert into a non-sequence object")
    elif k == DEL:
        if len(a) != (4 if lamported else 3) or t not in "tlrc":
            raise _fail("bad delete")
        actor(a[0])
        if not _is_int(a[1]) or a[1] < 1 or not _is_int(a[2]) or a[2] < 1:
            raise _fail("bad delete range")
        if lamported and a[3] not in (1, -1):
            raise _fail("bad delete direction")
    elif k in (SET, DELKEY):
        if t != "m" or len(a) != (2 if k == SET else 1) or not isinstance(a[0], str):
            raise _fail("bad map op")
        if k == SET:
            _check_value(a[1], op[1], seen)
    elif k == INC:
        if t != "n" or len(a) != 1 or not isinstance(a[0], (int, float)) or isinstance(a[0], bool):
            raise _fail("bad counter op")
    elif k == APPEND:
        if t != "g" or len(a) != 1:
            raise _fail("bad log append")
        _check_value(a[0], op[1], seen)
    elif k == REDACT:
        if t != "g" or len(a) != 2 or not _is_int(a[1]) or a[1] < 1:
            raise _fail("bad log redact")
        actor(a[0])
    elif k == CELL:
        if t != "s" or len(a) != 5:
            raise _fail("bad cell op")
        for j in (0, 2):
            if not _is_int(a[j]) or a[j] < 1:
                raise _fail("bad cell id")
            actor(a[j + 1])
        _check_value(a[4], op[1], seen)


def _check_deps(deps: Any, nact: int) -> list[tuple[int, int]]:
    if not isinstance(deps, list) or len(deps) % 2:
        raise _fail("deps must be a flat list of actor/seq pairs")
    if len(deps) > 2 * nact:
        raise _fail("more deps than actors")
    out = []
    for i in range(0, len(deps), 2):
        a, s = deps[i], deps[i + 1]
        if not _is_int(a) or not 1 <= a < nact or not _is_int(s) or s < 1:
            raise _fail("bad dependency")
        out.append((a, s))
    return out


def _loads(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    try:
        return cbor2.loads(data)
    except Exception as e:  # cbor2 raises several types for bad input
        raise DecodeError(f"not valid CBOR: {e}") from None


def decode(data: bytes) -> Change | Bundle:
    """Decode and validate a change or bundle; raises DecodeError."""
    v = _loads(data)
    if not isinstance(v, list) or not v or v[0] not in (CHANGE, BUNDLE):
        raise DecodeError("not an ownkernel change or bundle")
    if v[0] == CHANGE:
        return _decode_change(v)
    if len(v) != 7:
        raise _fail("wrong number of bundle fields")
    _, actors, seq, starts_rle, end, deps, ops = v
    _check_actors(actors)
    if not _is_int(seq) or seq < 1 or not _is_int(end) or end < 1:
        raise _fail("bad bundle seq")
    starts = Starts()
    starts.extend_rle(rle_check(starts_rle))  # O(runs): a typist's history is one run
    if end <= starts[-1]:
        raise _fail("bundle end before its last change")
    if not isinstance(deps, list):
        raise _fail("bad bundle deps")
    dmap: dict[int, list[tuple[int, int]]] = {}
    for item in deps:
        if not isinstance(item, list) or len(item) != 2 or not _is_int(item[0]):
            raise _fail("bad bundle deps")
        if not seq <= item[0] < seq + len(starts):
            raise _fail("bundle deps for a change it does not hold")
        dmap[item[0]] = _check_deps(item[1], len(actors))
    if not isinstance(ops, list):
        raise _fail("bad bundle ops")
    nact = len(actors)
    keys: set[str] = set()
    seen: set[int] = set()
    last = starts[0]
    for op in ops:
        # the two shapes that make up typing histories, checked inline;
        # everything else through the general checker
        if type(op) is list and len(op) == 7 and op[0] == DEL:
            _, key, lam, tact, tlam, n, d = op
            if (
                type(lam) is not int
                or type(tact) is not int
                or not 0 <= tact < nact
                or type(tlam) is not int
                or not 0 < tlam < MAX_INT
                or type(n) is not int
                or n < 1
                or d not in (1, -1)
                or type(key) is not str
                or key[:1] not in ("t", "l", "r", "c")
            ):
                raise _fail("bad delete")
        elif type(op) is list and len(op) == 6 and op[0] == INS and type(op[5]) is str and op[5]:
            _, key, lam, olam, oact, _c = op
            if (
                type(lam) is not int
                or type(olam) is not int
                or type(oact) is not int
                or not -1 <= oact < nact
                or (oact < 0) != (olam == 0)
                or not 0 <= olam < MAX_INT
                or type(key) is not str
                or key[:2] != "t:"
            ):
                raise _fail("bad insert")
        else:
            _check_op(op, nact, True, seen)
            key, lam = op[1], op[2]
        if key not in keys:
            _check_obj(key)
            keys.add(key)
        if lam < last or lam >= end:
            raise _fail("bundle ops out of order or outside its changes")
        last = lam
    _check_coverage(starts, end, ops)
    return Bundle(actors, seq, starts, end, dmap, ops, starts_rle)


def bundle_op_end(op: list[Any]) -> int:
    k = op[0]
    if k == INS:
        return op[2] + len(op[5])
    if k == DEL:
        return op[2] + op[5]
    return op[2] + 1


def _check_coverage(starts: Starts, end: int, ops: list[list[Any]]) -> None:
    """Every change of a bundle has ops, and they end at its end.

    A change's ops take consecutive lamports from its start, so each start
    must fall inside an op; counting the starts inside each maximal run of
    adjacent ops checks that in O(runs · log changes) rather than per change
    (an empty change would corrupt the receiver's view of the actor).
    """
    if not ops:
        raise _fail("bundle without ops")
    covered = 0
    seg_lo = prev_end = ops[0][2]
    for op in ops:
        lam = op[2]
        if lam < prev_end:
            raise _fail("bundle ops overlap")
        if lam > prev_end:
            covered += starts.count_le(prev_end - 1) - starts.count_le(seg_lo - 1)
            seg_lo = lam
        prev_end = bundle_op_end(op)
    covered += starts.count_le(prev_end - 1) - starts.count_le(seg_lo - 1)
    if covered != len(starts):
        raise _fail("a change of the bundle has no ops")
    if prev_end != end:
        raise _fail("bundle end does not match its last op")


def _decode_change(v: list[Any]) -> Change:
    if len(v) < 6:
        raise _fail("wrong number of fields")
    actors, seq, lamport, deps = v[1], v[2], v[3], v[4]
    if isinstance(actors, bytes):
        actors = [actors]
    _check_actors(actors)
    if not _is_int(seq) or seq < 1 or not _is_int(lamport) or lamport < 1:
        raise _fail("bad seq or lamport")
    dl = [] if deps == 0 and _is_int(deps) else _check_deps(deps, len(actors))
    nact = len(actors)
    ops: list[list[Any]] = []
    keys: set[Any] = set()
    seen: set[int] = set()
    i, n = 5, len(v)
    while i < n:
        k = v[i]
        j = i + 5
        # inserts of text and deletes, the bulk of every history, checked inline
        if type(k) is int and j <= n and k in (INS, DEL):
            key, a, b, c = v[i + 1 : j]
            if type(key) is str and (key in keys or (key[:2] in _SEQ_KEYS and len(key) > 2)):
                if k == INS:
                    ok = (
                        type(a) is int
                        and type(b) is int
                        and -1 <= b < nact
                        and ((b < 0 and a == 0) or (b >= 0 and 0 < a < MAX_INT))
                        and c
                        and type(c) is (str if key[0] == "t" else list)
                    )
                else:
                    ok = (
                        type(a) is int
                        and 0 <= a < nact
                        and type(b) is int
                        and 0 < b < MAX_INT
                        and type(c) is int
                        and 0 < c < MAX_INT
                    )
                if ok:
                    if k == INS and key[0] != "t":
                        _check_value(c, key, seen)
                    keys.add(key)
                    ops.append([k, key, a, b, c])
                    i = j
                    continue
        if not _is_int(k) or k not in OP_KINDS:
            raise _fail(f"unknown op kind {k!r:.20}")
        j = i + 1 + ARITY[k]
        if j > n:
            raise _fail("truncated op")
        op = v[i:j]
        _check_op(op, nact, False, seen)
        ops.append(op)
        i = j
    if lamport + sum(op_width(op) for op in ops) >= MAX_INT:
        raise _fail("lamports out of range")
    return Change(actors, seq, lamport, dl, ops)


def change_info(data: bytes) -> ChangeInfo:
    """Header of an encoded change or bundle, validated, without integrating it."""
    c = decode(data)
    if isinstance(c, Change):
        deps = {c.actors[a]: s for a, s in c.deps}
        return ChangeInfo(c.actors[0], c.seq, c.lamport, deps, 1)
    deps = {}
    for lst in c.deps.values():
        for a, s in lst:
            deps[c.actors[a]] = max(deps.get(c.actors[a], 0), s)
    return ChangeInfo(c.actors[0], c.seq, c.starts[0], deps, len(c.starts))


def rle_encode(starts: list[int]) -> list[int]:
    """[s0, delta, count, delta, count, ...] of consecutive differences."""
    out = [starts[0]]
    prev = starts[0]
    d = c = 0
    for s in starts[1:]:
        x = s - prev
        prev = s
        if x == d:
            c += 1
        else:
            if c:
                out += (d, c)
            d, c = x, 1
    if c:
        out += (d, c)
    return out


def rle_check(v: Any) -> list[int]:
    """Validate :func:`rle_encode` form without expanding it; returns it."""
    if not isinstance(v, list) or not v or len(v) % 2 != 1 or not all(_is_int(x) for x in v):
        raise _fail("bad change starts")
    deltas, counts = v[1::2], v[2::2]
    if (deltas and min(deltas) < 1) or (counts and min(counts) < 1) or v[0] < 1:
        raise _fail("change starts must increase")
    if v[0] + sum(d * c for d, c in zip(deltas, counts)) >= MAX_INT:
        raise _fail("change starts out of range")
    return v


def rle_decode(v: Any) -> list[int]:
    """Inverse of :func:`rle_encode`; deltas must be positive (starts increase)."""
    if not isinstance(v, list) or not v or len(v) % 2 != 1 or not all(_is_int(x) for x in v):
        raise _fail("bad change starts")
    deltas, counts = v[1::2], v[2::2]
    if (deltas and min(deltas) < 1) or (counts and min(counts) < 1) or v[0] < 1:
        raise _fail("change starts must increase")
    if sum(counts) > 50_000_000:
        raise _fail("too many changes in one bundle")
    return list(accumulate(chain((v[0],), *map(repeat, deltas, counts))))


def encode_bundle(
    actors: list[bytes],
    seq: int,
    starts_rle: list[int],
    end: int,
    deps: dict[int, list[int]],
    ops: list[list[Any]],
) -> bytes:
    """``starts_rle``: the changes' lamport starts as :func:`rle_encode` gives them."""
    deps_list = [[s, d] for s, d in sorted(deps.items())]
    return cbor2.dumps([BUNDLE, actors, seq, starts_rle, end, deps_list, ops])
