"""Values are trees (issue #8, hole 4).

A writer's change holding a cyclic or shared CBOR structure (tags 28/29),
or a value under any other tag, is refused by every receiver, which stays
usable; local writes of cyclic or non-native values are refused and leave
the document as it was; a saved document holding such a value does not
load. Before, one such value made save(), changes() and commit() raise on
every replica for good.
"""

from __future__ import annotations

import datetime
import random
from typing import Any

import cbor2
import pytest

from ownkernel.crdt import CRDTError, DecodeError, Doc, InvalidValueError, codec
from ownkernel.crdt.snapshot import zstd
from ownkernel.crdt.values import MAX_DEPTH

W, R = b"\x01writer", b"\x02reader"

# CBOR of values that decode to non-trees
CYCLIC = bytes.fromhex("d81c82d81d0001")  # shareable [sharedref(0), 1]: a list holding itself
SHARED = bytes.fromhex("82d81c8101d81d00")  # [shareable [1], sharedref(0)]: one list twice
DATETIME = bytes.fromhex("c11a514b67b0")  # tag 1: epoch datetime
UNKNOWN = bytes.fromhex("d9270f01")  # tag 9999 -> CBORTag
PYSET = bytes.fromhex("d9010282 0102".replace(" ", ""))  # tag 258: a set
UNDEFINED = bytes.fromhex("f7")
BAD_VALUES = {
    "cyclic": CYCLIC,
    "shared": SHARED,
    "datetime": DATETIME,
    "unknown-tag": UNKNOWN,
    "set": PYSET,
    "undefined": UNDEFINED,
    "nested-cyclic": bytes.fromhex("a1616b") + CYCLIC,  # {"k": cyclic}
    "tuple-key": bytes.fromhex("a1820102f6"),  # {[1, 2]: null}: key decodes to a tuple
}


def _raw_change(actor: bytes, seq: int, lamport: int, ops_cbor: bytes, nitems: int) -> bytes:
    """A change array written by hand: [1, actor, seq, lamport, 0, *ops]."""
    head = cbor2.dumps(1) + cbor2.dumps(actor) + cbor2.dumps(seq) + cbor2.dumps(lamport)
    head += cbor2.dumps(0)
    n = 5 + nitems
    assert n < 24
    return bytes([0x80 + n]) + head + ops_cbor


def set_change(value_cbor: bytes, seq: int = 1, lamport: int = 1) -> bytes:
    ops = cbor2.dumps(codec.SET) + cbor2.dumps("m:m") + cbor2.dumps("k") + value_cbor
    return _raw_change(W, seq, lamport, ops, 4)


def append_change(value_cbor: bytes) -> bytes:
    ops = cbor2.dumps(codec.APPEND) + cbor2.dumps("g:chat") + value_cbor
    return _raw_change(W, 1, 1, ops, 3)


def list_insert_change(value_cbor: bytes) -> bytes:
    # [INS, "l:l", 0, -1, [value]]: one item at the head
    ops = cbor2.dumps(codec.INS) + cbor2.dumps("l:l") + cbor2.dumps(0) + cbor2.dumps(-1)
    ops += b"\x81" + value_cbor
    return _raw_change(W, 1, 1, ops, 5)


def usable(d: Doc) -> None:
    """save(), changes(), commit() and a load round trip all work."""
    d.map("m").set("after", [1, {"x": b"y"}])
    blob = d.commit()
    assert blob is not None
    saved = d.save()
    again = Doc.load(saved)
    assert again.map("m").to_dict() == d.map("m").to_dict()
    assert again.version == d.version
    fresh = Doc()
    fresh.apply(d.changes())
    assert fresh.map("m").to_dict() == d.map("m").to_dict()


def receiver() -> Doc:
    d = Doc(actor=R)
    d.map("m").set("k", "mine")
    d.text("t").insert(0, "hello")
    d.commit()
    return d


@pytest.mark.parametrize("make", [set_change, append_change, list_insert_change])
@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_bad_value_in_a_change_is_refused_and_receiver_stays_usable(make: Any, name: str) -> None:
    blob = make(BAD_VALUES[name])
    cbor2.loads(blob)  # well-formed CBOR: the problem is the value
    with pytest.raises(DecodeError, match="not a tree"):
        codec.decode(blob)
    d = receiver()
    before = d.save()
    with pytest.raises(DecodeError, match="not a tree"):
        d.apply([blob])
    assert d.save() == before
    assert W not in d.version
    usable(d)


def test_the_attack_good_values_still_pass() -> None:
    """The same hand-built changes with a plain value are accepted (the
    attack tests above fail for the value, not the framing)."""
    for make in (set_change, append_change, list_insert_change):
        d = receiver()
        d.apply([make(cbor2.dumps({"a": [1, 2.5, None, b"z"], 3: True}))])
        assert d.version[W] == 1
        usable(d)


