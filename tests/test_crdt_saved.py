"""Saved documents' packed integer columns (snapshot._pack / _unpack).

Saves made before packing hold CBOR arrays of ints in those columns: they
must still load, and a damaged packed column is a clear DecodeError.
"""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest

from ownkernel.crdt import Doc, snapshot
from ownkernel.crdt.errors import DecodeError
from ownkernel.crdt.snapshot import zstd

SEQ_PACKED = (1, 2, 3, 5)  # lam deltas, origin offsets, origin actors, run lengths


def _body(saved: bytes) -> list[Any]:
    return cbor2.loads(zstd.decompress(saved))


def _save(body: list[Any]) -> bytes:
    return zstd.compress(cbor2.dumps(body))


def _as_lists(body: list[Any]) -> list[Any]:
    """The body as saves made before packing wrote it: int columns as arrays."""
    for cols in body[3].values():
        for i in SEQ_PACKED:
            cols[i] = list(snapshot._unpack(cols[i], "test"))
    for h in body[2]:
        if h is not None:
            h[4][1:8] = [list(snapshot._unpack(c, "test")) for c in h[4][1:8]]
    return body


def _two_writers(seed: int) -> tuple[Doc, Doc]:
    """Two replicas of a text both edited (inserts and deletes of each other's
    characters) and a map, converged; returns (a, b)."""
    rnd = random.Random(seed)
    a, b = Doc(actor=b"A" * 32), Doc(actor=b"B" * 32)
    for step in range(300):
        d = a if rnd.random() < 0.5 else b
        t = d.text("t")
        n = len(t)
        if n and rnd.random() < 0.35:
            p = rnd.randrange(n)
            t.delete(p, min(rnd.randint(1, 3), n - p))
        else:
            t.insert(rnd.randint(0, n), "xyz"[: rnd.randint(1, 3)])
        if step % 50 == 0:
            d.map("m").set(f"k{step}", step)
        c = d.commit()
        (b if d is a else a).apply([c])
    return a, b


@pytest.mark.parametrize(
    "values",
    [[], [0], [-128, 127], [-129, 5], [40000, -3], [2**31, 1], [-(2**31) - 1], [2**53 - 1, 0]],
)
def test_pack_round_trips_with_the_smallest_width(values: list[int]) -> None:
    packed = snapshot._pack(values)
    assert list(snapshot._unpack(packed, "x")) == values
    width = {"b": 1, "h": 2, "i": 4, "q": 8}[chr(packed[0])]
    assert len(packed) == 1 + width * len(values)
    fits = [w for w, lo in ((1, 2**7), (2, 2**15), (4, 2**31), (8, 2**63))
            if all(-lo <= v < lo for v in values)]
    assert width == fits[0]


@pytest.mark.parametrize("seed", range(3))
def test_saved_columns_are_packed_and_the_doc_round_trips(seed: int) -> None:
    a, b = _two_writers(seed)
    saved = a.save()
    body = _body(saved)
    cols = body[3]["t:t"]
    assert all(type(cols[i]) is bytes for i in SEQ_PACKED)
    assert all(type(c) is bytes for h in body[2] for c in h[4][1:8])
    e = Doc.load(saved, actor=b"A" * 32)
    assert str(e.text("t")) == str(a.text("t"))
    assert e._oplog == a._oplog  # deletes rebuilt by the C-level path, actors mapped
    assert e.map("m").to_dict() == a.map("m").to_dict()
    assert e.version == a.version
    # the loaded replica keeps converging with the other one
    e.text("t").insert(0, "Q")
    b.apply([e.commit()])
    assert str(b.text("t")) == str(e.text("t"))


