"""Sans-IO sync protocol: one :class:`PeerSession` state machine per peer.

Model: h11. No sockets, no threads, no clocks: bytes come in through
:meth:`PeerSession.receive` together with the current time, frames to send
pile up in an outbox drained by :meth:`PeerSession.data_to_send`, and timers
fire from :meth:`PeerSession.tick`. This keeps the protocol testable without a
network and lets ``ownkernel.net.sim`` run 1,000 nodes in one process.

Frames are CBOR maps with a ``type`` field (see ``docs`` in each sender).
Bad input never raises out of ``receive()``: it becomes a
:class:`ProtocolError` event with a stable reason key, counted in
``session.errors``; only unrecoverable faults (no common version, identity
mismatch, handshake timeout) close the session.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

from .wire import (  # noqa: F401  (re-exported: part of this API)
    _DECODE_KW,
    _FRAME_OVERHEAD,
    DEFAULT_MAX_FRAME,
    MAX_ACTOR,
    MAX_ADDR,
    MAX_ADDRS,
    MAX_DOC_ID,
    MAX_NAME,
    MAX_PEERS,
    MAX_SEQ,
    MAX_TTL,
    PROTOCOL_VERSIONS,
    DocId,
    VersionVector,
    _addrs,
    _Bad,
    _doc,
    _int,
    _node_id,
    _num,
    _str,
    _vv,
    decode,
    encode,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------- events


@dataclass(frozen=True)
class PeerInfo:
    node_id: bytes
    name: str
    addresses: tuple[str, ...]
    last_seen: float


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class HelloReceived(Event):
    node_id: bytes
    name: str
    addresses: tuple[str, ...]
    version: int  # negotiated: highest version both sides speak
    docs: tuple[DocId, ...] | None


@dataclass(frozen=True)
class HaveReceived(Event):
    doc: DocId
    vv: VersionVector
    reply: bool


@dataclass(frozen=True)
class ChangesReceived(Event):
    doc: DocId
    blobs: tuple[bytes, ...]


@dataclass(frozen=True)
class PeersReceived(Event):
    peers: tuple[PeerInfo, ...]


@dataclass(frozen=True)
class PresenceReceived(Event):
    doc: DocId
    state: Any
    ttl: float
    expires_at: float


@dataclass(frozen=True)
class PresenceExpired(Event):
    doc: DocId


@dataclass(frozen=True)
class Pong(Event):
    latency: float
    nonce: int


@dataclass(frozen=True)
class ErrorReceived(Event):
    reason: str


@dataclass(frozen=True)
class ProtocolError(Event):
    reason: str  # stable key, e.g. "bad-cbor", "oversize", "version-mismatch"
    detail: str = ""
    fatal: bool = False


@dataclass(frozen=True)
class PeerTimeout(Event):
    silence: float


@dataclass(frozen=True)
class SessionClosed(Event):
    reason: str


# ------------------------------------------------------------------ the host


class SyncHost(Protocol):
    """What a node provides to the sessions it runs (all calls are synchronous)."""

    def shared_docs(self, peer_id: bytes) -> Iterable[DocId]:
        """Docs this peer may see (access list / invites). Nothing else is ever offered."""
        ...

    def version(self, doc: DocId) -> Mapping[bytes, int]:
        """Current version vector of ``doc`` ({} when unknown)."""
        ...

    def changes_since(self, doc: DocId, vv: Mapping[bytes, int]) -> list[bytes]:
        """Encoded changes a replica at ``vv`` lacks."""
        ...

    def ingest(self, doc: DocId, blobs: list[bytes], source: bytes) -> None:
        """Verify, store and apply blobs from peer ``source``; raise ValueError to reject."""
        ...


# ------------------------------------------------------------------ planning


class SyncPlan(NamedTuple):
    """Per actor, the half-open seq range (have, want] each side lacks."""

    local_lacks: dict[bytes, tuple[int, int]]
    remote_lacks: dict[bytes, tuple[int, int]]

    @property
    def in_sync(self) -> bool:
        return not self.local_lacks and not self.remote_lacks


def plan_sync(local_vv: Mapping[bytes, int], remote_vv: Mapping[bytes, int]) -> SyncPlan:
    """What each side lacks, from two version vectors. Pure."""
    local_lacks: dict[bytes, tuple[int, int]] = {}
    remote_lacks: dict[bytes, tuple[int, int]] = {}
    for actor in set(local_vv) | set(remote_vv):
        mine, theirs = local_vv.get(actor, 0), remote_vv.get(actor, 0)
        if theirs > mine:
            local_lacks[actor] = (mine, theirs)
        elif mine > theirs:
            remote_lacks[actor] = (theirs, mine)
    return SyncPlan(local_lacks, remote_lacks)


def curve_key_of(node_id: bytes) -> bytes:
    """The Curve25519 (CurveZMQ) public key of an Ed25519 node id (ValueError if not one)."""
    try:
        return crypto_sign_ed25519_pk_to_curve25519(node_id)
    except Exception as e:  # nacl raises its RuntimeError for points off the curve
        raise ValueError(f"not an Ed25519 public key: {e}") from None


# ------------------------------------------------------------------ session


@dataclass(frozen=True)
class LocalInfo:
    """What this node says about itself in `hello`."""

    node_id: bytes
    name: str = ""
    addresses: tuple[str, ...] = ()
    versions: tuple[int, ...] = PROTOCOL_VERSIONS


@dataclass
class SessionConfig:
    max_frame_size: int = DEFAULT_MAX_FRAME
    anti_entropy_interval: float = 30.0
    ping_interval: float = 10.0
    peer_timeout: float = 30.0
    handshake_timeout: float = 10.0


HANDSHAKE, OPEN, CLOSED = "handshake", "open", "closed"


@dataclass
class _Presence:
    state: Any
    expires_at: float


@dataclass
class SessionStats:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    changes_in: int = 0
    changes_out: int = 0


class PeerSession:
    """Protocol state with one peer. Not thread-safe: drive it from one loop.

    ``host`` (optional) automates the sync dance: after the handshake the
    session offers `have` for every doc the host shares with this peer,
    answers `have` with the missing `changes` (and its own `have` when the
    peer has something we lack), and hands received changes to
    ``host.ingest``. Without a host it only emits events.

    ``transport_key`` is the Curve25519 key the transport authenticated; when
    given, the peer's hello must carry the Ed25519 id that maps to it.
    """

    def __init__(
        self,
        local: LocalInfo,
        now: float,
        *,
        host: SyncHost | None = None,
        transport_key: bytes | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        self.local = local
        self.host = host
        self.transport_key = transport_key
        self.config = config or SessionConfig()
        self.state = HANDSHAKE
        self.version: int | None = None
        self.peer: HelloReceived | None = None
        self.peer_max_frame = self.config.max_frame_size
        self.errors: Counter[str] = Counter()
        self.stats = SessionStats()
        self.latency: float | None = None
        self.presence: dict[DocId, _Presence] = {}
        self._outbox: list[bytes] = []
        self._hello_sent = False
        self._started = now
        self._last_recv = now
        self._last_ping = now
        self._last_anti_entropy = now
        self._pings: dict[int, float] = {}
        self._nonce = 0
        self._timed_out = False

    # ------------------------------------------------------------ properties
    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def peer_id(self) -> bytes | None:
        """The peer's Ed25519 node id, once its hello was accepted."""
        return self.peer.node_id if self.peer else None

    def data_to_send(self) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    # ------------------------------------------------------------ senders
    def _queue(self, msg: dict[str, Any]) -> None:
        frame = encode(msg)
        self.stats.frames_out += 1
        self.stats.bytes_out += len(frame)
        self._outbox.append(frame)

    def hello(self, docs: Sequence[DocId] | None = None) -> None:
        """Queue our hello (once). Call on connect; sent automatically on the peer's hello."""
        if self._hello_sent or self.state == CLOSED:
            return
        self._hello_sent = True
        msg: dict[str, Any] = {
            "type": "hello",
            "id": self.local.node_id,
            "name": self.local.name,
            "addrs": list(self.local.addresses),
            "versions": list(self.local.versions),
            "max_frame": self.config.max_frame_size,
        }
        if docs is not None:
            msg["docs"] = list(docs)
        self._queue(msg)
        self._maybe_open()

    def _may_share(self, doc: DocId) -> bool:
        if self.host is None:
            return True
        assert self.peer is not None
        return doc in set(self.host.shared_docs(self.peer.node_id))

    def send_have(self, doc: DocId, vv: Mapping[bytes, int] | None = None, *,
                  reply: bool = False) -> bool:
        """Queue `have`; vv defaults to the host's. False if closed or doc not shared."""
        if not self.is_open or not self._may_share(doc):
            return False
        if vv is None:
            vv = self.host.version(doc) if self.host else {}
        self._queue({"type": "have", "doc": doc, "vv": dict(vv), "reply": reply})
        return True

    def send_changes(self, doc: DocId, blobs: Sequence[bytes]) -> bool:
        """Queue `changes`, split into frames under the smaller of both size limits."""
        if not self.is_open or not self._may_share(doc) or not blobs:
            return False
        limit = min(self.config.max_frame_size, self.peer_max_frame) - _FRAME_OVERHEAD
        batch: list[bytes] = []
        size = 0
        for b in blobs:
            if len(b) + 16 > limit:
                # cannot ever fit: the peer would drop it, so do not send it
                self.errors["blob-too-large"] += 1
                continue
            if batch and size + len(b) + 16 > limit:
                self._queue({"type": "changes", "doc": doc, "blobs": batch})
                batch, size = [], 0
            batch.append(bytes(b))
            size += len(b) + 16
        if batch:
            self._queue({"type": "changes", "doc": doc, "blobs": batch})
        self.stats.changes_out += len(blobs)
        return True

    def send_peers(self, peers: Iterable[PeerInfo]) -> bool:
        if not self.is_open:
            return False
        rows = [[p.node_id, p.name, list(p.addresses), float(p.last_seen)] for p in peers]
        self._queue({"type": "peers", "peers": rows[:MAX_PEERS]})
        return True

    def send_presence(self, doc: DocId, state: Any, ttl: float) -> bool:
        if not self.is_open or not self._may_share(doc):
            return False
        self._queue({"type": "presence", "doc": doc, "state": state,
                     "ttl": float(min(ttl, MAX_TTL))})
        return True

    def ping(self, now: float) -> bool:
        if not self.is_open:
            return False
        self._nonce += 1
        self._pings[self._nonce] = now
        # forget unanswered pings so a silent peer cannot grow this dict
        while len(self._pings) > 8:
            self._pings.pop(next(iter(self._pings)))
        self._last_ping = now
        self._queue({"type": "ping", "nonce": self._nonce, "t": now})
        return True

    def sync_all(self, now: float) -> int:
        """Anti-entropy: offer `have` for every doc shared with this peer."""
        self._last_anti_entropy = now
        if not self.is_open or self.host is None:
            return 0
        assert self.peer is not None
        n = 0
        for doc in list(self.host.shared_docs(self.peer.node_id)):
            n += self.send_have(doc)
        return n

    def close(self, reason: str = "closed") -> list[Event]:
        """Close locally, telling the peer why."""
        if self.state == CLOSED:
            return []
        self._queue({"type": "error", "reason": reason[:MAX_NAME]})
        self.state = CLOSED
        return [SessionClosed(reason)]

    # ------------------------------------------------------------ timers
    def tick(self, now: float) -> list[Event]:
        """Fire due timers (handshake timeout, ping, anti-entropy, presence expiry)."""
        if self.state == CLOSED:
            return []
        events: list[Event] = []
        if self.state == HANDSHAKE:
            if now - self._started >= self.config.handshake_timeout:
                events += self._fail("handshake-timeout", "no hello from peer")
            return events
        if now - self._last_ping >= self.config.ping_interval:
            self.ping(now)
        if now - self._last_anti_entropy >= self.config.anti_entropy_interval:
            self.sync_all(now)
        silence = now - self._last_recv
        if silence >= self.config.peer_timeout and not self._timed_out:
            self._timed_out = True
            events.append(PeerTimeout(silence))
        for doc, p in list(self.presence.items()):
            if p.expires_at <= now:
                del self.presence[doc]
                events.append(PresenceExpired(doc))
        return events

    # ------------------------------------------------------------ receiving
    def receive(self, frame: bytes, now: float) -> list[Event]:
        """Handle one frame from the peer. Never raises on bad input."""
        if self.state == CLOSED:
            self.errors["closed"] += 1
            return []
        self.stats.frames_in += 1
        self.stats.bytes_in += len(frame)
        self._last_recv = now
        self._timed_out = False
        try:
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise _Bad("bad-frame", "frame is not bytes")
            if len(frame) > self.config.max_frame_size:
                raise _Bad("oversize", f"{len(frame)} > {self.config.max_frame_size}")
            msg = decode(bytes(frame))
            kind = msg.get("type")
            if not isinstance(kind, str):
                raise _Bad("bad-message", "missing type")
            if kind == "error":
                return self._on_error(msg)
            if kind == "hello":
                return self._on_hello(msg, now)
            if self.peer is None:
                raise _Bad("before-hello", f"{kind[:32]} before hello")
            handler = self._handlers.get(kind)
            if handler is None:
                # forward compatibility: newer peers may send types we do not know
                raise _Bad("unknown-type", kind[:32])
            return handler(self, msg, now)
        except _Bad as bad:
            return [self._error(bad.reason, bad.detail)]

    def _error(self, reason: str, detail: str = "", fatal: bool = False) -> ProtocolError:
        self.errors[reason] += 1
        if self.errors[reason] == 1:  # log once per reason, not once per frame
            log.info("peer %s: %s %s", self._peer_label(), reason, detail)
        return ProtocolError(reason, detail, fatal)

    def _fail(self, reason: str, detail: str) -> list[Event]:
        err = self._error(reason, detail, fatal=True)
        return [err, *self.close(reason)]

    def _peer_label(self) -> str:
        return self.peer.node_id.hex()[:12] if self.peer else "?"

    def _maybe_open(self) -> list[Event]:
        if self.state == HANDSHAKE and self._hello_sent and self.peer is not None:
            self.state = OPEN
            if self.host is not None:
                self.sync_all(self._last_recv)
        return []

    def _on_error(self, msg: dict[str, Any]) -> list[Event]:
        reason = msg.get("reason")
        reason = reason[:MAX_NAME] if isinstance(reason, str) else "?"
        # peers only send `error` as their last word before closing
        self.state = CLOSED
        return [ErrorReceived(reason), SessionClosed(f"peer: {reason}")]

    def _on_hello(self, msg: dict[str, Any], now: float) -> list[Event]:
        if self.peer is not None:
            raise _Bad("duplicate-hello")
        node_id = _node_id(msg.get("id"))
        name = _str(msg, "name", MAX_NAME, required=False)
        addrs = _addrs(msg.get("addrs"))
        versions = msg.get("versions")
        if not isinstance(versions, list) or not versions or len(versions) > 64 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in versions
        ):
            raise _Bad("bad-field", "versions must be a list of ints")
        docs_raw = msg.get("docs")
        docs: tuple[DocId, ...] | None = None
        if docs_raw is not None:
            if not isinstance(docs_raw, list) or len(docs_raw) > 10_000:
                raise _Bad("bad-field", "docs must be a list")
            docs = tuple(_doc({"doc": d}) for d in docs_raw)
        max_frame = msg.get("max_frame", DEFAULT_MAX_FRAME)
        if isinstance(max_frame, bool) or not isinstance(max_frame, int) or max_frame < 1024:
            raise _Bad("bad-field", "max_frame must be an int >= 1024")
        if node_id == self.local.node_id:
            return self._fail("self-connection", "peer has our own node id")
        if self.transport_key is not None:
            try:
                ok = curve_key_of(node_id) == self.transport_key
            except ValueError:  # not a point on the curve
                ok = False
            if not ok:
                return self._fail("identity-mismatch",
                                  "hello id does not match the transport key")
        common = set(self.local.versions) & set(versions)
        if not common:
            return self._fail("version-mismatch",
                              f"ours {sorted(self.local.versions)}, theirs {sorted(versions)[:8]}")
        self.version = max(common)
        self.peer_max_frame = max_frame
        self.peer = HelloReceived(node_id, name, addrs, self.version, docs)
        self.hello()  # answer if we had not spoken yet; opens the session
        self._maybe_open()
        return [self.peer]

    def _on_have(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc = _doc(msg)
        vv = _vv(msg.get("vv"))
        reply = bool(msg.get("reply", False))
        if self.host is None:
            return [HaveReceived(doc, vv, reply)]
        if not self._may_share(doc):
            # say nothing: an error would reveal the doc exists
            raise _Bad("doc-not-shared")
        local = self.host.version(doc)
        plan = plan_sync(local, vv)
        if plan.remote_lacks:
            self.send_changes(doc, self.host.changes_since(doc, vv))
        # Ask back only when they have what we lack, and never in answer to an
        # answer: each anti-entropy exchange is at most have → changes+have → changes.
        if plan.local_lacks and not reply:
            self.send_have(doc, local, reply=True)
        return [HaveReceived(doc, vv, reply)]

    def _on_changes(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc = _doc(msg)
        blobs = msg.get("blobs")
        if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
            raise _Bad("bad-field", "blobs must be a list of bytes")
        self.stats.changes_in += len(blobs)
        if self.host is not None:
            if not self._may_share(doc):
                raise _Bad("doc-not-shared")
            assert self.peer is not None
            try:
                self.host.ingest(doc, blobs, self.peer.node_id)
            except ValueError as e:
                raise _Bad("rejected-changes", f"{type(e).__name__}: {e}"[:200]) from None
        return [ChangesReceived(doc, tuple(blobs))]

    def _on_peers(self, msg: dict[str, Any], now: float) -> list[Event]:
        rows = msg.get("peers")
        if not isinstance(rows, list) or len(rows) > MAX_PEERS:
            raise _Bad("bad-field", "peers must be a list")
        out = []
        for row in rows:
            if not isinstance(row, list) or len(row) != 4:
                raise _Bad("bad-field", "peer rows are [id, name, addrs, last_seen]")
            nid = _node_id(row[0])
            name = _str({"n": row[1]}, "n", MAX_NAME)
            seen = _num({"s": row[3]}, "s")
            out.append(PeerInfo(nid, name, _addrs(row[2]), seen))
        return [PeersReceived(tuple(out))]

    def _on_ping(self, msg: dict[str, Any], now: float) -> list[Event]:
        nonce = _int(msg, "nonce")
        t = _num(msg, "t")
        self._queue({"type": "pong", "nonce": nonce, "t": t})
        return []

    def _on_pong(self, msg: dict[str, Any], now: float) -> list[Event]:
        nonce = _int(msg, "nonce")
        _num(msg, "t")
        # latency from our own record, so a peer cannot fake it with `t`
        sent = self._pings.pop(nonce, None)
        if sent is None:
            raise _Bad("unexpected-pong")
        self.latency = max(0.0, now - sent)
        return [Pong(self.latency, nonce)]

    def _on_presence(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc = _doc(msg)
        ttl = _num(msg, "ttl")
        if not 0 < ttl <= MAX_TTL:
            raise _Bad("bad-field", "ttl out of range")
        if "state" not in msg:
            raise _Bad("bad-field", "presence without state")
        if self.host is not None and not self._may_share(doc):
            raise _Bad("doc-not-shared")
        if doc not in self.presence and len(self.presence) >= 1024:
            raise _Bad("presence-overflow")
        p = _Presence(msg["state"], now + ttl)
        self.presence[doc] = p
        return [PresenceReceived(doc, p.state, ttl, p.expires_at)]

    _handlers = {
        "have": _on_have,
        "changes": _on_changes,
        "peers": _on_peers,
        "ping": _on_ping,
        "pong": _on_pong,
        "presence": _on_presence,
    }


__all__ = [
    "ChangesReceived", "DocId", "ErrorReceived", "Event", "HaveReceived", "HelloReceived",
    "LocalInfo", "PROTOCOL_VERSIONS", "PeerInfo", "PeerSession", "PeersReceived", "PeerTimeout",
    "Pong", "PresenceExpired", "PresenceReceived", "ProtocolError", "SessionClosed",
    "SessionConfig", "SyncHost", "SyncPlan", "VersionVector", "curve_key_of", "decode",
    "encode", "plan_sync",
]