def test_shared_reference_across_two_ops_is_refused() -> None:
    # op 1 sets a shareable list, op 2 refers to it: one object in two values
    ops = cbor2.dumps(codec.SET) + cbor2.dumps("m:m") + cbor2.dumps("a") + bytes.fromhex("d81c8101")
    ops += cbor2.dumps(codec.SET) + cbor2.dumps("m:m") + cbor2.dumps("b") + bytes.fromhex("d81d00")
    blob = _raw_change(W, 1, 1, ops, 8)
    with pytest.raises(DecodeError, match="shared or cyclic"):
        codec.decode(blob)


def test_value_referring_to_the_change_itself_is_refused() -> None:
    # the change array is shareable and the map value refers back to it
    ops = cbor2.dumps(codec.SET) + cbor2.dumps("m:m") + cbor2.dumps("k") + bytes.fromhex("d81d00")
    blob = b"\xd8\x1c" + _raw_change(W, 1, 1, ops, 4)
    with pytest.raises(DecodeError):
        codec.decode(blob)
    d = receiver()
    with pytest.raises(DecodeError):
        d.apply([blob])
    usable(d)


def test_bad_value_in_a_bundle_is_refused() -> None:
    w = Doc(actor=W)
    w.map("m").set("a", 1)
    w.commit()
    w.map("m").set("b", [1])
    w.commit()
    (bundle,) = w.changes()
    assert codec.decode(bundle).__class__.__name__ == "Bundle"
    v = cbor2.loads(bundle)
    # swap the second value for a CBORTag, re-encode: cbor2 writes the tag back
    for op in v[6]:
        if op[0] == codec.SET and op[3] == "b":
            op[4] = cbor2.CBORTag(9999, 1)
    bad = cbor2.dumps(v)
    with pytest.raises(DecodeError, match="CBOR tag 9999"):
        codec.decode(bad)
    d = receiver()
    with pytest.raises(DecodeError):
        d.apply([bad])
    usable(d)


def test_bad_cell_value_is_refused() -> None:
    w = Doc(actor=W)
    w.sheet("s").set("A1", 1)
    blob = w.commit()
    v = cbor2.loads(blob)
    assert v[-1] == 1 and codec.CELL in v
    v[-1] = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    bad = cbor2.dumps(v)
    d = receiver()
    with pytest.raises(DecodeError, match="datetime"):
        d.apply([bad])
    usable(d)


# -------------------------------------------------------------- local writes
def cyclic_list() -> list[Any]:
    x: list[Any] = [1]
    x.append(x)
    return x


def cyclic_dict() -> dict[str, Any]:
    x: dict[str, Any] = {}
    x["self"] = [x]
    return x


