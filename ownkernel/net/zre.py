"""LAN discovery following ZRE (ZeroMQ RFC 36), interoperable with zyre / zeromq-pyre.

Layers: the codecs (22-byte UDP beacon, ZRE v2 messages); :class:`ZreCore`, a sans-IO
peer table that turns beacons, messages and clock ticks into actions and events; and
:class:`ZreDiscovery`, a thin asyncio runner (zmq.asyncio ROUTER + one DEALER per peer,
asyncio UDP endpoints). Beaconing is never on by default: it only happens when a caller
builds a :class:`ZreDiscovery` with an explicit interface address. Discovery is only a
hint (anyone on the LAN can claim any ``X-OWNKERNEL-ID``), so the node layer must
authenticate peers over its own CurveZMQ transport before trusting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import ipaddress
import logging
import socket
import struct
import sys
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import zmq
import zmq.asyncio

log = logging.getLogger(__name__)

ZRE_DISCOVERY_PORT = 5670
BEACON_PREFIX = b"ZRE"
BEACON_VERSION = 1
BEACON_SIZE = 22
# The group zbeacon/pyre fall back to when a host has only loopback: using it on
# loopback is what lets us and pyre hear each other there.
LOOPBACK_MULTICAST_GROUP = "225.25.25.25"
SIGNATURE = 0xAAA1
ZRE_VERSION = 2
HEADER_NODE_ID = "X-OWNKERNEL-ID"
HEADER_ENDPOINT = "X-OWNKERNEL-ENDPOINT"
MAX_MESSAGE_SIZE = 1 << 20  # a HELLO is small; bounds what a hostile LAN peer can make us buffer

HELLO, WHISPER, SHOUT, JOIN, LEAVE, PING, PING_OK = range(1, 8)


class ZreError(ValueError):
    """Base of every decoding error; a ValueError so callers can catch broadly."""


class BeaconError(ZreError):
    """A UDP datagram that is not a valid ZRE beacon (the message says why)."""


class MessageError(ZreError):
    """A ZeroMQ message that is not a valid ZRE message (the message says why)."""


# --------------------------------------------------------------------------- beacons


@dataclass(frozen=True)
class Beacon:
    uuid: uuidlib.UUID
    port: int  # 0 announces that the peer is leaving

    @property
    def is_exit(self) -> bool:
        return self.port == 0


def encode_beacon(node_uuid: uuidlib.UUID, port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"beacon port out of range: {port}")
    return BEACON_PREFIX + bytes([BEACON_VERSION]) + node_uuid.bytes + struct.pack(">H", port)


def decode_beacon(data: bytes) -> Beacon:
    if len(data) != BEACON_SIZE:
        raise BeaconError(f"beacon must be {BEACON_SIZE} bytes, got {len(data)}")
    if data[:3] != BEACON_PREFIX:
        raise BeaconError("beacon does not start with 'ZRE'")
    if data[3] != BEACON_VERSION:
        raise BeaconError(f"unsupported beacon version {data[3]}")
    (port,) = struct.unpack(">H", data[20:22])
    return Beacon(uuidlib.UUID(bytes=bytes(data[4:20])), port)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Hello:
    sequence: int = 1
    endpoint: str = ""
    groups: tuple[str, ...] = ()
    status: int = 0
    name: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Whisper:
    sequence: int = 0
    content: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Shout:
    sequence: int = 0
    group: str = ""
    content: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Join:
    sequence: int = 0
    group: str = ""
    status: int = 0


@dataclass(frozen=True)
class Leave:
    sequence: int = 0
    group: str = ""
    status: int = 0


@dataclass(frozen=True)
class Ping:
    sequence: int = 0


@dataclass(frozen=True)
class PingOk:
    sequence: int = 0


@dataclass(frozen=True)
class Unknown:
    """A well-signed v2 message with an id we do not know (e.g. a later extension)."""

    msg_id: int
    body: bytes = b""
    sequence: int = 0


ZreMessage = Union[Hello, Whisper, Shout, Join, Leave, Ping, PingOk, Unknown]


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"ZRE string longer than 255 bytes: {s[:40]!r}...")
    return bytes([len(raw)]) + raw


def _longstr(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MessageError(f"truncated message: need {n} bytes at offset {self.pos}")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def num(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def text(self, len_size: int) -> str:  # string (1-byte length) or longstr (4-byte)
        raw = self.take(self.num(len_size))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"string is not UTF-8 at offset {self.pos - len(raw)}") from exc

    def count(self, min_item: int) -> int:
        # Check a declared count against the bytes left, so a forged huge count fails
        # at once instead of looping.
        n = self.num(4)
        if n * min_item > len(self.data) - self.pos:
            raise MessageError(f"count {n} exceeds message size")
        return n


def encode_message(msg: ZreMessage) -> list[bytes]:
    """Encode to ZeroMQ frames (without the routing identity): body, then any content."""
    msg_id = msg.msg_id if isinstance(msg, Unknown) else _IDS[type(msg)]
    head = struct.pack(">HBB", SIGNATURE, msg_id, ZRE_VERSION)
    if isinstance(msg, Unknown):
        return [head + msg.body]
    parts = [head, struct.pack(">H", msg.sequence & 0xFFFF)]
    if isinstance(msg, Hello):
        parts += [_string(msg.endpoint), struct.pack(">I", len(msg.groups))]
        parts += [_longstr(g) for g in msg.groups]
        parts += [bytes([msg.status & 0xFF]), _string(msg.name)]
        parts.append(struct.pack(">I", len(msg.headers)))
        parts += [_string(k) + _longstr(v) for k, v in msg.headers.items()]
    elif isinstance(msg, (Shout, Join, Leave)):
        parts.append(_string(msg.group))
        if isinstance(msg, (Join, Leave)):
            parts.append(bytes([msg.status & 0xFF]))
    content = msg.content if isinstance(msg, (Whisper, Shout)) else ()
    return [b"".join(parts), *content]


def decode_message(frames: Sequence[bytes]) -> ZreMessage:
    """Decode frames (without the routing identity). Raises MessageError, never crashes."""
    if not frames:
        raise MessageError("no frames")
    r = _Reader(bytes(frames[0]))
    signature, msg_id, version = r.num(2), r.num(1), r.num(1)
    if signature != SIGNATURE:
        raise MessageError(f"bad signature 0x{signature:04X}")
    if version != ZRE_VERSION:
        raise MessageError(f"unsupported ZRE version {version}")
    rest = tuple(bytes(f) for f in frames[1:])
    if msg_id not in _TYPES:  # tolerated: every v2 body starts with the sequence
        body = r.data[r.pos :]
        return Unknown(msg_id, body, int.from_bytes(body[:2], "big") if len(body) >= 2 else 0)
    seq = r.num(2)
    msg: ZreMessage
    if msg_id == HELLO:
        endpoint = r.text(1)
        groups = tuple(r.text(4) for _ in range(r.count(4)))
        status, name = r.num(1), r.text(1)
        headers = {r.text(1): r.text(4) for _ in range(r.count(5))}
        msg = Hello(seq, endpoint, groups, status, name, headers)
    elif msg_id == WHISPER:
        msg = Whisper(seq, rest)
    elif msg_id == SHOUT:
        msg = Shout(seq, r.text(1), rest)
    elif msg_id in (JOIN, LEAVE):
        msg = _TYPES[msg_id](seq, r.text(1), r.num(1))
    else:
        msg = _TYPES[msg_id](seq)
    if r.pos != len(r.data):
        raise MessageError(f"{len(r.data) - r.pos} trailing bytes")
    if rest and msg_id not in (WHISPER, SHOUT):
        raise MessageError(f"unexpected {len(rest)} extra frame(s)")
    return msg


_TYPES: dict[int, Any] = {
    HELLO: Hello, WHISPER: Whisper, SHOUT: Shout, JOIN: Join, LEAVE: Leave, PING: Ping,
    PING_OK: PingOk,
}
_IDS: dict[type, int] = {cls: i for i, cls in _TYPES.items()}


def ownkernel_headers(node_id_hex: str, endpoints: Sequence[str]) -> dict[str, str]:
    """Headers advertising our real (CurveZMQ) transport; endpoints are space-separated."""
    return {HEADER_NODE_ID: node_id_hex, HEADER_ENDPOINT: " ".join(endpoints)}


def parse_ownkernel_headers(headers: Mapping[str, str]) -> tuple[str | None, list[str]]:
    return headers.get(HEADER_NODE_ID), headers.get(HEADER_ENDPOINT, "").split()


# --------------------------------------------------------------------------- sans-IO core


@dataclass(frozen=True)
class PeerEntered:
    uuid: uuidlib.UUID
    name: str
    endpoint: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class PeerExited:
    uuid: uuidlib.UUID
    name: str = ""


@dataclass(frozen=True)
class Connect:
    uuid: uuidlib.UUID
    endpoint: str


@dataclass(frozen=True)
class Send:
    uuid: uuidlib.UUID
    frames: tuple[bytes, ...]


@dataclass(frozen=True)
class Disconnect:
    uuid: uuidlib.UUID


PeerEvent = Union[PeerEntered, PeerExited]
Action = Union[Connect, Send, Disconnect, PeerEntered, PeerExited]


@dataclass
class _Peer:
    uuid: uuidlib.UUID
    endpoint: str
    expires_at: float
    evasive_at: float
    ready: bool = False  # has said HELLO to us
    name: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)
    sent_seq: int = 0
    want_seq: int = 0
    pinged: bool = False


def _valid_peer_endpoint(endpoint: str) -> bool:
    # A peer's HELLO tells us where to connect: accept only tcp://host:port so a
    # hostile HELLO cannot point our DEALER at ipc:// or inproc:// endpoints.
    if not endpoint.startswith("tcp://"):
        return False
    host, _, port = endpoint[6:].rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) <= 0xFFFF


class ZreCore:
    """The ZRE peer state machine, without sockets or clocks (``now`` is passed in)."""

    def __init__(
        self, node_uuid: uuidlib.UUID, name: str, endpoint: str, headers: Mapping[str, str],
        *, peer_expiry: float = 5.0, peer_evasive: float | None = None, max_peers: int = 256,
    ) -> None:
        self.uuid, self.name, self.endpoint = node_uuid, name, endpoint
        self.headers = dict(headers)
        self.peer_expiry = peer_expiry
        self.peer_evasive = peer_expiry / 2 if peer_evasive is None else peer_evasive
        self.max_peers = max_peers
        self.peers: dict[uuidlib.UUID, _Peer] = {}
        encode_message(self._hello(1))  # fail now, not per peer, on over-long name/headers

    def _hello(self, seq: int) -> Hello:
        return Hello(seq, self.endpoint, (), 0, self.name, self.headers)

    def beacon(self, exiting: bool = False) -> bytes:
        port = 0 if exiting else int(self.endpoint.rpartition(":")[2])
        return encode_beacon(self.uuid, port)

    # -- inputs

    def on_beacon(self, data: bytes, sender_ip: str, now: float) -> list[Action]:
        try:
            beacon = decode_beacon(data)
        except BeaconError as exc:
            log.debug("zre: beacon from %s rejected: %s", sender_ip, exc)
            return []
        if beacon.uuid == self.uuid:
            return []  # our own beacon, echoed by multicast loop / broadcast
        if beacon.is_exit:
            peer = self.peers.get(beacon.uuid)
            return self._remove(peer) if peer else []
        endpoint = f"tcp://{sender_ip}:{beacon.port}"
        actions: list[Action] = []
        peer = self.peers.get(beacon.uuid)
        # An unbound sender on a loopback-only host (pyre) beacons from 0.0.0.0: no
        # endpoint to connect to, so wait for its HELLO (it connects to us on our beacon).
        if peer is None and sender_ip != "0.0.0.0":
            actions += self._require(beacon.uuid, endpoint, now)
            peer = self.peers.get(beacon.uuid)
        if peer is not None:
            self._refresh(peer, now)
        return actions

    def on_message(self, frames: Sequence[bytes], now: float) -> list[Action]:
        """Handle one ROUTER message: frames[0] is the sender's routing identity."""
        if len(frames) < 2:
            return []
        ident = bytes(frames[0])
        # RFC 36: the DEALER identity is 0x01 followed by the 16-byte UUID.
        if len(ident) != 17 or ident[0] != 1:
            log.debug("zre: message with malformed identity %r dropped", ident)
            return []
        sender = uuidlib.UUID(bytes=ident[1:])
        try:
            msg = decode_message(frames[1:])
        except MessageError as exc:
            log.debug("zre: message from %s rejected: %s", sender, exc)
            return []
        actions: list[Action] = []
        peer = self.peers.get(sender)
        if isinstance(msg, Hello):
            if not _valid_peer_endpoint(msg.endpoint):
                log.debug("zre: HELLO from %s with bad endpoint %r", sender, msg.endpoint)
                return []
            if peer is not None and peer.ready:
                # A second HELLO means the peer restarted with the same UUID (zyre does this).
                actions += self._remove(peer)
                peer = None
            if peer is None:
                actions += self._require(sender, msg.endpoint, now)
                peer = self.peers.get(sender)
                if peer is None:
                    return actions
            peer.ready = True
            peer.want_seq = msg.sequence
            peer.name, peer.headers, peer.groups = msg.name, dict(msg.headers), set(msg.groups)
            self._refresh(peer, now)
            actions.append(PeerEntered(sender, msg.name, peer.endpoint, dict(msg.headers)))
            return actions
        if peer is None or not peer.ready:
            return []  # RFC 36: HELLO must come first; ignore anything before it
        if not isinstance(msg, Unknown):
            expected = (peer.want_seq + 1) & 0xFFFF
            # pyre wraps at 65535 instead of 65536; accept its 65534 -> 0 step too.
            pyre_wrap = peer.want_seq == 65534 and msg.sequence == 0
            if msg.sequence != expected and not pyre_wrap:
                log.debug("zre: %s lost messages (want %d got %d)", sender, expected,
                          msg.sequence)
                return self._remove(peer)
            peer.want_seq = msg.sequence
        self._refresh(peer, now)
        log.debug("zre: %s seq=%d from %s", type(msg).__name__, msg.sequence, sender)
        if isinstance(msg, Ping):
            actions.append(self._send(peer, PingOk()))
        elif isinstance(msg, Join):
            peer.groups.add(msg.group)
        elif isinstance(msg, Leave):
            peer.groups.discard(msg.group)
        return actions

    def tick(self, now: float) -> list[Action]:
        """Expire silent peers, PING evasive ones. Call about once a second."""
        actions: list[Action] = []
        for peer in list(self.peers.values()):
            if now >= peer.expires_at:
                actions += self._remove(peer)
            elif now >= peer.evasive_at and not peer.pinged:
                peer.pinged = True
                log.debug("zre: %s silent, sending Ping", peer.uuid)
                actions.append(self._send(peer, Ping()))
        return actions

    def shutdown(self) -> list[Action]:
        """Forget every peer (no exit events: it is us who leave)."""
        actions: list[Action] = [Disconnect(p) for p in self.peers]
        self.peers.clear()
        return actions

    def ready_peers(self) -> dict[uuidlib.UUID, PeerEntered]:
        return {
            p.uuid: PeerEntered(p.uuid, p.name, p.endpoint, dict(p.headers))
            for p in self.peers.values()
            if p.ready
        }

    # -- helpers

    def _require(self, peer_uuid: uuidlib.UUID, endpoint: str, now: float) -> list[Action]:
        actions: list[Action] = []
        # A peer restarted with a new UUID reuses its endpoint: the old entry is stale.
        for other in list(self.peers.values()):
            if other.endpoint == endpoint:
                actions += self._remove(other)
        if len(self.peers) >= self.max_peers:
            log.warning("zre: peer limit %d reached, ignoring %s", self.max_peers, peer_uuid)
            return actions
        peer = _Peer(peer_uuid, endpoint, now + self.peer_expiry, now + self.peer_evasive)
        self.peers[peer_uuid] = peer
        actions.append(Connect(peer_uuid, endpoint))
        actions.append(self._send(peer, self._hello(0)))
        return actions

    def _send(self, peer: _Peer, msg: ZreMessage) -> Send:
        peer.sent_seq = (peer.sent_seq + 1) & 0xFFFF
        frames = encode_message(dataclasses.replace(msg, sequence=peer.sent_seq))
        return Send(peer.uuid, tuple(frames))

    def _refresh(self, peer: _Peer, now: float) -> None:
        peer.expires_at = now + self.peer_expiry
        peer.evasive_at = now + self.peer_evasive
        peer.pinged = False

    def _remove(self, peer: _Peer) -> list[Action]:
        self.peers.pop(peer.uuid, None)
        actions: list[Action] = [Disconnect(peer.uuid)]
        if peer.ready:
            actions.append(PeerExited(peer.uuid, peer.name))
        return actions


