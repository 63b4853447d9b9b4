"""The local Node: docs, durability across reopen, access lists, invites, encryption,
authentication of incoming changes. Two or three Nodes in one process exchange
envelopes through ``_outgoing``/``_ingest`` (what the network layer will call).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from ownkernel import Node
from ownkernel.crdt import Doc
from ownkernel.node import DocHandle, Invite, InviteError
from ownkernel.node.gate import Credentials
from ownkernel.store import (
    DB_FILE,
    Envelope,
    IdentityError,
    ProfileError,
    ProfileLockedError,
    audit,
    chain_hash,
    decode_envelope,
    encode_envelope,
)
from ownkernel.store.auth import ZERO_HASH, head_message
from ownkernel.store.identity import KEY_FILE


def version_of(node: Node, doc_id: bytes) -> dict[bytes, int]:
    return {a: h.seq for a, h in node.replica.open(doc_id).heads.items()}


def sync(src: Node, dst: Node, doc_id: bytes) -> list[bytes]:
    """What the network layer does for one direction of one doc."""
    return dst.replica.ingest(doc_id, src.replica.outgoing(doc_id, version_of(dst, doc_id)), src.id)


def db_bytes(profile: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm"):
        p = profile / (DB_FILE + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


# --- identity, profile ---------------------------------------------------------------

def test_temp_profile_identity_and_cleanup():
    node = Node()
    profile = node.profile
    assert profile.is_dir() and len(node.id) == 32
    assert node.short_id == node.id.hex()[:8] and node.name == f"node-{node.short_id}"
    node.close()
    node.close()  # idempotent
    assert not profile.exists()
    with pytest.raises(RuntimeError, match="closed"):
        node.new_doc("x")


def test_identity_and_name_persist(tmp_path: Path):
    with Node(profile=tmp_path / "p", name="alice") as a:
        ident = a.id
    assert oct((tmp_path / "p" / KEY_FILE).stat().st_mode & 0o777) == "0o600"
    with Node(profile=tmp_path / "p") as a:
        assert a.id == ident and a.name == "alice"


def test_two_nodes_on_one_profile_in_one_process(tmp_path: Path):
    with Node(profile=tmp_path / "p"), pytest.raises(ProfileLockedError,
                                                     match=str(tmp_path / "p")):
        Node(profile=tmp_path / "p")


def test_missing_key_with_existing_database_is_an_error(tmp_path: Path):
    p = tmp_path / "p"
    with Node(profile=p) as n:
        n.new_doc("keep me")
    os.rename(p / KEY_FILE, tmp_path / "key.bak")
    before = (p / DB_FILE).read_bytes()
    with pytest.raises(IdentityError, match="missing.*Restore"):
        Node(profile=p)
    assert (p / DB_FILE).read_bytes() == before and not (p / KEY_FILE).exists()
    # another node's key does not fit either
    with Node(profile=tmp_path / "q"):
        pass
    os.link(tmp_path / "q" / KEY_FILE, p / KEY_FILE)
    with pytest.raises(IdentityError, match="does not belong"):
        Node(profile=p)
    os.remove(p / KEY_FILE)
    os.rename(tmp_path / "key.bak", p / KEY_FILE)
    with Node(profile=p) as n:
        assert [d.title for d in n.docs()] == ["keep me"]


def test_profile_path_that_is_a_file(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ProfileError, match="not a directory|cannot create"):
        Node(profile=tmp_path / "f")


# --- documents and durability ----------------------------------------------------------

def fill_every_type(doc: DocHandle) -> None:
    doc.text("body").insert(0, "hello wörld")
    doc.text("body").delete(0, 1)
    doc.text("body").insert(0, "H")
    lst = doc.list("items")
    lst.append({"a": 1})
    lst.extend([2, "three", None, b"\x00\x01", 4.5, [1, 2]])
    del lst[1]
    m = doc.map("meta")
    m["k"] = "v"
    m["n"] = {"deep": [1, 2]}
    m.delete("k")
    c = doc.counter("hits")
    c.increment(5)
    c.decrement(2)
    c += 10
    chat = doc.log("chat")
    chat.append({"author": "al", "text": "hi"})
    chat.append({"author": "bo", "text": "oops"})
    chat.redact(1)
    sh = doc.sheet("grid")
    sh["A1"] = 2
    sh["B2"] = "=A1*21"
    sh.insert_rows(0)


def test_reopen_equals_before_every_type(tmp_path: Path):
    p = tmp_path / "p"
    with Node(profile=p) as node:
        doc = node.new_doc("all types")
        fill_every_type(doc)
        before = doc.export("json")
        version = doc.version
        doc_id = doc.id
        # the reference followed A1 down to A2 (references follow their cells)
        assert json.loads(before)["roots"]["grid"]["value"][2][1] == "=A2*21"
    with Node(profile=p) as node:
        doc = node.open(doc_id)
        assert doc.export("json") == before and doc.version == version
        assert doc.title == "all types"
        assert int(doc.counter("hits")) == 13
        assert doc.sheet("grid").value("A2") == 2
        assert doc.sheet("grid").value("B3") == 42
        assert audit(node.store, doc_id) == []


def test_reopen_thousands_of_changes_with_snapshot_and_tail(tmp_path: Path):
    p = tmp_path / "p"
    with Node(profile=p) as node:
        doc = node.new_doc("long")
        t = doc.text("body")
        for i in range(1200):  # one durable commit each; crosses the snapshot threshold
            t.insert(len(t) if i % 7 else 0, f"{i % 10}")
        with doc.transaction():
            for i in range(500):
                doc.list("l").append(i)
        before, version, doc_id = str(t), doc.version, doc.id
        assert node.stats()["snapshots"] >= 1
        assert node.store.change_count(doc_id) == 1202
    with Node(profile=p) as node:
        doc = node.open(doc_id)
        assert str(doc.text("body")) == before and doc.version == version
        assert doc.list("l").to_list() == list(range(500))
        doc.text("body").insert(0, "more")  # seq continues after the reload
        assert doc.version[node.id] == version[node.id] + 1
    with Node(profile=p) as node:
        assert str(node.open(doc_id).text("body")) == "more" + before


def test_transaction_is_one_change_and_listeners_see_stored_signed_envelopes(tmp_path):
    with Node(profile=tmp_path / "p") as node:
        doc = node.new_doc("t")
        seen: list[tuple[bytes, int]] = []

        def listener(doc_id: bytes, env_blob: bytes) -> None:
            env = decode_envelope(env_blob)
            # already durable: visible through a separate connection to the file
            db = sqlite3.connect(node.store.path)
            n = db.execute("SELECT count(*) FROM changes").fetchone()[0]
            db.close()
            seen.append((env.seq, n))
            assert env.sig is not None and env.doc == doc_id == doc.id

        node.replica.listeners.append(listener)
        with doc.transaction():
            doc.text("body").insert(0, "abc")
            doc.map("m")["x"] = 1
            doc.counter("c").increment()
        doc.text("body").insert(3, "d")
        assert seen == [(2, 2), (3, 3)]
        assert node.stats()["commits"] == 3


def test_docs_open_by_prefix_and_errors():
    with Node() as node:
        docs = [node.new_doc(f"d{i}") for i in range(20)]
        assert [d.title for d in node.docs()] == [f"d{i}" for i in range(20)]
        d = docs[7]
        assert node.open(d.id) == d and node.open(d.hex) == d and node.open(d.hex[:10]) == d
        with pytest.raises(KeyError, match="no document"):
            node.open("zz")
        firsts = [x.hex[0] for x in docs]
        shared = next(c for c in firsts if firsts.count(c) > 1)  # 20 docs, 16 digits
        with pytest.raises(KeyError, match="ambiguous"):
            node.open(shared)
        with pytest.raises(ValueError, match="join"):
            node.open("own:abc")


def test_export_formats():
    with Node() as node:
        doc = node.new_doc("Notes")
        doc.text("body").insert(0, "line one\nline two")
        doc.list("todo").extend(["a", "b"])
        doc.sheet("s")["A1"] = "x,y"
        doc.sheet("s")["B1"] = "=1+1"
        md = doc.export("md")
        assert md.startswith("# Notes\n") and "## body\n\nline one\nline two" in md
        assert "- a\n- b" in md and "| x,y | 2 |" in md
        assert doc.export("txt").startswith("== body ==\nline one\nline two")
        assert doc.export("csv") == '"x,y",2\n'
        assert doc.export("csv", root="todo") == "a\nb\n"
        assert json.loads(doc.export("json"))["roots"]["s"]["value"] == [["x,y", "=1+1"]]
        with pytest.raises(ValueError, match="unknown export format"):
            doc.export("docx")


def test_concurrent_threads_on_one_doc():
    with Node() as node:
        doc = node.new_doc("threads")
        t = doc.text("body")

        def work(ch: str) -> None:
            for _ in range(100):
                t.insert(0, ch)

        threads = [threading.Thread(target=work, args=(c,)) for c in "ab"]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        s = str(t)
        assert sorted(s) == ["a"] * 100 + ["b"] * 100
        assert node.store.change_count(doc.id) == 201
        assert audit(node.store, doc.id) == []


# --- invites, access --------------------------------------------------------------------

@pytest.fixture
def trio():
    nodes = [Node(name=n, network=False) for n in ("alice", "bob", "carol")]  # sync by hand
    yield nodes
    for n in nodes:
        n.close()


def test_invite_join_and_write(trio):
    alice, bob, _ = trio
    doc = alice.new_doc("shared")
    doc.text("body").insert(0, "from alice. ")
    token = alice.invite(doc, write=True, addresses=["tcp://127.0.0.1:5555"])
    assert token.startswith("own:") and "\n" not in token
    inv = Invite.parse(token)
    assert inv.doc == doc.id and inv.inviter == alice.id and inv.capability == "write"
    assert inv.key is None and inv.addresses == ("tcp://127.0.0.1:5555",)

    bdoc = bob.join(token)
    assert bdoc.id == doc.id and bdoc.title == "shared" and bdoc.role == "writer"
    assert bob.store.peers()[0]["addresses"] == ["tcp://127.0.0.1:5555"]
    assert sync(alice, bob, doc.id)
    assert str(bdoc.text("body")) == "from alice. "
    bdoc.text("body").insert(len(bdoc.text("body")), "from bob.")
    accepted = sync(bob, alice, doc.id)
    assert len(accepted) == 1 and decode_envelope(accepted[0]).cap is not None
    assert str(doc.text("body")) == "from alice. from bob."
    assert alice._role(doc.id, bob.id) == "writer"
    assert alice.stats()["rejected_total"] == 0
    assert audit(alice.store, doc.id) == [] and audit(bob.store, doc.id) == []
    # the grant survives a reload (it is rebuilt from the stored capability)
    alice.replica.docs.clear()
    assert alice._role(doc.id, bob.id) == "writer"


def test_token_forgery_and_damage():
    with Node() as a, Node() as m:
        doc = a.new_doc("x")
        token = a.invite(doc)
        inv = Invite.parse(token)
        with pytest.raises(InviteError):
            Invite.parse(token[:-6])
        with pytest.raises(InviteError, match="own:"):
            Invite.parse("http://example.com")
        # mallory upgrades a read token to write by editing it: signature breaks
        rtoken = a.invite(doc, write=False)
        forged = Invite.parse(rtoken).__class__(**{**Invite.parse(rtoken).__dict__,
                                                   "capability": "write"})
        with pytest.raises(InviteError, match="signature"):
            Invite.parse(forged.to_token())
        # a token signed by someone with no authority joins locally but grants nothing
        from ownkernel.node.grants import make_invite
        fake = make_invite(m.identity, descriptor=inv.descriptor, capability="write")
        acc = a.gate.view(doc.id)
        assert acc.grant_problem(fake.redeem(m.id), doc.id, m.id) == "bad_capability"
        assert acc.grant_problem(inv.redeem(m.id), doc.id, m.id) is None
        # a grant counts only for its holder
        assert acc.grant_problem(inv.redeem(m.id), doc.id, a.id) == "foreign_grant"
        # a descriptor cannot be re-owned: the doc id commits to the owner
        from ownkernel.node.grants import Descriptor
        d = Descriptor.from_bytes(inv.descriptor)
        bad = Descriptor(d.doc, m.id, d.encrypted, d.nonce, m.identity.sign(b"x"))
        with pytest.raises(InviteError, match="owner"):
            Descriptor.from_bytes(bad.to_bytes())


def _crafted(node: Node, doc_id: bytes, source: Node, mutate,
             cap: bytes | None = None) -> bytes:
    """A validly signed change by ``node`` made outside its own access checks (as a
    malicious peer would), continuing ``node``'s chain as ``source`` knows it."""
    d = Doc(actor=node.id)
    d.apply(source.replica.open(doc_id).crdt.changes())
    mutate(d)
    blob = d.commit()
    head = source.replica.open(doc_id).heads.get(node.id)
    seq, prev = (head.seq + 1, head.hash) if head else (1, ZERO_HASH)
    h = chain_hash(prev, doc_id, node.id, seq, blob, cap)
    return encode_envelope(Envelope(doc_id, node.id, seq, blob,
                                    node.identity.sign(head_message(h)), cap))


