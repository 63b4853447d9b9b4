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

Known limit: CRDT changes themselves are not signed, so a hostile peer could
claim actor X's next seq with one of X's *older* signed entries; a replica
that sees that first keeps the stale (but genuine) entry until X writes again.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cbor2
import zmq

from ownkernel.crdt import Doc
from ownkernel.crdt import codec as crdt_codec
from ownkernel.crdt.codec import SET, Bundle
from ownkernel.net.protocol import curve_key_of
from ownkernel.net.transport import format_address
from ownkernel.node.gate import BOOK_DOC
from ownkernel.store.identity import Identity, verify

if TYPE_CHECKING:
    from ownkernel.net.transport import ConnEvent

__all__ = ["BOOK_DOC", "DEFAULT_LISTEN", "AddressBook", "DialMixin", "Dialer", "Entry",
           "NetConfig", "Peer", "env_bootstrap", "sticky_listen"]

log = logging.getLogger(__name__)

ROOT = "m:peers"
SETTING = "net.addressbook"
_DOMAIN = "ownkernel/addr/v1"
MAX_ENTRIES = 4096
MAX_BLOB = 64 * 1024
MAX_PENDING = 512


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
    return (isinstance(a, str) and len(a) <= 300 and a.startswith("tcp://")
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

    def __init__(self, identity: Identity, store: Any = None) -> None:
        self.identity = identity
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

    def entries(self) -> dict[bytes, Entry]:
        out: dict[bytes, Entry] = {}
        for k, v in self.doc.map("peers").items():
            e = parse_entry(k, v)
            if e is not None:
                out[e.node_id] = e
        return out

    def get(self, node_id: bytes) -> Entry | None:
        return parse_entry(node_id.hex(), self.doc.map("peers").get(node_id.hex()))

    # -- writing ----------------------------------------------------------------
    def announce(self, name: str, addresses: list[str], relay: bool = False) -> bytes | None:
        """Write our own entry if it changed; returns the change to push (or None)."""
        me = self.identity.node_id
        cur = self.get(me)
        addrs = [a for a in addresses if _valid_address(a, me)][:16]
        name = name[:256]
        if cur is not None and (cur.name, list(cur.addresses), cur.relay) == (name, addrs, relay):
            return None
        t = max(time.time(), (cur.time + 1e-3) if cur else 0.0)
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


# ============================================================ reaching peers
# What the network layer needs to know about where and how to dial: its
# settings, the public view of a peer, and a sans-IO dial planner (backoff).

DEFAULT_LISTEN = "tcp://127.0.0.1:0"


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
    announce: float = 0.25  # seconds between announcements of others' changes
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


class DialMixin:
    """NodeNetwork's dialing: targets, connection events, discovery hits."""

    async def _start_discovery(self, opts: dict[str, Any]) -> None:
        from ownkernel.net.zre import ZreDiscovery, ownkernel_headers

        iface = opts.get("interface")
        if not iface:
            raise ValueError("discovery needs an explicit interface, e.g. "
                             "discovery={'interface': '127.0.0.1'}")
        self._discovery = ZreDiscovery(
            self.node.name[:200] or "ownkernel", ownkernel_headers(self.id.hex(), self.addresses),
            iface, beacon_port=int(opts.get("port", 5670)),
            beacon_interval=float(opts.get("interval", 1.0)),
            peer_expiry=float(opts.get("expiry", 5.0)), on_peer=self._on_discovered)
        await self._discovery.start()

    def _on_discovered(self, event: Any) -> None:
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
            self.counts["discovered"] += 1
            self.dialer.add(nid, addrs, sticky=False, urgent=True)

    def _on_conn_event(self, ev: ConnEvent) -> None:
        now = time.monotonic()
        dial = self.dialer.by_conn(ev.conn)
        if ev.kind == "handshake-ok":
            old = self._links.get(ev.conn)
            if old is not None:
                self._drop_link(old, "disconnected")
            if dial is None:
                return
            dial.attempts = 0
            link = self._new_link(ev.conn, curve_key_of(dial.node_id))
            link.session.hello()
            self._flush(link)
        elif ev.kind == "disconnected":
            link = self._links.get(ev.conn)
            if link is not None:
                self._drop_link(link, "disconnected")
            if dial is not None:
                dial.started = now  # libzmq reconnects by itself; give it a while
        elif ev.kind == "refused":
            self._count("refused-by-peer")
            link = self._links.get(ev.conn)
            if link is not None:
                self._drop_link(link, "refused")
            self._spawn(self._disconnect(ev.conn, failed=True))

    def _add_target(self, target: str) -> bytes | None:
        """Dial an address (``tcp://host:port#<id>``) or the inviter of a token, for good.

        A token's doc must already be joined (``node.join``); a token without
        addresses only announces the doc to the peers we have.
        """
        from ownkernel.node.grants import TOKEN_PREFIX, Invite

        target = target.strip()
        if target.startswith(TOKEN_PREFIX):
            inv = Invite.parse(target)
            self._announce_doc(inv.doc)
            if not inv.addresses or inv.inviter == self.id:
                return None
            self.dialer.add(inv.inviter, list(inv.addresses), sticky=True, urgent=True)
            return inv.inviter
        from ownkernel.net.transport import parse_address

        _, nid = parse_address(target)
        if nid is None:
            raise ValueError(f"{target!r}: an address needs the node id, like "
                             f"tcp://127.0.0.1:7700#<64 hex digits> (see node.address)")
        if nid == self.id:
            raise ValueError("that is this node's own address")
        self.dialer.add(nid, [target], sticky=True, urgent=True)
        return nid

    def _dial_from_book(self) -> None:
        assert self.book is not None
        for e in self.book.entries().values():
            if e.node_id != self.id and e.addresses:
                self.dialer.add(e.node_id, list(e.addresses), sticky=False)

    async def _dial_step(self, now: float) -> None:
        assert self.transport is not None
        for action, d in self.dialer.step(now, self._online):
            if action == "connect":
                try:
                    conn = await self.transport.connect(d.addresses[d.idx % len(d.addresses)])
                except PermissionError:
                    self.dialer.failed(d, now, forever=True)
                    continue
                except (ValueError, zmq.ZMQError) as e:
                    self._count("bad-address", detail=str(e))
                    self.dialer.failed(d, now)
                    continue
                self.dialer.connected(d, conn, now)
            elif action == "give-up" and d.conn is not None:
                conn = d.conn
                await self.transport.disconnect(conn)
                self.dialer.conn_closed(conn, now, failed=True)

    def _online(self, peer: bytes) -> bool:
        link = self._by_peer.get(peer)
        return link is not None and link.session.is_open

    def _peer(self, peer: bytes) -> Peer:
        link = self._by_peer.get(peer)
        name, addrs = self._names.get(peer, ("", ()))
        if self.book is not None and (not name or not addrs):
            e = self.book.get(peer)
            if e is not None:
                name, addrs = name or e.name, addrs or e.addresses
        online = link is not None and link.session.is_open
        return Peer(peer, name, tuple(addrs), online,
                    link.session.latency if online and link else None,
                    time.time() if online else self._last_seen.get(peer),
                    peer in self.relay.relays)

    def _peers(self) -> list[Peer]:
        ids: dict[bytes, None] = {}
        for p in self.node.store.peers():
            ids[p["id"]] = None
            if p["id"] not in self._names and p.get("name") is not None:
                self._names[p["id"]] = (p["name"], tuple(p.get("addresses") or ()))
            self._last_seen.setdefault(p["id"], p.get("last_seen"))
        assert self.book is not None
        ids.update(dict.fromkeys(self.book.entries()))
        ids.update(dict.fromkeys(self._by_peer))
        ids.pop(self.id, None)
        out = [self._peer(p) for p in ids]
        out.sort(key=lambda p: (not p.online, p.name, p.id))
        return out

    def peers(self) -> list[Peer]:
        return self._call(self._peers)

    def connect(self, target: str, timeout: float | None = 5.0) -> Peer | None:
        """Dial an address or a token's inviter; wait up to ``timeout`` s for the session."""
        peer = self._call(self._add_target, target)
        if not timeout or peer is None or threading.current_thread() is self._thread:
            return None  # (never block the network thread waiting for itself)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            p = self._call(self._peer, peer)
            if p.online:
                return p
            time.sleep(0.01)
        raise TimeoutError(f"no session with {peer.hex()[:12]} after {timeout:.1f} s; "
                           f"still trying in the background")


def env_bootstrap() -> list[str]:
    """Addresses (or tokens) from ``OWNKERNEL_BOOTSTRAP``, comma or space separated."""
    raw = os.environ.get("OWNKERNEL_BOOTSTRAP", "")
    return [x for x in raw.replace(",", " ").split() if x]
