"""Ephemeral presence: who is here, which docs they have open, where their cursor is.

Never stored. Each node announces, per document it has open, a small
CBOR-native state (by convention ``{"name": ..., "cursors": {text name:
[anchor, head]}}``) to the peers that share that doc, with a time to live;
it re-announces before the TTL runs out and sends ``None`` when it closes the
doc. What peers announce disappears when its TTL passes or the session ends.

On the wire (the protocol's ``presence`` message carries one state per doc
per session) the state is a map ``{origin node id: state}``: a node sends its
own entry, and a relay also the entries of peers it heard from, so presence
crosses a relay like changes do. Entries about other origins are only taken
from peers whose intro said they relay.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ownkernel.net.wire import DocId

if TYPE_CHECKING:
    from ownkernel.node.network import Link

__all__ = ["Presence", "PresenceMixin"]

MAX_ORIGINS = 64


class Presence:
    """Local states to announce and remote states heard. Use from the net loop only."""

    def __init__(self, node_id: bytes, ttl: float = 30.0) -> None:
        self.node_id = node_id
        self.ttl = ttl
        self.local: dict[DocId, Any] = {}
        # doc -> sender -> ({origin: state}, expires_at)
        self.remote: dict[DocId, dict[bytes, tuple[dict[bytes, Any], float]]] = {}
        self.last_sent = 0.0

    # -- local --------------------------------------------------------------------
    def set_local(self, doc: DocId, state: Any) -> None:
        if state is None:
            self.local.pop(doc, None)
        else:
            self.local[doc] = state

    def wire_state(self, doc: DocId, relay: bool, exclude: bytes) -> dict[bytes, Any] | None:
        """The map to send about ``doc`` to peer ``exclude`` (None: nothing to say)."""
        out: dict[bytes, Any] = {}
        if doc in self.local:
            out[self.node_id] = self.local[doc]
        if relay:
            for origin, state in self.merged(doc).items():
                if origin not in (exclude, self.node_id) and len(out) < MAX_ORIGINS:
                    out[origin] = state
        return out or None

    # -- remote -------------------------------------------------------------------
    def received(self, doc: DocId, sender: bytes, state: Any, expires_at: float,
                 trust_others: bool) -> bool:
        """Record what ``sender`` said about ``doc``; True if it looked well-formed."""
        if not isinstance(state, dict):
            return False
        kept: dict[bytes, Any] = {}
        for origin, s in list(state.items())[:MAX_ORIGINS]:
            if not isinstance(origin, bytes) or len(origin) != 32 or origin == self.node_id:
                continue
            if origin == sender or trust_others:
                kept[origin] = s
        senders = self.remote.setdefault(doc, {})
        if kept:
            senders[sender] = (kept, expires_at)
        else:
            senders.pop(sender, None)
        return True

    def expired(self, doc: DocId, sender: bytes) -> None:
        senders = self.remote.get(doc)
        if senders is not None:
            senders.pop(sender, None)
            if not senders:
                del self.remote[doc]

    def drop_sender(self, sender: bytes) -> None:
        for doc in list(self.remote):
            self.expired(doc, sender)

    def merged(self, doc: DocId, now: float | None = None) -> dict[bytes, Any]:
        """``{origin: state}`` for a doc; a node's own word beats what relays say of it."""
        out: dict[bytes, Any] = {}
        for sender, (states, exp) in self.remote.get(doc, {}).items():
            if now is not None and exp <= now:
                continue
            for origin, s in states.items():
                if origin == sender or origin not in out:
                    out[origin] = s
        return out

    def docs(self) -> Iterable[DocId]:
        return list(self.remote)


class PresenceMixin:
    """NodeNetwork's presence sending and public presence API."""

    def _send_presence(self, link: Link, docs: Iterable[Any] | None = None) -> None:
        if link.peer is None or not link.session.is_open:
            return
        shared = self.shared_docs(link.peer)
        wanted = set(self.presence.local) | set(self.presence.docs()) if docs is None else docs
        for doc in wanted:
            if doc not in shared:
                continue
            state = self.presence.wire_state(doc, self.config.relay, link.peer)
            if state is not None or doc in link.presence_sent:
                link.session.send_presence(doc, state if state is not None else {},
                                           self.presence.ttl)
                if state is None:
                    link.presence_sent.discard(doc)
                else:
                    link.presence_sent.add(doc)

    def _set_presence(self, doc: Any, state: Any) -> None:
        self.presence.set_local(doc, state)
        for link in list(self._by_peer.values()):
            self._send_presence(link, [doc])
        self._flush_all()

    def set_presence(self, doc: Any, state: Any) -> None:
        self._call(self._set_presence, doc, state)

    def get_presence(self, doc: Any) -> dict[bytes, Any]:
        return self._call(lambda: self.presence.merged(doc, time.monotonic()))
