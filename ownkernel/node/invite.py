"""Invite tokens: ``own:`` + base64url(CBOR map), copy-pasteable.

A token is a bearer capability signed by the inviter (the owner or an admin):

    {"v": 1, "d": doc id, "o": owner id, "n": inviter id, "c": "write" | "read",
     "t": token id (16 random bytes), "s": Ed25519 signature by "n",
     "a": [inviter addresses], "x": title, "k": SecretBox key (encrypted docs only)}

The signature covers ``["ownkernel/invite/v1", d, o, n, c, t]``: addresses and
title are hints that may go stale, the key only matters to whoever can read
the token anyway. When a joiner first writes to the doc it presents the token's
*capability* form (the signed fields only — never the key or the addresses) in
the envelope of its change, so every node can check the grant without having
seen the token; revocation is the entry ``revoked:<token id hex>`` in the doc's
``_access`` map.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ownkernel.store.identity import Identity, verify

__all__ = ["TOKEN_PREFIX", "Invite", "InviteError", "make_invite"]

TOKEN_PREFIX = "own:"
_DOMAIN = "ownkernel/invite/v1"
CAPABILITIES = ("write", "read")


class InviteError(ValueError):
    """A token that is malformed, forged, or not usable here."""


@dataclass(frozen=True)
class Invite:
    doc: bytes
    owner: bytes
    inviter: bytes
    capability: str
    token_id: bytes
    sig: bytes
    addresses: tuple[str, ...] = ()
    title: str = ""
    key: bytes | None = field(default=None, repr=False)

    # -- signing ---------------------------------------------------------------
    def signed_part(self) -> bytes:
        return cbor2.dumps([_DOMAIN, self.doc, self.owner, self.inviter, self.capability,
                            self.token_id])

    def verify(self) -> bool:
        return verify(self.inviter, self.signed_part(), self.sig)

    # -- forms -----------------------------------------------------------------
    def to_token(self) -> str:
        m: dict[str, Any] = {"v": 1, "d": self.doc, "o": self.owner, "n": self.inviter,
                             "c": self.capability, "t": self.token_id, "s": self.sig}
        if self.addresses:
            m["a"] = list(self.addresses)
        if self.title:
            m["x"] = self.title
        if self.key is not None:
            m["k"] = self.key
        raw = base64.urlsafe_b64encode(cbor2.dumps(m)).rstrip(b"=").decode("ascii")
        return TOKEN_PREFIX + raw

    def cap_bytes(self) -> bytes:
        """The capability form presented in envelopes (no key, no addresses)."""
        return cbor2.dumps({"v": 1, "d": self.doc, "o": self.owner, "n": self.inviter,
                            "c": self.capability, "t": self.token_id, "s": self.sig})

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
        return cls._from_map(raw, "invite token")

    @classmethod
    def from_cap(cls, data: bytes) -> Invite:
        return cls._from_map(data, "capability")

    @classmethod
    def _from_map(cls, raw: bytes, what: str) -> Invite:
        try:
            m = cbor2.loads(raw)
        except Exception:  # cbor2 raises several types on garbage
            raise InviteError(f"{what} is damaged (not CBOR); copy it again") from None
        if not isinstance(m, dict) or m.get("v") != 1:
            raise InviteError(f"{what} has an unknown format")
        try:
            inv = cls(
                doc=m["d"], owner=m["o"], inviter=m["n"], capability=m["c"], token_id=m["t"],
                sig=m["s"], addresses=tuple(m.get("a", ())), title=m.get("x", ""),
                key=m.get("k"),
            )
        except (KeyError, TypeError):
            raise InviteError(f"{what} is missing fields") from None
        ok = (
            isinstance(inv.doc, bytes) and 1 <= len(inv.doc) <= 64
            and isinstance(inv.owner, bytes) and len(inv.owner) == 32
            and isinstance(inv.inviter, bytes) and len(inv.inviter) == 32
            and inv.capability in CAPABILITIES
            and isinstance(inv.token_id, bytes) and len(inv.token_id) == 16
            and isinstance(inv.sig, bytes) and len(inv.sig) == 64
            and all(isinstance(a, str) for a in inv.addresses)
            and isinstance(inv.title, str)
            and (inv.key is None or (isinstance(inv.key, bytes) and len(inv.key) == 32))
        )
        if not ok:
            raise InviteError(f"{what} has malformed fields")
        if not inv.verify():
            raise InviteError(f"{what} signature does not verify (forged or altered)")
        return inv


def make_invite(identity: Identity, *, doc: bytes, owner: bytes, capability: str,
                addresses: tuple[str, ...] = (), title: str = "",
                key: bytes | None = None) -> Invite:
    if capability not in CAPABILITIES:
        raise ValueError(f"capability must be one of {CAPABILITIES}")
    unsigned = Invite(doc, owner, identity.node_id, capability, os.urandom(16), bytes(64),
                      tuple(addresses), title, key)
    sig = identity.sign(unsigned.signed_part())
    return Invite(doc, owner, identity.node_id, capability, unsigned.token_id, sig,
                  tuple(addresses), title, key)
