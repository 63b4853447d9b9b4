"""Attacks on pairing and device certificates (issue #13): a token used twice or
after expiry, a stranger holding a captured token, a wrong secret, forged or
unconsented certificates, forged revocations, records sent by a stranger."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
import pytest
from device_child_node import FAST, Proc

from ownkernel.node import Node
from ownkernel.node.config import NetConfig
from ownkernel.node.users import (
    PAIR_PREFIX,
    Cert,
    PairToken,
    Revocation,
    UserError,
    Users,
    device_accept,
    make_cert,
    make_revocation,
    parse_record,
)
from ownkernel.store import Identity


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    made: list[Proc] = []

    def make(name: str) -> Proc:
        p = Proc(tmp_path, name)
        made.append(p)
        return p
    yield make
    for p in made:
        p.kill()


@pytest.fixture
def mk(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(name: str) -> Node:
        n = Node(tmp_path / name / "p", name=name, network=NetConfig(
            **FAST, listen=["tcp://127.0.0.1:0"]))
        made.append(n)
        return n
    yield make
    for n in made:
        n.close()


def until(pred: Callable[[], object], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    assert pred()


# ------------------------------------------------------------------ tokens, over the network
def test_token_used_twice_and_captured_token_give_a_stranger_nothing(spawn):
    owner = spawn("owner")
    doc = owner("new_doc", title="private", text="the combination is 4-8-15-16")["doc"]
    token = owner("pair")["token"]
    phone = spawn("phone")
    assert phone("pair_with", token=token)["id"] == owner("user")["id"]
    phone.wait_text(doc, "4-8-15-16")
    # the same token again, by the stranger who captured it after use
    thief = spawn("thief")
    out = thief("pair_with", token=token)
    assert "refused" in out and "pair_used" in out["refused"], out
    assert thief("user")["id"] != owner("user")["id"]
    time.sleep(1.5)  # anti-entropy rounds: nothing may arrive
    assert thief("docs")["docs"] == []
    assert owner("may_read", peer=thief("user")["node"], doc=doc)["ok"] is False
    assert owner("rejected")["rejected"].get("pair_used") == 1
    assert [d[0] for d in owner("devices")["devices"]] == [owner.id, phone.id]
    # and the rightful device cannot use it twice either
    assert "pair_used" in phone("pair_with", token=token).get("refused", "pair_used")


def test_expired_token_is_refused_by_the_issuer(spawn):
    owner = spawn("owner")
    owner("new_doc", title="x", text="secret")
    token = owner("pair", ttl=0.5)["token"]
    dev = spawn("dev")
    time.sleep(0.8)
    out = dev("pair_with", token=token)  # the joiner itself refuses an expired token
    assert "expired" in out.get("refused", ""), out
    # a token with its expiry moved into the future: the issuer's own record decides
    body = token[len(PAIR_PREFIX):]
    m = cbor2.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    m["x"] = time.time() + 3600
    forged = PAIR_PREFIX + base64.urlsafe_b64encode(cbor2.dumps(m)).decode().rstrip("=")
    out = dev("pair_with", token=forged)
    assert "pair_expired" in out.get("refused", ""), out
    assert dev("docs")["docs"] == []
    assert owner("rejected")["rejected"].get("pair_expired") == 1


def test_wrong_secret_is_refused_and_the_token_stays_usable(mk):
    owner, mallory, dev = mk("owner"), mk("mallory"), mk("dev")
    token = owner.pair()
    tok = PairToken.parse(token)
    wrong = PairToken(tok.user, tok.node, b"\x00" * 32, tok.expires, tok.addresses)
    # (a different secret also changes the token id: the issuer does not know it)
    with pytest.raises(PermissionError, match="pair_unknown"):
        mallory.pair_with(wrong.to_token(), timeout=10)
    assert dev.pair_with(token, timeout=10).id == owner.user.id
    assert owner.stats()["rejected"].get("pair_unknown") == 1
    # a paired device does not hold the user key: it can neither pair nor revoke
    with pytest.raises(PermissionError, match="user key"):
        dev.pair()
    with pytest.raises(PermissionError, match="user key"):
        dev.unpair(owner.id)


# ------------------------------------------------------------------ records, pure
def _ids() -> tuple[Identity, Identity, Identity]:
    return Identity.generate(), Identity.generate(), Identity.generate()


def test_forged_and_unconsented_certificates_are_rejected():
    user, other, device = _ids()
    good = make_cert(user, device.node_id, device_accept(device, user.node_id), "d", 1.0)
    c = parse_record(good)
    assert isinstance(c, Cert) and c.user == user.node_id and c.device == device.node_id
    # signed by another user key while claiming `user`
    m = cbor2.loads(good)
    m["s"] = other.sign(m["b"])
    with pytest.raises(UserError, match="not signed by its user"):
        parse_record(cbor2.dumps(m))
    # another user adopting the device without its consent (it consented to `user`)
    with pytest.raises(UserError, match="consent"):
        make_cert(other, device.node_id, device_accept(device, user.node_id), "d", 2.0)
    body = cbor2.dumps(["ownkernel/device-cert/v1", other.node_id, device.node_id, "d", 2.0,
                        ["sync", "write"]])
    stolen = cbor2.dumps({"k": "ucert", "b": body, "s": other.sign(body), "a": m["a"]})
    with pytest.raises(UserError, match="consent"):
        parse_record(stolen)
    reg = Users(device.node_id, user.node_id)
    assert reg.add(good) == (None, True)
    assert reg.add(stolen) == ("bad_user_record", False)
    assert reg.user_of(device.node_id) == user.node_id
    assert reg.add(b"\xa1akeucert") == ("bad_user_record", False)


def test_revocations_only_count_when_signed_by_the_devices_user():
    user, other, device = _ids()
    reg = Users(user.node_id, user.node_id)
    reg.add(make_cert(user, device.node_id, device_accept(device, user.node_id), "d", 1.0))
    doc = b"d" * 16
    (forged,) = make_revocation(other, device.node_id, 5.0, {doc: 3})
    assert reg.add(forged) == (None, True)  # a valid record of another user...
    assert not reg.revoked(device.node_id)  # ...says nothing about this user's device
    m = cbor2.loads(forged)
    m["b"] = cbor2.dumps(["ownkernel/device-revoke/v1", user.node_id, device.node_id, 5.0,
                          [[doc, 3]]])
    assert reg.add(cbor2.dumps(m))[0] == "bad_user_record"  # claims `user`, other's sig
    parts = make_revocation(user, device.node_id, 5.0,
                            {bytes([i]) * 16: i for i in range(150)} | {doc: 3})
    assert len(parts) == 2  # split to fit a session frame
    for p in parts:
        assert isinstance(parse_record(p), Revocation)
        reg.add(p)
    assert reg.revoked(device.node_id) and reg.cut(device.node_id, doc) == 3
    assert reg.cut(device.node_id, b"\xff" * 16) == 0  # a doc it never wrote in: nothing
    # two key holders revoking with different cuts: the highest wins, in any order
    (higher,) = make_revocation(user, device.node_id, 6.0, {doc: 7})
    reg2 = Users(user.node_id, user.node_id)
    for r in [higher, *parts]:
        reg2.add(r)
    reg2.add(make_cert(user, device.node_id, device_accept(device, user.node_id), "d", 1.0))
    reg.add(higher)
    assert reg.cut(device.node_id, doc) == reg2.cut(device.node_id, doc) == 7


def test_stranger_sending_forged_records_changes_nothing(mk):
    owner, mallory = mk("owner"), mk("mallory")
    doc = owner.new_doc("private")
    doc.text().insert(0, "secret")
    # mallory certifies the owner's device under its own user (no consent) and
    # revokes it with a forged signature, then sends both over a session
    evil = Identity.generate()
    body = cbor2.dumps(["ownkernel/device-cert/v1", evil.node_id, owner.id, "x", 9e9,
                        ["sync", "write"]])
    cert = cbor2.dumps({"k": "ucert", "b": body, "s": evil.sign(body), "a": b"\0" * 64})
    (rev,) = make_revocation(evil, owner.id, 1.0, {doc.id: 0})
    m = cbor2.loads(rev)
    m["b"] = cbor2.dumps(["ownkernel/device-revoke/v1", owner.user.id, owner.id, 1.0, []])
    mallory.connect(owner.address, timeout=10)
    net = mallory.network
    assert net is not None

    def send() -> None:
        link = net.link_of(owner.id)
        assert link is not None
        link.session.send_grants([cert, cbor2.dumps(m)])
        net.outbox.flush(link)
    net._call(send)
    until(lambda: owner.stats()["rejected"].get("bad_user_record", 0) >= 2)
    with owner.lock:
        assert owner.gate.users.user_of(owner.id) == owner.user.id
        assert not owner.gate.users.revoked(owner.id)
        assert not owner.gate.may_read(mallory.id, doc.id)
    doc.text().insert(0, "still mine: ")  # the owner still writes
    assert str(owner.open(doc.id).text()) == "still mine: secret"
