"""Peer exchange: where to reach nodes, as a replicated CRDT document.

Every node keeps one address book, a :class:`ownkernel.crdt.Doc` with a single
LWW map root ``peers``. It is synced with every peer like any shared doc (its
doc id on the wire is the string ``"_peers"``), persisted in the node's store
(setting ``net.addressbook``), so a node that met a peer once can dial it again
after a restart with no bootstrap at all.

Entries are **self-announced and self-signed**: the entry under key
``<node id hex>`` may only be written by actor ``<node id>`` and its value
carries that node's Ed25519 signature over its name, addresses, time and relay
flag. A peer relaying the book can therefore neither invent addresses for
someone else nor alter an entry; the worst it can do is withhold entries. And
addresses are only hints anyway: every address embeds the node id, and the
CurveZMQ handshake proves the listener holds that key.

Expiry: an entry whose announcement is older than the book's ``ttl`` (default
14 days, ``NetConfig.peer_ttl``) is ignored by every node (not dialed, not
listed); a running node re-signs its own entry every ``ttl / 4`` so it never
expires while alive. An entry claiming a time more than a day ahead is ignored
too (it would never expire). A node with nothing to dial (a temporary profile,
``listed=False``, or no listening address) never writes an entry at all: the
book holds only nodes someone could reach. The CRDT history keeps the bytes of
expired entries (bounded by MAX_ENTRIES); only their author could delete them.

Known limit: CRDT changes themselves are not signed, so a hostile peer could
claim actor X's next seq with one of X's *older* signed entries; a replica
that sees that first keeps the stale (but genuine) entry until X writes again.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cbor2

from ownkernel.crdt import Doc
from ownkernel.crdt import codec as crdt_codec
from ownkernel.crdt.codec import SET, Bundle
from ownkernel.node.config import DIAL_SCHEMES
from ownkernel.node.gate import BOOK_DOC
from ownkernel.store.identity import Identity, verify

if TYPE_CHECKING:
    pass

__all__ = ["BOOK_DOC", "AddressBook", "Entry"]

log = logging.getLogger(__name__)

ROOT = "m:peers"
SETTING = "net.addressbook"
_DOMAIN = "ownkernel/addr/v1"
MAX_ENTRIES = 4096
MAX_BLOB = 64 * 1024
MAX_PENDING = 512
DEFAULT_TTL = 14 * 24 * 3600.0
FUTURE_SLACK = 24 * 3600.0  # clocks differ; a claim further ahead is bogus


@dataclass(frozen=True)
class Entry:
    node_id: bytes
    name: str
    addresses: tuple[str, ...]
    time: float  # wall clock of the announcement (the announcer's own claim)
    relay: bool


def _signed_part(node_id: bytes, name: str, addrs: list[str], t: float, relay: bool) -> bytes:
    return cbor2.dumps([_DOMAIN, node_id, name, addrs, t, relay])


def _valid_address(a: Any, node_id: bytes) -> bool:
    # Only dialable tcp endpoints that name this very node: the suffix is what
    # the dialer pins as the server's Curve key.
    return (isinstance(a, str) and len(a) <= 300 and a.startswith(DIAL_SCHEMES)
            and a.endswith("#" + node_id.hex()))


def parse_entry(key: Any, value: Any) -> Entry | None:
    """The entry a map value holds, if well-formed and signed by its node (else None)."""
    if not isinstance(key, str) or len(key) != 64 or not isinstance(value, dict):
        return None
    try:
        node_id = bytes.fromhex(key)
    except ValueError:
        return None
    name, addrs, t = value.get("n"), value.get("a"), value.get("t")
    relay, sig = value.get("r", False), value.get("s")
    if (not isinstance(name, str) or len(name) > 256 or not isinstance(addrs, list)
            or len(addrs) > 16 or not all(_valid_address(a, node_id) for a in addrs)
            or isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)
            or not isinstance(relay, bool) or not isinstance(sig, bytes) or len(sig) != 64):
        return None
    if not verify(node_id, _signed_part(node_id, name, addrs, t, relay), sig):
        return None
    return Entry(node_id, name, tuple(addrs), float(t), relay)


class AddressBook:
    """The replicated address book of one node. Not thread-safe: use from the net loop."""

    def __init__(self, identity: Identity, store: Any = None,
                 ttl: float = DEFAULT_TTL) -> None:
        self.identity = identity
        self.ttl = ttl
        self.store = store
        self.rejected: Counter[str] = Counter()
        self._saved: bytes | None = None
        self.doc = self._load()
        self.dirty = False

    def _load(self) -> Doc:
        data = self.store.get_setting(SETTING) if self.store is not None else None
        if isinstance(data, bytes):
            try:
                self._saved = data
                return Doc.load(data, actor=self.identity.node_id)
            except ValueError:
                log.warning("stored address book is damaged; starting an empty one")
        return Doc(actor=self.identity.node_id)

    def save(self) -> None:
        """Persist (cheap to call often: writes only when something changed)."""
        if not self.dirty or self.store is None:
            return
        data = self.doc.save()
        self.store.set_setting(SETTING, data)
        self._saved = data
        self.dirty = False

    # -- reading ----------------------------------------------------------------
    @property
    def version(self) -> dict[bytes, int]:
        return dict(self.doc.version)

    def changes_since(self, vv: dict[bytes, int]) -> list[bytes]:
        return self.doc.changes(dict(vv))

    def fresh(self, e: Entry, now: float | None = None) -> bool:
        """Announced within ``ttl`` (and not claiming a time far in the future)."""
        now = time.time() if now is None else now
        return now - self.ttl <= e.time <= now + FUTURE_SLACK

    def entries(self, now: float | None = None) -> dict[bytes, Entry]:
        """Valid, unexpired entries by node id."""
        out: dict[bytes, Entry] = {}
        for k, v in self.doc.map("peers").items():
            e = parse_entry(k, v)
            if e is not None and self.fresh(e, now):
                out[e.node_id] = e
        return out

    def get(self, node_id: bytes, expired: bool = False) -> Entry | None:
        e = parse_entry(node_id.hex(), self.doc.map("peers").get(node_id.hex()))
        return e if e is None or expired or self.fresh(e) else None

    # -- writing ----------------------------------------------------------------
    def announce(self, name: str, addresses: list[str], relay: bool = False) -> bytes | None:
        """Write our own entry if it changed; returns the change to push (or None)."""
        me = self.identity.node_id
        cur = self.get(me, expired=True)
        addrs = [a for a in addresses if _valid_address(a, me)][:16]
        name = name[:256]
        if cur is None and not addrs:
            return None  # nothing to dial: stay out of the book (temporary, unlisted)
        now = time.time()
        if (cur is not None and (cur.name, list(cur.addresses), cur.relay) == (name, addrs, relay)
                and now - cur.time < self.ttl / 4):
            return None
        t = max(now, (cur.time + 1e-3) if cur else 0.0)
        sig = self.identity.sign(_signed_part(me, name, addrs, t, relay))
        self.doc.map("peers").set(me.hex(), {"n": name, "a": addrs, "t": t, "r": relay,
                                             "s": sig})
        blob = self.doc.commit()
        self.dirty = True
        self.save()  # our own seq must never be reused after a crash
        return blob

    # -- receiving ----------------------------------------------------------------
    def _check(self, blob: bytes) -> str | None:
        if not isinstance(blob, bytes) or len(blob) > MAX_BLOB:
            return "book_oversize"
        try:
            c = crdt_codec.decode(blob)
        except ValueError:
            return "book_bad_change"
        author = c.actors[0]
        if len(author) != 32:
            return "book_bad_actor"
        kpos = 3 if isinstance(c, Bundle) else 2
        for op in c.ops:
            if op[0] != SET or op[1] != ROOT or op[kpos] != author.hex():
                return "book_foreign_write"  # a node writes only its own entry
            if parse_entry(op[kpos], op[kpos + 1]) is None:
                return "book_bad_entry"
        if author == self.identity.node_id and c.seq > self.doc.version.get(author, 0):
            return "book_forged_self"  # nobody else writes changes as us
        return None

    def ingest(self, blobs: list[bytes]) -> int:
        """Check and apply changes from a peer; returns how many were new.

        Raises ValueError when every blob was rejected (the session counts it).
        """
        good, bad = [], 0
        for b in blobs:
            why = self._check(b)
            if why is None:
                good.append(b)
            else:
                self.rejected[why] += 1
                if self.rejected[why] == 1:
                    log.info("address book: rejected a change (%s)", why)
                bad += 1
        before = sum(self.doc.version.values())
        if good:
            try:
                self.doc.apply(good)
            except ValueError as e:
                self.rejected["book_apply"] += 1
                self._reset()
                raise ValueError(f"address book change refused: {e}") from None
        if self.doc.pending_count > MAX_PENDING or len(self.doc.map("peers")) > MAX_ENTRIES:
            # bounded memory: forget what cannot integrate (peers resend on anti-entropy)
            self.rejected["book_overflow"] += 1
            self._reset()
        new = sum(self.doc.version.values()) - before
        if new:
            self.dirty = True
        if bad and not good:
            raise ValueError(f"{bad} address book change(s) rejected")
        return new

    def _reset(self) -> None:
        # back to what was last persisted: whatever legit changes this drops come
        # back with the next anti-entropy round
        self.doc = Doc.load(self._saved, actor=self.identity.node_id) if self._saved else Doc(
            actor=self.identity.node_id)
        self.dirty = False