def test_reader_and_stranger_changes_are_rejected_and_not_stored(trio):
    alice, bob, carol = trio
    doc = alice.new_doc("ro")
    doc.text("body").insert(0, "x")
    bdoc = bob.join(alice.invite(doc, write=False))
    sync(alice, bob, doc.id)
    assert bdoc.role == "reader"
    with pytest.raises(PermissionError, match="only read"):
        bdoc.text("body").insert(0, "nope")
    assert str(bdoc.text("body")) == "x"  # the refused op was discarded in memory too
    n = alice.store.change_count(doc.id)
    env = _crafted(bob, doc.id, alice, lambda d: d.text("body").insert(0, "evil"),
                   cap=Credentials.from_bytes(bob.replica.row(doc.id).token).grant)
    assert alice.replica.ingest(doc.id, [env], bob.id) == []
    env2 = _crafted(carol, doc.id, alice, lambda d: d.text("body").insert(0, "evil"))
    assert alice.replica.ingest(doc.id, [env2], carol.id) == []
    assert alice.stats()["rejected"] == {"not_writer": 2}
    assert alice.store.change_count(doc.id) == n and str(doc.text("body")) == "x"


def test_only_owner_and_admins_change_access(trio):
    alice, bob, carol = trio
    doc = alice.new_doc("acl")
    bdoc = bob.join(alice.invite(doc, write=True))
    sync(alice, bob, doc.id)
    with pytest.raises(PermissionError, match="access list"):
        bdoc.map("_access")["role:" + bob.id.hex()] = "admin"
    with pytest.raises(PermissionError):
        bob.grant(bdoc, carol.id, "writer")
    bdoc.text("body").insert(0, "ok")
    sync(bob, alice, doc.id)
    env = _crafted(bob, doc.id, alice,
                   lambda d: d.map("_access").set("role:" + carol.id.hex(), "writer"))
    assert alice.replica.ingest(doc.id, [env], bob.id) == []
    assert alice.stats()["rejected"] == {"not_admin": 1}
    # an admin named by the owner may grant writers, but not name admins
    alice.grant(doc, bob.id, "admin")
    sync(alice, bob, doc.id)
    assert bdoc.role == "admin"
    bob.grant(bdoc, carol.id, "writer")
    with pytest.raises(PermissionError, match="owner names admins"):
        bob.grant(bdoc, carol.id, "admin")
    sync(bob, alice, doc.id)
    assert alice._role(doc.id, carol.id) == "writer"
    env = _crafted(bob, doc.id, alice,
                   lambda d: d.map("_access").set("role:" + carol.id.hex(), "admin"))
    assert alice.replica.ingest(doc.id, [env], bob.id) == []
    assert alice.stats()["rejected"] == {"not_admin": 2}
    assert alice._role(doc.id, carol.id) == "writer"


