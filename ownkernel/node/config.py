"""Network settings of a node, the public view of a peer, and where to listen.

``Node(..., network=NetConfig(...))`` tunes timers and limits; ``Peer`` is
what ``node.peers`` lists.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_LISTEN", "DIAL_SCHEMES", "NetConfig", "Peer", "advertised", "env_advertise",
           "env_bootstrap", "interface_addresses", "sticky_listen"]

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
    tick: float = 0.05  # shortest wait between two timer rounds
    idle_tick: float = 0.25  # longest (dialing, address book); sessions' timers wake sooner
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
    # Address-book entries (and remembered peers) unseen for this long are
    # ignored: not dialed, not listed, not passed on as dial targets. Nodes
    # re-sign their own entry every ttl/4 while they run (addressbook.py).
    peer_ttl: float = 14 * 24 * 3600.0


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
    route: str = ""  # how we reach it: "direct <address>", "via relay <name>" (Node.peers)

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


# -- what to advertise (issue #11 §2) ---------------------------------------------
_WILDCARD = ("0.0.0.0", "*", "[::]", "::", "")


def env_advertise() -> list[str]:
    """``OWNKERNEL_ADVERTISE``: ``HOST[:PORT]`` or addresses, comma or space separated."""
    raw = os.environ.get("OWNKERNEL_ADVERTISE", "")
    return [x for x in raw.replace(",", " ").split() if x]


def _usable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Loopback only reaches this machine and link-local needs a scope id; multicast
    # and unspecified are never a host's own address.
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def _ipv4_from_proc() -> list[str]:
    # /proc/net/fib_trie lists every local address as "|-- A.B.C.D" followed by
    # "/32 host LOCAL"; it is per network namespace, which the tests rely on.
    out: list[str] = []
    with contextlib.suppress(OSError), open("/proc/net/fib_trie", encoding="ascii") as f:
        prev = ""
        for line in f:
            text = line.strip()
            if text.startswith("/32 host LOCAL") and prev.startswith("|-- "):
                out.append(prev[4:].strip())
            prev = text
    return out


def _ipv6_from_proc() -> list[str]:
    out: list[str] = []
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as f:
        for line in f:
            h = line.split()[0]
            if len(h) == 32:
                out.append(str(ipaddress.IPv6Address(bytes.fromhex(h))))
    return out


def _from_resolver() -> list[str]:
    """Elsewhere (macOS, Windows): the host name's addresses and the default route's."""
    import socket

    out: list[str] = []
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            out.append(str(info[4][0]))
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # a UDP "connect" sends nothing: it picks the route
        out.append(s.getsockname()[0])
    return out


def _default_route_source(family: int) -> str | None:
    """The address this machine sends from by default (a UDP "connect" sends nothing)."""
    import socket

    probe = ("192.0.2.1", 9) if family == 4 else ("2001:db8::1", 9)  # documentation ranges
    with contextlib.suppress(OSError), socket.socket(
            socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.connect(probe)
        return str(s.getsockname()[0])
    return None


def interface_addresses(family: int = 4) -> list[str]:
    """This machine's own IP addresses that another machine could dial (IPv4 or 6).

    The default route's address comes first: the one most peers can reach (a
    dialer tries the others after it, e.g. a LAN address next to a VPN's).
    """
    raw = (_ipv4_from_proc() if family == 4 else _ipv6_from_proc()) or _from_resolver()
    primary = _default_route_source(family)
    if primary in raw:
        raw = [primary, *[a for a in raw if a != primary]]
    out: list[str] = []
    for a in raw:
        try:
            ip = ipaddress.ip_address(a.split("%")[0])
        except ValueError:
            continue
        if ip.version == family and _usable(ip) and str(ip) not in out:
            out.append(str(ip))
    return out


def _split(endpoint: str) -> tuple[str, str, str]:
    scheme, _, rest = endpoint.partition("://")
    host, _, port = rest.rpartition(":")
    return scheme, host, port


def _host_port(host: str, port: str, scheme: str = "tcp") -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _resolve_advertised(given: str, endpoints: list[str]) -> str:
    """``HOST``, ``HOST:PORT`` or a full address -> an endpoint (port: the bound one)."""
    if "://" in given:
        return given
    tcp = [e for e in endpoints if e.startswith("tcp://")]
    host, port = given, ""
    if given.startswith("["):  # [v6] or [v6]:port
        host, _, rest = given[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif given.count(":") == 1:
        host, port = given.split(":")
    if not port:
        if not tcp:
            raise ValueError(f"advertise {given!r}: give HOST:PORT (no TCP port is bound)")
        port = _split(tcp[0])[2]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"advertise {given!r}: {port!r} is not a port number")
    return _host_port(host, port)


def advertised(endpoints: list[str], advertise: list[str] | None, node_id: bytes) -> list[str]:
    """The addresses a node announces (invites, hello, address book).

    ``advertise`` wins when given (``HOST`` takes the bound port). Otherwise each
    bound endpoint, where a wildcard host (``0.0.0.0``, ``*``, ``[::]``) becomes
    every usable interface address; 127.0.0.1 only when the machine has no other
    (a lone container or namespace can still be dialed from itself).
    """
    eps: list[str] = []
    if advertise is not None:  # [] advertises nothing
        eps = [_resolve_advertised(a.split("#")[0], endpoints) for a in advertise]
    else:
        for ep in endpoints:
            scheme, host, port = _split(ep)
            if scheme != "tcp" or host not in _WILDCARD:
                eps.append(ep)
                continue
            ips = interface_addresses(4)
            if host in ("[::]", "::"):
                ips += interface_addresses(6)
            eps += [_host_port(ip, port) for ip in ips] or [_host_port("127.0.0.1", port)]
    out = list(dict.fromkeys(f"{e}#{node_id.hex()}" for e in eps))
    return out[:16]
