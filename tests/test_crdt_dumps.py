"""codec.dumps: the reused per-thread cbor2 encoder behind every commit."""

from __future__ import annotations

import threading

import cbor2
import pytest

from ownkernel.crdt import Doc, codec


def test_same_bytes_as_cbor2() -> None:
    for v in (
        [1, [b"a" * 32, b"b" * 32], 5, 77, [1, 5], 1, "t:body", 55, 1, "ab"],
        [],
        0,
        "é",
        [[[]]],
    ):
        assert codec.dumps(v) == cbor2.dumps(v)


def test_a_failed_encode_leaves_nothing_behind() -> None:
    bad = [1, [object()]]
    with pytest.raises(cbor2.CBOREncodeError):
        codec.dumps(bad)
    bad[1][0] = 2  # the same containers encode fine afterwards, with no leftover bytes
    assert codec.dumps(bad) == cbor2.dumps([1, [2]])


def test_threads_get_their_own_encoder() -> None:
    out: dict[int, list[bytes]] = {}

    def work(i: int) -> None:
        out[i] = [codec.dumps([i, "x" * i, [i] * (i % 7)]) for _ in range(2000)]

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i, blobs in out.items():
        assert set(blobs) == {cbor2.dumps([i, "x" * i, [i] * (i % 7)])}


def test_keystroke_changes_still_apply() -> None:
    a, b = Doc(b"a" * 32), Doc(b"b" * 32)
    ta = a.text("body")
    ta.insert(0, "hello")
    b.apply([a.commit()])
    tb = b.text("body")
    tb.insert(2, "XY")
    tb.delete(0, 1)
    a.apply([b.commit()])
    assert str(ta) == str(tb) == "eXYllo"
