"""Ephemeral presence: who is here, which docs they have open, where their cursor is.

Never stored. Each node announces, per document it has open, a small
CBOR-native state (by convention ``{"name": ..., "cursors": {text name:
[anchor, head]}}``) to the peers that share that doc. The state travels as a
**claim signed by its origin** (gate.seal_presence: doc, origin, state, wall-clock
expiry, counter), so a relay can pass claims on but nobody can post presence under
another member's id; every receiver checks the signature, that the origin may read
the doc, and the expiry (Gate.open_presence). A node re-signs its claims before
they expire, and sends an empty list when it closes the doc.

On the wire the protocol's ``presence`` message carries, per doc, opaque bytes:
the CBOR list of signed claims — a node sends its own, and a relay also those it
heard from others.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import cbor2

from ownkernel.node.gate import PresenceClaim, seal_presence

if TYPE_CHECKING:
    from ownkernel.node.network import Link, NodeNetwork

__all__ = ["Presence"]

MAX_CLAIMS = 64  # claims per doc per message


class Presence:
    """Local claims to announce and remote claims heard. Use from the net loop only."""

    def __init__(self, net: NodeNetwork, ttl: float = 30.0) -> None:
        self.net = net
        self.ttl = ttl
        self.local_state: dict[bytes, Any] = {}
        self.local: dict[bytes, bytes] = {}  # doc -> our signed claim
        self.remote: dict[bytes, dict[bytes, tuple[PresenceClaim, bytes, bytes]]] = {}
        self._counter = 0

    # -- local --------------------------------------------------------------------
    def set_local(self, doc: bytes, state: Any) -> None:
        if state is None:
            self.local_state.pop(doc, None)
            self.local.pop(doc, None)
        else:
            self.local_state[doc] = state
            self._seal(doc)

    def _seal(self, doc: bytes) -> None:
        self._counter += 1
        self.local[doc] = seal_presence(self.net.node.identity, doc, self.local_state[doc],
                                        time.time() + self.ttl, self._counter)

    def reseal(self) -> None:
        """New expiries for our claims (called every ttl/3)."""
        for doc in list(self.local_state):
            self._seal(doc)

    def wire_state(self, doc: bytes, exclude: bytes) -> list[bytes]:
        """The claims to send about ``doc`` to peer ``exclude``."""
        out = [self.local[doc]] if doc in self.local else []
        if self.net.relay.enabled:
            now = time.time()
            for origin, (claim, blob, _sender) in self.remote.get(doc, {}).items():
                if origin != exclude and claim.expires > now and len(out) < MAX_CLAIMS:
                    out.append(blob)
        return out

    def docs(self) -> set[bytes]:
        return set(self.local) | set(self.remote)

    # -- remote -------------------------------------------------------------------
    def received(self, link: Link, doc: bytes, raw: bytes) -> bool:
        """Take the claims ``link.peer`` sent about ``doc``; False if any was refused."""
        sender = link.peer
        assert sender is not None
        try:
            state = cbor2.loads(raw)
        except Exception:  # hostile bytes raise many types
            return False
        if not isinstance(state, list):
            return False
        node = self.net.node
        ok = True
        now = time.time()
        heard = self.remote.setdefault(doc, {})
        # what this sender told us before and no longer says is gone
        said: set[bytes] = set()
        for blob in state[:MAX_CLAIMS]:
            with node.lock:
                claim = node.gate.open_presence(sender, blob, now)
            if isinstance(claim, str):
                node.gate.reject(claim)
                ok = False
                continue
            if claim.doc != doc or claim.origin == node.id:
                continue
            old = heard.get(claim.origin)
            if old is None or old[0].counter <= claim.counter or old[0].expires < now:
                heard[claim.origin] = (claim, blob, sender)
                said.add(claim.origin)
        for origin, (_c, _b, s) in list(heard.items()):
            if s == sender and origin not in said:
                del heard[origin]
        if not heard:
            self.remote.pop(doc, None)
        return ok

    def drop_sender(self, sender: bytes) -> None:
        for doc in list(self.remote):
            heard = self.remote[doc]
            for origin, (_c, _b, s) in list(heard.items()):
                if s == sender:
                    del heard[origin]
            if not heard:
                del self.remote[doc]

    def merged(self, doc: bytes) -> dict[bytes, Any]:
        """``{origin: state}`` for a doc, unexpired claims only."""
        now = time.time()
        return {origin: c.state for origin, (c, _b, _s) in self.remote.get(doc, {}).items()
                if c.expires > now}

    def profiles(self) -> dict[bytes, tuple[str, str]]:
        """``{origin: (name, colour)}`` from the newest unexpired claim of each
        origin that carries them (any doc): what each peer calls itself."""
        now = time.time()
        best: dict[bytes, tuple[int, str, str]] = {}
        for heard in self.remote.values():
            for origin, (c, _b, _s) in heard.items():
                st = c.state
                if c.expires <= now or not isinstance(st, dict):
                    continue
                name, colour = st.get("name"), st.get("color")
                if not isinstance(name, str) or not name:
                    continue
                # a peer's words end up in style attributes: #rrggbb or nothing
                if not (isinstance(colour, str) and len(colour) == 7 and colour[0] == "#"
                        and all(ch in "0123456789abcdefABCDEF" for ch in colour[1:])):
                    colour = ""
                if origin not in best or best[origin][0] < c.counter:
                    best[origin] = (c.counter, name[:64], colour)
        return {o: (n, col) for o, (_k, n, col) in best.items()}

    # -- sending ------------------------------------------------------------------
    def send(self, link: Link, docs: Any = None) -> None:
        if link.peer is None or not link.session.is_open:
            return
        wanted = self.docs() if docs is None else docs
        for doc in wanted:
            if not self.net.sharing.may_read(link.peer, doc):
                continue
            claims = self.wire_state(doc, link.peer)
            if claims or doc in link.presence_sent:
                link.session.send_presence(doc, cbor2.dumps(claims), self.ttl)
                if claims:
                    link.presence_sent.add(doc)
                else:
                    link.presence_sent.discard(doc)
