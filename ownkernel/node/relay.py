"""Relaying, and the node's extension frames (``intro`` and ``want``).

A node started with ``relay=True`` carries documents for peers that cannot
reach each other: each peer tells it which docs it wants carried (``want``),
the relay tracks them (``Node._track_doc``: verify authorship, store, forward)
and offers each doc to the peers that asked for it. For an encrypted doc the
relay has no key: it verifies signatures and stores ciphertext only. For a
doc in clear it judges access like any node (roles in the doc, capabilities
presented), so it offers content only to members. It can never forge a change:
changes are signed envelopes, checked again by every receiver.

Extension frames travel next to the sync protocol on the same connection.
They start with ``0xff`` (a CBOR *break*, which never starts a protocol
frame), so the network layer routes them with a one-byte test:

    intro  {"type": "intro", "id": node id, "relay": bool, "caps": [capability...]}
           sent once per connection, before hello: who we are, whether we
           relay, and the invite capabilities we hold (so a member who joined
           with a token but never wrote can be offered the doc);
    want   {"type": "want", "docs": [[doc id, owner id, encrypted], ...]}
           "please carry these docs" (only to peers whose intro says relay).
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import cbor2

from ownkernel.net.protocol import curve_key_of
from ownkernel.net.wire import _DECODE_KW, _Bad, _check_native
from ownkernel.node.invite import Invite, InviteError

if TYPE_CHECKING:
    from ownkernel.net.transport import Incoming
    from ownkernel.node.network import Link
    from ownkernel.node.node import Node

__all__ = ["EXT_PREFIX", "RelayMixin", "RelayState", "decode_ext", "encode_ext"]

log = logging.getLogger(__name__)

EXT_PREFIX = b"\xffOK1"
MAX_EXT = 256 * 1024
MAX_CAPS = 256
MAX_CAP = 2048
MAX_WANT = 1000  # docs one peer may ask a relay to carry


def encode_ext(msg: dict[str, Any]) -> bytes:
    return EXT_PREFIX + cbor2.dumps(msg)


def decode_ext(frame: bytes) -> dict[str, Any]:
    """Decode and schema-check an extension frame; raises _Bad(reason)."""
    if len(frame) > MAX_EXT:
        raise _Bad("ext-oversize")
    fp = io.BytesIO(frame[len(EXT_PREFIX):])
    try:
        msg = cbor2.CBORDecoder(fp, tag_hook=_no_tags, **_DECODE_KW).decode()
    except _Bad:
        raise
    except Exception as e:  # hostile bytes raise many types
        raise _Bad("ext-bad-cbor", f"{type(e).__name__}"[:80]) from None
    if fp.tell() != len(frame) - len(EXT_PREFIX):
        raise _Bad("ext-bad-cbor", "trailing bytes")
    _check_native(msg)
    if not isinstance(msg, dict):
        raise _Bad("ext-bad-message")
    kind = msg.get("type")
    if kind == "intro":
        nid, relay, caps = msg.get("id"), msg.get("relay", False), msg.get("caps", [])
        if not isinstance(nid, bytes) or len(nid) != 32 or not isinstance(relay, bool):
            raise _Bad("ext-bad-field", "intro id/relay")
        if (not isinstance(caps, list) or len(caps) > MAX_CAPS
                or not all(isinstance(c, bytes) and len(c) <= MAX_CAP for c in caps)):
            raise _Bad("ext-bad-field", "intro caps")
    elif kind == "want":
        docs = msg.get("docs")
        if not isinstance(docs, list) or len(docs) > MAX_WANT:
            raise _Bad("ext-bad-field", "want docs")
        for d in docs:
            if (not isinstance(d, list) or len(d) != 3 or not isinstance(d[0], bytes)
                    or not 1 <= len(d[0]) <= 64 or not isinstance(d[1], bytes)
                    or len(d[1]) != 32 or not isinstance(d[2], bool)):
                raise _Bad("ext-bad-field", "want item")
    else:
        raise _Bad("ext-unknown-type")
    return msg


def _no_tags(decoder: Any, tag: Any) -> Any:
    raise _Bad("ext-bad-cbor", "tags are not allowed")


class RelayState:
    """Who asked whom to carry which doc, and capabilities peers presented."""

    def __init__(self, node: Node, enabled: bool) -> None:
        self.node = node
        self.enabled = enabled
        self.wanted: dict[bytes, set[bytes]] = {}  # peer -> docs it asked us to carry
        self.asked: dict[bytes, set[bytes]] = {}  # relay peer -> docs we asked it to carry
        self.caps: dict[bytes, dict[bytes, bytes]] = {}  # peer -> doc -> capability
        self.relays: set[bytes] = set()  # peers whose intro says they relay
        self.rejected: Counter[str] = Counter()

    # -- what we tell others ------------------------------------------------------
    def our_caps(self) -> list[bytes]:
        rows = self.node.store.documents()
        return [r.token for r in rows if r.token is not None][:MAX_CAPS]

    def want_items(self, docs: list[bytes] | None = None) -> list[list[Any]]:
        """Docs to ask a relay to carry (all we hold, or the given ones)."""
        out = []
        for r in self.node.store.documents():
            if docs is None or r.id in docs:
                out.append([r.id, r.owner, bool(r.encrypted)])
        return out[:MAX_WANT]

    # -- what others tell us ---------------------------------------------------------
    def on_intro(self, peer: bytes, msg: dict[str, Any]) -> None:
        if msg.get("relay"):
            self.relays.add(peer)
        else:
            self.relays.discard(peer)
        caps: dict[bytes, bytes] = {}
        for c in msg.get("caps", []):
            try:
                inv = Invite.from_cap(c)  # verifies the inviter's signature
            except InviteError:
                self._reject("bad-capability")
                continue
            caps[inv.doc] = c
        self.caps[peer] = caps

    def on_want(self, peer: bytes, items: list[list[Any]]) -> list[bytes]:
        """Track what a peer asks us to carry; returns the docs now carried for it."""
        if not self.enabled:
            self._reject("relay-disabled", len(items))
            return []
        mine = self.wanted.setdefault(peer, set())
        added = []
        for doc, owner, enc in items:
            if doc not in mine and len(mine) >= MAX_WANT:
                self._reject("relay-too-many")
                break
            if self.node.store.document(doc) is None:
                # Only the owner, or a holder of an invite naming that owner, may make
                # us start carrying a doc: nobody can squat a doc id with a fake owner.
                cap = self.caps.get(peer, {}).get(doc)
                ok = owner == peer
                if not ok and cap is not None:
                    try:
                        ok = Invite.from_cap(cap).owner == owner
                    except InviteError:
                        ok = False
                if not ok:
                    self._reject("relay-unverified-owner")
                    continue
                self.node._track_doc(doc, owner, encrypted=enc)
            mine.add(doc)
            added.append(doc)
        return added

    def _reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] += n
        if self.rejected[reason] == n:
            log.info("relay: %s", reason)

    # -- who may see a doc --------------------------------------------------------
    def may_see(self, peer: bytes, doc: bytes) -> bool:
        """Is ``doc`` offered to ``peer``? (The network caches the answer.)"""
        node = self.node
        if doc in self.asked.get(peer, ()):
            return True  # we asked this relay to carry it
        with node._lock:  # the network thread reads state the user's thread writes
            od = node._open_doc(doc)
            if doc in self.wanted.get(peer, ()) and od.crdt is None:
                return True  # ciphertext we cannot read: knowing the id is enough
            if od.access().role(peer, doc) is not None:
                return True
            cap = self.caps.get(peer, {}).get(doc)
            return cap is not None and node._check_capability(doc, cap) is None

    def forget(self, peer: bytes) -> None:
        self.relays.discard(peer)


class RelayMixin:
    """NodeNetwork's side of intro/want frames (kept here to keep network.py small)."""

    def _send_intro(self, link: Link) -> None:
        self._send_raw(link.conn, encode_ext(
            {"type": "intro", "id": self.id, "relay": self.config.relay,
             "caps": self.relay.our_caps()}))

    def _on_ext(self, inc: Incoming) -> None:
        if inc.frame[:len(EXT_PREFIX)] != EXT_PREFIX:
            self._count("ext-bad-prefix")
            return
        try:
            msg = decode_ext(inc.frame)
        except _Bad as bad:
            self._count(bad.reason)
            return
        if msg["type"] == "intro":
            peer = msg["id"]
            try:
                ok = curve_key_of(peer) == inc.curve_key
            except ValueError:
                ok = False
            if not ok:
                self._count("ext-identity-mismatch")
                return
            self._intro_ids[inc.curve_key] = peer
            self.relay.on_intro(peer, msg)
            self._shared.pop(peer, None)
            if msg.get("relay") and self.config.use_relays:
                items = self.relay.want_items()
                self.relay.asked[peer] = {i[0] for i in items}
                self._shared.pop(peer, None)
                if items:
                    self._send_raw(inc.conn, encode_ext({"type": "want", "docs": items}))
            link = self._links.get(inc.conn)
            if link is not None and link.session.is_open:
                link.session.sync_all(time.monotonic())  # caps may have opened new docs
            return
        peer = self._intro_ids.get(inc.curve_key)
        if peer is None:
            self._count("ext-before-intro")
            return
        added = self.relay.on_want(peer, msg["docs"])
        if added:
            self._invalidate(docs_changed=True)
            link = self._links.get(inc.conn)
            if link is not None and link.session.is_open:
                for d in added:
                    link.session.send_have(d)
                    link.synced.add(d)

    def _ask_relays(self, docs: list[bytes]) -> None:
        if not self.config.use_relays:
            return
        for peer in list(self.relay.relays):
            link = self._by_peer.get(peer)
            if link is None:
                continue
            items = self.relay.want_items(docs)
            if items:
                self.relay.asked.setdefault(peer, set()).update(i[0] for i in items)
                self._shared.pop(peer, None)
                self._send_raw(link.conn, encode_ext({"type": "want", "docs": items}))

    def _announce_doc(self, doc: bytes) -> None:
        """A doc appeared here (joined): present the new capability, offer it everywhere."""
        self._seen_docs.add(doc)
        self._invalidate(docs_changed=True)
        for link in list(self._links.values()):
            self._send_intro(link)
        self._ask_relays([doc])
        for peer, link in list(self._by_peer.items()):
            if link.session.is_open and doc in self.shared_docs(peer):
                link.session.send_have(doc)
                link.synced.add(doc)
        self._flush_all()

    def announce_doc(self, doc: bytes) -> None:
        self._call(self._announce_doc, doc)
