"""Credentials: document descriptors, invite tokens, and the grants they are redeemed into.

Three signed things decide who may do what with a document (docs/security.md):

**Descriptor** — the owner's signed statement of what a document *is*::

    {"v": 1, "d": doc id, "o": owner id, "e": encrypted, "n": nonce, "s": sig by owner}

The doc id is ``BLAKE2b-128(owner || nonce)``, so an id commits to its owner:
nobody can present a descriptor naming another owner for an existing id, or
claim that a clear doc is encrypted (the relay attack). Members hold it from
their invite; relays carry only documents whose descriptor verifies.

**Invite token** — a secret, pasted from one person to another::

    own:<base64url CBOR {"v": 2, "d", "o", "n": inviter, "c": "write"|"read",
                         "t": invite public key, "s": sig by inviter,
                         "sk": invite secret key, "dd": descriptor,
                         "a": [addresses], "x": title, "k": doc key (encrypted docs)}>

The inviter signs ``[domain, d, o, n, c, t]``: the capability to write (or read)
doc ``d`` for whoever can sign with the key ``t``. The token id *is* ``t``;
revoking a token (``revoked:<t hex>`` in the doc's access map) voids every grant
made from it. The secret key ``sk`` is only ever in the token itself.

**Grant** — what a token is redeemed into, bound to its holder::

    {"v": 2, "d", "o", "n", "c", "t", "s",  "h": holder id, "p": sig by t over [domain, d, t, h]}

A grant proves "the holder of this token chose to give this capability to node
``h``", so it is useless to anyone but ``h``: a reader who sees a writer's grant
inside an envelope, or a relay that sees it in transit, cannot present it as its
own (``h`` must be the envelope's author, or the authenticated session peer).
A grant carries no secret: it may travel wherever the doc's envelopes travel.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import Any

import cbor2
from nacl.signing import SigningKey

from ownkernel.store.identity import Identity
from ownkernel.store.identity import verify as _verify

__all__ = [
    "CAPABILITIES",
    "TOKEN_PREFIX",
    "Descriptor",
    "Grant",
    "Invite",
    "InviteError",
    "derive_doc_id",
    "make_descriptor",
    "make_invite",
]

TOKEN_PREFIX = "own:"
CAPABILITIES = ("write", "read")
_INVITE_DOMAIN = "ownkernel/invite/v2"
_GRANT_DOMAIN = "ownkernel/grant/v2"
_DESC_DOMAIN = "ownkernel/descriptor/v1"
MAX_CREDENTIAL = 4096  # bytes: grants and descriptors are a few hundred


# Signatures known to verify, as digests of (key, signature, message): the ones this
# process made itself (an invite's capability, signed when it was made) and the ones
# it verified. Whether a key signed a message is a fact, not a judgement, so the memo
# is exactly as strict as verifying again: a forged or altered grant differs in one of
# the three and is verified (and refused) as always. It saves the owner of 10,000
# invited docs the check of its own 10,000 capability signatures when the joiner
# shows its grants, and any re-check of a grant seen before. Bounded.
_KNOWN_GOOD: set[bytes] = set()
_KNOWN_GOOD_MAX = 131_072


def _sig_key(key: bytes, message: bytes, sig: bytes) -> bytes:
    # key and sig have fixed sizes (32, 64: checked by callers), so this is unambiguous
    return hashlib.blake2b(key + sig + message, digest_size=32).digest()


def _remember(key: bytes, message: bytes, sig: bytes) -> None:
    if len(_KNOWN_GOOD) >= _KNOWN_GOOD_MAX:
        _KNOWN_GOOD.clear()
    _KNOWN_GOOD.add(_sig_key(key, message, sig))


def _verify_memo(key: bytes, message: bytes, sig: bytes) -> bool:
    """``verify``, remembering what verified (see ``_KNOWN_GOOD``)."""
    if len(key) != 32 or len(sig) != 64:
        return False
    k = _sig_key(key, message, sig)
    if k in _KNOWN_GOOD:
        return True
    if not _verify(key, message, sig):
        return False
    if len(_KNOWN_GOOD) >= _KNOWN_GOOD_MAX:
        _KNOWN_GOOD.clear()
    _KNOWN_GOOD.add(k)
    return True


class InviteError(ValueError):
    """A token, grant or descriptor that is malformed, forged, or not usable here."""


def derive_doc_id(owner: bytes, nonce: bytes) -> bytes:
    return hashlib.blake2b(owner + nonce, digest_size=16, person=b"ownk-docid-v1").digest()


def _loads(raw: bytes, what: str) -> dict[str, Any]:
    if not isinstance(raw, (bytes, bytearray)) or len(raw) > MAX_CREDENTIAL * 4:
        raise InviteError(f"{what} must be bytes of bounded size")
    try:
        m = cbor2.loads(raw)
    except Exception:  # cbor2 raises several types on garbage
        raise InviteError(f"{what} is damaged (not CBOR); copy it again") from None
    if not isinstance(m, dict):
        raise InviteError(f"{what} has an unknown format")
    return m


def _b(v: Any, n: int | None = None, lo: int = 1, hi: int = 64) -> bool:
    if not isinstance(v, bytes):
        return False
    return len(v) == n if n is not None else lo <= len(v) <= hi


# --------------------------------------------------------------------- descriptor
@dataclass(frozen=True)
class Descriptor:
    doc: bytes
    owner: bytes
    encrypted: bool
    nonce: bytes
    sig: bytes

    def _signed(self) -> bytes:
        return cbor2.dumps([_DESC_DOMAIN, self.doc, self.owner, self.encrypted, self.nonce])

    def to_bytes(self) -> bytes:
        return cbor2.dumps({"v": 1, "d": self.doc, "o": self.owner, "e": self.encrypted,
                            "n": self.nonce, "s": self.sig})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Descriptor:
        m = _loads(raw, "document descriptor")
        d = cls(m.get("d"), m.get("o"), m.get("e"), m.get("n"), m.get("s"))  # type: ignore[arg-type]
        if not (m.get("v") == 1 and _b(d.doc, 16) and _b(d.owner, 32)
                and isinstance(d.encrypted, bool) and _b(d.nonce, 16) and _b(d.sig, 64)):
            raise InviteError("document descriptor has malformed fields")
        if derive_doc_id(d.owner, d.nonce) != d.doc:
            raise InviteError("document descriptor: the id does not belong to that owner")
        if not _verify(d.owner, d._signed(), d.sig):
            raise InviteError("document descriptor signature does not verify")
        return d


def make_descriptor(identity: Identity, encrypted: bool) -> Descriptor:
    nonce = os.urandom(16)
    d = Descriptor(derive_doc_id(identity.node_id, nonce), identity.node_id, encrypted,
                   nonce, bytes(64))
    return replace(d, sig=identity.sign(d._signed()))


# --------------------------------------------------------------------- grant
@dataclass(frozen=True)
class Grant:
    """A capability bound to its holder (see the module docstring)."""

    doc: bytes
    owner: bytes
    inviter: bytes
    capability: str
    token_id: bytes  # the invite public key
    sig: bytes  # inviter's signature over the capability
    holder: bytes
    proof: bytes  # the invite key's signature over the holder

    def _cap_signed(self) -> bytes:
        return cbor2.dumps([_INVITE_DOMAIN, self.doc, self.owner, self.inviter,
                            self.capability, self.token_id])

    def _holder_signed(self) -> bytes:
        return cbor2.dumps([_GRANT_DOMAIN, self.doc, self.token_id, self.holder])

    @property
    def role(self) -> str:
        return "writer" if self.capability == "write" else "reader"

    def to_bytes(self) -> bytes:
        return cbor2.dumps({"v": 2, "d": self.doc, "o": self.owner, "n": self.inviter,
                            "c": self.capability, "t": self.token_id, "s": self.sig,
                            "h": self.holder, "p": self.proof})

    @classmethod
    def from_bytes(cls, raw: bytes, verify: bool = True) -> Grant:
        """Parse and verify both signatures (inviter's and the invite key's).

        ``verify=False`` only for a grant this node made and stored itself."""
        if not isinstance(raw, bytes) or len(raw) > MAX_CREDENTIAL:
            raise InviteError("grant must be bytes of at most 4 KiB")
        m = _loads(raw, "grant")
        g = cls(m.get("d"), m.get("o"), m.get("n"), m.get("c"), m.get("t"),  # type: ignore[arg-type]
                m.get("s"), m.get("h"), m.get("p"))  # type: ignore[arg-type]
        if not (m.get("v") == 2 and _b(g.doc) and _b(g.owner, 32) and _b(g.inviter, 32)
                and g.capability in CAPABILITIES and _b(g.token_id, 32) and _b(g.sig, 64)
                and _b(g.holder, 32) and _b(g.proof, 64)):
            raise InviteError("grant has malformed fields")
        if not verify:
            return g
        if not _verify_memo(g.inviter, g._cap_signed(), g.sig):
            raise InviteError("grant: the inviter's signature does not verify")
        if not _verify_memo(g.token_id, g._holder_signed(), g.proof):
            raise InviteError("grant: not made with the invite's key (forged or re-targeted)")
        return g


# --------------------------------------------------------------------- invite token
@dataclass(frozen=True)
class Invite:
    """An invite token: a capability plus the secret that redeems it."""

    doc: bytes
    owner: bytes
    inviter: bytes
    capability: str
    token_id: bytes
    sig: bytes
    secret: bytes = field(repr=False)
    descriptor: bytes = b""
    addresses: tuple[str, ...] = ()
    title: str = ""
    key: bytes | None = field(default=None, repr=False)

    def _cap_signed(self) -> bytes:
        return cbor2.dumps([_INVITE_DOMAIN, self.doc, self.owner, self.inviter,
                            self.capability, self.token_id])

    def redeem(self, holder: bytes) -> Grant:
        """The grant of this token's capability to ``holder`` (a node id)."""
        g = Grant(self.doc, self.owner, self.inviter, self.capability, self.token_id,
                  self.sig, holder, bytes(64))
        proof = SigningKey(self.secret).sign(g._holder_signed()).signature
        return replace(g, proof=proof)

    def to_token(self) -> str:
        m: dict[str, Any] = {"v": 2, "d": self.doc, "o": self.owner, "n": self.inviter,
                             "c": self.capability, "t": self.token_id, "s": self.sig,
                             "sk": self.secret, "dd": self.descriptor}
        if self.addresses:
            m["a"] = list(self.addresses)
        if self.title:
            m["x"] = self.title
        if self.key is not None:
            m["k"] = self.key
        raw = base64.urlsafe_b64encode(cbor2.dumps(m)).rstrip(b"=").decode("ascii")
        return TOKEN_PREFIX + raw

    @classmethod
    def parse(cls, token: str) -> Invite:
        if not isinstance(token, str):
            raise InviteError("an invite token is a string starting with 'own:'")
        token = "".join(token.split())  # tolerate line breaks from copy and paste
        if not token.startswith(TOKEN_PREFIX):
            raise InviteError("not an ownkernel invite token (it should start with 'own:')")
        body = token[len(TOKEN_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError):
            raise InviteError("invite token is damaged (not base64url); copy it again") from None
        m = _loads(raw, "invite token")
        if m.get("v") != 2:
            raise InviteError("invite token has an unknown format (made by another version?)")
        try:
            inv = cls(m["d"], m["o"], m["n"], m["c"], m["t"], m["s"], m["sk"], m["dd"],
                      tuple(m.get("a", ())), m.get("x", ""), m.get("k"))
        except (KeyError, TypeError):
            raise InviteError("invite token is missing fields") from None
        ok = (_b(inv.doc) and _b(inv.owner, 32) and _b(inv.inviter, 32)
              and inv.capability in CAPABILITIES and _b(inv.token_id, 32) and _b(inv.sig, 64)
              and _b(inv.secret, 32) and isinstance(inv.descriptor, bytes)
              and all(isinstance(a, str) for a in inv.addresses) and isinstance(inv.title, str)
              and (inv.key is None or _b(inv.key, 32)))
        if not ok:
            raise InviteError("invite token has malformed fields")
        if not _verify(inv.inviter, inv._cap_signed(), inv.sig):
            raise InviteError("invite token signature does not verify (forged or altered)")
        if bytes(SigningKey(inv.secret).verify_key) != inv.token_id:
            raise InviteError("invite token's secret does not match its id (damaged)")
        desc = Descriptor.from_bytes(inv.descriptor)
        if desc.doc != inv.doc or desc.owner != inv.owner:
            raise InviteError("invite token's descriptor is for another document")
        if (inv.key is not None) != desc.encrypted:
            raise InviteError("invite token: key and descriptor disagree about encryption")
        return inv


def make_invite(identity: Identity, *, descriptor: bytes, capability: str,
                addresses: tuple[str, ...] = (), title: str = "",
                key: bytes | None = None) -> Invite:
    if capability not in CAPABILITIES:
        raise ValueError(f"capability must be one of {CAPABILITIES}")
    desc = Descriptor.from_bytes(descriptor)
    sk = SigningKey.generate()
    inv = Invite(desc.doc, desc.owner, identity.node_id, capability, bytes(sk.verify_key),
                 bytes(64), bytes(sk), descriptor, tuple(addresses), title, key)
    msg = inv._cap_signed()
    sig = identity.sign(msg)
    _remember(identity.node_id, msg, sig)  # ours: its grants need not check it again
    return replace(inv, sig=sig)
