"""Admission of a run of one author's changes (``ownkernel.node.admit``).

A run is applied in as few CRDT calls as is safe; these tests pin down that
batching never changes a verdict: the prefix before a refused change is kept,
the refused change and what follows are not, and a role that changes inside a
run is judged change by change. Runs are real signed chains from real nodes,
ingested through ``Replica.ingest``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ownkernel import Node
from ownkernel.crdt import Doc
from ownkernel.node.gate import Credentials
from ownkernel.store import Envelope, chain_hash, encode_envelope
from ownkernel.store.auth import ZERO_HASH, head_message


@pytest.fixture
def pair():
    a, b = Node(name="alice", network=False), Node(name="bob", network=False)
    yield a, b
    a.close()
    b.close()


def version_of(node: Node, doc_id: bytes) -> dict[bytes, int]:
    return {x: h.seq for x, h in node.replica.open(doc_id).heads.items()}


def sync(src: Node, dst: Node, doc_id: bytes) -> list[bytes]:
    return dst.replica.ingest(doc_id, src.replica.outgoing(doc_id, version_of(dst, doc_id)),
                              src.id)


def run_of(author: Node, doc_id: bytes, receiver: Node,
           steps: list[Callable[[Doc], None] | bytes], cap: bytes | None = None) -> list[bytes]:
    """A signed chain of changes by ``author`` continuing its chain as ``receiver``
    knows it, made outside the author's own access checks (as a malicious peer
    would). A ``bytes`` step is used as a change body as it is."""
    d = Doc(actor=author.id)
    d.apply(receiver.replica.open(doc_id).crdt.changes())
    head = receiver.replica.open(doc_id).heads.get(author.id)
    seq, prev = (head.seq + 1, head.hash) if head else (1, ZERO_HASH)
    out = []
    for k, step in enumerate(steps):
        if isinstance(step, bytes):
            blob = step
        else:
            step(d)
            blob = d.commit()
        c = cap if k == 0 else None
        prev = chain_hash(prev, doc_id, author.id, seq, blob, c)
        last = k == len(steps) - 1
        sig = author.identity.sign(head_message(prev)) if last else None
        out.append(encode_envelope(Envelope(doc_id, author.id, seq, blob, sig, c)))
        seq += 1
    return out


def count_applies(monkeypatch: pytest.MonkeyPatch, node: Node, doc_id: bytes) -> list[int]:
    crdt = node.replica.open(doc_id).crdt
    calls: list[int] = []
    orig_d, orig_a = crdt.apply_decoded, crdt.apply
    monkeypatch.setattr(crdt, "apply_decoded", lambda cs: (calls.append(len(cs)), orig_d(cs)))
    monkeypatch.setattr(crdt, "apply", lambda cs: (calls.append(len(cs)), orig_a(cs)))
    return calls


def test_an_owner_run_that_edits_the_access_list_is_one_apply(pair, monkeypatch):
    alice, bob = pair
    doc = alice.new_doc("d")
    bdoc = bob.join(alice.invite(doc, write=False))
    sync(alice, bob, doc.id)
    calls = count_applies(monkeypatch, bob, doc.id)
    doc.text("body").insert(0, "one ")
    alice.grant(doc, bob.id, "writer")
    doc.text("body").insert(4, "two")
    alice.grant(doc, bob.id, "admin")
    got = sync(alice, bob, doc.id)
    assert len(got) == 4 and calls == [4]
    assert str(bdoc.text("body")) == "one two" and bdoc.role == "admin"


def test_a_refused_access_change_keeps_the_edits_before_it(pair):
    alice, bob = pair
    doc = alice.new_doc("d")
    token = alice.invite(doc, write=True)
    bob.join(token)
    sync(alice, bob, doc.id)
    grant = Credentials.from_bytes(bob.replica.row(doc.id).token).grant
    envs = run_of(bob, doc.id, alice, [
        lambda d: d.text("body").insert(0, "a"),
        lambda d: d.text("body").insert(1, "b"),
        lambda d: d.map("_access").set("role:" + bob.id.hex(), "admin"),  # a writer may not
        lambda d: d.text("body").insert(2, "c"),
    ], cap=grant)
    got = alice.replica.ingest(doc.id, envs, bob.id)
    assert len(got) == 2 and str(doc.text("body")) == "ab"
    assert alice.stats()["rejected"] == {"not_admin": 2}  # the refused one and the one after
    assert alice._role(doc.id, bob.id) == "writer"


def test_a_run_that_becomes_writer_midway_is_judged_change_by_change(pair):
    alice, bob = pair
    doc = alice.new_doc("d")
    bob.join(alice.invite(doc, write=False))
    sync(alice, bob, doc.id)
    # a reader's plain edits are refused from the first one; nothing is kept
    envs = run_of(bob, doc.id, alice, [lambda d: d.text("body").insert(0, "x"),
                                       lambda d: d.text("body").insert(1, "y")])
    assert alice.replica.ingest(doc.id, envs, bob.id) == []
    assert alice.stats()["rejected"] == {"not_writer": 2}
    alice.grant(doc, bob.id, "writer")
    assert len(alice.replica.ingest(doc.id, envs, bob.id)) == 2
    assert str(doc.text("body")) == "xy"


def test_a_bad_change_inside_a_stretch_keeps_the_prefix(pair):
    alice, bob = pair
    doc = alice.new_doc("d")
    bob.join(alice.invite(doc, write=True))
    sync(alice, bob, doc.id)
    grant = Credentials.from_bytes(bob.replica.row(doc.id).token).grant
    d = Doc(actor=bob.id)
    d.text("body").insert(0, "zzz")
    foreign = d.commit()  # a change of another history: its seq/lamport do not fit
    envs = run_of(bob, doc.id, alice, [
        lambda d: d.text("body").insert(0, "1"),
        lambda d: d.text("body").insert(1, "2"),
        lambda d: d.text("body").insert(2, "3"),
        b"\xa1\x01\x02",  # not a change at all
        lambda d: d.text("body").insert(3, "4"),
    ], cap=grant)
    got = alice.replica.ingest(doc.id, envs, bob.id)
    assert len(got) == 3 and str(doc.text("body")) == "123"
    assert alice.stats()["rejected"]["bad_change"] == 2
    # a decodable change by bob whose seq is not where it stands in the chain
    envs = run_of(bob, doc.id, alice, [foreign])
    assert alice.replica.ingest(doc.id, envs, bob.id) == []
    assert alice.stats()["rejected"]["actor_mismatch"] == 1
    assert str(doc.text("body")) == "123"
