"""Newly shared docs are checked and stored without being built (node/newdocs.py,
issue #15 target 1): opening one afterwards gives exactly the sender's state and
the same stored rows, access list and gate verdicts as the full path; forged,
foreign, invalid and wrong-doc changes are still refused and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ownkernel import Node
from ownkernel.crdt import Doc
from ownkernel.crdt.codec import INS, SET, encode_change
from ownkernel.node import replica as replica_py
from ownkernel.store import Envelope, decode_envelope, encode_envelope
from ownkernel.store.auth import ZERO_HASH, chain_hash, head_message


def _fill(d: Any, i: int) -> None:
    """Roots of every kind, some edited in several changes (deletes included)."""
    kind = i % 6
    if kind == 0:
        d.text().insert(0, f"hello {i}")
        d.text().delete(0, 2)
        d.text().insert(3, "XY")
    elif kind == 1:
        d.list("l").extend([1, "two", {"three": 3}])
        d.list("l").insert(1, [i])
    elif kind == 2:
        d.map("m")["k"] = {"n": i}
        d.map("m")["gone"] = 1
        del d.map("m")["gone"]
    elif kind == 3:
        d.sheet().resize(3, 2)
        d.sheet().set("A1", i)
        d.sheet().set("B2", "=A1*2")
    elif kind == 4:
        d.counter("c").increment(5)
        d.counter("c").decrement(2)
    else:
        d.log().append({"text": f"msg {i}"})
        d.log().append({"text": "second"})
        d.log().redact(0)


def _state(od: Any) -> dict[str, Any]:
    c = od.crdt
    return {"body": str(c.text("body")), "l": c.list("l").to_list(),
            "m": c.map("m").to_dict(), "sheet": c.sheet("sheet").values(),
            "c": c.counter("c").value, "chat": c.log("chat").messages(),
            "meta": c.map("_meta").to_dict(), "access": c.map("_access").to_dict(),
            "version": dict(c.version)}


def _pair(tmp_path: Path, n: int, sealed: bool = False) -> tuple[Node, Node, list[bytes]]:
    """``sealed``: every 4th doc end-to-end encrypted (its key in the token)."""
    a = Node(tmp_path / "a", name="a", network=False)
    b = Node(tmp_path / "b", name="b", network=False)
    ids, tokens = [], []
    with a.lock, a.store.batch():
        for i in range(n):
            d = a.new_doc(f"doc {i}", encrypted=sealed and i % 4 == 3)
            _fill(d, i)
            ids.append(d.id)
            tokens.append(a.invite(d, write=i % 2 == 0, addresses=[]))
    with b.lock, b.store.batch():
        for t in tokens:
            b.join(t)
    return a, b, ids


def _stored(node: Node, doc: bytes) -> Any:
    heads = node.store.heads(doc)
    rows = {a: [(r.seq, r.blob, r.auth) for r in node.store.changes(doc, a)] for a in heads}
    return heads, rows, node.store.document(doc).access


def test_unbuilt_docs_open_to_the_senders_state_and_store_what_the_full_path_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 18
    a, b, ids = _pair(tmp_path, n, sealed=True)
    c = Node(tmp_path / "c", name="c", network=False)  # the full path, for comparison
    try:
        with c.lock, c.store.batch():
            for d in ids:
                c.join(a.invite(a.open(d), write=ids.index(d) % 2 == 0, addresses=[]))
        outs = {d: a.replica.outgoing(d, {}) for d in ids}
        with b.lock, b.store.batch(durable=False):
            for d in ids:
                got = b.replica.ingest(d, outs[d], a.id)
                assert [decode_envelope(e) for e in got] == [decode_envelope(e) for e in outs[d]]
        assert b.replica.stats["ingested_unbuilt"] == n
        assert not set(ids) & set(b.replica.docs)  # nothing built
        assert b.replica.stats["accepted"] == sum(len(o) for o in outs.values())
        monkeypatch.setattr(replica_py, "ingest_new", lambda *_a: None)
        for d in ids:
            assert c.replica.ingest(d, a.replica.outgoing(d, {}), a.id)
        assert c.replica.stats.get("ingested_unbuilt", 0) == 0
        for i, d in enumerate(ids):
            assert b.replica.version(d) == a.replica.version(d)
            # the same rows, heads and access list as the full path stores
            sb, sc = _stored(b, d), _stored(c, d)
            assert sb[0] == sc[0] and sb[1] == sc[1], f"doc {i}"
            assert sb[2] == sc[2] == a.store.document(d).access
            assert b.gate.role(d, a.id) == "owner"
            want = _state(a.replica.open(d))
            assert _state(b.replica.open(d)) == want, f"doc {i}"
            assert _state(c.replica.open(d)) == want, f"doc {i}"
        # a built doc takes later changes through the usual path
        a.open(ids[0]).text().insert(0, "more ")
        v = b.replica.version(ids[0])
        assert b.replica.ingest(ids[0], a.replica.outgoing(ids[0], v), a.id)
        assert str(b.open(ids[0]).text()) == str(a.open(ids[0]).text())
    finally:
        a.close()
        b.close()
        c.close()


def test_later_changes_to_an_unbuilt_doc_load_it_and_apply(tmp_path: Path) -> None:
    a, b, ids = _pair(tmp_path, 2)
    try:
        d = ids[0]
        assert b.replica.ingest(d, a.replica.outgoing(d, {}), a.id)
        assert d not in b.replica.docs
        a.open(d).text().insert(0, "later ")
        v = b.replica.version(d)
        assert b.replica.ingest(d, a.replica.outgoing(d, v), a.id)
        assert b.replica.stats["ingested_unbuilt"] == 1  # the second batch: full path
        assert str(b.open(d).text()) == str(a.open(d).text())
    finally:
        a.close()
        b.close()


def _signed(key: Any, me: bytes, doc: bytes, bodies: list[bytes]) -> list[bytes]:
    """``bodies`` as seq 1.. of ``me``'s chain in ``doc``, validly signed."""
    h, out = ZERO_HASH, []
    for s, body in enumerate(bodies, 1):
        h = chain_hash(h, doc, me, s, body, None)
        sig = key.sign(head_message(h)) if s == len(bodies) else None
        out.append(encode_envelope(Envelope(doc, me, s, body, sig, None)))
    return out