# --------------------------------------------------------------------------- asyncio runner


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, str], None] | None = None) -> None:
        self.on_datagram = on_datagram
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.on_datagram is not None:
            self.on_datagram(data, str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        log.debug("zre: UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _resolve_interface(
    interface_address: str, beacon_address: str | None
) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    iface = ipaddress.IPv4Interface(interface_address)
    ip = iface.ip
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"interface_address must be a concrete local IPv4 address: {ip}")
    if beacon_address is not None:
        return ip, ipaddress.IPv4Address(beacon_address)
    if ip.is_loopback:
        return ip, ipaddress.IPv4Address(LOOPBACK_MULTICAST_GROUP)
    if iface.network.prefixlen >= 31:
        raise ValueError(
            "give interface_address with its prefix (e.g. '192.168.1.10/24') so the "
            "broadcast address can be derived, or pass beacon_address explicitly"
        )
    return ip, iface.network.broadcast_address


_Udp = tuple[asyncio.DatagramTransport, _UdpProtocol]


class ZreDiscovery:
    """ZRE discovery on one explicit IPv4 interface.

    ``interface_address`` is required: ``"127.0.0.1"`` (beacons go to the multicast
    group 225.25.25.25 on loopback, like pyre's loopback fallback; needs
    ``ip link set lo multicast on`` and a 224.0.0.0/4 route) or ``"192.168.1.10/24"``
    (beacons are broadcast to that subnet). ``beacon_address`` overrides the choice.
    Events go to ``on_peer(event)`` if given (it may return an awaitable), otherwise to
    :meth:`events` (unbounded queue: consume it).
    """

    def __init__(
        self, name: str, headers: Mapping[str, str], interface_address: str, *,
        beacon_port: int = ZRE_DISCOVERY_PORT, beacon_interval: float = 1.0,
        peer_expiry: float = 5.0, on_peer: Callable[[PeerEvent], Any] | None = None,
        beacon_address: str | None = None, node_uuid: uuidlib.UUID | None = None,
        max_peers: int = 256,
    ) -> None:
        self.name, self.headers = name, dict(headers)
        self.interface_ip, self.beacon_address = _resolve_interface(
            interface_address, beacon_address
        )
        if not 0 < beacon_port <= 0xFFFF:
            raise ValueError(f"bad beacon_port {beacon_port}")
        self.beacon_port, self.beacon_interval = beacon_port, beacon_interval
        self.peer_expiry, self.max_peers = peer_expiry, max_peers
        self.uuid = node_uuid or uuidlib.uuid4()
        self.endpoint = ""
        self._on_peer = on_peer
        self._queue: asyncio.Queue[PeerEvent | None] = asyncio.Queue()
        self._core: ZreCore | None = None
        self._ctx: zmq.asyncio.Context | None = None
        self._router: zmq.asyncio.Socket | None = None
        self._dealers: dict[uuidlib.UUID, zmq.asyncio.Socket] = {}
        self._rx: _Udp | None = None
        self._tx: _Udp | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        ZreCore(self.uuid, name, "tcp://0.0.0.0:1", self.headers)  # validate name/headers now

    @property
    def multicast(self) -> bool:
        return self.beacon_address.is_multicast

    @property
    def peers(self) -> dict[uuidlib.UUID, PeerEntered]:
        """Peers that have said HELLO, as a snapshot."""
        return self._core.ready_peers() if self._core else {}

    async def __aenter__(self) -> ZreDiscovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._core is not None:
            raise RuntimeError("ZreDiscovery already started")
        loop = asyncio.get_running_loop()
        try:
            self._ctx = zmq.asyncio.Context()
            router = self._router = self._ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a peer reconnecting takes its id back
            router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_SIZE)
            # Ephemeral port picked by the OS: no retry loop, no collision with peers.
            port = router.bind_to_random_port(f"tcp://{self.interface_ip}")
            self.endpoint = f"tcp://{self.interface_ip}:{port}"
            self._core = ZreCore(self.uuid, self.name, self.endpoint, self.headers,
                                 peer_expiry=self.peer_expiry, max_peers=self.max_peers)
            self._rx = await self._udp_endpoint(loop, rx=True)
            self._tx = await self._udp_endpoint(loop, rx=False)
        except BaseException:
            await self.stop()
            raise
        self._tasks = [
            asyncio.create_task(self._recv_loop(), name="zre-recv"),
            asyncio.create_task(self._timer_loop(), name="zre-timer"),
        ]
        log.info("zre: %s (%s) at %s, beacons to %s:%d", self.name, self.uuid,
                 self.endpoint, self.beacon_address, self.beacon_port)

    async def _udp_endpoint(self, loop: asyncio.AbstractEventLoop, rx: bool) -> _Udp:
        proto = _UdpProtocol(self._on_datagram if rx else None)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: proto, sock=self._udp_socket(rx)
        )
        return transport, proto

    def _udp_socket(self, rx: bool) -> socket.socket:
        """The receiving socket (on the beacon port) or the sending one (ephemeral)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        ip, group = str(self.interface_ip), str(self.beacon_address)
        try:
            sock.setblocking(False)
            if rx:
                # Several ZRE nodes (ours, pyre's) share the discovery port on one host.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if hasattr(socket, "SO_REUSEPORT"):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                # On Linux, binding to the group/broadcast address filters out unrelated
                # unicast traffic to the port; elsewhere that bind is not portable.
                sock.bind((group if sys.platform.startswith("linux") else "", self.beacon_port))
                if self.multicast:
                    mreq = socket.inet_aton(group) + socket.inet_aton(ip)  # join on our iface only
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                return sock
            # Bound to the interface address: the beacon's source IP is what peers use
            # to build our endpoint, so it must be the interface we announce.
            sock.bind((ip, 0))
            if self.multicast:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)  # never routed
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # same host
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            return sock
        except BaseException:
            sock.close()
            raise

    async def stop(self) -> None:
        """Say goodbye (port-0 beacon), then close every socket and transport. Idempotent."""
        if self._tx is not None and self._core is not None:
            self._send_beacon(exiting=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._core is not None:
            self._run(self._core.shutdown())
            self._core = None
        for sock in [*self._dealers.values(), self._router]:
            if sock is not None:
                sock.close(linger=0)
        self._dealers.clear()
        self._router = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        for udp in (self._rx, self._tx):
            if udp is not None:
                udp[0].close()
                with contextlib.suppress(asyncio.TimeoutError):  # connection_lost is call_soon
                    await asyncio.wait_for(asyncio.shield(udp[1].closed), 1.0)
        self._rx = self._tx = None
        if self._callback_tasks:
            await asyncio.gather(*self._callback_tasks, return_exceptions=True)
        self._queue.put_nowait(None)  # ends events()

    async def events(self) -> AsyncIterator[PeerEvent]:
        """Peer events until stop() (only when no on_peer callback was given)."""
        while (event := await self._queue.get()) is not None:
            yield event

    def _send_beacon(self, exiting: bool = False) -> None:
        assert self._core is not None and self._tx is not None
        try:
            target = (str(self.beacon_address), self.beacon_port)
            self._tx[0].sendto(self._core.beacon(exiting), target)
        except OSError as exc:  # network down: keep trying on the next interval
            log.debug("zre: beacon send failed: %s", exc)

    def _on_datagram(self, data: bytes, sender_ip: str) -> None:
        if self._core is not None:
            self._run(self._core.on_beacon(data, sender_ip, time.monotonic()))

    async def _recv_loop(self) -> None:
        assert self._router is not None
        while True:
            frames = await self._router.recv_multipart()
            if self._core is not None:
                self._run(self._core.on_message(frames, time.monotonic()))

    async def _timer_loop(self) -> None:
        reap_every = min(1.0, self.peer_expiry / 4)
        next_beacon = next_reap = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_beacon:
                self._send_beacon()
                next_beacon = now + self.beacon_interval
            if now >= next_reap and self._core is not None:
                self._run(self._core.tick(now))
                next_reap = now + reap_every
            await asyncio.sleep(max(0.0, min(next_beacon, next_reap) - time.monotonic()))

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Connect):
                assert self._ctx is not None
                self._close_dealer(action.uuid)
                dealer = self._ctx.socket(zmq.DEALER)
                dealer.setsockopt(zmq.LINGER, 0)
                dealer.setsockopt(zmq.IDENTITY, b"\x01" + self.uuid.bytes)  # RFC 36 identity
                dealer.setsockopt(zmq.SNDHWM, 1000)
                dealer.connect(action.endpoint)
                self._dealers[action.uuid] = dealer
            elif isinstance(action, Send):
                dealer = self._dealers.get(action.uuid)
                if dealer is None:
                    continue
                # DONTWAIT: a stuck peer must never block discovery; pyzmq then returns
                # an already-completed future.
                fut = dealer.send_multipart(list(action.frames), flags=zmq.DONTWAIT)
                if fut.exception() is not None:
                    log.debug("zre: send to %s failed: %s", action.uuid, fut.exception())
            elif isinstance(action, Disconnect):
                self._close_dealer(action.uuid)
            else:
                self._emit(action)

    def _close_dealer(self, peer_uuid: uuidlib.UUID) -> None:
        dealer = self._dealers.pop(peer_uuid, None)
        if dealer is not None:
            dealer.close(linger=0)

    def _emit(self, event: PeerEvent) -> None:
        log.debug("zre: %s", event)
        if self._on_peer is None:
            self._queue.put_nowait(event)
            return
        try:
            result = self._on_peer(event)
        except Exception:
            log.exception("zre: on_peer callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)
