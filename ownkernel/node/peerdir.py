"""Who this node knows, as :class:`~ownkernel.node.config.Peer` rows.

A peer's name and addresses come from what it said in its hello (or a later
``profile`` message), else its signed address-book entry, else the remembered
peers table in the store; whether it is online and its round-trip time come
from the live session. The network keeps one directory (``net.directory``) and
reads it on the node thread: ``node.peers``, the peer-list widget, calls and
pairing all show the same rows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ownkernel.node.config import Peer

if TYPE_CHECKING:
    from ownkernel.node.network import NodeNetwork

__all__ = ["PeerDirectory"]


class PeerDirectory:
    """Names, addresses and last-seen times of the peers one network heard of."""

    def __init__(self, net: NodeNetwork) -> None:
        self.net = net
        # peer id -> (name, addresses) as the peer itself said (hello, profile)
        self.names: dict[bytes, tuple[str, tuple[str, ...]]] = {}
        self.last_seen: dict[bytes, float] = {}  # peer id -> wall time it was last online

    def heard(self, peer: bytes, name: str, addresses: tuple[str, ...]) -> None:
        """A hello: the name and addresses the peer gives for itself, now."""
        self.names[peer] = (name, addresses)
        self.last_seen[peer] = time.time()

    def renamed(self, peer: bytes, name: str) -> None:
        """A ``profile`` message: a new name, the same addresses."""
        _, addrs = self.names.get(peer, ("", ()))
        self.names[peer] = (name, addrs)

    def name_of(self, peer: bytes) -> str:
        return self.names.get(peer, ("", ()))[0]

    def peer(self, peer: bytes) -> Peer:
        """The row of one peer (node thread)."""
        net = self.net
        link = net.by_peer.get(peer)
        name, addrs = self.names.get(peer, ("", ()))
        if net.book is not None and (not name or not addrs):
            e = net.book.get(peer)
            if e is not None:
                name, addrs = name or e.name, addrs or e.addresses
        online = link is not None and link.session.is_open
        return Peer(peer, name, tuple(addrs), online,
                    link.session.latency if online and link else None,
                    time.time() if online else self.last_seen.get(peer),
                    peer in net.relay.relays)

    def all(self) -> list[Peer]:
        """Every peer remembered, listed in the address book or connected: online
        first, then by name (node thread)."""
        net = self.net
        ids: dict[bytes, None] = {}
        for p in net.node.store.peers():
            ids[p["id"]] = None
            if p["id"] not in self.names and p.get("name") is not None:
                self.names[p["id"]] = (p["name"], tuple(p.get("addresses") or ()))
            self.last_seen.setdefault(p["id"], p.get("last_seen"))
        assert net.book is not None
        ids.update(dict.fromkeys(net.book.entries()))
        ids.update(dict.fromkeys(net.by_peer))
        ids.pop(net.id, None)
        out = [self.peer(p) for p in ids]
        out.sort(key=lambda p: (not p.online, p.name, p.id))
        return out