def test_refused_changes_of_a_newly_shared_doc_store_nothing(tmp_path: Path) -> None:
    a, b, ids = _pair(tmp_path, 6)
    try:
        good = a.replica.outgoing(ids[0], {})
        # forged: a body altered under the owner's signature
        env = decode_envelope(good[-1])
        forged = good[:-1] + [encode_envelope(env._replace(body=env.body + b"\x00"))]
        assert b.replica.ingest(ids[0], forged, a.id) == []
        assert b.replica.rejected["bad_signature"] >= 1
        # another doc's changes, sent as this doc's
        assert b.replica.ingest(ids[1], a.replica.outgoing(ids[2], {}), a.id) == []
        assert b.replica.rejected["wrong_doc"] == len(good)
        # a change by someone with no role (validly signed by its own key)
        x = Doc(actor=b.id)
        x.text("body").insert(0, "not yours")
        mine = _signed(b.identity, b.id, ids[3], [x.commit()])
        m = Node(tmp_path / "m", name="m", network=False)
        try:
            m.join(a.invite(a.open(ids[3]), write=False, addresses=[]))
            assert m.replica.ingest(ids[3], mine, b.id) == []
            assert m.replica.rejected["not_writer"] == 1
            assert m.replica.version(ids[3]) == {}
        finally:
            m.close()
        # the owner's own key, but a change the CRDT refuses (it inserts after an
        # element that does not exist), after a valid one: only the valid one stays
        ok = encode_change([a.id], 1, 1, [], [[SET, "m:_meta", "title", "t"]])
        bad = encode_change([a.id], 2, 2, [], [[INS, "t:body", 50, 0, "x"]])
        alone = encode_change([a.id], 1, 1, [], [[INS, "t:body", 50, 0, "x"]])
        assert b.replica.ingest(ids[4], _signed(a.identity, a.id, ids[4], [alone]), a.id) == []
        assert b.replica.rejected["bad_change"] == 1
        got = b.replica.ingest(ids[4], _signed(a.identity, a.id, ids[4], [ok, bad]), a.id)
        assert [decode_envelope(e).seq for e in got] == [1]
        assert b.replica.rejected["bad_change"] == 2
        assert b.replica.version(ids[4]) == {a.id: 1}
        assert b.open(ids[4]).crdt.map("_meta").to_dict() == {"title": "t"}
        for d in ids[:4]:
            assert b.replica.version(d) == {}, "nothing of a refused batch is stored"
            assert b.store.heads(d) == {}
        # and the untouched doc still arrives whole
        assert b.replica.ingest(ids[5], a.replica.outgoing(ids[5], {}), a.id)
        assert b.replica.stats["ingested_unbuilt"] == 1
    finally:
        a.close()
        b.close()