def test_revoked_token_no_longer_joins_or_writes(trio):
    alice, bob, carol = trio
    doc = alice.new_doc("rev")
    token = alice.invite(doc, write=True)
    bdoc = bob.join(token)
    sync(alice, bob, doc.id)
    bdoc.text("body").insert(0, "bob1 ")
    assert len(sync(bob, alice, doc.id)) == 1
    alice.revoke(token)
    assert doc.access[f"revoked:{Invite.parse(token).token_id.hex()}"] is True
    with pytest.raises(PermissionError, match="revoked"):
        alice.join(token)
    sync(alice, bob, doc.id)
    with pytest.raises(PermissionError):  # bob now sees the revocation himself
        bob.join(token)
    # a node that never saw the revocation still joins locally, but its writes bounce
    cdoc = carol.join(token)
    cdoc.text("body").insert(0, "carol ")
    assert sync(carol, alice, doc.id) == []
    assert alice.stats()["rejected"] == {"revoked": 1}
    assert "carol" not in str(doc.text("body")) and "bob1" in str(doc.text("body"))


def test_forged_altered_replayed_and_garbage_input(trio):
    alice, bob, _ = trio
    doc = alice.new_doc("auth")
    bdoc = bob.join(alice.invite(doc, write=True))
    sync(alice, bob, doc.id)
    for i in range(5):
        bdoc.text("body").insert(0, str(i))
    envs = bob.replica.outgoing(doc.id, version_of(alice, doc.id))
    assert len(envs) == 5 and sum(decode_envelope(e).sig is not None for e in envs) == 1
    count = alice.store.change_count(doc.id)
    dec = [decode_envelope(e) for e in envs]
    altered = [encode_envelope(d) for d in dec[:2]] + [
        encode_envelope(dec[2]._replace(body=dec[2].body.replace(b"2", b"X")))] + envs[3:]
    assert alice.replica.ingest(doc.id, altered, bob.id) == []
    forged = envs[:4] + [encode_envelope(dec[4]._replace(sig=bytes(64)))]
    assert alice.replica.ingest(doc.id, forged, bob.id) == []
    garbage = [b"", b"\xff" * 40, encode_envelope(dec[0])[:-3]]
    assert alice.replica.ingest(doc.id, garbage, bob.id) == []
    assert alice.replica.ingest(b"nope" * 4, envs, bob.id) == []
    assert alice.store.change_count(doc.id) == count
    assert alice.replica.ingest(doc.id, envs, bob.id) == envs  # the genuine batch
    assert alice.replica.ingest(doc.id, envs, bob.id) == []  # replayed
    st = alice.stats()
    assert st["duplicates"] == 5 and st["accepted"] == 5
    assert st["rejected"] == {"bad_signature": 10, "bad_envelope": 3, "unknown_doc": 5}
    assert str(doc.text("body")) == "43210"


