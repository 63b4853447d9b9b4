"""ZeroMQ transport: ROUTER (in) + one DEALER per outgoing peer, CurveZMQ, ZAP.

The Curve keys are the node's Ed25519 identity in Curve25519 form, so the
key a socket authenticated with and the key that signs changes are the same
fact. Our own ZAP handler (REP on ``inproc://zeromq.zap.01`` of this
transport's private context) asks the policy hook and hands libzmq the
client's Curve key (hex) as the ZAP user id; every incoming frame carries it
in its ``User-Id`` property, so each frame is reported with the key that
authenticated it. The peer's Ed25519 node id is only reported once
:meth:`Transport.confirm_identity` saw a hello whose id maps to that key.

Everything runs on one asyncio loop (zmq.asyncio): the node's own thread.

Counting what never becomes a frame: the ROUTER is monitored, so a client
without Curve, raw TCP garbage, a wrong server key, a refused key and a frame
past the hard size limit each leave their own counter in ``stats`` (see
:meth:`Transport._router_monitor_loop`). Sending is budgeted in bytes per
connection and in total (see :meth:`Transport.send`), so a peer that never
reads costs bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

import zmq
import zmq.asyncio
from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519
from nacl.signing import SigningKey
from zmq.utils.monitor import parse_monitor_message

from .limits import SendAccount, wire_size
from .protocol import DEFAULT_MAX_FRAME, curve_key_of

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "ownkernel"
# zmq.asyncio hands back an already-finished future when a message is waiting,
# so ``await sock.recv_multipart()`` does not suspend while a peer keeps the
# socket busy: a flood would starve every other task on the loop (the node's
# writer, its timers, calls from other threads). Receive loops give the loop
# a turn every this many frames.
YIELD_EVERY = 32
# A full ZMTP greeting is 64 bytes: a server that sent no more than that never
# got to the Curve handshake (the peer's greeting was garbage).
GREETING = 64
MAX_IN_PEERS = 65536  # routing ids remembered (backstop; entries leave on disconnect)

_PROTOCOL_ERRORS = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "in-no-curve",  # NULL/PLAIN client
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "in-bad-curve",  # wrong server key, bad box
}
_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "in-handshake-aborted",
           zmq.EVENT_HANDSHAKE_FAILED_AUTH: "in-auth-failed",
           zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "in-protocol-error"}

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
    if not key:
        return endpoint, None
    node_id = bytes.fromhex(key)
    if len(node_id) != 32:
        raise ValueError("node id must be 32 bytes")
    return endpoint, node_id


def endpoint_host(endpoint: str) -> str:
    """``tcp://[::1]:5555`` -> ``::1``; ``tcp://127.0.0.1:5`` -> ``127.0.0.1``."""
    return endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")


# ---------------------------------------------------------------- TCP probes
# libzmq does not say *why* it closed a connection, nor how much of what we
# handed it is still queued. A dup of its TCP socket (a "probe") answers both
# from the kernel: TCP_INFO's bytes_acked counts what the peer received, and a
# peek at close time tells "peer hung up" (EOF) from "libzmq hung up on a peer
# still sending" (data pending or socket open), e.g. a frame past MAXMSGSIZE.
# The dup keeps the connection open until we close it, which we do as soon as
# libzmq reports the disconnect.

def _probe(fd: int, port_ok: Callable[[socket.socket], bool]) -> socket.socket | None:
    try:
        dup = os.dup(fd)
    except OSError:
        return None  # libzmq closed it already
    try:
        p = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None
    try:  # the fd may have been reused by another socket meanwhile: check it is ours
        if p.type == socket.SOCK_STREAM and port_ok(p):
            return p
    except (OSError, IndexError, TypeError, ValueError):
        pass
    p.close()
    return None


def _acked(p: socket.socket | None) -> int | None:
    """Bytes of ours the peer's TCP acknowledged (Linux TCP_INFO), or None."""
    if p is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = p.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return None
    if len(info) < 128:
        return None
    return int(struct.unpack_from("=Q", info, 120)[0])  # struct tcp_info.tcpi_bytes_acked