def _changes_msg(doc: bytes, blobs: list[bytes]) -> dict[str, Any]:
    return {"msg": {"type": "changes", "doc": {"hex": doc.hex()},
                    "blobs": [{"hex": b.hex()} for b in blobs]}}


def test_through_the_transport_only_the_owners_valid_first_changes_are_stored(
        tmp_path: Path) -> None:
    """An attacker holding the owner's key talks to a node that joined 4 docs and
    holds nothing of them: a forged batch, another doc's batch and a batch the
    CRDT refuses are refused and not stored (nor forwarded: nothing accepted);
    the genuine one lands unbuilt."""
    from test_attacks import FAST, attack, seed_of
    from waiting import until

    from ownkernel.node.config import NetConfig

    a = Node(tmp_path / "a", name="a", network=False)
    j = Node(tmp_path / "j", name="j", network=False)  # joins offline, as at scale
    ids = []
    for i in range(4):
        d = a.new_doc(f"doc {i}")
        d.text().insert(0, f"content {i}")
        ids.append(d.id)
        j.join(a.invite(d, write=False, addresses=[]))
    j.close()
    j = Node(tmp_path / "j", name="j",
             network=NetConfig(**{**FAST, "listen": ["tcp://127.0.0.1:0"]}))
    try:
        outs = [a.replica.outgoing(d, {}) for d in ids]
        env = decode_envelope(outs[0][-1])
        forged = outs[0][:-1] + [encode_envelope(env._replace(body=env.body + b"\x00"))]
        bad = _signed(a.identity, a.id, ids[2],
                      [encode_change([a.id], 1, 1, [], [[INS, "t:body", 50, 0, "x"]])])
        attack(j.address, [{"hello": True}, {"sleep": 0.3},
                           _changes_msg(ids[0], forged), _changes_msg(ids[1], outs[3]),
                           _changes_msg(ids[2], bad), _changes_msg(ids[3], outs[3])],
               seed=seed_of(a), listen=0.5)
        until(lambda: j.replica.version(ids[3]) == {a.id: len(outs[3])})
        rej = j.stats()["rejected"]
        assert rej.get("bad_signature", 0) >= 1
        assert rej.get("wrong_doc", 0) == len(outs[3])
        assert rej.get("bad_change", 0) == 1
        for d in ids[:3]:
            assert j.store.heads(d) == {}
        assert j.replica.stats["ingested_unbuilt"] == 1
        assert j.replica.stats["accepted"] == len(outs[3])
        assert str(j.open(ids[3]).text()) == "content 3"
    finally:
        j.close()
        a.close()
