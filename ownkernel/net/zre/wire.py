"""ZRE wire formats: the 22-byte UDP beacon, ZRE v2 messages, and our headers in HELLO."""

from __future__ import annotations

import struct
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

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

