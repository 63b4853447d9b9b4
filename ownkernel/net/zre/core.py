"""The ZRE peer state machine, sans IO: beacons, messages and clock ticks in, actions and
peer events out (no sockets, no clocks: ``now`` is passed in)."""

from __future__ import annotations

import dataclasses
import logging
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

from .wire import (
    BeaconError,
    Hello,
    Join,
    Leave,
    MessageError,
    Ping,
    PingOk,
    Unknown,
    ZreMessage,
    decode_beacon,
    decode_message,
    encode_beacon,
    encode_message,
)

log = logging.getLogger(__name__)


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