def test_unsigned_live_pushes_wait_for_a_signed_head(trio):
    alice, bob, _ = trio
    doc = alice.new_doc("live")
    bdoc = bob.join(alice.invite(doc))
    sync(alice, bob, doc.id)
    pushed: list[bytes] = []
    bob.replica.listeners.append(lambda d, e: pushed.append(e))
    bob.replica.sign_live = False  # as a coalescing network layer would
    for ch in "abc":
        bdoc.text("body").insert(0, ch)
    assert all(decode_envelope(e).sig is None for e in pushed)
    assert alice.replica.ingest(doc.id, pushed, bob.id) == []
    assert alice.stats()["waiting"] == 3
    tail = bob.replica.outgoing(doc.id, {**version_of(alice, doc.id), bob.id: 2})  # signed head
    assert len(tail) == 1 and decode_envelope(tail[0]).seq == 3
    assert len(alice.replica.ingest(doc.id, tail, bob.id)) == 3
    assert str(doc.text("body")) == "cba" and alice.stats()["waiting"] == 0


def test_encrypted_doc_has_no_plaintext_on_disk_and_relays_verify(tmp_path: Path):
    secret = "TOPSECRET-banana-7"
    with Node(profile=tmp_path / "a") as alice, Node(profile=tmp_path / "r") as relay, \
            Node(profile=tmp_path / "b") as bob:
        doc = alice.new_doc("vault", encrypted=True)
        for _ in range(30):
            doc.text("body").insert(0, secret)
        doc.map("m")["k"] = secret
        doc.log("chat").append({"text": secret})
        token = alice.invite(doc, write=True)
        assert Invite.parse(token).key is not None
        # the relay has no key: it verifies authorship and stores ciphertext only
        from ownkernel.node.grants import Descriptor
        relay.carry_doc(Descriptor.from_bytes(Invite.parse(token).descriptor))
        accepted = sync(alice, relay, doc.id)
        assert accepted and relay.stats()["rejected_total"] == 0
        with pytest.raises(PermissionError, match="no key"):
            relay.open(doc.id).text("body")
        env = decode_envelope(accepted[-1])
        tampered = encode_envelope(env._replace(body=env.body[:-1] + b"!", seq=env.seq + 1))
        assert relay.replica.ingest(doc.id, [tampered], alice.id) == []
        # bob joins with the key and gets everything through the relay
        bdoc = bob.join(token)
        sync(relay, bob, doc.id)
        assert str(bdoc.text("body")) == secret * 30
        bdoc.text("body").insert(0, "bob:")
        sync(bob, relay, doc.id)
        sync(relay, alice, doc.id)
        assert str(doc.text("body")).startswith("bob:" + secret)
    for name in "arb":
        raw = db_bytes(tmp_path / name)
        assert raw and secret.encode() not in raw and b"bob:" not in raw
        assert secret.encode("utf-16-le") not in raw


