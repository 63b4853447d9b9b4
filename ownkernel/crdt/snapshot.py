"""Saved documents: the state in document order plus the history around it.

A saved document is a ``zstd`` frame (level 9, or level 1 once the body
passes :data:`SMALL_BODY`) over one CBOR array (documents saved before
used ``zlib``; both load: the first bytes tell them apart)::

    [3, actors, histories, sequences, lamport]
    histories: per actor, [version, starts_rle, end, deps, ops]
        the change table (lamport start of every change, RLE) and the
        actor's non-insert ops (deletes merged into runs), in columns
    sequences: {key: [acts, lam_deltas, origin_offsets, oacts, dead, lens, content]}
        every run of every text/list in document order, in columns; content
        is one string (text) or one list (list) cut by ``lens``; ``dead``
        (and ``acts`` with up to 256 actors) may be a byte string, one byte
        per run (saves before 2026-11-30 hold arrays; both load)

Integer columns (``lam_deltas``, ``origin_offsets``, ``oacts``, ``lens`` and
every op log column) are *packed*: one byte string, a typecode byte
(``b h i q``: 1, 2, 4 or 8 bytes per value, the smallest that fits) then
the values little-endian, byte-shuffled: every value's lowest byte first,
then every value's second byte, … (:func:`_pack`). Saves before session 7
hold CBOR arrays of ints there; both load (a list is the old form, bytes
the new).

Columns of small deltas compress far better than rows of absolute values:
about 40% smaller on the automerge-paper trace.

Inserts are not stored twice: the runs hold every inserted element with its
id and origin, which is everything an insert op says. Loading therefore
rebuilds each sequence without integrating anything (no origin lookups, no
scanning) and replays only the small non-insert log for maps, counters,
logs and sheet cells. The order is trusted because this is the node's own
file; the frame's checksum catches corruption. Bytes from peers never take this
path: they arrive as changes and bundles and are integrated by the rules.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Iterator
from itertools import accumulate, compress, repeat
from operator import add, attrgetter, not_, sub
from typing import TYPE_CHECKING, Any

import cbor2

try:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # the backport of the same module (a dependency before 3.14)
    from backports import zstd  # type: ignore[import-not-found,no-redef]

from .codec import CELL, DEL, INS, REDACT, SAVED, rle_check
from .errors import DecodeError
from .history import DEP_MASK, DEP_SHIFT, dep_key, dep_pairs, deps_value
from .integrate import BIG_BATCH, gc_paused
from .rga import MAX_RUNS, Block, Run, Sequence
from .starts import Starts

if TYPE_CHECKING:
    from .doc import Doc

# zstd level by size of the CBOR body. Measured on the automerge-paper doc
# (353 KB of CBOR): zstd 9 gives 120 KB in 7.5 ms where zlib 9 gave 125 KB in
# 32 ms; on a 1M-character text (1.5 MB) zstd 1 takes 2 ms (zlib 1: 25 ms).
SMALL_BODY = 512 * 1024
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# Packed integer columns (see the module docstring). A million-character text
# has ~40,000 runs: as CBOR arrays their four int columns were ~165,000 items
# for cbor2 to encode and, at load, to decode into int objects (~7 ms of a
# ~18 ms load); packed they are four byte strings, and a loaded sequence
# keeps them as arrays until its runs are built.
_TYPECODES = b"bhiq"
_BIG_ENDIAN = sys.byteorder == "big"
# the format fixes the widths (1, 2, 4, 8 bytes); C's may differ elsewhere
if [array(chr(t)).itemsize for t in _TYPECODES] != [1, 2, 4, 8]:  # pragma: no cover
    raise ImportError("ownkernel.crdt needs array typecodes b h i q of 1, 2, 4, 8 bytes")


def _pack(col: Any) -> bytes:
    """An int column as a typecode byte and the values, little-endian."""
    for tc in "bhi":  # the smallest that holds every value; a miss stops at the first misfit
        try:
            a = array(tc, col)
            break
        except OverflowError:
            continue
    else:
        a = array("q", col)  # lamports and seqs stay below 2**53 (codec.MAX_INT)
    if _BIG_ENDIAN:
        a.byteswap()
    w = a.itemsize
    if w == 1:
        return a.typecode.encode() + a.tobytes()
    # Byte planes: the high bytes of small values are runs of zeros that zstd
    # all but drops (automerge-paper: 115 KB saved, vs 127 KB unshuffled and
    # 121 KB as CBOR arrays); strided memoryview slices copy in C.
    mv = memoryview(a).cast("B")
    return b"".join([a.typecode.encode(), *(mv[k::w].tobytes() for k in range(w))])


def _unpack(col: Any, what: str) -> Any:
    """A saved int column: an ``array`` from the packed form, or the CBOR
    array of ints of a save made before packing (returned as is)."""
    if type(col) is list:
        return col
    if type(col) is not bytes or not col or col[0] not in _TYPECODES:
        raise DecodeError(f"corrupt saved document: {what} column")
    a = array(chr(col[0]))
    w = a.itemsize
    n, bad = divmod(len(col) - 1, w)
    if bad:
        raise DecodeError(f"corrupt saved document: {what} column length")
    if w == 1:
        a.frombytes(memoryview(col)[1:])
    else:
        raw = bytearray(n * w)
        for k in range(w):  # the byte planes back into values (see _pack)
            raw[k::w] = memoryview(col)[1 + k * n : 1 + (k + 1) * n]
        a.frombytes(raw)
    if _BIG_ENDIAN:
        a.byteswap()
    return a


def save(doc: Doc) -> bytes:
    # the columns are hundreds of thousands of fresh objects for a big text:
    # without the pause each burst triggers collections of the whole heap
    with gc_paused(True):
        return _save(doc)


def _save(doc: Doc) -> bytes:
    doc._autocommit()
    histories = []
    for a, v in enumerate(doc._vv):
        if not v:
            histories.append(None)
            continue
        deps = sorted(
            [k & DEP_MASK, [x for da, ds in dep_pairs(d) for x in (da, ds)]]
            for k, d in doc._deps.items()
            if k >> DEP_SHIFT == a
        )
        histories.append(
            [v, doc._starts[a].to_rle(), doc._end[a], deps, _ops_to_columns(doc._oplog[a])]
        )
    seqs = {}
    for key, obj in doc._objs.items():
        if key[0] in "tlrc":
            seqs[key] = _runs_to_columns(obj._seq)
    body = cbor2.dumps([SAVED, doc._actors, histories, seqs, doc._lamport])
    return zstd.compress(body, level=9 if len(body) <= SMALL_BODY else 1)


def _runs_to_columns(seq: Sequence) -> list[Any]:
    # One pass over the runs, a block at a time: each run is touched once and
    # its block's rows are transposed (zip, in C) while they are still in the
    # cache. After random edits the runs and the ints they hold lie scattered
    # in memory, so these touches are what save() mostly pays for; one flat
    # list of rows transposed at the end, or attrgetter, measured slower.
    acts: list[int] = []
    lams: list[int] = []
    offs: list[int] = []
    oacts: list[int] = []
    dead: list[bool] = []
    lens: list[int] = []
    parts: list[Any] = []
    for b in seq.blocks:
        if b.runs:
            a, lam, off, oa, dd, n, cut = zip(
                *[(r.act, r.lam, r.lam - r.olam, r.oact, r.dead, r.n, r.content) for r in b.runs]
            )
            acts += a
            lams += lam
            offs += off
            oacts += oa
            dead += dd
            lens += n
            parts += cut
    if not acts:
        return [[], *map(_pack, ([], [], [])), [], _pack([]), seq.empty]
    dlams = [lams[0], *map(sub, lams[1:], lams)]
    if isinstance(seq.empty, str):
        # visible text, then deleted text: a load reads the text back without
        # cutting the runs apart (the runs are rebuilt only when needed)
        content: Any = ["".join(compress(parts, map(not_, dead))), "".join(compress(parts, dead))]
    else:
        content = [x for p in parts for x in p]
    # dead flags and (up to 256 actors) actor indices as one byte string each:
    # no more bytes on disk than a CBOR array of small ints, but one item for
    # the encoder instead of one per run; every reader of these columns
    # (len, min/max, compress, map, set) treats bytes as a sequence of ints
    acts_col: Any = bytes(acts) if max(acts) < 256 else acts
    return [acts_col, _pack(dlams), _pack(offs), _pack(oacts), bytes(dead), _pack(lens), content]


def _ops_to_columns(ops: list[list[Any]]) -> list[Any]:
    cols = list(zip(*ops))
    if len(cols) >= 7 and cols[0].count(DEL) == len(ops):
        # deletes only (a text's whole log): transposed and differenced in C
        kinds, names, lams, d_tact, targets, d_n, d_dir = cols[:7]
        order = dict.fromkeys(names)  # keys by first use, as below
        kidx: Any = [0] * len(ops) if len(order) == 1 else list(
            map({k: i for i, k in enumerate(order)}.__getitem__, names))
        dlams = [lams[0], *map(sub, lams[1:], lams)]
        packed = map(_pack, (kinds, kidx, dlams, d_tact, list(map(sub, targets, lams)), d_n, d_dir))
        return [list(order), *packed, []]
    keys: dict[str, int] = {}
    kinds, kidx, dlams, rest = [], [], [], []
    d_tact, d_trel, d_n, d_dir = [], [], [], []
    prev = 0
    for op in ops:
        kinds.append(op[0])
        kidx.append(keys.setdefault(op[1], len(keys)))
        dlams.append(op[2] - prev)
        prev = op[2]
        if op[0] == DEL:
            d_tact.append(op[3])
            d_trel.append(op[4] - op[2])
            d_n.append(op[5])
            d_dir.append(op[6])
        else:
            rest.append(op[3:])
    packed = map(_pack, (kinds, kidx, dlams, d_tact, d_trel, d_n, d_dir))
    return [list(keys), *packed, rest]


_INT = {int}


def _ops_from_columns(cols: list[Any], amap: list[int]) -> list[list[Any]]:
    """The op log of one actor; delete targets' actors mapped through ``amap``."""
    keys, *ints, rest = cols
    kinds, kidx, dlams, d_tact, d_trel, d_n, d_dir = ints = [
        _unpack(c, "op log") for c in ints
    ]
    # packed columns hold ints by construction; old saves' lists are checked
    # (a set of the items' types, built in C)
    if not all(type(k) is str for k in keys) or not all(
        type(c) is not list or set(map(type, c)) <= _INT for c in ints
    ):
        raise DecodeError("corrupt saved document: op log columns")
    n = len(kinds)
    if (
        n
        and len(kidx) == len(dlams) == len(d_tact) == len(d_trel) == len(d_n) == len(d_dir) == n
        and not rest
        and kinds.count(DEL) == n
        and 0 <= min(kidx) <= max(kidx) < len(keys)
        and 0 <= min(d_tact) <= max(d_tact) < len(amap)
    ):
        # deletes only (a text's whole log): every op built by C-level maps
        lams = list(accumulate(dlams))
        return list(
            map(
                list,
                zip(
                    repeat(DEL),
                    map(keys.__getitem__, kidx),
                    lams,
                    map(amap.__getitem__, d_tact),
                    map(add, lams, d_trel),
                    d_n,
                    d_dir,
                ),
            )
        )
    ops = []
    lam = 0
    di = ri = 0
    for k, ki, dl in zip(kinds, kidx, dlams):
        lam += dl
        if k == DEL:
            ops.append([DEL, keys[ki], lam, d_tact[di], lam + d_trel[di], d_n[di], d_dir[di]])
            di += 1
        else:
            ops.append([k, keys[ki], lam, *rest[ri]])
            ri += 1
    if len(ops) != len(kinds) or di != len(d_tact) or ri != len(rest):
        raise DecodeError("corrupt saved document: op log columns")
    for op in ops:
        k = op[0]
        if k in (DEL, REDACT):
            op[3] = amap[op[3]]
        elif k == CELL:
            op[4], op[6] = amap[op[4]], amap[op[6]]
        elif k == INS:
            raise DecodeError("corrupt saved document: insert in the op log")
    return ops