def _peer_still_there(p: socket.socket) -> bool:
    """After libzmq closed: True if the peer had not hung up (unread data or no EOF)."""
    try:
        return bool(p.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True  # open, nothing pending: libzmq hung up, not the peer
    except OSError:
        return False  # reset by the peer


def _close_probe(p: socket.socket | None) -> None:
    if p is not None:
        with contextlib.suppress(OSError):
            p.close()


@dataclass
class _Accepted:
    """A TCP connection the ROUTER accepted, by libzmq's fd."""
    probe: socket.socket | None
    rids: set[bytes] = field(default_factory=set)


@dataclass
class _Backlog:
    frames: deque[bytes] = field(default_factory=deque)
    held: int = 0  # wire bytes of the frames waiting
    wait: float = 0.001  # next check delay: backs off while the peer does not read
    due: float = 0.0


@dataclass
class _InPeer:
    """A ROUTER peer (routing id), learned from its first frame."""
    address: str
    fd: int | None
    probe: socket.socket | None
    acct: SendAccount


@dataclass
class _Out:
    sock: zmq.asyncio.Socket
    monitor: zmq.asyncio.Socket
    curve_key: bytes
    node_id: bytes
    endpoint: str
    acct: SendAccount
    state: str = "connecting"
    ready: asyncio.Future[str] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
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
    ) -> None:
        self.node_id, self.curve_public, self._curve_secret = _keys(signing_key)
        self.config = config or TransportConfig()
        self.policy = policy
        self.on_frame = on_frame
        self.on_event = on_event
        self.stats: Counter[str] = Counter()
        self.endpoints: list[str] = []
        self._ctx: zmq.asyncio.Context | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._zap: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
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
        self._router_mon: zmq.asyncio.Socket | None = None
        self._ports: set[int] = set()  # our listening ports (to recognise our sockets)
        self._fds: dict[int, _Accepted] = {}  # libzmq fd -> accepted connection
        self._in: OrderedDict[bytes, _InPeer] = OrderedDict()  # routing id -> peer
        self._in_flight = 0  # sum of the accounts' last in_flight (stale: over-estimates)
        self._refreshed = 0.0
        # frames over a conn's budget wait here (bounded in bytes) until it drains
        self._backlog: dict[ConnId, _Backlog] = {}
        self._held_total = 0
        self._flusher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle
    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        assert self._ctx is not None
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        return s

    async def start(self) -> list[str]:
        """Bind the ZAP handler and the ROUTER; return the actual endpoints."""
        self._ctx = zmq.asyncio.Context()  # private: one ZAP handler per context
        self._zap = self._socket(zmq.REP)
        self._zap.bind(ZAP_ENDPOINT)
        self._tasks.append(asyncio.ensure_future(self._zap_loop()))
        r = self._router = self._socket(zmq.ROUTER)
        r.curve_server = True
        r.curve_secretkey = self._curve_secret
        r.curve_publickey = self.curve_public
        r.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        r.setsockopt(zmq.MAXMSGSIZE, self._hard_limit)
        r.setsockopt(zmq.ROUTER_MANDATORY, 1)
        r.setsockopt(zmq.SNDHWM, self.config.sndhwm)
        self._router_mon = r.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        self._router_mon.setsockopt(zmq.LINGER, 0)
        self._tasks.append(asyncio.ensure_future(self._router_monitor_loop()))
        for ep in self.config.listen:
            r.bind(ep)
            self.endpoints.append(r.getsockopt_string(zmq.LAST_ENDPOINT))
            with contextlib.suppress(ValueError):
                self._ports.add(int(self.endpoints[-1].rsplit(":", 1)[1]))
        self._tasks.append(asyncio.ensure_future(self._router_loop()))
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
        if self._flusher is not None:
            self._tasks.append(self._flusher)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._backlog.clear()
        self._tasks.clear()
        for rec in self._fds.values():
            _close_probe(rec.probe)
        self._fds.clear()
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
    async def _zap_loop(self) -> None:
        assert self._zap is not None
        while True:
            msg = await self._zap.recv_multipart()
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
            await self._zap.send_multipart(reply)

    # ------------------------------------------------------------ receiving
    def _accept(self, conn: ConnId, curve_key: bytes, data: bytes, address: str) -> None:
        """App-level checks shared by all sockets, then hand the frame up."""
        if len(data) > self.config.max_frame_size:
            self.stats["oversize"] += 1
            return
        if not self._allowed(curve_key):  # re-checked so a block applies mid-session
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

    async def recv(self) -> Incoming:
        return await self._queue.get()

    async def _router_loop(self) -> None:
        assert self._router is not None
        for n in itertools.count(1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # see YIELD_EVERY
            parts = await self._router.recv_multipart(copy=False)
            if len(parts) != 2:
                self.stats["bad-multipart"] += 1
                continue
            rid, frame = parts
            try:
                curve_key = bytes.fromhex(frame.get("User-Id"))
            except (ValueError, TypeError, zmq.ZMQError):
                self.stats["no-user-id"] += 1  # cannot happen with our ZAP handler
                continue
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
        rec = self._fds.get(fd) if fd is not None else None
        probe = rec.probe if rec is not None else None
        if rec is not None:
            rec.rids.add(rid)
        peer = self._in[rid] = _InPeer(address or "", fd, probe,
                                       SendAccount(time.monotonic(), _acked(probe)))
        while len(self._in) > MAX_IN_PEERS:
            self._forget_in(next(iter(self._in)))
        return peer

    def _forget_in(self, rid: bytes) -> None:
        peer = self._in.pop(rid, None)
        if peer is not None:
            self._in_flight -= peer.acct.in_flight
        self._drop_backlog(("in", rid))

    # ------------------------------------------------------------ ROUTER monitor
    async def _router_monitor_loop(self) -> None:
        """Count every incoming TCP connection's fate, by reason (see class doc).

        libzmq reports a handshake failure and then, in the same call on its
        I/O thread, the DISCONNECTED of that connection: so a DISCONNECTED right
        after a failure is that failure's (already counted). Any other
        DISCONNECTED is classified with the connection's probe. Events are
        read in batches so that a connection both accepted and closed before
        we look is never probed (its fd may already belong to someone else).
        """
        assert self._router_mon is not None
        mon = self._router_mon
        after_failure = False
        while True:
            batch = [parse_monitor_message(await mon.recv_multipart())]
            while len(batch) < 256:
                try:
                    batch.append(parse_monitor_message(
                        await mon.recv_multipart(flags=zmq.NOBLOCK)))
                except zmq.Again:
                    break
            closing = Counter(e["value"] for e in batch if e["event"] == zmq.EVENT_DISCONNECTED)
            for e in batch:
                ev, value = e["event"], e["value"]
                if ev == zmq.EVENT_ACCEPTED:
                    self._in_accepted(value, probe=closing[value] == 0)
                elif ev == zmq.EVENT_DISCONNECTED:
                    closing[value] -= 1
                    self._in_disconnected(value, counted=after_failure)
                elif ev == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.stats["in-handshake-ok"] += 1
                elif ev == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                    self.stats[_PROTOCOL_ERRORS.get(value, "in-protocol-error")] += 1
                elif ev in _FAILED:
                    self.stats[_FAILED[ev]] += 1
                after_failure = ev in _FAILED

    def _in_accepted(self, fd: int, probe: bool) -> None:
        self.stats["in-accepted"] += 1
        old = self._fds.pop(fd, None)
        if old is not None:  # its DISCONNECTED went missing: the fd was reused
            self._in_closed(old)
        p = None
        if probe and len(self._fds) < self.config.probe_limit:
            p = _probe(fd, lambda s: s.getsockname()[1] in self._ports)
        self._fds[fd] = _Accepted(p)

    def _in_disconnected(self, fd: int, counted: bool) -> None:
        rec = self._fds.pop(fd, None)
        if not counted:
            self.stats[self._why_closed(rec)] += 1
        if rec is not None:
            self._in_closed(rec)

    def _why_closed(self, rec: _Accepted | None) -> str:
        if rec is None:
            return "in-disconnected"
        acked = _acked(rec.probe)
        if not rec.rids and (acked is None or acked <= GREETING):
            # a peer closing mid-handshake gets "handshake failed" events; a
            # bare close before any handshake is libzmq refusing the greeting
            return "in-garbage"
        if rec.probe is not None and _peer_still_there(rec.probe):
            return "in-hard-limit"
        return "in-disconnected"

    def _in_closed(self, rec: _Accepted) -> None:
        _close_probe(rec.probe)
        rec.probe = None
        for rid in rec.rids:
            self._forget_in(rid)
            if self.on_event is not None:
                self.on_event(ConnEvent(("in", rid), "disconnected"))

    async def _dealer_loop(self, num: bytes, out: _Out) -> None:
        for n in itertools.count(1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # see YIELD_EVERY
            parts = await out.sock.recv_multipart()
            if len(parts) != 1:
                self.stats["bad-multipart"] += 1
                continue
            # the server key was pinned by us: Curve proved the peer holds it
            self._accept(("out", num), out.curve_key, parts[0], endpoint_host(out.endpoint))

    async def _monitor_loop(self, num: bytes, out: _Out) -> None:
        while True:
            evt = parse_monitor_message(await out.monitor.recv_multipart())
            e = evt["event"]
            kind = ""
            if e == zmq.EVENT_CONNECTED:
                kind = "connected"
                # a new TCP connection: watch it; what libzmq still queues carries over
                _close_probe(out.probe)
                port = out.endpoint.rsplit(":", 1)[-1]
                out.probe = _probe(evt["value"], lambda s, p=port: str(s.getpeername()[1]) == p)
                carried = out.acct.in_flight
                out.acct.rebase(_acked(out.probe), time.monotonic())
                out.acct.add(carried)
            elif e == zmq.EVENT_DISCONNECTED:
                kind = "disconnected"
                _close_probe(out.probe)
                out.probe = None
            elif e == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                kind = "handshake-ok"
            elif e in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                kind = "refused"
            if not kind:
                continue
            out.state = kind
            if out.ready is not None and not out.ready.done() and kind in (
                    "handshake-ok", "refused"):
                out.ready.set_result(kind)
            if self.on_event is not None:
                self.on_event(ConnEvent(("out", num), kind, out.endpoint))

    # ------------------------------------------------------------ connecting
    async def connect(self, endpoint: str, node_id: bytes | None = None, *,
                      timeout: float | None = None) -> ConnId:
        """Open a DEALER to ``endpoint`` (``tcp://h:p`` + node_id, or ``tcp://h:p#<id>``).

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
        s = self._socket(zmq.DEALER)
        s.curve_secretkey = self._curve_secret
        s.curve_publickey = self.curve_public
        s.curve_serverkey = curve_key
        s.setsockopt(zmq.MAXMSGSIZE, self._hard_limit)
        s.setsockopt(zmq.SNDHWM, self.config.sndhwm)
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
        out.tasks = [asyncio.ensure_future(self._dealer_loop(num, out)),
                     asyncio.ensure_future(self._monitor_loop(num, out))]
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
        for t in out.tasks:
            t.cancel()
        await asyncio.gather(*out.tasks, return_exceptions=True)
        if out.ready is not None and not out.ready.done():
            out.ready.cancel()
        with contextlib.suppress(zmq.ZMQError):
            out.sock.disable_monitor()
        out.monitor.close(linger=0)
        out.sock.close(linger=0)
        _close_probe(out.probe)
        out.probe = None
        self._in_flight -= out.acct.in_flight
        self._drop_backlog(conn)

    # ------------------------------------------------------------ sending
    def _account(self, conn: ConnId) -> tuple[SendAccount, socket.socket | None] | None:
        if conn[0] == "in":
            peer = self._in.get(conn[1])
            return (peer.acct, peer.probe) if peer is not None else None
        out = self._out.get(conn[1])
        return (out.acct, out.probe) if out is not None else None

    def _refresh(self, acct: SendAccount, probe: socket.socket | None, now: float) -> int:
        before = acct.in_flight
        acct.update(now, _acked(probe))
        self._in_flight += acct.in_flight - before
        return acct.in_flight

    def _refresh_all(self, now: float) -> None:
        """Re-read every connection's in-flight bytes (when the total looks full)."""
        if now - self._refreshed < 0.01:  # at most 100 times a second under overload
            return
        self._refreshed = now
        total = 0
        for acct, probe in [(p.acct, p.probe) for p in self._in.values()] + [
                (o.acct, o.probe) for o in self._out.values()]:
            total += acct.update(now, _acked(probe))
        self._in_flight = total

    def in_flight(self, conn: ConnId) -> int:
        """Bytes for ``conn`` its peer has not received: waiting here, in libzmq or the kernel."""
        a = self._account(conn)
        if a is None:
            return 0
        b = self._backlog.get(conn)
        return self._refresh(*a, time.monotonic()) + (b.held if b else 0)

    def congested(self, conn: ConnId) -> bool:
        """True while ``conn`` (or the node as a whole) has much unread data in flight.

        A producer should stop generating frames for a congested conn (they
        would soon be refused by ``send``) and try again on a later round.
        """
        cfg = self.config
        return (conn in self._backlog
                or self.in_flight(conn) >= cfg.congested_at * cfg.send_budget
                or self._in_flight + self._held_total
                >= cfg.congested_at * cfg.send_budget_total)

    def _room(self, acct: SendAccount, probe: socket.socket | None, cost: int,
              now: float) -> bool:
        """May ``cost`` more bytes go to libzmq now? One frame always goes to an idle conn."""
        cfg = self.config
        mine = self._refresh(acct, probe, now)
        if mine == 0:
            return True
        if mine + cost > cfg.send_budget:
            return False
        if self._in_flight + cost > cfg.send_budget_total:
            self._refresh_all(now)
            return self._in_flight + cost <= cfg.send_budget_total
        return True

    async def send(self, conn: ConnId, frame: bytes) -> bool:
        """Send one frame without blocking the loop; False (counted) if it cannot go.

        Byte budgets: what is in flight to a conn (handed to libzmq, not yet
        acked by the peer's TCP) stays under ``send_budget``, and to all conns
        under ``send_budget_total``; a frame that does not fit waits in the
        conn's backlog (order kept) until the peer drains, and the backlog is
        itself capped at ``send_budget`` per conn and ``send_budget_total`` in
        all. Past that, False ("send-budget" / "send-budget-total"): the
        protocol resends on a later anti-entropy round. So a peer that never
        reads holds at most ~2 × ``send_budget`` bytes of our memory.
        """
        if len(frame) > self.config.max_frame_size:
            self.stats["send-oversize"] += 1
            return False
        a = self._account(conn)
        if a is None:  # unknown or gone: libzmq says which
            return await self._put(conn, frame)
        cost = wire_size(len(frame))
        if conn not in self._backlog and self._room(*a, cost, time.monotonic()):
            if not await self._put(conn, frame):
                return False
            a[0].add(cost)
            self._in_flight += cost
            return True
        return self._defer(conn, frame, cost)

    async def _put(self, conn: ConnId, frame: bytes) -> bool:
        try:
            if conn[0] == "in":
                assert self._router is not None
                await self._router.send_multipart([conn[1], frame], flags=zmq.NOBLOCK)
            else:
                out = self._out.get(conn[1])
                if out is None:
                    self.stats["send-failed"] += 1
                    return False
                await out.sock.send(frame, flags=zmq.NOBLOCK)
        except zmq.ZMQError:  # EHOSTUNREACH (peer gone) or EAGAIN (HWM full)
            self.stats["send-failed"] += 1
            return False
        self.stats["frames-out"] += 1
        return True

    # ------------------------------------------------------------ backlog
    def _defer(self, conn: ConnId, frame: bytes, cost: int) -> bool:
        cfg = self.config
        b = self._backlog.get(conn)
        held = b.held if b else 0
        if held and held + cost > cfg.send_budget:
            self.stats["send-budget"] += 1
            return False
        if self._held_total + cost > cfg.send_budget_total:
            self.stats["send-budget-total"] += 1
            return False
        if b is None:
            b = self._backlog[conn] = _Backlog(due=time.monotonic() + 0.001)
        b.frames.append(frame)
        b.held += cost
        self._held_total += cost
        self.stats["send-deferred"] += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_backlogs())
        return True

    def _drop_backlog(self, conn: ConnId) -> None:
        b = self._backlog.pop(conn, None)
        if b is not None:
            self._held_total -= b.held
            self.stats["send-failed"] += len(b.frames)

    async def _flush_backlogs(self) -> None:
        """Move waiting frames to libzmq as their peers drain (checks back off when stuck)."""
        while self._backlog:
            now = time.monotonic()
            for conn, b in list(self._backlog.items()):
                if b.due > now:
                    continue
                a = self._account(conn)
                if a is None:
                    self._drop_backlog(conn)
                    continue
                moved = False
                while b.frames and self._room(*a, wire_size(len(b.frames[0])), now):
                    frame = b.frames.popleft()
                    cost = wire_size(len(frame))
                    b.held -= cost
                    self._held_total -= cost
                    if await self._put(conn, frame):
                        a[0].add(cost)
                        self._in_flight += cost
                    moved = True
                if not b.frames:
                    self._backlog.pop(conn, None)
                    continue
                b.wait = 0.001 if moved else min(0.1, b.wait * 2)
                b.due = now + b.wait
            if self._backlog:
                nxt = min(b.due for b in self._backlog.values())
                await asyncio.sleep(max(0.0005, nxt - time.monotonic()))


__all__ = ["ConnEvent", "ConnId", "Incoming", "KeyPolicy", "Policy", "TokenBucket",
           "Transport", "TransportConfig", "endpoint_host", "format_address", "parse_address"]
