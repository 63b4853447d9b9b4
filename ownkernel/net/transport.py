"""ZeroMQ transport: ROUTER (in) + one DEALER per outgoing peer, CurveZMQ, ZAP.

The Curve keys are the node's Ed25519 identity in Curve25519 form, so the
key a socket authenticated with and the key that signs changes are the same
fact. Our own ZAP handler (REP on ``inproc://zeromq.zap.01`` of this
transport's private context) asks the policy hook and hands libzmq the
client's Curve key (hex) as the ZAP user id; every incoming frame carries it
in its ``User-Id`` property, so each frame is reported with the key that
authenticated it. The peer's Ed25519 node id is only reported once
:meth:`Transport.confirm_identity` saw a hello whose id maps to that key.

Everything runs on one asyncio loop: the node's own thread. The sockets are
plain (sync) ZeroMQ sockets read with ``loop.add_reader`` on their FD and
``NOBLOCK`` receives (net/reader.py: no Future per frame); sends are ``NOBLOCK``.

Counting what never becomes a frame: the ROUTER is monitored, so a client
without Curve, raw TCP garbage, a wrong server key, a refused key and a frame
past the hard size limit each leave their own counter in ``stats`` (see
:class:`~ownkernel.net.flow.InboundWatch`). Sending is budgeted in bytes per
connection and in total (see :meth:`Transport.send`), so a peer that never
reads costs bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import zmq
from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519
from nacl.signing import SigningKey
from zmq.utils.monitor import parse_monitor_message

from .flow import MONITOR_EVENTS, InboundWatch, SendBudgets, acked, close_probe, probe
from .limits import SendAccount
from .protocol import DEFAULT_MAX_FRAME, curve_key_of
from .reader import SocketReader, send_one, send_parts
from .wstunnel import TunnelClient, is_websocket, split_ws_url

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "ownkernel"
# A drain reads until EAGAIN, so while a peer keeps the socket busy it would
# never return: a flood would starve every other callback on the loop (the
# node's writer, its timers, calls from other threads). A drain gives the loop
# a turn every this many frames.
YIELD_EVERY = 32
MONITOR_BATCH = 256  # ROUTER monitor events handled together (see InboundWatch)
MAX_IN_PEERS = 65536  # routing ids remembered (backstop; entries leave on disconnect)



# ("in", ROUTER routing id) or ("out", connection number as bytes)
ConnId = tuple[str, bytes]
# policy(curve_key, peer_address) -> allowed? Address is "" when unknown.
Policy = Callable[[bytes, str], bool]
SigningKeyLike = Union[SigningKey, bytes]


@dataclass(frozen=True)
class Incoming:
    conn: ConnId
    curve_key: bytes  # authenticated Curve25519 public key of the sender
    node_id: bytes | None  # its Ed25519 id, once confirmed by a hello
    frame: bytes
    # sender's IP for incoming conns (ROUTER "Peer-Address"), the dialed
    # endpoint's host for outgoing ones; "" if unknown
    address: str = ""


@dataclass(frozen=True)
class ConnEvent:
    conn: ConnId
    kind: str  # "connected", "handshake-ok", "refused", "disconnected"
    detail: str = ""


class KeyPolicy:
    """Allow/deny by Curve key (block a node with ``curve_key_of(node_id)``).

    Blocking the Curve key also blocks every Ed25519 alias of it.
    """

    def __init__(self, allow: set[bytes] | None = None, deny: set[bytes] | None = None) -> None:
        self.allow = allow  # None: anyone not denied
        self.deny: set[bytes] = deny if deny is not None else set()

    def __call__(self, curve_key: bytes, address: str = "") -> bool:
        if curve_key in self.deny:
            return False
        return self.allow is None or curve_key in self.allow


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def take(self, now: float, n: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


@dataclass
class TransportConfig:
    listen: Sequence[str] = ("tcp://127.0.0.1:0",)
    max_frame_size: int = DEFAULT_MAX_FRAME
    rate: float = 500.0  # frames per second per peer key
    burst: float = 1000.0
    queue_size: int = 10_000  # incoming frames buffered for recv()
    sndhwm: int = 10_000  # libzmq's per-connection cap in messages (bytes: below)
    # Frames libzmq reads ahead of us per connection. When a peer sends faster than
    # the node handles, these wait in memory (up to rcvhwm x frame size) and then TCP
    # holds the peer back: small, so a flood of large frames costs little memory.
    rcvhwm: int = 32
    # bytes handed to libzmq and not yet acked by the peer's TCP, per
    # connection and in total: past them send() returns False ("send-budget")
    send_budget: int = 8 * 1024 * 1024
    send_budget_total: int = 64 * 1024 * 1024
    congested_at: float = 0.5  # congested() once this share of a budget is in flight
    probe_limit: int = 4096  # TCP sockets watched at once (a dup'ed fd each)


def _keys(signing_key: SigningKeyLike) -> tuple[bytes, bytes, bytes]:
    """(ed25519 pk, curve pk, curve sk) from a SigningKey, 32-byte seed or 64-byte sk."""
    if isinstance(signing_key, SigningKey):
        sk = signing_key
    elif isinstance(signing_key, bytes) and len(signing_key) in (32, 64):
        sk = SigningKey(signing_key[:32])
    else:
        raise TypeError("signing_key must be a SigningKey or a 32/64-byte key")
    ed_pk = sk.verify_key.encode()
    curve_sk = crypto_sign_ed25519_sk_to_curve25519(bytes(sk) + ed_pk)
    return ed_pk, curve_key_of(ed_pk), curve_sk


def format_address(endpoint: str, node_id: bytes) -> str:
    """``tcp://host:port#<node id hex>``: Curve clients must know the server key."""
    return f"{endpoint}#{node_id.hex()}"