def load(cls: type[Doc], data: bytes, actor: bytes | None) -> Doc:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    with gc_paused(len(data) > BIG_BATCH // 4):
        return _load(cls, data, actor)


def _load(cls: type[Doc], data: bytes, actor: bytes | None) -> Doc:
    try:
        raw = (zstd.decompress(data) if bytes(data[:4]) == _ZSTD_MAGIC
               else zlib.decompress(data))  # zlib: saved by an earlier release
        body = cbor2.loads(raw)
    except (zlib.error, zstd.ZstdError) as e:
        raise DecodeError(f"not a saved ownkernel document ({e})") from None
    except Exception as e:
        raise DecodeError(f"not a saved ownkernel document: {e}") from None
    if not isinstance(body, list) or len(body) != 5 or body[0] != SAVED:
        raise DecodeError("not a saved ownkernel document")
    try:
        return _restore(cls, body, actor)
    except DecodeError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise DecodeError(f"corrupt saved ownkernel document: {type(e).__name__}: {e}") from None


def _restore(cls: type[Doc], body: list[Any], actor: bytes | None) -> Doc:
    _, actors, histories, seqs, lamport = body
    if not isinstance(actors, list) or not all(isinstance(x, bytes) for x in actors):
        raise DecodeError("corrupt saved document: actor table")
    if len(histories) != len(actors):
        raise DecodeError("corrupt saved document: histories do not match actors")
    d = cls(actor)
    amap = [d._actor_index(x) for x in actors]
    for saved_a, h in enumerate(histories):
        if h is None:
            continue
        a = amap[saved_a]
        v, starts_rle, end, deps, ops = h
        starts = Starts()
        starts.extend_rle(rle_check(starts_rle))
        if len(starts) != v or not isinstance(end, int):
            raise DecodeError("corrupt saved document: change table")
        d._vv[a] = v
        d._starts[a] = starts
        d._end[a] = end
        ctx = d._ctx[a]
        for s, flat in deps:
            if type(s) is not int or type(flat) is not list or len(flat) % 2:
                raise DecodeError("corrupt saved document: dependencies")
            dl = [(amap[flat[i]], flat[i + 1]) for i in range(0, len(flat), 2)]
            if dl:
                d._deps[dep_key(a, s)] = deps_value(dl)
            for x, v in dl:
                if v > ctx.get(x, 0):
                    ctx[x] = v
        d._oplog[a].extend(_ops_from_columns(ops, amap))
    d._my_starts = d._starts[0]
    for key in sorted(seqs, key=lambda k: k[0] not in "rc"):
        if not isinstance(key, str) or len(key) < 3 or key[0] not in "tlrc" or key[1] != ":":
            raise DecodeError(f"corrupt saved document: object {key!r}")
        root = d._seqroot(key)
        _fill(root._seq, seqs[key], amap)
    for a, log in enumerate(d._oplog):
        author = d._actors[a]
        for op in log:
            if op[0] != DEL:
                d._integrate_other(op, a, author)
    d._lamport = max(lamport, max(d._end) - 1 if d._end else 0)
    return d


def _fill(seq: Sequence, cols: list[Any], amap: list[int]) -> None:
    """Check a saved sequence's columns (C-level passes) and install it lazily:
    the runs are built at the first edit or id lookup, not at load (a million-
    character text reads back without making ~40,000 objects)."""
    acts, dlams, offs, oacts, dead, lens, content = cols
    dlams, offs, oacts, lens = (
        _unpack(dlams, "lamport"), _unpack(offs, "origin"), _unpack(oacts, "origin actor"),
        _unpack(lens, "run length"),
    )
    cols = [acts, dlams, offs, oacts, dead, lens, content]
    n = len(acts)
    if not (len(dlams) == len(offs) == len(oacts) == len(dead) == len(lens) == n):
        raise DecodeError("corrupt saved document: sequence columns differ in length")
    if isinstance(seq.empty, str) and type(content) is list:  # [visible, deleted] text
        if not (len(content) == 2 and all(type(c) is str for c in content)
                and sum(compress(lens, map(not_, dead))) == len(content[0])
                and sum(compress(lens, dead)) == len(content[1])):
            raise DecodeError("corrupt saved document: run content")
        length, split = len(content[0]), True
    elif type(content) is not type(seq.empty) or sum(lens) != len(content):
        raise DecodeError("corrupt saved document: run content")
    else:
        length, split = len(content) - sum(compress(lens, dead)), False
    if n and min(lens) < 1:
        raise DecodeError("corrupt saved document: empty run")
    if n and not (
        min(oacts) >= -1 and max(oacts) < len(amap) and 0 <= min(acts) <= max(acts) < len(amap)
    ):
        raise DecodeError("corrupt saved document: actor index")
    if not n:
        return
    seq._defer(_SavedRuns(cols, amap, split), length)


def _cut(content: Any, lens: Any) -> Iterator[Any]:
    ends = list(accumulate(lens))
    return map(content.__getitem__, map(slice, [0, *ends[:-1]], ends))


def _run_contents(content: Any, dead: list[int], lens: list[int], split: bool) -> Any:
    """Each run's content, in run order, from either saved form of it."""
    if split:
        alive = _cut(content[0], compress(lens, map(not_, dead)))
        gone = _cut(content[1], compress(lens, dead))
        return [next(gone) if d else next(alive) for d in dead]
    return _cut(content, lens)


class _SavedRuns:
    """A saved sequence's columns, turned into runs on first use (see _fill)."""

    __slots__ = ("amap", "cols", "split")

    def __init__(self, cols: list[Any], amap: list[int], split: bool) -> None:
        self.cols, self.amap = cols, amap
        self.split = split  # text content saved as [visible, deleted]

    def value(self) -> Any:
        _acts, _dlams, _offs, _oacts, dead, lens, content = self.cols
        if self.split:
            return content[0]
        if not any(dead):
            return content if isinstance(content, str) else list(content)
        ends = list(accumulate(lens))
        parts = map(content.__getitem__, map(slice, [0, *ends[:-1]], ends))
        alive = compress(parts, map(not_, dead))
        if isinstance(content, str):
            return "".join(alive)
        return [x for p in alive for x in p]

    def build(self, seq: Sequence) -> None:
        # Column math runs in C (map, accumulate, zip); the Python-level work is
        # one Run per run and one pass per actor to link fragments.
        with gc_paused(True):
            try:
                _build(seq, self.cols, self.amap, self.split)
            except DecodeError:
                raise
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
                raise DecodeError(f"corrupt saved ownkernel document: {type(e).__name__}: "
                                  f"{e}") from None


def _build(seq: Sequence, cols: list[Any], amap: list[int], split: bool) -> None:
    acts, dlams, offs, oacts, dead, lens, content = cols
    n = len(acts)
    amap_h = [*amap, -1]  # a saved origin actor of -1 (the head) stays -1
    lams = list(accumulate(dlams))
    parts = _run_contents(content, dead, lens, split)
    runs = list(
        map(
            Run,
            lams,
            map(amap.__getitem__, acts),
            parts,
            map(sub, lams, offs),
            map(amap_h.__getitem__, oacts),
            map(bool, dead),
        )
    )
    # entries: per actor, runs in lamport order; a run continuing the previous
    # one (next lamport, implicit origin) is a fragment of the same entry
    by_act: dict[int, list[Run]] = {}
    if len(amap) == 1 or len(set(acts)) == 1:
        by_act[runs[0].act] = runs[:]
    else:
        for r in runs:
            by_act.setdefault(r.act, []).append(r)
    entries = {}
    for act, lst in by_act.items():
        lst.sort(key=_lam)
        starts, firsts = [], []
        prev = None
        for r in lst:
            if (
                prev is not None
                and prev.lam + prev.n == r.lam
                and r.olam == r.lam - 1
                and r.oact == act
            ):
                prev.nxt = r
                prev = r
                continue
            if prev is not None and r.lam < prev.lam + prev.n:
                # the file passed its checksum and seal: only a writer bug gets here
                raise DecodeError("corrupt saved document: overlapping runs")
            starts.append(r.lam)
            firsts.append(r)
            prev = r
        entries[act] = (starts, firsts)
    half = MAX_RUNS // 2
    seq._set_blocks([Block(runs[i : i + half], i // half) for i in range(0, n, half)])
    seq.entries = entries


_lam = attrgetter("lam")
