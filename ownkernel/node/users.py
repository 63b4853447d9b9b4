"""Users and their devices: user keys, device certificates, revocations (docs/auth.md).

A person has a **user key** (Ed25519). Every node is a **device** with its own key;
a **device certificate** says "device D belongs to user U" and is signed twice:
by the user key (U claims D) and by the device key (D agrees to belong to U), so
nobody can adopt someone else's device and inherit what it owns. Changes stay
signed by device keys; access lists may name user ids, and the gate maps an
author (device) to its user through the certificates it holds (``Users``).

A **revocation** (signed by the user key) names a device and, per document, the
last sequence number of that device's chain the revoker held (the *cut*). A
change of the device is accepted iff its seq is at or below the cut of its doc
(no entry: cut 0). The cut is a property of the change, not of when a node
hears of the revocation, so every node that knows the revocation before the
change arrives decides the same. Several revocations of one device (two key
holders, records split in parts) merge by taking the highest cut per doc, which
is order-independent.

Everything here is pure: no I/O, no clocks (times are passed in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ownkernel.store.identity import Identity, verify

__all__ = [
    "CERT_DOMAIN", "PAIR_PREFIX", "Cert", "PairToken", "Revocation", "UserError", "Users",
    "make_cert", "make_revocation", "pair_proof", "parse_record",
]

CERT_DOMAIN = "ownkernel/device-cert/v1"
ACCEPT_DOMAIN = "ownkernel/device-accept/v1"
REVOKE_DOMAIN = "ownkernel/device-revoke/v1"
PAIR_DOMAIN = b"ownkernel/pair/v1"
PAIR_PREFIX = "own-pair:"
PAIR_TTL = 600.0  # seconds a pairing token lives
MAX_DEVICES_PER_USER = 256
MAX_USERS = 4096
MAX_CUTS_PER_RECORD = 100  # docs named in one revocation record (records fit a 4 KiB frame)
CAPABILITIES = ("sync", "write")


class UserError(ValueError):
    """A user credential or pairing token that is malformed, forged or expired."""


def _b(x: Any, n: int | None = None) -> bytes:
    if not isinstance(x, bytes) or (n is not None and len(x) != n):
        raise UserError(f"expected {n or 'some'} bytes, got {type(x).__name__}")
    return x


@dataclass(frozen=True)
class Cert:
    """``device`` belongs to ``user`` since ``issued`` (wall seconds), named ``name``."""

    user: bytes
    device: bytes
    name: str
    issued: float
    caps: tuple[str, ...]
    raw: bytes = field(repr=False, compare=False)


@dataclass(frozen=True)
class Revocation:
    user: bytes
    device: bytes
    when: float
    cuts: dict[bytes, int]  # doc -> last seq of the device's chain that stays valid
    raw: bytes = field(repr=False, compare=False)


def _cert_body(user: bytes, device: bytes, name: str, issued: float,
               caps: tuple[str, ...]) -> bytes:
    return cbor2.dumps([CERT_DOMAIN, user, device, name, float(issued), list(caps)])


def device_accept(device: Identity, user: bytes) -> bytes:
    """The device's consent to belong to ``user`` (sent with a pairing request)."""
    return device.sign(cbor2.dumps([ACCEPT_DOMAIN, user, device.node_id]))


def make_cert(user_key: Identity, device: bytes, accept: bytes, name: str, issued: float,
              caps: tuple[str, ...] = CAPABILITIES) -> bytes:
    """A certificate for ``device`` (``accept``: its consent signature), signed by the user."""
    if not verify(device, cbor2.dumps([ACCEPT_DOMAIN, user_key.node_id, device]), accept):
        raise UserError("the device's consent signature does not verify")
    body = _cert_body(user_key.node_id, device, name[:64], issued, caps)
    return cbor2.dumps({"k": "ucert", "b": body, "s": user_key.sign(body), "a": accept})


def make_revocation(user_key: Identity, device: bytes, when: float,
                    cuts: dict[bytes, int]) -> list[bytes]:
    """Revocation records for ``device`` (split so each names at most 100 docs)."""
    items = sorted(cuts.items())
    parts = [items[i:i + MAX_CUTS_PER_RECORD]
             for i in range(0, len(items), MAX_CUTS_PER_RECORD)] or [[]]
    out = []
    for part in parts:
        body = cbor2.dumps([REVOKE_DOMAIN, user_key.node_id, device, float(when),
                            [[d, s] for d, s in part]])
        out.append(cbor2.dumps({"k": "urev", "b": body, "s": user_key.sign(body)}))
    return out