def deep(n: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(n):
        v = [v]
    return v


LOCAL_BAD = [
    cyclic_list(),
    cyclic_dict(),
    {1, 2},
    object(),
    datetime.date(2020, 1, 1),
    {"k": frozenset()},
    {(1, 2): 3},
    "lone \ud800 surrogate",
    {"k": ["\udfff"]},
    deep(MAX_DEPTH + 1),
    bytearray(b"x"),
]


def writes(d: Doc) -> list[Any]:
    return [
        lambda v: d.map("m").set("k", v),
        lambda v: d.log("g").append(v),
        lambda v: d.list("l").append(v),
        lambda v: d.list("l").extend([1, v]),
        lambda v: d.sheet("s").set("B2", v),
    ]


@pytest.mark.parametrize("i", range(len(LOCAL_BAD)))
def test_local_bad_value_is_refused_and_doc_unchanged(i: int) -> None:
    d = Doc(actor=W)
    d.map("m").set("k", "before")
    d.list("l").append(0)
    d.log("g"), d.sheet("s")  # the roots exist before, so save() bytes compare
    d.commit()
    before = d.save()
    for write in writes(d):
        with pytest.raises(InvalidValueError) as e:
            write(LOCAL_BAD[i])
        assert isinstance(e.value, ValueError) and isinstance(e.value, CRDTError)
        assert d.pending_ops == 0
        assert d.commit() is None
    assert d.map("m")["k"] == "before"
    assert d.list("l").to_list() == [0]
    assert d.save() == before
    usable(d)


def test_local_values_are_copied_and_plain_shapes_pass() -> None:
    d = Doc(actor=W)
    inner = [1, 2]
    v = {"a": inner, "b": inner, 7: (1, "x"), b"k": None, 1.5: -2**70}  # a DAG, not a cycle
    d.map("m").set("k", v)
    d.list("l").append(inner)
    inner.append(3)  # the caller's later mutation does not reach the document
    assert d.map("m")["k"] == {"a": [1, 2], "b": [1, 2], 7: [1, "x"], b"k": None, 1.5: -2**70}
    assert d.list("l").to_list() == [[1, 2]]
    assert d.map("m")["k"]["a"] is not d.map("m")["k"]["b"]
    d.map("m").set("deep", deep(MAX_DEPTH - 1))
    e = Doc()
    e.apply([d.commit()])  # type: ignore[list-item]
    assert e.map("m").to_dict() == d.map("m").to_dict()
    usable(d)


def test_text_and_names_with_lone_surrogates_are_refused() -> None:
    d = Doc(actor=W)
    t = d.text("t")
    t.insert(0, "ok ü")
    d.commit()
    before = d.save()
    for bad in ("\ud800", "a\udfffb"):
        with pytest.raises(InvalidValueError):
            t.insert(len(t), bad)  # the typing fast path
        with pytest.raises(InvalidValueError):
            t.insert(0, bad)
        with pytest.raises(InvalidValueError):
            t.set("x" + bad)
        with pytest.raises(InvalidValueError):
            t.replace(0, 2, bad)
        with pytest.raises(ValueError):
            d.text(bad)
    assert d.pending_ops == 0 and str(t) == "ok ü" and d.save() == before
    usable(d)


def test_map_key_checks() -> None:
    d = Doc(actor=W)
    with pytest.raises(TypeError):
        d.map("m").set(1, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.map("m").delete(1)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        d.map("m").set("\ud800", "x")
    assert d.pending_ops == 0


# ------------------------------------------------------------ saved documents
def _resave(body: list[Any]) -> bytes:
    return zstd.compress(cbor2.dumps(body))


def test_saved_document_with_a_bad_value_does_not_load() -> None:
    d = Doc(actor=W)
    d.map("m").set("k", [1])
    d.list("l").extend([{"a": 1}])
    saved = d.save()
    assert Doc.load(saved).map("m")["k"] == [1]
    body = cbor2.loads(zstd.decompress(saved))
    rest = body[2][0][4][8]  # actor 0's op log, the non-delete ops' fields
    assert rest == [["k", [1]]]
    rest[0][1] = cyclic_list()  # the map value becomes a list holding itself
    with pytest.raises(DecodeError, match="shared or cyclic"):
        Doc.load(zstd.compress(cbor2.dumps(body, value_sharing=True)))
    body2 = cbor2.loads(zstd.decompress(saved))
    seqs = body2[3]
    seqs["l:l"][-1][0] = cbor2.CBORTag(9999, 0)  # the list's content column
    with pytest.raises(DecodeError, match="CBOR tag 9999"):
        Doc.load(_resave(body2))


# -------------------------------------------------------------------- fuzz
TAG_HEADS = [
    b"\xd8\x1c",  # 28 shareable
    b"\xd8\x1d\x00",  # 29 sharedref 0 (a complete item)
    b"\xd8\x1d\x01",
    b"\xc1",  # 1 epoch datetime
    b"\xc2",  # 2 bignum
    b"\xd8\x19",  # 25 stringref
    b"\xd9\x01\x00",  # 256 stringref namespace
    b"\xd9\x01\x02",  # 258 set
    b"\xd9\x27\x0f",  # 9999 unknown
    b"\xd8\x18",  # 24 embedded CBOR
    b"\xd8\x25",  # 37 uuid
    b"\xf7",  # undefined (a complete item)
]


def _sources() -> list[bytes]:
    a, b = Doc(actor=W), Doc(actor=b"\x03other")
    a.map("m").set("k", {"x": [1, 2, {"y": b"z"}]})
    a.log("g").append({"msg": "hi", "n": [1]})
    a.list("l").extend([[1, 2], {"a": None}, "s"])
    a.sheet("s").set("A1", [1, {"b": 2}])
    a.text("t").insert(0, "hello")
    out = [a.commit()]
    b.apply(out)  # type: ignore[arg-type]
    b.map("m").set("j", [[[]]])
    b.list("l").insert(1, {"q": [True, 1.5]})
    out.append(b.commit())
    a.map("m").set("k2", [3])
    a.commit()
    out += a.changes()  # includes a bundle of a's two changes
    return [x for x in out if x is not None]


def test_fuzz_tags_inserted_into_changes() -> None:
    """Tags spliced in anywhere: decode either refuses (DecodeError) or yields
    only trees; a receiver that applies what decodes stays usable."""
    rng = random.Random(8)
    sources = _sources()
    refused = accepted = 0
    for _ in range(3000):
        src = rng.choice(sources)
        blob = bytearray(src)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(1, len(blob))
            blob[at:at] = rng.choice(TAG_HEADS)
        data = bytes(blob)
        try:
            c = codec.decode(data)
        except DecodeError:
            refused += 1
            continue
        accepted += 1
        d = Doc(actor=R)
        try:
            d.apply([data] if c.actors[0] == W else [sources[0], data])
        except ValueError:
            pass
        d.save()
        d.changes()
        d.map("m").set("z", 1)
        d.commit()
        Doc.load(d.save())
    assert refused > 1000  # most splices break a tree or the framing
    assert accepted > 0  # and some land where a tag is harmless (e.g. a bignum int)
