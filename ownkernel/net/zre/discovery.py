"""The asyncio runner of :class:`~ownkernel.net.zre.core.ZreCore`: a zmq.asyncio ROUTER, one
DEALER per peer, and UDP endpoints for the beacons on one explicit IPv4 interface."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import socket
import sys
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import zmq
import zmq.asyncio

from .core import Action, Connect, Disconnect, PeerEntered, PeerEvent, Send, ZreCore
from .wire import LOOPBACK_MULTICAST_GROUP, MAX_MESSAGE_SIZE, ZRE_DISCOVERY_PORT

log = logging.getLogger(__name__)


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