def parse_record(raw: bytes) -> Cert | Revocation:
    """Verify a certificate or revocation record (UserError if malformed or forged)."""
    try:
        m = cbor2.loads(raw)
    except Exception as e:
        raise UserError(f"not CBOR: {e}") from e
    if not isinstance(m, dict) or m.get("k") not in ("ucert", "urev"):
        raise UserError("not a user record")
    body, sig = _b(m.get("b")), _b(m.get("s"), 64)
    try:
        f = cbor2.loads(body)
    except Exception as e:
        raise UserError(f"record body is not CBOR: {e}") from e
    if m["k"] == "ucert":
        if not (isinstance(f, list) and len(f) == 6 and f[0] == CERT_DOMAIN):
            raise UserError("bad certificate body")
        _, user, device, name, issued, caps = f
        _b(user, 32), _b(device, 32)
        if not isinstance(name, str) or not isinstance(issued, float) \
                or not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise UserError("bad certificate fields")
        if not verify(user, body, sig):
            raise UserError("certificate not signed by its user key")
        if not verify(device, cbor2.dumps([ACCEPT_DOMAIN, user, device]), _b(m.get("a"), 64)):
            raise UserError("certificate lacks the device's consent")
        return Cert(user, device, name, issued, tuple(caps), raw)
    if not (isinstance(f, list) and len(f) == 5 and f[0] == REVOKE_DOMAIN):
        raise UserError("bad revocation body")
    _, user, device, when, cuts = f
    _b(user, 32), _b(device, 32)
    if not isinstance(when, float) or not isinstance(cuts, list) \
            or len(cuts) > MAX_CUTS_PER_RECORD:
        raise UserError("bad revocation fields")
    out: dict[bytes, int] = {}
    for c in cuts:
        if not (isinstance(c, list) and len(c) == 2 and isinstance(c[0], bytes)
                and type(c[1]) is int and c[1] >= 0):
            raise UserError("bad revocation cut")
        out[c[0]] = c[1]
    if not verify(user, body, sig):
        raise UserError("revocation not signed by its user key")
    return Revocation(user, device, when, out, raw)


class Users:
    """The certificates and revocations one node knows (bounded), and what follows.

    A device maps to the user of its newest valid certificate (ties: the lower
    user id), so every node holding the same records maps it the same way.
    """

    def __init__(self, me: bytes, user: bytes) -> None:
        self.me = me
        self.user = user  # our user id
        self.certs: dict[bytes, Cert] = {}  # device -> winning certificate
        self.revocations: dict[bytes, dict[bytes, Revocation]] = {}  # device -> raw -> rec
        self.cuts: dict[tuple[bytes, bytes], dict[bytes, int]] = {}  # (user, dev) -> cuts
        self.per_user: dict[bytes, int] = {}
        self._known: set[bytes] = set()  # records already taken (bounded like the rest)

    # -- learning --------------------------------------------------------------
    def add(self, raw: bytes) -> tuple[str | None, bool]:
        """Learn a record: (problem or None, whether anything changed)."""
        if raw in self._known:  # every session shows them again: no re-verification
            return None, False
        try:
            rec = parse_record(raw)
        except UserError:
            return "bad_user_record", False
        problem, changed = (self._add_cert(rec) if isinstance(rec, Cert)
                            else self._add_revocation(rec))
        if problem is None and len(self._known) < 4 * MAX_USERS * 4:
            self._known.add(raw)
        return problem, changed

    def _add_cert(self, c: Cert) -> tuple[str | None, bool]:
        old = self.certs.get(c.device)
        if old is not None and (old.issued, -int.from_bytes(old.user, "big")) >= \
                (c.issued, -int.from_bytes(c.user, "big")):
            return None, False
        if old is None or old.user != c.user:
            if self.per_user.get(c.user, 0) >= MAX_DEVICES_PER_USER or (
                    c.user not in self.per_user and len(self.per_user) >= MAX_USERS):
                return "too_many_devices", False
            self.per_user[c.user] = self.per_user.get(c.user, 0) + 1
            if old is not None:
                self.per_user[old.user] -= 1
        self.certs[c.device] = c
        return None, True

    def _add_revocation(self, r: Revocation) -> tuple[str | None, bool]:
        recs = self.revocations.setdefault(r.device, {})
        if r.raw in recs:
            return None, False
        if len(recs) >= 64:
            return "too_many_revocations", False
        recs[r.raw] = r
        cuts = self.cuts.setdefault((r.user, r.device), {})
        for d, s in r.cuts.items():
            cuts[d] = max(cuts.get(d, 0), s)
        return None, True

    def records(self, users: Iterable[bytes] | None = None) -> list[bytes]:
        """Every certificate and revocation we hold (of ``users``, default all)."""
        want = None if users is None else set(users)
        out = [c.raw for c in self.certs.values() if want is None or c.user in want]
        for recs in self.revocations.values():
            out += [r.raw for r in recs.values() if want is None or r.user in want]
        return out

    # -- questions -------------------------------------------------------------
    def user_of(self, device: bytes) -> bytes | None:
        """The user certifying ``device`` (also when revoked: its earlier changes stay)."""
        c = self.certs.get(device)
        return c.user if c is not None else None

    def cut(self, device: bytes, doc: bytes) -> int | None:
        """The last seq of ``device`` still valid in ``doc`` (None: not revoked)."""
        c = self.certs.get(device)
        if c is None:
            return None
        cuts = self.cuts.get((c.user, device))
        if cuts is None:
            return None
        return cuts.get(doc, 0)

    def revoked(self, device: bytes) -> bool:
        c = self.certs.get(device)
        return c is not None and (c.user, device) in self.cuts

    def same_user(self, a: bytes, b: bytes) -> bool:
        """Are ``a`` and ``b`` devices of one user? (Revocation is not judged here: the
        cut decides which of a revoked device's changes count, Gate.may_read the rest.)"""
        ua = self.user_of(a)
        return ua is not None and ua == self.user_of(b)

    def sibling(self, device: bytes) -> bool:
        """Is ``device`` another live device of our own user?"""
        return device != self.me and self.user_of(device) == self.user \
            and not self.revoked(device)

    def devices(self, user: bytes | None = None) -> list[Cert]:
        u = self.user if user is None else user
        return sorted((c for c in self.certs.values() if c.user == u),
                      key=lambda c: (c.issued, c.device))


