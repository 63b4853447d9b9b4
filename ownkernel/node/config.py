"""Network settings of a node, the public view of a peer, and where to listen.

``Node(..., network=NetConfig(...))`` tunes timers and limits; ``Peer`` is
what ``node.peers`` lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_LISTEN", "DIAL_SCHEMES", "NetConfig", "Peer", "env_bootstrap",
           "sticky_listen"]

DEFAULT_LISTEN = "tcp://127.0.0.1:0"
# What a peer's address may start with, wherever addresses are accepted (bootstrap,
# connect, invites, the address book). ws(s):// reaches a relay through a WebSocket
# tunnel (net/wstunnel.py, docs/relay.md); a node never listens on one itself.
DIAL_SCHEMES = ("tcp://", "ws://", "wss://")


@dataclass
class NetConfig:
    """Network settings of a node (``Node(..., network=NetConfig(...))`` for tuning)."""

    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    bootstrap: list[str] = field(default_factory=list)
    relay: bool = False  # carry docs for peers that cannot reach each other
    use_relays: bool = True  # ask relay peers to carry our docs
    discovery: dict[str, Any] | None = None  # e.g. {"interface": "127.0.0.1"}; None: off
    advertise: list[str] | None = None  # addresses to announce instead of the bound ones
    listed: bool = True  # put our addresses in the replicated address book
    allow: set[bytes] | None = None  # node ids allowed to connect (None: anyone not denied)
    deny: set[bytes] = field(default_factory=set)
    sticky_port: bool = True  # listen on ":0" reuses last run's port when free
    tick: float = 0.05
    ping_interval: float = 5.0
    peer_timeout: float = 15.0
    anti_entropy: float = 10.0
    announce: float = 0.05  # others' changes are announced after this delay (merged)
    handshake_timeout: float = 10.0
    connect_timeout: float = 3.0
    backoff_min: float = 0.25
    backoff_max: float = 30.0
    max_peers: int = 32  # peers dialed from the address book
    rate: float = 5000.0  # frames/s per peer key (transport rate limit)
    burst: float = 10000.0
    max_frame_size: int = 4 * 1024 * 1024
    presence_ttl: float = 30.0


@dataclass(frozen=True)
class Peer:
    """A peer as ``node.peers`` lists it."""

    id: bytes
    name: str
    addresses: tuple[str, ...]
    online: bool
    latency: float | None  # seconds, last ping round trip
    last_seen: float | None  # wall clock (time.time())
    relay: bool = False

    @property
    def short_id(self) -> str:
        return self.id.hex()[:8]

    def __repr__(self) -> str:
        state = "online" if self.online else "offline"
        return f"<Peer {self.short_id} {self.name!r} {state}>"


def sticky_listen(listen: list[str], last: list[str]) -> list[str]:
    """``tcp://h:0`` -> last run's ``tcp://h:port``, so peers find us where they met us."""
    out, used = [], set()
    for ep in listen:
        if ep.endswith(":0"):
            host = ep[:-2]
            for prev in last:
                if isinstance(prev, str) and prev.rsplit(":", 1)[0] == host and prev not in used:
                    ep = prev
                    used.add(prev)
                    break
        out.append(ep)
    return out



def env_bootstrap() -> list[str]:
    """Addresses (or tokens) from ``OWNKERNEL_BOOTSTRAP``, comma or space separated."""
    raw = os.environ.get("OWNKERNEL_BOOTSTRAP", "")
    return [x for x in raw.replace(",", " ").split() if x]
