"""Live changes taken from their authors' own sessions, signatures checked later
(ownkernel/node/direct.py).

The in-process tests drive ``Replica.ingest(direct=True)`` on real SQLite files;
the attacks run an attacker process with its own key through the real transport
(tests/attacker.py) against nodes on 127.0.0.1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_attacks
from test_attacks import attack, seed_of, text
from waiting import until

from ownkernel.node import Node
from ownkernel.store import StoreFullError, decode_envelope, encode_envelope
from ownkernel.store.auth import audit


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[Node, Node, Node, bytes]]:
    """A (the author, a writer) and B, C (readers) of one doc, no network."""
    a, b, c = (Node(tmp_path / n, name=n, network=False) for n in "abc")
    try:
        d = a.new_doc("typed")
        d.text().insert(0, "hi")
        b.join(a.invite(d, write=False, addresses=[]))
        c.join(a.invite(d, write=False, addresses=[]))
        for n in (b, c):
            assert n.replica.ingest(d.id, a.replica.outgoing(d.id, {}), a.id)
        yield a, b, c, d.id
    finally:
        for n in (a, b, c):
            n.close()


def keystroke(a: Node, doc: bytes, ch: str, bad_sig: bool = False) -> list[bytes]:
    """One keystroke of ``a`` as it pushes it: one envelope, signed (or wrongly)."""
    since = dict(a.replica.version(doc))
    a.open(doc).text().insert(0, ch)
    [env] = a.replica.outgoing(doc, since)
    if bad_sig:
        e = decode_envelope(env)
        env = encode_envelope(e._replace(sig=bytes(reversed(e.sig or b""))))
    return [env]


def stored_sig_seq(n: Node, doc: bytes, actor: bytes) -> int:
    return n.store.heads(doc)[actor].sig_seq


def test_a_live_change_waits_for_its_check_and_nothing_unverified_is_stored(trio) -> None:
    a, b, _c, doc = trio
    seq0 = stored_sig_seq(b, doc, a.id)
    for ch in "xyz":
        assert b.replica.ingest(doc, keystroke(a, doc, ch), a.id, direct=True)
    assert b.replica.stats["direct"] == 3
    assert b.store.deferring  # held a moment (store/deferred.py); any read writes them
    assert text(b, doc) == "zyxhi"
    # stored: the changes and their chain, with the last *verified* signature
    assert b.store.heads(doc)[a.id].seq == seq0 + 3
    assert stored_sig_seq(b, doc, a.id) == seq0 and audit(b.store, doc) == []
    assert b.replica.docs[doc].unchecked[a.id][0] == seq0 + 3 and b.replica.unsettled
    b.replica.settle()  # (the network's timer round, about once a second)
    assert stored_sig_seq(b, doc, a.id) == seq0 + 3 and audit(b.store, doc) == []
    assert b.replica.stats["settled"] == 1 and not b.replica.unsettled  # one check, not 3
    assert not b.replica.rejected


def test_history_is_served_only_after_the_check(trio) -> None:
    a, b, c, doc = trio
    b.replica.ingest(doc, keystroke(a, doc, "x"), a.id, direct=True)
    out = b.replica.outgoing(doc, {})  # settles first
    assert not b.replica.docs[doc].unchecked
    assert c.replica.ingest(doc, out, b.id) and text(c, doc) == "xhi"
    assert not c.replica.rejected


def test_a_bad_signature_from_the_author_is_dropped_never_served(trio) -> None:
    """The content came over the author's own session, so it is the author's: kept.
    Its signature is not, so it is never stored nor passed on; the author's next
    good signature covers the change again."""
    a, b, c, doc = trio
    seq0 = stored_sig_seq(b, doc, a.id)
    assert b.replica.ingest(doc, keystroke(a, doc, "x", bad_sig=True), a.id, direct=True)
    assert text(b, doc) == "xhi"
    out = b.replica.outgoing(doc, {})
    assert b.replica.rejected["bad_signature"] == 1
    assert stored_sig_seq(b, doc, a.id) == seq0 and audit(b.store, doc) == []
    c.replica.ingest(doc, out, b.id)
    assert text(c, doc) == "hi" and not c.replica.rejected  # B passed nothing bad on
    assert b.replica.ingest(doc, keystroke(a, doc, "y"), a.id, direct=True)
    c.replica.ingest(doc, b.replica.outgoing(doc, c.replica.version(doc)), b.id)
    assert text(c, doc) == text(a, doc) == "yxhi" and not c.replica.rejected
    assert stored_sig_seq(b, doc, a.id) == seq0 + 2 and audit(b.store, doc) == []


def test_a_change_not_from_its_author_is_verified_at_once(trio) -> None:
    a, b, c, doc = trio
    bad = keystroke(a, doc, "x", bad_sig=True)
    for source, direct in ((c.id, True), (a.id, False)):
        assert b.replica.ingest(doc, bad, source, direct=direct) == []
    assert b.replica.rejected["bad_signature"] == 2 and text(b, doc) == "hi"
    assert "direct" not in b.replica.stats


def test_close_settles_and_reopen_finds_it_signed(trio, tmp_path: Path) -> None:
    a, b, _c, doc = trio
    b.replica.ingest(doc, keystroke(a, doc, "x"), a.id, direct=True)
    b.close()
    b2 = Node(tmp_path / "b", name="b", network=False)
    try:
        head = b2.store.heads(doc)[a.id]
        assert head.sig_seq == head.seq and audit(b2.store, doc) == []
    finally:
        b2.close()


# ------------------------------------------------------------------ through the transport
mk = test_attacks.mk  # the fixture: nodes on 127.0.0.1 with fast timers


def test_live_keystrokes_over_the_network_take_the_direct_path(mk) -> None:
    owner = mk("owner")
    doc = owner.new_doc("live")
    doc.text().insert(0, "hi")
    reader = mk("reader", bootstrap=[owner.address])
    reader.join(owner.invite(doc, write=False))
    until(lambda: text(reader, doc.id) == "hi")
    for i, ch in enumerate("abc"):  # one at a time: typed together, they would share
        doc.text().insert(0, ch)     # a frame (and take the usual path)
        want = "abc"[:i + 1][::-1] + "hi"
        until(lambda want=want: text(reader, doc.id) == want)
    assert reader.replica.stats["direct"] >= 1
    # the timer round verifies the waiting signature within about a second
    until(lambda: stored_sig_seq(reader, doc.id, owner.id) ==
          reader.store.heads(doc.id)[owner.id].seq, timeout=10)
    assert not reader.replica.rejected and audit(reader.store, doc.id) == []


def test_attack_a_writer_signs_wrongly_and_the_bad_signature_goes_nowhere(mk) -> None:
    """The attacker holds a writer's key. Its first change (showing its grant) is
    signed; its second, a lone live change, is signed wrongly. The owner takes the
    writer's content (the writer's own session proves it) but never stores the bad
    signature and never passes that change on to another member."""
    owner = mk("owner")
    doc = owner.new_doc("shared")
    doc.text().insert(0, "hi")
    writer = mk("writer")  # offline: the attacker uses its key
    writer.join(owner.invite(doc, write=True, addresses=[]))
    other = mk("other", bootstrap=[owner.address])
    other.join(owner.invite(doc, write=False))
    until(lambda: text(other, doc.id) == "hi")
    r = attack(owner.address, [
        {"hello": True}, {"sleep": 0.3}, shows_grant(writer, doc.id), {"sleep": 0.3},
        {"change": doc.id.hex(), "text": ".", "grant": _grant_hex(writer, doc.id)},
        {"sleep": 0.5},
        {"change": doc.id.hex(), "text": "w2", "seq": 2, "only_last": True, "bad_sig": True,
         "grant": _grant_hex(writer, doc.id)}], seed=seed_of(writer), listen=1.0)
    assert r["id"] == writer.id.hex()
    until(lambda: "w2" in (text(owner, doc.id) or ""))  # the writer's content, taken
    until(lambda: "." in (text(other, doc.id) or ""))  # the signed change reached other
    until(lambda: owner.stats()["rejected"].get("bad_signature", 0) >= 1, timeout=10)
    assert owner.replica.stats["direct"] >= 1
    head = owner.store.heads(doc.id)[writer.id]
    assert (head.seq, head.sig_seq) == (2, 1) and audit(owner.store, doc.id) == []
    assert owner.network is not None and other.network is not None
    owner.network.sync_now()
    other.network.sync_now()
    time.sleep(1.5)  # anti-entropy rounds: still nothing unsigned goes to the other
    assert "w2" not in (text(other, doc.id) or "")
    assert not other.stats()["rejected"]


def test_attack_a_change_claiming_another_author_is_refused_at_once(mk) -> None:
    owner = mk("owner")
    doc = owner.new_doc("shared")
    doc.text().insert(0, "hi")
    writer = mk("writer")
    writer.join(owner.invite(doc, write=True, addresses=[]))
    member = mk("member")  # the attacker: a reader member, claiming the writer's changes
    member.join(owner.invite(doc, write=False, addresses=[]))
    attack(owner.address, [
        {"hello": True}, {"sleep": 0.3}, shows_grant(member, doc.id), {"sleep": 0.3},
        {"change": doc.id.hex(), "text": "forged ", "as": writer.id.hex(),
         "grant": _grant_hex(writer, doc.id)}], seed=seed_of(member), listen=1.0)
    until(lambda: owner.stats()["rejected"].get("bad_signature", 0) >= 1)
    assert text(owner, doc.id) == "hi" and writer.id not in owner.store.heads(doc.id)
    assert "direct" not in owner.replica.stats


def shows_grant(member: Node, doc: bytes) -> dict[str, object]:
    """The attacker's step that shows ``member``'s grant, as its node would after hello."""
    return {"msg": {"type": "grants", "grants": [{"hex": _grant_hex(member, doc)}]}}


def _grant_hex(member: Node, doc: bytes) -> str:
    from ownkernel.node.gate import Credentials
    g = Credentials.from_bytes(member.store.document(doc).token).grant
    assert g is not None
    return g.hex()


def test_held_changes_the_disk_cannot_take_are_reloaded_and_fetched_again(trio) -> None:
    """A live change is held a moment before it is written (store/deferred.py). If the
    disk cannot take it, memory must not stay ahead of the disk: the doc is reloaded
    without it, and anti-entropy brings it back once there is room."""
    a, b, _c, doc = trio
    big = os.urandom(40_000).hex()  # compresses to ~40 KB: needs new pages
    assert b.replica.ingest(doc, keystroke(a, doc, big), a.id, direct=True)
    assert b.store.deferring
    db = b.store._db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(StoreFullError):
        b.replica.settle()  # its signature lands after the held change: neither fits
    db.execute("PRAGMA max_page_count = 1000000")
    assert text(b, doc) == "hi" and b.replica.stats["reloaded_lost"] == 1  # memory = disk
    assert audit(b.store, doc) == [] and b.store.heads(doc)[a.id].seq == \
        b.replica.version(doc)[a.id]
    assert b.replica.ingest(doc, a.replica.outgoing(doc, b.replica.version(doc)), a.id)
    assert text(b, doc) == text(a, doc) == big + "hi" and not b.replica.rejected