# -- pairing tokens ----------------------------------------------------------------------
@dataclass(frozen=True)
class PairToken:
    """``own-pair:`` token: who to reach, whose user to join, the one-time secret."""

    user: bytes
    node: bytes  # the device that issued it (holds the user key)
    secret: bytes
    expires: float
    addresses: tuple[str, ...]

    @property
    def token_id(self) -> bytes:
        return hashlib.blake2b(self.secret, digest_size=16, person=b"ownk-pair-id").digest()

    def to_token(self) -> str:
        raw = cbor2.dumps({"v": 1, "u": self.user, "n": self.node, "s": self.secret,
                           "x": float(self.expires), "a": list(self.addresses)})
        return PAIR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def new(cls, user: bytes, node: bytes, now: float, addresses: Iterable[str],
            ttl: float = PAIR_TTL) -> PairToken:
        return cls(user, node, secrets.token_bytes(32), now + ttl, tuple(addresses))

    @classmethod
    def parse(cls, token: str) -> PairToken:
        t = token.strip() if isinstance(token, str) else ""
        if not t.startswith(PAIR_PREFIX):
            raise UserError(f"a pairing token starts with {PAIR_PREFIX!r} (from node.pair())")
        body = t[len(PAIR_PREFIX):]
        try:
            m = cbor2.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except Exception as e:
            raise UserError(f"pairing token is damaged (copied incompletely?): {e}") from e
        if not isinstance(m, dict) or m.get("v") != 1:
            raise UserError("pairing token: unknown version")
        try:
            addrs = m.get("a")
            if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
                raise UserError("bad addresses")
            exp = m.get("x")
            if not isinstance(exp, float):
                raise UserError("bad expiry")
            return cls(_b(m.get("u"), 32), _b(m.get("n"), 32), _b(m.get("s"), 32), exp,
                       tuple(addrs))
        except UserError as e:
            raise UserError(f"pairing token is damaged: {e}") from e


def pair_proof(secret: bytes, token_id: bytes, device: bytes, issuer: bytes) -> bytes:
    """Proof that ``device`` holds the pairing secret (bound to both ends)."""
    return hmac.new(secret, PAIR_DOMAIN + token_id + device + issuer, "sha256").digest()


def pair_request(tok: PairToken, device: Identity) -> bytes:
    return cbor2.dumps({"k": "upair", "t": tok.token_id, "d": device.node_id,
                        "m": pair_proof(tok.secret, tok.token_id, device.node_id, tok.node),
                        "a": device_accept(device, tok.user)})


def pair_answer(cert: bytes | None, error: str | None, name: str, colour: str) -> bytes:
    return cbor2.dumps({"k": "upaired", "c": cert, "e": error, "n": name[:64],
                        "o": colour})


def doc_share(descriptor: bytes, key: bytes | None, title: str, grant: bytes | None) -> bytes:
    """One of our user's docs, for a sibling device (over the encrypted session only)."""
    return cbor2.dumps({"k": "udoc", "dd": descriptor, "key": key, "x": title[:200],
                        "g": grant})


def kind_of(raw: bytes) -> tuple[str | None, dict[str, Any]]:
    """The kind of a user-layer blob in a ``grants`` frame (None: not one: a grant)."""
    if not raw or raw[0] & 0xE0 != 0xA0:  # a CBOR map; grants are CBOR arrays/other
        return None, {}
    try:
        m = cbor2.loads(raw)
    except Exception:
        return None, {}
    if isinstance(m, dict) and m.get("k") in ("ucert", "urev", "upair", "upaired", "udoc",
                                              "uprof"):
        return m["k"], m
    return None, {}