def parse_address(address: str) -> tuple[str, bytes | None]:
    endpoint, _, key = address.partition("#")
    if is_websocket(endpoint):
        split_ws_url(endpoint)  # a bad ws URL is refused here, naming the fault
    if not key:
        return endpoint, None
    node_id = bytes.fromhex(key)
    if len(node_id) != 32:
        raise ValueError("node id must be 32 bytes")
    return endpoint, node_id


def endpoint_host(endpoint: str) -> str:
    """``tcp://[::1]:5555`` -> ``::1``; ``tcp://127.0.0.1:5`` -> ``127.0.0.1``."""
    return endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")


@dataclass
class _InPeer:
    """A ROUTER peer (routing id), learned from its first frame."""
    address: str
    fd: int | None
    probe: socket.socket | None
    acct: SendAccount


@dataclass
class _Out:
    sock: zmq.Socket[bytes]
    monitor: zmq.Socket[bytes]
    curve_key: bytes
    node_id: bytes
    endpoint: str
    acct: SendAccount
    state: str = "connecting"
    ready: asyncio.Future[str] | None = None
    readers: list[SocketReader] = field(default_factory=list)
    probe: socket.socket | None = None


class Transport:
    """CurveZMQ transport. Create, ``await start()``, then send/recv; ``await close()``.

    Incoming frames go to ``on_frame(Incoming)`` if given (called on the
    loop), else to a bounded queue read with ``await recv()``. Drops are
    counted in ``stats`` by reason: "oversize", "rate-limited", "denied",
    "queue-full", "bad-multipart", "auth-denied", "send-failed",
    "send-budget", "send-budget-total". Incoming TCP connections (ROUTER
    monitor): "in-accepted", "in-handshake-ok", "in-no-curve" (client without
    Curve), "in-bad-curve" (wrong server key or a bad box), "in-auth-failed"
    (key refused), "in-handshake-aborted" (closed mid-handshake),
    "in-protocol-error" (other), "in-garbage" (not ZMTP at all),
    "in-hard-limit" (libzmq dropped a peer still sending: a frame past the
    hard size limit), "in-disconnected" (peer hung up).
    """

    def __init__(
        self,
        signing_key: SigningKeyLike,
        config: TransportConfig | None = None,
        *,
        policy: Policy | None = None,
        on_frame: Callable[[Incoming], None] | None = None,
        on_event: Callable[[ConnEvent], None] | None = None,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        self.node_id, self.curve_public, self._curve_secret = _keys(signing_key)
        self.config = config or TransportConfig()
        self.policy = policy
        self.on_frame = on_frame
        self.on_event = on_event
        # called after each read of a socket that delivered frames: a host that
        # batches frames handles the batch then, without a callback of its own
        self.on_drained = on_drained
        self.stats: Counter[str] = Counter()
        self.endpoints: list[str] = []
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._zap: zmq.Socket[bytes] | None = None
        self._readers: list[SocketReader] = []  # router, its monitor, ZAP
        self._router_reader: SocketReader | None = None
        self._mon_batch: list[dict[str, Any]] = []
        self._out: dict[bytes, _Out] = {}
        self._next_out = 0
        self._identities: dict[bytes, bytes] = {}  # curve key -> confirmed ed25519 id
        self._buckets: dict[bytes, TokenBucket] = {}
        self._queue: asyncio.Queue[Incoming] = asyncio.Queue(self.config.queue_size)
        # libzmq drops the *connection* past MAXMSGSIZE; keep that as a memory
        # backstop well above the app limit so ordinary oversize frames are
        # dropped one by one (and counted) instead.
        self._hard_limit = max(2 * self.config.max_frame_size, self.config.max_frame_size + 65536)
        self._closed = False
        self._router_mon: zmq.Socket[bytes] | None = None
        self._ports: set[int] = set()  # our listening ports (to recognise our sockets)
        self._in: OrderedDict[bytes, _InPeer] = OrderedDict()  # routing id -> peer
        self._watch = InboundWatch(self.stats, self._ports, self.config.probe_limit,
                                   self._in_gone)
        self._budgets = SendBudgets(self.config, self.stats, self._put, self._account,
                                    self._all_accounts)
        self._tunnels: TunnelClient | None = None  # ws(s):// peers (net/wstunnel.py)

    # ------------------------------------------------------------ lifecycle
    def _socket(self, kind: int) -> zmq.Socket[bytes]:
        assert self._ctx is not None
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        return s

    async def start(self) -> list[str]:
        """Bind the ZAP handler and the ROUTER; return the actual endpoints."""
        loop = asyncio.get_running_loop()
        self._ctx = zmq.Context()  # private: one ZAP handler per context
        self._zap = self._socket(zmq.REP)
        self._zap.bind(ZAP_ENDPOINT)
        self._readers.append(SocketReader(loop, self._zap, self._on_zap))
        r = self._router = self._socket(zmq.ROUTER)
        r.curve_server = True
        r.curve_secretkey = self._curve_secret
        r.curve_publickey = self.curve_public
        r.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        r.setsockopt(zmq.MAXMSGSIZE, self._hard_limit)
        r.setsockopt(zmq.ROUTER_MANDATORY, 1)
        r.setsockopt(zmq.SNDHWM, self.config.sndhwm)
        r.setsockopt(zmq.RCVHWM, self.config.rcvhwm)
        if any("[" in ep for ep in self.config.listen):
            # an IPv6 bind (tcp://[::]:port, [::1]) needs it; IPv4-only binds keep
            # IPv4 endpoints (with it, 127.0.0.1 would read back as [::ffff:127.0.0.1])
            r.setsockopt(zmq.IPV6, 1)
        self._router_mon = r.get_monitor_socket(MONITOR_EVENTS)
        self._router_mon.setsockopt(zmq.LINGER, 0)
        self._readers.append(SocketReader(
            loop, self._router_mon, self._mon_batch.append, limit=MONITOR_BATCH,
            on_done=self._router_monitor_done))
        for ep in self.config.listen:
            r.bind(ep)
            self.endpoints.append(r.getsockopt_string(zmq.LAST_ENDPOINT))
            with contextlib.suppress(ValueError):
                self._ports.add(int(self.endpoints[-1].rsplit(":", 1)[1]))
        self._router_reader = SocketReader(loop, r, self._on_router, limit=YIELD_EVERY,
                                           copy=False, on_done=self._drained)
        self._readers.append(self._router_reader)
        return list(self.endpoints)

    @property
    def addresses(self) -> list[str]:
        """Endpoints with our node id appended, ready for ``connect``."""
        return [format_address(ep, self.node_id) for ep in self.endpoints]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in list(self._out):
            await self.disconnect(("out", conn))
        flusher = self._budgets.task()
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        for rd in self._readers:
            rd.close()
        self._readers.clear()
        self._budgets.clear()
        if self._tunnels is not None:
            await self._tunnels.close()
        self._watch.close()
        self._in.clear()
        if self._router is not None and self._router_mon is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._router.disable_monitor()
        for s in (self._router_mon, self._router, self._zap):
            if s is not None:
                s.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ identity
    def confirm_identity(self, curve_key: bytes, node_id: bytes) -> bool:
        """Bind an Ed25519 id to an authenticated Curve key, if it maps to it."""
        try:
            ok = curve_key_of(node_id) == curve_key
        except Exception:
            ok = False
        if ok:
            self._identities[curve_key] = node_id
        else:
            self.stats["identity-mismatch"] += 1
        return ok

    def node_id_of(self, curve_key: bytes) -> bytes | None:
        return self._identities.get(curve_key)

    def _allowed(self, curve_key: bytes, address: str = "") -> bool:
        if self.policy is None:
            return True
        try:
            return bool(self.policy(curve_key, address))
        except Exception:
            log.exception("policy hook failed; denying")
            return False

    # ------------------------------------------------------------ ZAP
    def _on_zap(self, msg: list[bytes]) -> None:
        assert self._zap is not None
        version, request_id, _domain, address, _ident, mechanism, *creds = (
            msg + [b""] * 7)[:6] + msg[6:]
        ok = False
        key = b""
        if mechanism == b"CURVE" and creds and len(creds[0]) == 32:
            key = creds[0]
            ok = self._allowed(key, address.decode("utf-8", "replace"))
        if ok:
            self.stats["auth-ok"] += 1
            reply = [version, request_id, b"200", b"OK", key.hex().encode(), b""]
        else:
            self.stats["auth-denied"] += 1
            reply = [version, request_id, b"400", b"denied", b"", b""]
        # REP: the reply goes before the next recv, which the drain does next
        self._zap.send_multipart(reply, flags=zmq.NOBLOCK)

    # ------------------------------------------------------------ receiving
    def _accept(self, conn: ConnId, curve_key: bytes, data: bytes, address: str) -> None:
        """App-level checks shared by all sockets, then hand the frame up."""
        if len(data) > self.config.max_frame_size:
            self.stats["oversize"] += 1
            return
        if not self._allowed(curve_key, address):  # re-checked: a block applies mid-session
            self.stats["denied"] += 1
            return
        now = time.monotonic()
        bucket = self._buckets.get(curve_key)
        if bucket is None:
            bucket = self._buckets[curve_key] = TokenBucket(
                self.config.rate, self.config.burst, now)
        if not bucket.take(now):
            self.stats["rate-limited"] += 1
            return
        self.stats["frames-in"] += 1
        inc = Incoming(conn, curve_key, self._identities.get(curve_key), data, address)
        if self.on_frame is not None:
            try:
                self.on_frame(inc)
            except Exception:  # a handler bug must not kill the receive loop
                log.exception("on_frame failed")
                self.stats["handler-error"] += 1
            return
        try:
            self._queue.put_nowait(inc)
        except asyncio.QueueFull:
            self.stats["queue-full"] += 1

    def _drained(self) -> None:
        if self.on_drained is not None:
            self.on_drained()

    async def recv(self) -> Incoming:
        return await self._queue.get()

    def _on_router(self, parts: list[zmq.Frame]) -> None:
        if len(parts) != 2:
            self.stats["bad-multipart"] += 1
            return
        rid, frame = parts
        try:
            curve_key = bytes.fromhex(frame.get("User-Id"))
        except (ValueError, TypeError, zmq.ZMQError):
            self.stats["no-user-id"] += 1  # cannot happen with our ZAP handler
            return
        rid_b = rid.bytes
        peer = self._in.get(rid_b)
        if peer is None:
            peer = self._new_in_peer(rid_b, frame)
        self._accept(("in", rid_b), curve_key, frame.bytes, peer.address)

    def _new_in_peer(self, rid: bytes, frame: zmq.Frame) -> _InPeer:
        """First frame of a routing id: note its address and TCP socket (once per peer)."""
        try:
            address = frame.get("Peer-Address")
        except (zmq.ZMQError, TypeError, UnicodeDecodeError):
            address = ""
        try:
            fd: int | None = int(frame.get(zmq.SRCFD))
        except (zmq.ZMQError, TypeError, ValueError, AttributeError):
            fd = None
        p = self._watch.attach(fd, rid)
        peer = self._in[rid] = _InPeer(address or "", fd, p,
                                       SendAccount(time.monotonic(), acked(p)))
        while len(self._in) > MAX_IN_PEERS:
            self._forget_in(next(iter(self._in)))
        return peer

    def _forget_in(self, rid: bytes) -> None:
        peer = self._in.pop(rid, None)
        if peer is not None:
            self._budgets.forget(("in", rid), peer.acct)

    def _in_gone(self, rids: set[bytes]) -> None:
        """Their TCP connection closed: forget them and tell the node."""
        for rid in rids:
            self._forget_in(rid)
            if self.on_event is not None:
                self.on_event(ConnEvent(("in", rid), "disconnected"))

    def _router_monitor_done(self) -> None:
        """Feed the ROUTER's monitor events to the watch, in batches (see InboundWatch)."""
        batch = [parse_monitor_message(m) for m in self._mon_batch]
        self._mon_batch.clear()
        self._watch.handle(batch)

    def _on_dealer(self, num: bytes, out: _Out, parts: list[bytes]) -> None:
        if len(parts) != 1:
            self.stats["bad-multipart"] += 1
            return
        # the server key was pinned by us: Curve proved the peer holds it
        self._accept(("out", num), out.curve_key, parts[0], endpoint_host(out.endpoint))

    def _on_out_monitor(self, num: bytes, out: _Out, msg: list[bytes]) -> None:
        evt = parse_monitor_message(msg)
        e = evt["event"]
        kind = ""
        if e == zmq.EVENT_CONNECTED:
            kind = "connected"
            # a new TCP connection: watch it for the send budget
            close_probe(out.probe)
            port = out.endpoint.rsplit(":", 1)[-1]
            out.probe = probe(evt["value"], lambda s, p=port: str(s.getpeername()[1]) == p)
            self._budgets.moved(out.acct, out.probe)
        elif e == zmq.EVENT_DISCONNECTED:
            kind = "disconnected"
            close_probe(out.probe)
            out.probe = None
        elif e == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            kind = "handshake-ok"
        elif e in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
            kind = "refused"
        if not kind:
            return
        out.state = kind
        if out.ready is not None and not out.ready.done() and kind in (
                "handshake-ok", "refused"):
            out.ready.set_result(kind)
        if self.on_event is not None:
            self.on_event(ConnEvent(("out", num), kind, out.endpoint))

    # ------------------------------------------------------------ connecting
    async def connect(self, endpoint: str, node_id: bytes | None = None, *,
                      timeout: float | None = None) -> ConnId:
        """Open a DEALER to ``endpoint`` (``tcp://h:p`` + node_id, or ``tcp://h:p#<id>``;
        ``ws(s)://host/path#<id>`` goes through a WebSocket tunnel: net/wstunnel.py).

        With ``timeout``, wait for the Curve handshake: raises PermissionError
        if refused, TimeoutError if it does not finish (the socket is closed).
        Without, return at once; libzmq connects and reconnects in the background.
        """
        if self._ctx is None or self._closed:
            raise RuntimeError("transport not started")
        endpoint, embedded = parse_address(endpoint)
        node_id = node_id or embedded
        if node_id is None:
            raise ValueError("connect needs the peer's node id (its Curve key)")
        curve_key = curve_key_of(node_id)
        if not self._allowed(curve_key, endpoint):
            self.stats["denied"] += 1
            raise PermissionError("peer key denied by policy")
        if is_websocket(endpoint):  # libzmq dials the loopback end of a WebSocket tunnel
            if self._tunnels is None:
                self._tunnels = TunnelClient(stats=self.stats)
            endpoint = await self._tunnels.endpoint(endpoint)
        s = self._socket(zmq.DEALER)
        if "[" in endpoint:
            s.setsockopt(zmq.IPV6, 1)  # dialing an IPv6 literal
        s.curve_secretkey = self._curve_secret
        s.curve_publickey = self.curve_public
        s.curve_serverkey = curve_key
        s.setsockopt(zmq.MAXMSGSIZE, self._hard_limit)
        s.setsockopt(zmq.SNDHWM, self.config.sndhwm)
        s.setsockopt(zmq.RCVHWM, self.config.rcvhwm)
        mon = s.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        mon.setsockopt(zmq.LINGER, 0)
        self._next_out += 1
        num = str(self._next_out).encode()
        out = _Out(s, mon, curve_key, node_id, endpoint, SendAccount(time.monotonic()))
        out.ready = asyncio.get_running_loop().create_future()
        self._out[num] = out
        # we dialed this key and Curve authenticates the server: the id is known
        self._identities[curve_key] = node_id
        loop = asyncio.get_running_loop()
        out.readers = [
            SocketReader(loop, s, lambda m: self._on_dealer(num, out, m), limit=YIELD_EVERY,
                         on_done=self._drained),
            SocketReader(loop, mon, lambda m: self._on_out_monitor(num, out, m))]
        s.connect(endpoint)
        conn: ConnId = ("out", num)
        if timeout is None:
            return conn
        try:
            result = await asyncio.wait_for(asyncio.shield(out.ready), timeout)
        except asyncio.TimeoutError:
            await self.disconnect(conn)
            raise TimeoutError(f"no Curve handshake with {endpoint}") from None
        if result == "refused":
            await self.disconnect(conn)
            raise PermissionError(f"{endpoint} refused our key")
        return conn

    def connection_state(self, conn: ConnId) -> str:
        out = self._out.get(conn[1]) if conn[0] == "out" else None
        return out.state if out else ("in" if conn[0] == "in" else "closed")

    async def disconnect(self, conn: ConnId) -> None:
        if conn[0] != "out":
            return  # ROUTER peers cannot be kicked; stop answering them instead
        out = self._out.pop(conn[1], None)
        if out is None:
            return
        for rd in out.readers:
            rd.close()
        if out.ready is not None and not out.ready.done():
            out.ready.cancel()
        with contextlib.suppress(zmq.ZMQError):
            out.sock.disable_monitor()
        out.monitor.close(linger=0)
        out.sock.close(linger=0)
        close_probe(out.probe)
        out.probe = None
        self._budgets.forget(conn, out.acct)

    # ------------------------------------------------------------ sending
    def _account(self, conn: ConnId) -> tuple[SendAccount, socket.socket | None] | None:
        if conn[0] == "in":
            peer = self._in.get(conn[1])
            return (peer.acct, peer.probe) if peer is not None else None
        out = self._out.get(conn[1])
        return (out.acct, out.probe) if out is not None else None

    def _all_accounts(self) -> list[tuple[SendAccount, socket.socket | None]]:
        return [(p.acct, p.probe) for p in self._in.values()] + [
            (o.acct, o.probe) for o in self._out.values()]

    def in_flight(self, conn: ConnId) -> int:
        """Bytes for ``conn`` its peer has not received: waiting here, in libzmq or the kernel."""
        return self._budgets.in_flight(conn)

    def congested(self, conn: ConnId) -> bool:
        """True while ``conn`` (or the node as a whole) has much unread data in flight.

        A producer should stop generating frames for a congested conn (they
        would soon be refused by ``send``) and try again on a later round.
        """
        return self._budgets.congested(conn)

    async def send(self, conn: ConnId, frame: bytes) -> bool:
        """Send one frame without blocking the loop; False (counted) if it cannot go.

        Byte budgets (:class:`~ownkernel.net.flow.SendBudgets`): what is in
        flight to a conn (handed to libzmq, not yet acked by the peer's TCP)
        stays under ``send_budget``, and in all under ``send_budget_total``; a
        frame that does not fit waits in the conn's backlog (order kept, True
        returned) until the peer drains; the backlog is capped the same way.
        Past that, False ("send-budget" / "send-budget-total"): the protocol
        resends on a later anti-entropy round. So a peer that never reads holds
        at most ~2 x ``send_budget`` bytes of our memory.
        """
        return self.send_now(conn, frame)

    def send_now(self, conn: ConnId, frame: bytes) -> bool:
        """:meth:`send` as a plain call (it never waits): for a writer on the loop."""
        if len(frame) > self.config.max_frame_size:
            self.stats["send-oversize"] += 1
            return False
        return self._budgets.send(conn, frame)

    def _put(self, conn: ConnId, frame: bytes) -> bool:
        try:
            if conn[0] == "in":
                assert self._router is not None and self._router_reader is not None
                try:
                    send_parts(self._router, [conn[1], frame])
                finally:
                    self._router_reader.poke()  # see net/reader.py: the FD is edge-triggered
            else:
                out = self._out.get(conn[1])
                if out is None:
                    self.stats["send-failed"] += 1
                    return False
                try:
                    send_one(out.sock, frame)
                finally:
                    out.readers[0].poke()
        except zmq.ZMQError:  # EHOSTUNREACH (peer gone) or EAGAIN (HWM full)
            self.stats["send-failed"] += 1
            return False
        return True


__all__ = ["ConnEvent", "ConnId", "Incoming", "KeyPolicy", "Policy", "TokenBucket",
           "Transport", "TransportConfig", "endpoint_host", "format_address", "parse_address"]
