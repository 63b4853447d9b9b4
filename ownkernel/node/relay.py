"""Extension frames after hello: grants, the relay flag, and carry requests.

Extension frames travel next to the sync protocol on the same connection. They
start with ``0xff`` (a CBOR *break*, which never starts a protocol frame), so the
network layer routes them with a one-byte test. They are accepted **only on a
connection whose hello was verified** (the session knows the peer's node id,
and the Curve key the frame came with is that id's): nothing here is answered,
or even parsed beyond its prefix, for a stranger that has not said who it is.

    hi     {"type": "hi", "relay": bool, "grants": [grant, ...]}
           sent once after hello: whether we relay, and our holder-bound grants
           for docs this peer is entitled to know we hold (Gate.grants_for);
    grants {"type": "grants", "grants": [grant, ...]}   more grants, later;
    carry  {"type": "carry", "docs": [owner-signed descriptor, ...]}
           "please carry these docs" (only to peers whose hi says relay).

A relay carries only what an owner signed (the descriptor fixes owner and
whether the doc is encrypted) for the owner or a member who showed its grant;
see Gate.carry. For a doc in clear it judges access like any node; for an
encrypted one it stores and forwards ciphertext to the owner and to holders of
grants the owner signed.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import cbor2

from ownkernel.net.wire import _DECODE_KW, _Bad, _check_native

if TYPE_CHECKING:
    from ownkernel.node.network import Link, NodeNetwork

__all__ = ["EXT_PREFIX", "Relay", "decode_ext", "encode_ext"]

log = logging.getLogger(__name__)

EXT_PREFIX = b"\xffOK2"
MAX_EXT = 1024 * 1024
MAX_ITEMS = 1000  # grants or descriptors per frame (senders chunk)
MAX_ITEM = 4096


def encode_ext(msg: dict[str, Any]) -> bytes:
    return EXT_PREFIX + cbor2.dumps(msg)


def _items(msg: dict[str, Any], key: str) -> list[bytes]:
    v = msg.get(key, [])
    if (not isinstance(v, list) or len(v) > MAX_ITEMS
            or not all(isinstance(c, bytes) and len(c) <= MAX_ITEM for c in v)):
        raise _Bad("ext-bad-field", key)
    return v


def decode_ext(frame: bytes) -> dict[str, Any]:
    """Decode and schema-check an extension frame; raises _Bad(reason)."""
    if frame[:len(EXT_PREFIX)] != EXT_PREFIX:
        raise _Bad("ext-bad-prefix")
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
    if kind == "hi":
        if not isinstance(msg.get("relay", False), bool):
            raise _Bad("ext-bad-field", "relay")
        _items(msg, "grants")
    elif kind == "grants":
        _items(msg, "grants")
    elif kind == "carry":
        _items(msg, "docs")
    else:
        raise _Bad("ext-unknown-type")
    return msg


def _no_tags(decoder: Any, tag: Any) -> Any:
    raise _Bad("ext-bad-cbor", "tags are not allowed")


def _chunks(items: list[bytes], n: int = 256) -> list[list[bytes]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


class Relay:
    """The network's part that speaks the extension frames (and relays when asked)."""

    def __init__(self, net: NodeNetwork, enabled: bool, use_relays: bool) -> None:
        self.net = net
        self.gate = net.node.gate
        self.enabled = enabled
        self.use_relays = use_relays
        self.relays: set[bytes] = set()  # peers whose hi says they relay

    # -- after a verified hello --------------------------------------------------
    def greet(self, link: Link, peer: bytes | None = None) -> None:
        """Say ``hi`` once per connection: to a peer whose hello we verified, or, on a
        connection we dialed, right after our own hello (``peer``: the key we pinned —
        the Curve handshake proved the other side holds it), so our grants arrive
        before the `have`s they make answerable."""
        peer = peer or link.peer
        if link.greeted or peer is None:
            return
        link.greeted = True
        with self.net.node.lock:
            grants = self.gate.grants_for(peer)
        chunks = _chunks(grants) or [[]]
        self.net.send_ext(link, {"type": "hi", "relay": self.enabled, "grants": chunks[0]})
        for c in chunks[1:]:
            self.net.send_ext(link, {"type": "grants", "grants": c})

    def on_frame(self, link: Link, frame: bytes) -> None:
        try:
            msg = decode_ext(frame)
        except _Bad as bad:
            self.net.count(bad.reason)
            return
        peer = link.peer
        assert peer is not None
        node = self.net.node
        if msg["type"] in ("hi", "grants"):
            if msg["type"] == "hi":
                if msg.get("relay"):
                    self.relays.add(peer)
                else:
                    self.relays.discard(peer)
            with node.lock:
                for g in msg.get("grants", []):
                    self.gate.present(peer, g)
            self.net.privilege(link)  # a member now: never evicted for strangers
            self.net.offer_new(link)
            if msg["type"] == "hi" and msg.get("relay") and self.use_relays:
                self.ask(link)
            return
        # carry
        added = []
        for raw in msg["docs"]:
            with node.lock:
                problem, desc = self.gate.carry(peer, raw)
                if desc is None:
                    continue
                node.carry_doc(desc)
            added.append(desc.doc)
        if added:  # (carry_doc told the gate about each new doc)
            self.net.offer_new(link)

    def ask(self, link: Link, docs: list[bytes] | None = None) -> None:
        """Ask relay ``link.peer`` to carry our docs (all, or ``docs``)."""
        assert link.peer is not None
        with self.net.node.lock:
            descs = self.gate.descriptors(docs)
            ids = [d for d in (docs if docs is not None else list(self.gate.docs()))]
            self.gate.asked_to_carry(link.peer, ids)
            grants = self.gate.grants_for(link.peer)
        for c in _chunks(grants):
            self.net.send_ext(link, {"type": "grants", "grants": c})
        for c in _chunks(descs):
            self.net.send_ext(link, {"type": "carry", "docs": c})

    def ask_all_relays(self, docs: list[bytes]) -> None:
        if not self.use_relays:
            return
        for peer in list(self.relays):
            link = self.net.link_of(peer)
            if link is not None:
                self.ask(link, docs)

    def forget(self, peer: bytes) -> None:
        self.relays.discard(peer)
