"""The access holes of issue #8, each written as the attack.

Honest nodes run in this process (real CurveZMQ on 127.0.0.1); every attacker
is its own process with its own key (tests/attacker.py), sending crafted frames
through the real transport. Each test asserts that the attacker got nothing,
that the honest nodes are unchanged, and that the attempt was counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import until

from ownkernel.node import Node
from ownkernel.node.config import NetConfig
from ownkernel.node.gate import HELD_PER_PEER, Credentials, seal_presence
from ownkernel.node.grants import Descriptor, Invite

HERE = Path(__file__).resolve().parent
FAST = dict(ping_interval=0.3, peer_timeout=3.0, anti_entropy=1.0, backoff_min=0.05,
            backoff_max=0.5, connect_timeout=1.0)
SECRET = "the combination is 4-8-15-16"


def attack(address: str, steps: list[dict[str, Any]], seed: bytes | None = None,
           listen: float = 0.5) -> dict[str, Any]:
    plan = {"address": address, "seed": seed.hex() if seed else None, "steps": steps,
            "listen": listen}
    out = subprocess.run([sys.executable, str(HERE / "attacker.py"), json.dumps(plan)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def seed_of(node: Node) -> bytes:
    return bytes(node.identity._sk)  # the attacker holds this member's key


def text(node: Node, doc: bytes) -> str | None:
    try:
        return str(node.open(doc).text())
    except (KeyError, PermissionError):
        return None


@pytest.fixture
def mk(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(name: str, **kw: Any) -> Node:
        relay = kw.pop("relay", False)
        n = Node(tmp_path / name, name=name, relay=relay,
                 network=NetConfig(**{**FAST, "listen": ["tcp://127.0.0.1:0"], **kw}))
        made.append(n)
        return n
    yield make
    for n in made:
        n.close()


def _secret_doc(owner: Node) -> Any:
    doc = owner.new_doc("private")
    doc.text().insert(0, SECRET)
    return doc


def _saw_doc(result: dict[str, Any], doc: bytes) -> list[dict[str, Any]]:
    return [f for f in result["frames"] if f.get("doc") == doc.hex()]


# ------------------------------------------------------------------ hole 1
def test_stranger_gets_nothing_before_or_after_hello(mk):
    owner = mk("owner")
    doc = _secret_doc(owner)
    member = mk("member", bootstrap=[owner.address])
    member.join(owner.invite(doc, write=True))
    until(lambda: text(member, doc.id) == SECRET)
    member.open(doc.id).text().insert(0, "m:")  # its grant now travels in its envelope
    until(lambda: text(owner, doc.id) == "m:" + SECRET)

    for target in (owner, member):
        # one garbage byte before any hello: no answer at all (it used to be an intro
        # listing the node's invite capabilities)
        r = attack(target.address, [{"raw": "00"}], listen=1.0)
        assert r["frames"] == [], r
        # a full hello: the stranger learns no grant, no doc; asks for the secret doc;
        # tries to write into it; sends extension frames that would make it a carrier
        r = attack(target.address, [
            {"hello": True}, {"sleep": 0.5}, {"have": doc.id.hex(), "vv": {}},
            {"change": doc.id.hex(), "text": "pwned ", "grant": None},
            {"msg": {"type": "grants", "grants": [{"hex": "00" * 40}]}},
        ], listen=1.5)
        assert not _saw_doc(r, doc.id), r
        assert all(f.get("grants", 0) == 0 for f in r["frames"]), r
        # (`profile`: the name the hello already gave, and a colour)
        assert {f.get("type") for f in r["frames"]} <= {
            "hello", "profile", "ping", "pong", "have", "digest", "digests", "settled"}, r
    assert text(owner, doc.id) == text(member, doc.id) == "m:" + SECRET
    for n in (owner, member):
        errors = n.stats()["net"]["errors"]
        assert errors.get("doc-not-shared", 0) >= 2, errors
        assert n.stats()["rejected"].get("bad_capability", 0) >= 1
    assert owner.stats()["rejected"].get("not_writer", 0) == 0  # never got that far


# ------------------------------------------------------------------ hole 2
def test_reader_cannot_present_a_writers_grant(mk):
    owner = mk("owner")
    doc = _secret_doc(owner)
    writer = mk("writer", bootstrap=[owner.address])
    reader = mk("reader", bootstrap=[owner.address])
    writer.join(owner.invite(doc, write=True))
    reader.join(owner.invite(doc, write=False))
    until(lambda: text(writer, doc.id) == SECRET)
    writer.open(doc.id).text().insert(0, "w:")
    until(lambda: text(reader, doc.id) == "w:" + SECRET)
    # the writer's grant, as every member saw it in its first envelope
    wgrant = dict(reader.store.caps(doc.id))[writer.id]
    rgrant = Credentials.from_bytes(reader.store.document(doc.id).token).grant
    assert wgrant and rgrant
    before = owner.store.change_count(doc.id)
    r = attack(owner.address, [{"hello": True}, {"sleep": 0.3},
                               {"change": doc.id.hex(), "text": "forged ",
                                "grant": wgrant.hex()}], seed=seed_of(reader), listen=1.0)
    assert r["id"] == reader.id.hex()
    until(lambda: owner.stats()["rejected"].get("foreign_grant", 0) >= 1)
    # with its own read grant it is a reader: still no write
    attack(owner.address, [{"hello": True}, {"sleep": 0.3},
                           {"change": doc.id.hex(), "text": "forged ", "grant": rgrant.hex()}],
           seed=seed_of(reader), listen=1.0)
    until(lambda: owner.stats()["rejected"].get("not_writer", 0) >= 1)
    assert owner.store.change_count(doc.id) == before
    assert text(owner, doc.id) == "w:" + SECRET
    assert owner.gate.role(doc.id, reader.id) == "reader"


# ------------------------------------------------------------------ hole 3
def test_relay_carries_only_what_the_owner_signed(mk):
    relay = mk("relay", relay=True)
    owner = mk("owner", bootstrap=[relay.address])
    doc = _secret_doc(owner)
    reader = mk("reader")  # never online: the attacker uses its key
    token = owner.invite(doc, write=False)
    reader.join(token)
    inv = Invite.parse(token)
    until(lambda: relay.store.document(doc.id) is not None)  # owner asked it to carry
    until(lambda: text(relay, doc.id) == SECRET)
    d = Descriptor.from_bytes(inv.descriptor)
    assert relay.store.document(doc.id).encrypted is False
    rkey = reader.identity
    # "it is encrypted" (so: serve it to anyone who knows the id) — signed by the reader
    lie = Descriptor(d.doc, d.owner, True, d.nonce, rkey.sign(b"whatever"))
    # "I am its owner" (so: reject the real owner's changes)
    squat = Descriptor(d.doc, reader.id, False, d.nonce, rkey.sign(b"whatever"))
    rgrant = Credentials.from_bytes(reader.store.document(doc.id).token).grant
    attack(relay.address, [
        {"hello": True}, {"sleep": 0.3},
        {"msg": {"type": "grants", "grants": [{"hex": rgrant.hex()}]}},
        {"msg": {"type": "carry", "docs": [{"hex": lie.to_bytes().hex()},
                                          {"hex": squat.to_bytes().hex()}]}},
    ], seed=seed_of(reader), listen=1.0)
    until(lambda: relay.stats()["rejected"].get("bad_descriptor", 0) >= 2)
    row = relay.store.document(doc.id)
    assert row.encrypted is False and row.owner == owner.id
    # a stranger who knows the id gets nothing from the relay
    r = attack(relay.address, [{"hello": True}, {"sleep": 0.3},
                               {"have": doc.id.hex(), "vv": {}}], listen=1.0)
    assert not _saw_doc(r, doc.id), r
    # the real owner's changes still go through the relay
    owner.open(doc.id).text().insert(0, "o:")
    until(lambda: text(relay, doc.id) == "o:" + SECRET)
    # the reader, revoked, can no longer read through the relay
    owner.revoke(token)
    until(lambda: relay.gate.role(doc.id, reader.id) is None)
    r = attack(relay.address, [
        {"hello": True}, {"sleep": 0.3},
        {"msg": {"type": "grants", "grants": [{"hex": rgrant.hex()}]}},
        {"sleep": 0.3}, {"have": doc.id.hex(), "vv": {}}], seed=seed_of(reader), listen=1.0)
    assert not [f for f in _saw_doc(r, doc.id) if f.get("type") == "changes"], r
    assert relay.stats()["rejected"].get("revoked", 0) >= 1


# ------------------------------------------------------------------ hole 5
def test_held_envelopes_are_budgeted_in_bytes(mk):
    owner = mk("owner")
    doc = _secret_doc(owner)
    mallory = mk("mallory")
    friend = mk("friend", bootstrap=[owner.address])
    mallory.join(owner.invite(doc, write=True))
    friend.join(owner.invite(doc, write=True))
    until(lambda: text(friend, doc.id) == SECRET)
    # 160 envelopes of 128 KiB (20 MiB) that can never verify (a gap before them)
    attack(owner.address, [{"hello": True}, {"sleep": 0.3},
                           {"held": doc.id.hex(), "n": 160, "size": 128 * 1024}],
           seed=seed_of(mallory), listen=0.5)
    until(lambda: owner.stats()["rejected"].get("held_budget", 0) >= 100)
    assert 0 < owner.stats()["held_bytes"] <= HELD_PER_PEER
    # honest members are still served
    friend.open(doc.id).text().insert(0, "f:")
    until(lambda: text(owner, doc.id) == "f:" + SECRET)


# ------------------------------------------------------------------ hole 9 (presence)
def test_presence_cannot_be_posted_under_another_id(mk):
    owner = mk("owner")
    doc = _secret_doc(owner)
    mallory = mk("mallory")
    alice = mk("alice")
    mallory.join(owner.invite(doc, write=True))
    alice.join(owner.invite(doc, write=True))
    # mallory signs a claim that says it comes from alice
    body_forged = seal_presence(mallory.identity, doc.id, {"name": "alice, honest"},
                                2e9, 1)
    import cbor2
    inner, sig = cbor2.loads(body_forged)
    fields = cbor2.loads(inner)
    fields[2] = alice.id
    forged = cbor2.dumps([cbor2.dumps(fields), sig])
    mine = seal_presence(mallory.identity, doc.id, {"name": "mallory"}, 2e9, 1)
    from ownkernel.net.protocol import encode
    frame = encode({"type": "presence", "doc": doc.id, "ttl": 30.0,
                    "state": cbor2.dumps([forged])})
    attack(owner.address, [{"hello": True}, {"sleep": 0.5}, {"raw": frame.hex()}],
           seed=seed_of(mallory), listen=0.5)
    until(lambda: owner.stats()["rejected"].get("forged_presence", 0) >= 1)
    assert alice.id not in owner.presence(doc.id)
    # a stale claim (expired long ago) is refused as well
    frame = encode({"type": "presence", "doc": doc.id, "ttl": 30.0, "state": cbor2.dumps([
        seal_presence(mallory.identity, doc.id, {"name": "old"}, 1000.0, 2)])})
    attack(owner.address, [{"hello": True}, {"sleep": 0.5}, {"raw": frame.hex()}],
           seed=seed_of(mallory), listen=0.5)
    until(lambda: owner.stats()["rejected"].get("stale_presence", 0) >= 1)
    assert mine  # a well-formed claim of its own is what mallory may send


# ------------------------------------------------------------------ hole 7
def test_one_key_cannot_fill_the_session_table(mk):
    owner = mk("owner")
    doc = _secret_doc(owner)
    # 24 connections under one key, each saying hello (the limit is 4 per key)
    attack(owner.address, [{"hello": True}, {"connections": 24}, {"sleep": 0.5}], listen=0.5)
    until(lambda: owner.stats()["net"]["session_table"].get("evicted-own-key", 0)
          + owner.stats()["net"]["session_table"].get("evicted-unprivileged", 0) >= 20)
    assert owner.stats()["net"]["sessions"] <= 4 + 1
    # a member with a fresh invite still gets in and reads the doc
    member = mk("member")
    member.join(owner.invite(doc, write=False))
    until(lambda: text(member, doc.id) == SECRET)


# ------------------------------------------------------------------ hole 4
def test_a_writer_cannot_break_a_document_with_a_cyclic_value(mk):
    owner = mk("owner")
    doc = _secret_doc(owner)
    mallory = mk("mallory")  # a writer: the attacker uses its key and its own grant
    mallory.join(owner.invite(doc, write=True))
    grant = Credentials.from_bytes(mallory.store.document(doc.id).token).grant
    assert grant is not None
    attack(owner.address, [{"hello": True}, {"sleep": 0.3},
                           {"msg": {"type": "grants", "grants": [{"hex": grant.hex()}]}},
                           {"cyclic": doc.id.hex(), "grant": grant.hex()}],
           seed=seed_of(mallory), listen=0.5)
    until(lambda: owner.stats()["rejected"].get("bad_change", 0) >= 1)
    h = owner.open(doc.id)
    assert "m" not in h.roots()
    # the document stays whole: it saves, serves its history and takes new edits
    assert owner.replica.open(doc.id).crdt.save()
    assert owner.replica.outgoing(doc.id, {})
    h.text().insert(0, "still fine: ")
    assert str(h.text()).startswith("still fine: ")


def test_a_member_not_the_owner_can_have_a_relay_carry_the_doc(mk):
    """The positive side of the relay gate: a member showing its grant (not only the
    owner) makes a relay that never saw the doc carry it, for the other members."""
    owner = mk("owner")
    doc = _secret_doc(owner)
    writer = mk("writer", bootstrap=[owner.address])
    writer.join(owner.invite(doc, write=True))
    until(lambda: text(writer, doc.id) == SECRET)
    reader_token = owner.invite(doc, write=False, addresses=[])
    owner.close()  # from here on the owner is gone
    relay = mk("relay", relay=True)
    assert relay.store.document(doc.id) is None
    writer.connect(relay.address)
    until(lambda: text(relay, doc.id) == SECRET)  # carried at a member's request
    reader = mk("reader", bootstrap=[relay.address], allow={relay.id})
    reader.join(reader_token)
    until(lambda: text(reader, doc.id) == SECRET)


# ------------------------------------------------------------------ profile messages
def test_a_bad_profile_message_is_refused_and_a_name_is_only_what_a_key_calls_itself(mk):
    """A peer's `profile` can only name the key that sent it: a stranger that
    renames itself "owner" changes its own entry, never the owner's; malformed
    ones (a 10 kB name, a colour that is CSS) are counted and dropped."""
    owner = mk("owner")
    attack(owner.address, [{"hello": True}, {"sleep": 0.2},
                           {"msg": {"type": "profile", "name": "x" * 10_000, "color": ""}},
                           {"msg": {"type": "profile", "name": "ok",
                                    "color": "red;background:url(//evil)"}},
                           {"msg": {"type": "profile", "name": "owner", "color": "#ff0000"}}],
           listen=0.5)
    until(lambda: owner.stats()["net"]["errors"].get("bad-field", 0) >= 2)
    profiles = owner.network.profiles
    assert ("owner", "#ff0000") in profiles.values()
    assert owner.id not in profiles and owner.name == "owner"
    assert all(len(n) <= 64 and (c == "" or c.startswith("#")) for n, c in profiles.values())