def test_bad_ciphertext_from_a_writer_is_rejected(trio):
    alice, bob, _ = trio
    doc = alice.new_doc("enc", encrypted=True)
    bdoc = bob.join(alice.invite(doc))
    sync(alice, bob, doc.id)
    bdoc.text("body").insert(0, "hi")
    env = decode_envelope(bob.replica.outgoing(doc.id, version_of(alice, doc.id))[0])
    body = b"\x00" * 24 + b"garbage-ciphertext-0123456789"
    h = chain_hash(bob.replica.open(doc.id).heads[bob.id].hash, doc.id, bob.id, env.seq + 1, body)
    bad = Envelope(doc.id, bob.id, env.seq + 1, body, bob.identity.sign(head_message(h)))
    assert alice.replica.ingest(doc.id, [encode_envelope(env), encode_envelope(bad)], bob.id)
    assert alice.stats()["rejected"] == {"bad_ciphertext": 1}


def test_compaction_keeps_history_verifiable_and_servable(trio, tmp_path: Path):
    alice, bob, carol = trio
    doc = alice.new_doc("compact me")
    bdoc = bob.join(alice.invite(doc))
    sync(alice, bob, doc.id)
    for i in range(40):
        doc.text("body").insert(0, f"a{i} ")
        bdoc.text("body").insert(0, f"b{i} ")
    sync(bob, alice, doc.id)
    sync(alice, bob, doc.id)
    old = bob.replica.outgoing(doc.id, {})
    before = str(doc.text("body"))
    rows = alice.store.change_count(doc.id)
    got = alice.compact()
    assert got["rows"] == rows - 1  # bob's first change carries his capability: kept
    assert alice.store.change_count(doc.id) == 1 and audit(alice.store, doc.id) == []
    # replaying history is still recognised: identical -> duplicate, altered -> fork
    assert alice.replica.ingest(doc.id, old, bob.id) == []
    assert alice.stats()["duplicates"] >= len(old)
    # served history regenerates byte for byte and verifies at a fresh node
    cdoc = carol.join(alice.invite(doc))
    assert len(sync(alice, carol, doc.id)) == rows + 1  # + the invite record
    assert str(cdoc.text("body")) == before and carol.stats()["rejected_total"] == 0
    # new changes after a cut, then a second cut
    doc.text("body").insert(0, "more ")
    assert alice.compact(doc)["rows"] == 2  # the invite record and "more"
    alice.replica.docs.clear()
    assert str(alice.open(doc.id).text("body")) == "more " + before
    assert audit(alice.store, doc.id) == []
    enc = alice.new_doc("secret", encrypted=True)
    enc.text("body").insert(0, "x")
    assert alice.compact(enc) == {"docs": 0, "rows": 0}
