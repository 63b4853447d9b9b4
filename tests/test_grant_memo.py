"""The memo of verified signatures (grants.py ``_KNOWN_GOOD``) keeps the gate as strict.

The owner's own invite signatures are remembered when it makes them, so a joiner
showing thousands of grants costs it one signature check per grant, not two. Each
test here is an attack through the real transport (tests/attacker.py: its own
process, its own key) by someone holding a genuine *read* token of that owner, in
the very process where the owner made (and remembered) that token's signature:
a grant altered to write, a grant with a damaged signature, and a revoked grant
must all still be refused, counted, and give the attacker no doc.
"""

from __future__ import annotations

from dataclasses import replace

from nacl.signing import SigningKey

from ownkernel.node.grants import _KNOWN_GOOD, Grant, Invite, _sig_key
from tests.test_attacks import SECRET, _saw_doc, _secret_doc, attack, mk, until  # noqa: F401


def _setup(mk):  # noqa: F811
    owner = mk("owner")
    doc = _secret_doc(owner)
    token = owner.invite(doc, write=False)
    inv = Invite.parse(token)
    # the owner remembered its own capability signature when it made the invite
    assert _sig_key(owner.id, inv._cap_signed(), inv.sig) in _KNOWN_GOOD
    seed = bytes(SigningKey.generate())
    me = bytes(SigningKey(seed).verify_key)
    return owner, doc, token, inv, seed, me


def _present(owner, doc, seed, raw: bytes, listen: float = 1.5):
    return attack(owner.address, [
        {"hello": True}, {"sleep": 0.3},
        {"msg": {"type": "grants", "grants": [{"hex": raw.hex()}]}}, {"sleep": 0.3},
        {"have": doc.id.hex(), "vv": {}},
        {"change": doc.id.hex(), "text": "pwned ", "grant": raw.hex()},
    ], seed=seed, listen=listen)


def test_a_read_grant_altered_to_write_is_refused(mk):  # noqa: F811
    owner, doc, _token, inv, seed, me = _setup(mk)
    g = inv.redeem(me)
    # The holder proof does not cover the capability, so the attacker can re-sign it;
    # only the owner's signature over "read" stands in the way.
    forged = replace(g, capability="write")
    forged = replace(forged, proof=SigningKey(inv.secret).sign(forged._holder_signed()).signature)
    r = _present(owner, doc, seed, forged.to_bytes())
    assert not _saw_doc(r, doc.id), r
    until(lambda: owner.stats()["rejected"].get("bad_capability", 0) >= 1)
    assert str(owner.open(doc.id).text()) == SECRET


def test_a_damaged_signature_is_refused_although_the_genuine_one_is_remembered(mk):  # noqa: F811
    owner, doc, _token, inv, seed, me = _setup(mk)
    g = inv.redeem(me)
    bad = replace(g, sig=g.sig[:-1] + bytes([g.sig[-1] ^ 1]))
    r = _present(owner, doc, seed, bad.to_bytes())
    assert not _saw_doc(r, doc.id), r
    until(lambda: owner.stats()["rejected"].get("bad_capability", 0) >= 1)
    assert str(owner.open(doc.id).text()) == SECRET
    # and the genuine grant, shown by its holder, still opens the doc to read
    r = _present(owner, doc, seed, g.to_bytes())
    assert _saw_doc(r, doc.id), r
    assert str(owner.open(doc.id).text()) == SECRET  # a reader's change is still refused


def test_a_revoked_grant_with_remembered_signatures_is_refused(mk):  # noqa: F811
    owner, doc, token, inv, seed, me = _setup(mk)
    g = inv.redeem(me)
    Grant.from_bytes(g.to_bytes())  # both of its signatures are now remembered here
    owner.revoke(token)
    r = _present(owner, doc, seed, g.to_bytes())
    assert not _saw_doc(r, doc.id), r
    until(lambda: owner.stats()["rejected"].get("revoked", 0) >= 1)
    assert str(owner.open(doc.id).text()) == SECRET
