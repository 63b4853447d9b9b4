"""Whom to dial, when: the dial planner (pure) and the network's Dialing part.

``Dialer`` plans connections with exponential backoff and jitter (no sockets, no
clock: time is passed in). ``Dialing`` feeds it from bootstrap addresses, invite
tokens, the address book and LAN discovery (ZRE beacons, only on an interface
the user names), dials through the transport, and turns Curve handshakes into
protocol sessions (``net.new_link``: our hello goes first).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq

from ownkernel.net.protocol import curve_key_of
from ownkernel.net.transport import format_address
from ownkernel.node.config import NetConfig

if TYPE_CHECKING:
    from ownkernel.net.transport import ConnEvent
    from ownkernel.node.network import NodeNetwork

__all__ = ["Dial", "Dialer", "Dialing"]


@dataclass(eq=False)
class Dial:
    node_id: bytes
    addresses: list[str]
    sticky: bool  # bootstrap / explicit connect: never forgotten
    conn: Any = None
    started: float = 0.0
    attempts: int = 0
    next_at: float = 0.0
    idx: int = 0
    never: bool = False  # our own policy forbids this key


class Dialer:
    """Which peers to dial when, with exponential backoff. Pure: no sockets, no clock."""

    def __init__(self, me: bytes, config: NetConfig) -> None:
        self.me = me
        self.config = config
        self.dials: dict[bytes, Dial] = {}
        self._by_conn: dict[Any, Dial] = {}
        # called after an urgent add: the node's timer round may be in a quiet sleep
        self.on_urgent: Callable[[], None] | None = None

    def add(self, node_id: bytes, addresses: list[str], *, sticky: bool,
            urgent: bool = False) -> Dial | None:
        if node_id == self.me:
            return None
        d = self.dials.get(node_id)
        if d is None:
            casual = sum(1 for x in self.dials.values() if not x.sticky)
            if not sticky and casual >= self.config.max_peers:
                return None
            d = self.dials[node_id] = Dial(node_id, [], sticky)
        for a in reversed(addresses):  # newest first
            if a in d.addresses:
                d.addresses.remove(a)
            d.addresses.insert(0, a)
        del d.addresses[16:]
        d.sticky |= sticky
        if urgent:
            d.next_at, d.attempts, d.never, d.idx = 0.0, 0, False, 0
            if self.on_urgent is not None:
                self.on_urgent()
        return d

    def by_conn(self, conn: Any) -> Dial | None:
        return self._by_conn.get(conn)

    def step(self, now: float, online: Callable[[bytes], bool]) -> list[tuple[str, Dial]]:
        out: list[tuple[str, Dial]] = []
        for d in self.dials.values():
            if online(d.node_id):
                d.attempts = 0
                continue
            if d.never or not d.addresses:
                continue
            if d.conn is not None:
                if now - d.started > self.config.connect_timeout:
                    out.append(("give-up", d))
                continue
            if now >= d.next_at:
                out.append(("connect", d))
        return out

    def connected(self, d: Dial, conn: Any, now: float) -> None:
        d.conn, d.started = conn, now
        self._by_conn[conn] = d

    def conn_closed(self, conn: Any, now: float, failed: bool) -> None:
        d = self._by_conn.pop(conn, None)
        if d is not None and d.conn == conn:
            d.conn = None
            if failed:
                self.failed(d, now)

    def failed(self, d: Dial, now: float, forever: bool = False) -> None:
        d.attempts += 1
        d.idx += 1  # try the next address next time
        delay = min(self.config.backoff_max,
                    self.config.backoff_min * 2 ** min(d.attempts - 1, 20))
        d.next_at = now + delay * random.uniform(0.8, 1.2)  # jitter: no thundering herd
        d.never = forever



class Dialing:
    """The network's part that decides whom to dial and reacts to connection events:
    bootstrap targets, tokens' inviters, the address book, LAN discovery hits."""

    def __init__(self, net: NodeNetwork) -> None:
        self.net = net
        self.id = net.id
        self.planner = Dialer(net.id, net.config)
        self.discovery: Any = None

    async def start_discovery(self, opts: dict[str, Any]) -> None:
        from ownkernel.net.zre import ZreDiscovery, ownkernel_headers

        iface = opts.get("interface")
        if not iface:
            raise ValueError("discovery needs an explicit interface, e.g. "
                             "discovery={'interface': '127.0.0.1'}")
        self.discovery = ZreDiscovery(
            self.net.node.name[:200] or "ownkernel",
            ownkernel_headers(self.id.hex(), self.net.addresses),
            iface, beacon_port=int(opts.get("port", 5670)),
            beacon_interval=float(opts.get("interval", 1.0)),
            peer_expiry=float(opts.get("expiry", 5.0)), on_peer=self.on_discovered)
        await self.discovery.start()

    def on_discovered(self, event: Any) -> None:
        from ownkernel.net.zre import PeerEntered, parse_ownkernel_headers

        if not isinstance(event, PeerEntered):
            return
        nid_hex, endpoints = parse_ownkernel_headers(event.headers)
        try:
            nid = bytes.fromhex(nid_hex or "")
        except ValueError:
            return
        if len(nid) != 32 or nid == self.id:
            return  # a plain ZRE peer (pyre): seen, but not an ownkernel node
        addrs = [e if "#" in e else format_address(e, nid) for e in endpoints
                 if e.startswith("tcp://")]
        if addrs:
            self.net.counts["discovered"] += 1
            self.planner.add(nid, addrs, sticky=False, urgent=True)

    def on_conn_event(self, ev: ConnEvent) -> None:
        now = time.monotonic()
        dial = self.planner.by_conn(ev.conn)
        if ev.kind == "handshake-ok":
            old = self.net.links.get(ev.conn)
            if old is not None:
                self.net.drop_link(old, "disconnected")
            if dial is None:
                return
            dial.attempts = 0
            link = self.net.new_link(ev.conn, curve_key_of(dial.node_id))
            link.session.hello()
            self.net.outbox.flush(link)
        elif ev.kind == "disconnected":
            link = self.net.links.get(ev.conn)
            if link is not None:
                self.net.drop_link(link, "disconnected")
            elif ev.conn[0] == "in":
                self.net.table.closed(ev.conn, gone=True)
            if dial is not None:
                dial.started = now  # libzmq reconnects by itself; give it a while
        elif ev.kind == "refused":
            self.net.count("refused-by-peer")
            link = self.net.links.get(ev.conn)
            if link is not None:
                self.net.drop_link(link, "refused")
            self.net.spawn(self.net.disconnect(ev.conn, failed=True))

    def add_target(self, target: str) -> bytes | None:
        """Dial an address (``tcp://host:port#<id>``) or the inviter of a token, for good.

        A token's doc must already be joined (``node.join``); a token without
        addresses only announces the doc to the peers we have.
        """
        from ownkernel.node.grants import TOKEN_PREFIX, Invite

        target = target.strip()
        if target.startswith(TOKEN_PREFIX):
            inv = Invite.parse(target)
            self.net.offer_doc(inv.doc)
            if not inv.addresses or inv.inviter == self.id:
                return None
            # An address naming another node (a relay the inviter uses, e.g. a
            # wss:// one: docs/relay.md) is dialed as that node: Curve pins its key.
            from ownkernel.net.transport import parse_address

            by_node: dict[bytes, list[str]] = {}
            for addr in inv.addresses:
                try:
                    nid = parse_address(addr)[1] or inv.inviter
                except ValueError:
                    continue
                by_node.setdefault(nid, []).append(addr)
            for nid, addrs in by_node.items():
                if nid != self.id:
                    self.planner.add(nid, addrs, sticky=True, urgent=True)
            return inv.inviter
        from ownkernel.net.transport import parse_address

        _, nid = parse_address(target)
        if nid is None:
            raise ValueError(f"{target!r}: an address needs the node id, like "
                             f"tcp://127.0.0.1:7700#<64 hex digits> (see node.address)")
        if nid == self.id:
            raise ValueError("that is this node's own address")
        self.planner.add(nid, [target], sticky=True, urgent=True)
        return nid

    def dial_from_book(self) -> None:
        assert self.net.book is not None
        for e in self.net.book.entries().values():
            if e.node_id != self.id and e.addresses:
                self.planner.add(e.node_id, list(e.addresses), sticky=False)

    async def step(self, now: float) -> None:
        assert self.net.transport is not None
        for action, d in self.planner.step(now, self.net.online):
            if action == "connect":
                try:
                    conn = await self.net.transport.connect(d.addresses[d.idx % len(d.addresses)])
                except PermissionError:
                    self.planner.failed(d, now, forever=True)
                    continue
                except (ValueError, zmq.ZMQError) as e:
                    self.net.count("bad-address", detail=str(e))
                    self.planner.failed(d, now)
                    continue
                self.planner.connected(d, conn, now)
            elif action == "give-up" and d.conn is not None:
                conn = d.conn
                await self.net.transport.disconnect(conn)
                self.planner.conn_closed(conn, now, failed=True)