@pytest.mark.parametrize("seed", range(3))
def test_saves_from_before_packing_still_load(seed: int) -> None:
    a, _ = _two_writers(seed)
    old = _save(_as_lists(_body(a.save())))
    e = Doc.load(old, actor=b"A" * 32)
    assert str(e.text("t")) == str(a.text("t"))
    assert e._oplog == a._oplog
    e.text("t").insert(len(e.text("t")) // 2, "Z")  # builds the runs from list columns
    assert len(e.text("t")) == len(a.text("t")) + 1
    # and a re-save of it is packed again, same text
    assert str(Doc.load(e.save()).text("t")) == str(e.text("t"))


def test_old_list_columns_with_a_non_int_are_refused() -> None:
    a, _ = _two_writers(0)
    body = _as_lists(_body(a.save()))
    body[2][0][4][3][0] = 1.5  # a lamport delta of the op log
    with pytest.raises(DecodeError, match="op log"):
        Doc.load(_save(body))


@pytest.mark.parametrize(
    ("where", "bad", "what"),
    [
        ("seq", b"z\x00\x01", "lamport column"),  # unknown typecode
        ("seq", b"", "lamport column"),
        ("seq", b"h\x00\x01\x02", "lamport column length"),  # 3 bytes of 2-byte ints
        ("seq", "text", "lamport column"),
        ("log", b"i\x01\x00\x00", "op log column length"),
        ("log", b"x", "op log column"),
    ],
)
def test_damaged_packed_columns_are_a_clear_error(where: str, bad: Any, what: str) -> None:
    a, _ = _two_writers(1)
    saved = a.save()
    body = _body(saved)
    if where == "seq":
        body[3]["t:t"][1] = bad
    else:
        body[2][0][4][3] = bad
    with pytest.raises(DecodeError, match=what):
        Doc.load(_save(body))
    assert str(Doc.load(saved).text("t")) == str(a.text("t"))  # the good bytes still load


def test_packed_columns_of_mismatched_lengths_are_refused() -> None:
    a, _ = _two_writers(2)
    body = _body(a.save())
    cols = body[3]["t:t"]
    cols[5] = snapshot._pack(list(snapshot._unpack(cols[5], "x"))[:-1])  # one run length short
    with pytest.raises(DecodeError, match="columns differ"):
        Doc.load(_save(body))


def test_packed_layout_is_typecode_then_byte_planes() -> None:
    """The on-disk form (docs/crdt.md): lowest bytes of every value, then the next."""
    assert snapshot._pack([1, -1]) == b"b\x01\xff"
    assert snapshot._pack([1, 2, 300]) == b"h\x01\x02\x2c\x00\x00\x01"
    assert list(snapshot._unpack(b"h\x01\x02\x2c\x00\x00\x01", "x")) == [1, 2, 300]


@pytest.mark.parametrize("with_map", [False, True])
def test_op_log_columns_of_deletes_in_several_texts(with_map: bool) -> None:
    """A log of deletes only is columned by C-level passes, any other log by
    the general loop: both give the same columns and the same log back."""
    rnd = random.Random(4)
    d = Doc(actor=b"A")
    for step in range(200):
        t = d.text(rnd.choice("xyz"))
        n = len(t)
        if n > 3 and rnd.random() < 0.4:
            p = rnd.randrange(n - 2)
            t.delete(p, rnd.randint(1, 2))
        else:
            t.insert(rnd.randint(0, n), "ab"[: rnd.randint(1, 2)])
        if with_map and step == 100:
            d.map("m").set("k", step)
        d.commit()
    log = d._oplog[0]
    assert {op[1] for op in log if op[0] == snapshot.DEL} == {"t:x", "t:y", "t:z"}
    assert all(op[0] == snapshot.DEL for op in log) != with_map
    cols = snapshot._ops_to_columns(log)
    # one op of another kind at the end sends the same log through the loop
    general = snapshot._ops_to_columns([*log, [snapshot.CELL, "zz", log[-1][2] + 1]])
    assert general[0] == [*cols[0], "zz"]
    assert all(
        list(snapshot._unpack(a, "x")) == list(snapshot._unpack(b, "x"))[: len(log)]
        for a, b in zip(cols[1:8], general[1:8])
    )
    assert snapshot._ops_from_columns(cols, [0]) == log
    e = Doc.load(d.save(), actor=b"A")
    assert e._oplog == d._oplog
    assert all(str(e.text(k)) == str(d.text(k)) for k in "xyz")
