"""`NodeNetwork`: the node's networking, in its own thread with its own asyncio loop.

Why a thread: a Jupyter kernel's loop stops while a cell runs, and sync must
not. Everything below (the CurveZMQ :class:`Transport`, one sans-IO
:class:`PeerSession` per connection, dialing, address book, presence) lives
on that loop and is touched only from it; the public methods hop onto it
(``call_soon_threadsafe``) and wait for the answer, so they are safe to call
from any thread. Callbacks registered with :meth:`on` run on the network
thread: keep them short.

Data flow::

    local commit (any thread) -> node listener -> loop: push to every session of that doc
    frame in -> PeerSession.receive -> SyncHost.ingest -> Node._ingest (verify, store)
             -> accepted envelopes forwarded to the other sessions of that doc

The node implements :class:`ownkernel.net.protocol.SyncHost` through this
class; every "may this peer see / send this" goes to the node's admission
gate (gate.py). Parts: ``relay`` (extension frames after hello: grants, carry
requests), ``presence`` (signed claims), ``dialer`` and ``book`` (addressbook.py).

Forwarding: a node pushes its *own* changes to every peer that may read the
doc and is not known to have them. Changes it accepted from a peer are not
pushed on (in a mesh every peer got them from the author already): they are
*announced* (a partial `have`, merged over ``announce`` seconds) to peers not
known to have them, and those pull what they lack (protocol.py). A relay,
whose peers usually cannot reach each other, forwards at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zmq

from ownkernel.net.limits import SessionLimits, SessionTable
from ownkernel.net.peerstate import vv_max
from ownkernel.net.protocol import (
    CarryReceived,
    ErrorReceived,
    Event,
    GrantsReceived,
    HelloReceived,
    LocalInfo,
    PeerSession,
    PeerTimeout,
    PresenceExpired,
    PresenceReceived,
    ProfileReceived,
    ProtocolError,
    SessionClosed,
    SessionConfig,
    SignalReceived,
    curve_key_of,
)
from ownkernel.net.transport import (
    ConnId,
    KeyPolicy,
    Transport,
    TransportConfig,
)
from ownkernel.node.addressbook import BOOK_DOC, AddressBook
from ownkernel.node.calls import Calls
from ownkernel.node.config import DEFAULT_LISTEN, NetConfig, Peer, advertised, sticky_listen
from ownkernel.node.dialing import Dialing
from ownkernel.node.inbox import Inbox
from ownkernel.node.outbox import Outbox
from ownkernel.node.peerdir import PeerDirectory
from ownkernel.node.presence import Presence
from ownkernel.node.relay import Relay
from ownkernel.node.sharing import Sharing
from ownkernel.node.timers import TimerRound

if TYPE_CHECKING:
    from ownkernel.node.node import Node

__all__ = ["DEFAULT_LISTEN", "EVENTS", "NetConfig", "NodeNetwork", "Peer"]

log = logging.getLogger(__name__)

EVENTS = ("peer_joined", "peer_left", "doc_changed", "presence")
MAX_LINKS = 1024  # sessions in all; also per key and per address: see SessionTable


@dataclass(eq=False)
class Link:
    """One connection and the protocol session running over it."""

    conn: ConnId
    session: PeerSession
    curve_key: bytes
    created: float
    peer: bytes | None = None  # set by the peer's (verified) hello
    presence_sent: set[Any] = field(default_factory=set)
    greeted: bool = False  # our grants went out (relay.py)
    offered: set[Any] = field(default_factory=set)  # docs the session has synced or offered


class NodeNetwork:
    """Networking of one :class:`Node`. ``start()`` it, ``close()`` it (≤ 1 s)."""

    def __init__(self, node: Node, config: NetConfig | None = None) -> None:
        self.node = node
        self.config = config or NetConfig()
        self.id = node.id
        self.errors: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self._callbacks: dict[str, list[Callable[..., Any]]] = {e: [] for e in EVENTS}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False
        self.transport: Transport | None = None
        self.addresses: list[str] = []
        self.book: AddressBook | None = None
        node.gate.relay = self.config.relay
        self.relay = Relay(self, self.config.relay, self.config.use_relays)
        self.presence = Presence(self, self.config.presence_ttl)
        self.calls = Calls(self)  # call signalling (node/calls.py, issue #14)
        self.dialing = Dialing(self)
        self.timers = TimerRound(self)  # the timer round (node/timers.py)
        self.dialing.planner.on_urgent = self.timers.wake_soon
        self.sharing = Sharing(self)
        self.links: dict[ConnId, Link] = {}
        # who may hold an incoming session, and who makes room (net/limits.py)
        self.table = SessionTable(SessionLimits(total=MAX_LINKS))
        self.by_peer: dict[bytes, Link] = {}
        self.directory = PeerDirectory(self)  # who we know, as Peer rows (node/peerdir.py)
        self._seen_docs: set[bytes] = set()
        self.inbox = Inbox(self)  # received frames, in bursts (node/inbox.py)
        self.outbox = Outbox(self)  # the one writer (node/outbox.py)
        # peer -> (name, colour) from its `profile` messages (sent when it renames)
        self.profiles: dict[bytes, tuple[str, str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ================================================================ lifecycle
    def start(self) -> NodeNetwork:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"ownkernel-net-{self.node.short_id}")
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join(2.0)
            raise self._start_error
        self.node.replica.listeners.append(self.sharing.on_commit)
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self._startup()
        except BaseException as e:  # reported to the thread that called start()
            self._start_error = e
            await self._teardown()
            self._ready.set()
            return
        self._ready.set()
        ticker = asyncio.ensure_future(self.timers.run())
        await self._stop.wait()
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await self._shutdown()

    async def _startup(self) -> None:
        cfg, node = self.config, self.node
        key = node.identity._sk  # the Ed25519 key: its Curve form is the transport key
        policy = KeyPolicy(
            allow=None if cfg.allow is None else {curve_key_of(i) for i in cfg.allow},
            deny={curve_key_of(i) for i in cfg.deny})
        listen = list(cfg.listen)
        tries = [listen]
        last = node.store.get_setting("net.endpoints")
        if cfg.sticky_port:
            sticky = sticky_listen(listen, last or [])
            if sticky != listen:
                tries.insert(0, sticky)
        for i, attempt in enumerate(tries):
            t = Transport(key, TransportConfig(
                listen=attempt, max_frame_size=cfg.max_frame_size, rate=cfg.rate,
                burst=cfg.burst), policy=policy, on_frame=self.inbox.on_frame,
                on_event=self.timers.on_conn_event, on_drained=self.inbox.process)
            try:
                await t.start()
            except zmq.ZMQError as e:
                await t.close()
                if i == len(tries) - 1:
                    raise OSError(f"cannot listen on {', '.join(attempt)}: {e}") from None
                continue
            self.transport = t
            break
        assert self.transport is not None
        if last != list(self.transport.endpoints):  # usually the same port again: no write
            node.store.set_setting("net.endpoints", list(self.transport.endpoints))
        self._seen_docs = {d for d, _ in node.store.doc_ids()}
        if len(self._seen_docs) > 64:  # the first digest needs every doc's version
            with node.lock:
                node.replica.prefetch_versions()
        self.addresses = self._advertised()
        self.book = AddressBook(node.identity, node.store, ttl=cfg.peer_ttl)
        self.book.announce(node.name, self.addresses if cfg.listed else [], cfg.relay)
        # Redial remembered peers only while they are listed in the book: a dead
        # temporary node or one unseen for peer_ttl is not dialed forever.
        listed = self.book.entries()
        for p in node.store.peers():
            if p["id"] != self.id and p.get("addresses") and p["id"] in listed:
                self.dialing.planner.add(p["id"], p["addresses"], sticky=False)
        self.dialing.dial_from_book()
        for target in cfg.bootstrap:
            self.dialing.add_target(target)
        if cfg.discovery:
            await self.dialing.start_discovery(cfg.discovery)

    def _advertised(self) -> list[str]:
        assert self.transport is not None
        # wildcard binds become interface addresses; --advertise wins (config.py)
        return advertised(list(self.transport.endpoints), self.config.advertise, self.id)

    def close(self, timeout: float = 1.0) -> None:
        """Stop networking: say goodbye, close every socket, join the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self.node.replica.listeners.remove(self.sharing.on_commit)
        except ValueError:
            pass
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already gone
                pass
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("network thread did not stop within %.1f s", timeout)

    async def _shutdown(self) -> None:
        for link in list(self.links.values()):
            link.session.close("shutdown")
            self.outbox.flush(link)
        self.outbox.send_queued()
        await asyncio.sleep(0.02)  # let libzmq's I/O thread put the goodbyes on the wire
        if self.book is not None:
            try:
                self.book.save()
            except Exception:
                log.exception("could not save the address book")
        await self._teardown()

    async def _teardown(self) -> None:
        if self.dialing.discovery is not None:
            try:
                await self.dialing.discovery.stop()
            except Exception:
                log.exception("discovery stop failed")
            self.dialing.discovery = None
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transport is not None:
            await self.transport.close()

    # ================================================================ thread bridge
    def _call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(*args)`` on the loop (coroutine functions awaited) and return its result."""
        if self._loop is None or self._closed:
            raise RuntimeError("the node's network is not running")
        if threading.current_thread() is self._thread:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                raise RuntimeError("cannot wait for the network from its own thread")
            return result

        async def run() -> Any:
            r = fn(*args)
            return await r if asyncio.iscoroutine(r) else r

        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            if isinstance(exc, TimeoutError):  # 3.11+: the same class
                raise
            raise TimeoutError(*exc.args) from None  # 3.10: callers catch the builtin one

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the network thread (from any thread)."""
        if self._loop is None or self._closed:
            raise RuntimeError("the node's network is not running")
        if threading.current_thread() is self._thread:
            self._loop.call_soon(fn, *args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ================================================================ events
    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Register ``callback`` for ``event``; returns a function that unregisters it.

        peer_joined(peer: Peer), peer_left(peer: Peer), doc_changed(doc_id: bytes,
        source: bytes | None) (None: a local edit), presence(doc, peer_id, state | None).
        Callbacks run on the network thread.
        """
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

        def off() -> None:
            try:
                self._callbacks[event].remove(callback)
            except ValueError:
                pass
        return off

    def _emit(self, event: str, *args: Any) -> None:
        held = self.inbox.held_events
        if held is not None:  # inside a burst: fire once it is stored (inbox.py)
            held.append((event, args))
            return
        for cb in list(self._callbacks[event]):
            try:
                cb(*args)
            except Exception:
                self.counts["callback-errors"] += 1
                log.exception("%s callback %r failed", event, cb)

    # ================================================================ links
    def link_of(self, peer: bytes) -> Link | None:
        return self.by_peer.get(peer)

    def privilege(self, link: Link) -> None:
        """Tell the session table whether this peer shares a doc with us (a member)."""
        if link.conn[0] != "in" or link.peer is None or link.conn not in self.table:
            return
        with self.node.lock:
            shared = self.node.gate.shared_with(link.peer)
            privileged = any(d != BOOK_DOC for d in shared)
        if self.table.state(link.conn) != ("privileged" if privileged else "peer"):
            self.table.authenticated(link.conn, privileged)

    def new_link(self, conn: ConnId, curve_key: bytes) -> Link:
        """A session for a new connection. Nothing is sent until the peer's hello
        is verified (the dialer's hello goes first; see Dialer)."""
        cfg = self.config
        session = PeerSession(
            LocalInfo(self.id, self.node.name[:256], tuple(self.addresses),
                      relay=self.config.relay), time.monotonic(),
            host=self.sharing, transport_key=curve_key, config=SessionConfig(
                max_frame_size=cfg.max_frame_size, anti_entropy_interval=cfg.anti_entropy,
                ping_interval=cfg.ping_interval, peer_timeout=cfg.peer_timeout,
                handshake_timeout=cfg.handshake_timeout, announce_delay=cfg.announce))
        link = self.links[conn] = Link(conn, session, curve_key, time.monotonic())
        session.on_due = self.timers.due_at
        self.timers.due_at(session.next_due())  # its handshake timeout
        return link

    def _handle(self, link: Link, events: Iterable[Event]) -> None:
        for ev in events:
            if isinstance(ev, HelloReceived):
                self._on_hello(link, ev)
            elif isinstance(ev, GrantsReceived):
                if link.peer is not None:
                    self.relay.on_grants(link, ev.grants)
                    self.inbox.cut_burst = True  # offer what they opened before the next frame
            elif isinstance(ev, CarryReceived):
                if link.peer is not None:
                    self.relay.on_carry(link, ev.docs)
            elif isinstance(ev, PresenceReceived):
                if link.peer is not None:
                    if not self.presence.received(link, ev.doc, ev.state):
                        self.count("bad-presence")
                    self._emit("presence", ev.doc, link.peer, ev.state)
            elif isinstance(ev, ProfileReceived):
                if link.peer is not None:
                    self.directory.renamed(link.peer, ev.name)
                    self.profiles[link.peer] = (ev.name, ev.color)
                    self._emit("peer_joined", self.directory.peer(link.peer))  # widgets redraw
            elif isinstance(ev, SignalReceived):
                if link.peer is not None:
                    self.calls.received(link, ev.doc, ev.kind, ev.data)
            elif isinstance(ev, PresenceExpired):
                if link.peer is not None:
                    self._emit("presence", ev.doc, link.peer, None)
            elif isinstance(ev, ProtocolError):
                self.count(ev.reason, detail=ev.detail)
                if ev.reason == "before-hello" and link.peer is None:
                    # the peer still runs a session we dropped (timeout, our restart):
                    # tell it to start over rather than ignore it forever
                    self._close_link(link, "resync")
                    return
            elif isinstance(ev, (SessionClosed, PeerTimeout)):
                self.drop_link(link, getattr(ev, "reason", "timeout"))
            elif isinstance(ev, ErrorReceived):
                pass  # SessionClosed follows

    def _on_hello(self, link: Link, ev: HelloReceived) -> None:
        peer = ev.node_id
        link.peer = peer
        assert self.transport is not None
        self.transport.confirm_identity(link.curve_key, peer)
        with self.node.lock:  # the digest exchange at open covers these
            link.offered = set(self.node.gate.shared_with(peer))
        if ev.relay:  # a claim: it only makes us ask it to carry our docs
            self.relay.relays.add(peer)
        else:
            self.relay.relays.discard(peer)
        self.privilege(link)
        addrs = tuple(a for a in ev.addresses if a.endswith("#" + peer.hex()))
        self.directory.heard(peer, ev.name, addrs)
        node = self.node
        link.session.send_profile(node.name, getattr(node, "color", ""))  # the colour too
        if addrs:
            self.dialing.planner.add(peer, list(addrs), sticky=False)
        cur = self.by_peer.get(peer)
        if cur is None or cur.conn not in self.links or not cur.session.is_open:
            self.by_peer[peer] = link
            joined = cur is None
        else:
            # Two live connections to one peer: both sides keep the one dialed by the
            # smaller node id (the newest when both were dialed by the same side).
            def rank(lk: Link) -> tuple[bytes, float]:
                return (self.id if lk.conn[0] == "out" else peer, -lk.created)
            keep = min(cur, link, key=rank)
            other = link if keep is cur else cur
            self.by_peer[peer] = keep
            joined = False
            if other.conn[0] == "out":
                self._close_link(other, "duplicate")
        try:
            self.node.store.put_peer(peer, name=ev.name, addresses=addrs)
        except Exception:
            log.exception("could not store peer %s", peer.hex()[:12])
        self.relay.greet(link)
        if ev.relay and self.relay.use_relays:
            self.relay.ask(link)
        self.presence.send(link)
        if joined:
            self.counts["peers-joined"] += 1
            self._emit("peer_joined", self.directory.peer(peer))

    def drop_link(self, link: Link, reason: str) -> None:
        if self.links.get(link.conn) is not link:
            return
        del self.links[link.conn]
        self.timers.due_at(0.0)  # its peer may need redialing: no quiet sleep (see _nap)
        if link.conn[0] == "in" and reason != "evicted":
            self.table.closed(link.conn, gone=reason == "disconnected")
        peer = link.peer
        if link.conn[0] == "out" and reason != "disconnected":
            # the socket stays up after a protocol failure: close it, redial later
            self.spawn(self.disconnect(link.conn, failed=True))
        if peer is None or self.by_peer.get(peer) is not link:
            return
        del self.by_peer[peer]
        self.directory.last_seen[peer] = time.time()
        for other in self.links.values():
            if other.peer == peer and other.session.is_open:
                self.by_peer[peer] = other
                return
        self.presence.drop_sender(peer)
        self.relay.forget(peer)
        with self.node.lock:
            self.node.gate.forget_peer(peer)
        self.counts["peers-left"] += 1
        self._emit("peer_left", self.directory.peer(peer))

    def _close_link(self, link: Link, reason: str) -> None:
        link.session.close(reason)
        self.outbox.flush(link)
        self.drop_link(link, reason)

    async def disconnect(self, conn: ConnId, failed: bool) -> None:
        assert self.transport is not None
        await self.transport.disconnect(conn)
        self.dialing.planner.conn_closed(conn, time.monotonic(), failed)

    # ================================================================ counting
    def count(self, reason: str, n: int = 1, detail: str = "") -> None:
        self.errors[reason] += n
        if self.errors[reason] == n:  # log once per reason
            log.info("network: %s %s", reason, detail[:200])

    # ================================================================ public (any thread)

    def sync_now(self) -> None:
        """Anti-entropy with every peer right away (normally periodic)."""
        def run() -> None:
            for link in list(self.links.values()):
                link.session.sync_all(time.monotonic())
            self.outbox.flush_all()
        self._call(run)

    def peers_hold(self, doc: bytes) -> dict[bytes, int]:
        """What the connected peers said they hold of ``doc`` (the max of their word)."""
        def snap() -> dict[bytes, int]:
            held: dict[bytes, int] = {}
            for link in self.links.values():
                held = vv_max(held, link.session.known.said.get(doc, {}))
            return held
        if self._closed:
            return {}
        return self._call(snap)

    def stats(self) -> dict[str, Any]:
        def snap() -> dict[str, Any]:
            sess = Counter[str]()
            for link in self.links.values():
                for k, v in vars(link.session.stats).items():
                    sess[k] += v
            errors = Counter(self.errors)
            assert self.book is not None
            errors.update(self.book.rejected)
            return {"sessions": len(self.links), "peers_online": len(self.by_peer),
                    "session_table": dict(self.table.stats),
                    "errors": dict(errors), "errors_total": sum(errors.values()),
                    "transport": dict(self.transport.stats) if self.transport else {},
                    "sessions_now": dict(sess), **dict(self.counts)}
        if self._closed:
            return {"closed": True}
        return self._call(snap)

    # ================================================================ presence, joins
    def _set_presence(self, doc: Any, state: Any) -> None:
        self.presence.set_local(doc, state)
        for link in list(self.by_peer.values()):
            self.presence.send(link, [doc])
        self.outbox.flush_all()

    def set_presence(self, doc: Any, state: Any) -> None:
        self._call(self._set_presence, doc, state)

    def get_presence(self, doc: Any) -> dict[bytes, Any]:
        return self._call(lambda: self.presence.merged(doc))

    def offer_doc(self, doc: bytes) -> None:
        """A doc appeared here (joined): show our grant to whom it concerns, offer it."""
        self._seen_docs.add(doc)
        self.node._devices.share_docs([doc])  # to our user's other devices (pairing.py)
        for link in list(self.by_peer.values()):
            if link.peer is None or not link.session.is_open:
                continue
            with self.node.lock:
                grants = self.node.gate.grants_for(link.peer)
            if grants:
                link.session.send_grants(grants)
        self.relay.ask_all_relays([doc])
        for link in list(self.by_peer.values()):
            self.sharing.offer_new(link)
        self.outbox.flush_all()

    def announce_doc(self, doc: bytes) -> None:
        self._call(self.offer_doc, doc)

    # ================================================================ peers
    def online(self, peer: bytes) -> bool:
        link = self.by_peer.get(peer)
        return link is not None and link.session.is_open

    def send_profile(self, name: str, color: str) -> None:
        """Node thread: tell every connected peer our new name/colour."""
        for link in list(self.by_peer.values()):
            link.session.send_profile(name, color)
        self.outbox.flush_all()

    def peers(self) -> list[Peer]:
        return self._call(self.directory.all)

    def connect(self, target: str, timeout: float | None = 5.0) -> Peer | None:
        """Dial an address or a token's inviter; wait up to ``timeout`` s for the session."""
        peer = self._call(self.dialing.add_target, target)
        if not timeout or peer is None or threading.current_thread() is self._thread:
            return None  # (never block the network thread waiting for itself)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            p = self._call(self.directory.peer, peer)
            if p.online:
                return p
            time.sleep(0.01)
        raise TimeoutError(f"no session with {peer.hex()[:12]} after {timeout:.1f} s; "
                           f"still trying in the background")

