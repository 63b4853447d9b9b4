"""The connection layer of the sans-IO protocol: handshake, framing, liveness.

Split from ``protocol`` (which adds sync on top and re-exports what is here),
so each reads on its own. Pure: no sockets, threads or clocks.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .syncapi import (
    CarryReceived,
    ErrorReceived,
    Event,
    GrantsReceived,
    HelloReceived,
    HostView,
    LocalInfo,
    PeerInfo,
    PeersReceived,
    PeerTimeout,
    Pong,
    PresenceExpired,
    PresenceReceived,
    ProfileReceived,
    ProtocolError,
    SessionClosed,
    SessionConfig,
    SessionStats,
    SignalReceived,
    SyncHost,
    curve_key_of,
)
from .wire import (
    FRAME_OVERHEAD,
    MAX_BATCH,
    MAX_CARRY,
    MAX_GRANT,
    MAX_GRANTS,
    MAX_NAME,
    MAX_PEERS,
    MAX_PRESENCE,
    MAX_TTL,
    Bad,
    DocId,
    bytes_list_field,
    chunked,
    decode,
    doc_field,
    encode,
    int_field,
    num_field,
    pack_frames,
    parse_hello,
    parse_peer_rows,
    parse_presence,
)

log = logging.getLogger("ownkernel.net.protocol")

HANDSHAKE, OPEN, CLOSED = "handshake", "open", "closed"
# Always a frame of their own. grants/carry too, so that one frame holds at most
# 256 grants or 1,000 carried docs (the host verifies each: bounded work per frame).
_NOT_BATCHED = frozenset({"hello", "error", "batch", "grants", "carry"})
# A ping goes at least every RTT_REFRESH ping intervals, even to a peer we hear
# from all the time (its round-trip time shows in the peers widget and paces pulls).
RTT_REFRESH = 6

MAX_PROFILE_NAME = 64  # characters of a display name in a `profile` message

# -- call signalling (issue #14) ----------------------------------------------------
# A `signal` message carries WebRTC set-up between two call members, point to
# point over this session: never stored, never forwarded. 64 KiB is ~10x the
# full SDP of a 3-track offer with its candidates; more is a bug or an attack.
MAX_SIGNAL = 64 * 1024
SIGNAL_KINDS = frozenset({"join", "present", "leave", "full", "offer", "answer", "candidate"})


@dataclass
class _Presence:
    state: bytes
    expires_at: float


class Session:
    """The connection layer of a peer session: handshake, framing, liveness.

    Hello and version negotiation, identity check against the transport key,
    `batch` packing and unpacking, ping/pong, peer timeout, `error`/close,
    and the messages the sync layer does not interpret (peers, presence,
    grants, carry). :class:`ownkernel.net.protocol.PeerSession` adds sync on
    top. Not thread-safe: drive it from one loop.
    """

    def __init__(
        self,
        local: LocalInfo,
        now: float,
        *,
        host: SyncHost | Any | None = None,
        transport_key: bytes | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        self.local = local
        self.host = host
        self._h = HostView(host) if host is not None else None
        self.transport_key = transport_key
        self.config = cfg = config or SessionConfig()
        self.state = HANDSHAKE
        self.version: int | None = None
        self.peer: HelloReceived | None = None
        self.peer_max_frame = cfg.max_frame_size
        self.errors: Counter[str] = Counter()
        self.stats = SessionStats()
        self.latency: float | None = None
        self.presence: dict[DocId, _Presence] = {}
        self._outbox: list[tuple[bytes, bool]] = []  # (encoded message, must go alone)
        self._hello_sent = False
        self._started = self._now = now
        self._last_recv = now
        self._last_ping = now
        self._pings: dict[int, float] = {}
        self._nonce = 0
        self._timed_out = False
        # Called with a time when a timer was set that may be earlier than any
        # before (an announce, a delayed pull, a presence expiry...): a host that
        # sleeps until ``next_due()`` wakes sooner then, instead of asking every
        # session for its ``next_due()`` after every frame.
        self.on_due: Callable[[float], None] | None = None

    def _due(self, at: float) -> None:
        if self.on_due is not None:
            self.on_due(at)

    # ------------------------------------------------------------ properties
    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def peer_id(self) -> bytes | None:
        """The peer's Ed25519 node id, once its hello was accepted."""
        return self.peer.node_id if self.peer else None

    @property
    def _limit(self) -> int:
        return min(self.config.max_frame_size, self.peer_max_frame)

    @property
    def has_output(self) -> bool:
        """Would data_to_send() return frames now? (Cheap: a node asks every link
        after every burst, and most links have nothing.)"""
        return bool(self._outbox)

    def data_to_send(self) -> list[bytes]:
        """Frames to send, small messages packed into `batch` frames under the frame limit."""
        self._before_send()
        if not self._outbox:
            return []
        frames = pack_frames(self._outbox, self._limit)
        self._outbox = []
        self.stats.frames_out += len(frames)
        self.stats.bytes_out += sum(map(len, frames))
        return frames

    # ------------------------------------------------------------ senders
    def _queue(self, msg: dict[str, Any]) -> None:
        self.stats.messages_out += 1
        self._outbox.append((encode(msg), msg["type"] in _NOT_BATCHED))

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
        if self.local.relay:
            msg["relay"] = True
        if docs is not None:
            msg["docs"] = list(docs)
        self._queue(msg)
        self._maybe_open()

    def _may_share(self, doc: DocId) -> bool:
        if self._h is None:
            return True
        assert self.peer is not None
        return bool(self._h.may_share(self.peer.node_id, doc))

    def _send_chunked(self, kind: str, key: str, items: Sequence[bytes], max_items: int,
                      max_len: int) -> bool:
        if not self.is_open:
            return False
        for it in items:
            if not isinstance(it, bytes) or not 0 < len(it) <= max_len:
                raise ValueError(f"{kind}: each item must be 1..{max_len} bytes")
        for chunk in chunked(list(items), [len(it) + 8 for it in items], max_items,
                             self._limit - FRAME_OVERHEAD):
            if chunk:
                self._queue({"type": kind, key: chunk})
        return True

    def send_grants(self, grants: Sequence[bytes]) -> bool:
        """Queue opaque grant blobs (each ≤ 4096 bytes), chunked. ValueError if one is not."""
        return self._send_chunked("grants", "grants", grants, MAX_GRANTS, MAX_GRANT)

    def send_carry(self, docs: Sequence[bytes]) -> bool:
        """Queue "please carry these docs" (ids ≤ 4096 bytes), chunked by 1,000."""
        return self._send_chunked("carry", "docs", docs, MAX_CARRY, MAX_GRANT)

    def send_peers(self, peers: Iterable[PeerInfo]) -> bool:
        if not self.is_open:
            return False
        rows = [[p.node_id, p.name, list(p.addresses), float(p.last_seen)] for p in peers]
        self._queue({"type": "peers", "peers": rows[:MAX_PEERS]})
        return True

    def send_profile(self, name: str, color: str) -> bool:
        """Queue our display name and colour: sent when they change (the hello
        carries the name at connect). Only ever "this key calls itself X"."""
        if not self.is_open:
            return False
        self._queue({"type": "profile", "name": name[:MAX_PROFILE_NAME], "color": color})
        return True

    def send_signal(self, doc: DocId, kind: str, data: str = "", *, vouched: bool = False) -> bool:
        """Queue a call signal for ``doc`` (issue #14). ValueError on a bad kind or
        data over ``MAX_SIGNAL``; False when closed or the peer may not read ``doc``
        (``vouched``: the host knows better, e.g. a call member introduced the peer)."""
        if kind not in SIGNAL_KINDS:
            raise ValueError(f"signal kind must be one of {sorted(SIGNAL_KINDS)}, not {kind!r}")
        if not isinstance(data, str) or len(data) > MAX_SIGNAL:
            raise ValueError(f"signal data must be a str of at most {MAX_SIGNAL} characters")
        if not self.is_open or not (vouched or self._may_share(doc)):
            return False
        self._queue({"type": "signal", "doc": doc, "kind": kind, "data": data})
        return True

    def send_presence(self, doc: DocId, state: bytes, ttl: float) -> bool:
        """Queue presence: ``state`` is opaque bytes (≤ 16 KiB), e.g. a signed blob."""
        if not isinstance(state, bytes) or len(state) > MAX_PRESENCE:
            raise TypeError(f"presence state must be bytes of at most {MAX_PRESENCE}")
        if not self.is_open or not self._may_share(doc):
            return False
        self._queue({"type": "presence", "doc": doc, "state": state,
                     "ttl": float(min(ttl, MAX_TTL))})
        return True

    def _ping_due(self) -> float:
        """When the next ping goes. Any frame proves a peer alive, so a ping goes only
        after ``ping_interval`` without hearing from the peer (pings and pongs were
        nine in ten idle frames). Of the two ends, the one with the larger node id
        waits half an interval more: the other's ping, answered, keeps both ends
        hearing each other with one ping a round, not two. Every
        ``RTT_REFRESH`` intervals a ping goes anyway, for a fresh round-trip time;
        never more than one per interval."""
        cfg = self.config
        quiet = cfg.ping_interval
        if self.peer is not None and self.peer.node_id < self.local.node_id:
            quiet = max(quiet, min(1.5 * quiet, cfg.peer_timeout / 2))
        return max(self._last_ping + cfg.ping_interval,
                   min(self._last_recv + quiet, self._last_ping + RTT_REFRESH * cfg.ping_interval))

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

    def close(self, reason: str = "closed") -> list[Event]:
        """Close locally, telling the peer why."""
        if self.state == CLOSED:
            return []
        self._queue({"type": "error", "reason": reason[:MAX_NAME]})
        self.state = CLOSED
        return [SessionClosed(reason)]

    # ------------------------------------------------------------ timers
    def next_due(self) -> float:
        """When ``tick`` next has something to do (the clock ``now`` is given in):
        a node sleeps until the earliest of its sessions' instead of polling."""
        cfg = self.config
        if self.state == CLOSED:
            return math.inf
        if self.state == HANDSHAKE:
            return self._started + cfg.handshake_timeout
        due = self._ping_due()
        if not self._timed_out:
            due = min(due, self._last_recv + cfg.peer_timeout)
        for p in self.presence.values():
            due = min(due, p.expires_at)
        return min(due, self._next_due_sync())

    def tick(self, now: float) -> list[Event]:
        """Fire due timers (handshake, ping, silence, presence, and the sync layer's)."""
        if self.state == CLOSED:
            return []
        self._now = max(self._now, now)
        events: list[Event] = []
        if self.state == HANDSHAKE:
            if now - self._started >= self.config.handshake_timeout:
                events += self._fail("handshake-timeout", "no hello from peer")
            return events
        if now >= self._ping_due():
            self.ping(now)
        self._tick_sync(now)
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
        self._now = max(self._now, now)
        if self._timed_out:  # the silence timer counts again
            self._timed_out = False
            self._due(now + self.config.peer_timeout)
        try:
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise Bad("bad-frame", "frame is not bytes")
            if len(frame) > self.config.max_frame_size:
                raise Bad("oversize", f"{len(frame)} > {self.config.max_frame_size}")
            msg = decode(bytes(frame))
            kind = msg.get("type")
            if not isinstance(kind, str):
                raise Bad("bad-message", "missing type")
            if kind == "error":
                return self._on_error(msg)
            if kind == "hello":
                return self._on_hello(msg, now)
            if self.peer is None:
                raise Bad("before-hello", f"{kind[:32]} before hello")
            if kind == "batch":
                return self._on_batch(msg, now)
            return self._dispatch(kind, msg, now)
        except Bad as bad:
            return [self._error(bad.reason, bad.detail)]

    def _dispatch(self, kind: str, msg: dict[str, Any], now: float) -> list[Event]:
        handler = self._handlers.get(kind)
        if handler is None:
            # forward compatibility: newer peers may send types we do not know
            raise Bad("unknown-type", kind[:32])
        self.stats.messages_in += 1
        return handler(self, msg, now)

    def _on_batch(self, msg: dict[str, Any], now: float) -> list[Event]:
        msgs = msg.get("msgs")
        if not isinstance(msgs, list) or len(msgs) > MAX_BATCH:
            raise Bad("bad-field", f"msgs must be a list of at most {MAX_BATCH}")
        events: list[Event] = []
        for m in msgs:  # one bad message costs only itself
            try:
                kind = m.get("type") if isinstance(m, dict) else None
                if not isinstance(kind, str):
                    raise Bad("bad-message", "batched message without type")
                if kind in _NOT_BATCHED:
                    raise Bad("bad-message", f"{kind} inside a batch")
                events += self._dispatch(kind, m, now)
            except Bad as bad:
                events.append(self._error(bad.reason, bad.detail))
            if self.state == CLOSED:
                break
        return events

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
            self._opened()
        return []

    def _on_error(self, msg: dict[str, Any]) -> list[Event]:
        reason = msg.get("reason")
        reason = reason[:MAX_NAME] if isinstance(reason, str) else "?"
        # peers only send `error` as their last word before closing
        self.state = CLOSED
        return [ErrorReceived(reason), SessionClosed(f"peer: {reason}")]

    def _on_hello(self, msg: dict[str, Any], now: float) -> list[Event]:
        if self.peer is not None:
            raise Bad("duplicate-hello")
        node_id, name, addrs, versions, docs, relay, max_frame = parse_hello(msg)
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
        self.peer = HelloReceived(node_id, name, addrs, self.version, docs, relay)
        self.hello()  # answer if we had not spoken yet; opens the session
        self._maybe_open()
        return [self.peer]

    # ------------------------------------------------------------ sync-layer hooks
    def _before_send(self) -> None:
        """Called by ``data_to_send`` before packing (flush held messages)."""

    def _tick_sync(self, now: float) -> None:
        """Called by ``tick`` on an open session (sync timers)."""

    def _next_due_sync(self) -> float:
        """When ``_tick_sync`` next has something to do."""
        return math.inf

    def _opened(self) -> None:
        """Called once when the handshake completes."""

    # ------------------------------------------------------------ other messages
    def _on_peers(self, msg: dict[str, Any], now: float) -> list[Event]:
        return [PeersReceived(tuple(PeerInfo(*row) for row in parse_peer_rows(msg)))]

    def _on_ping(self, msg: dict[str, Any], now: float) -> list[Event]:
        nonce = int_field(msg, "nonce")
        t = num_field(msg, "t")
        self._queue({"type": "pong", "nonce": nonce, "t": t})
        return []

    def _on_pong(self, msg: dict[str, Any], now: float) -> list[Event]:
        nonce = int_field(msg, "nonce")
        num_field(msg, "t")
        # latency from our own record, so a peer cannot fake it with `t`
        sent = self._pings.pop(nonce, None)
        if sent is None:
            raise Bad("unexpected-pong")
        self.latency = max(0.0, now - sent)
        return [Pong(self.latency, nonce)]

    def _on_presence(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc, state, ttl = parse_presence(msg)
        if self._h is not None and not self._may_share(doc):
            raise Bad("doc-not-shared")
        if doc not in self.presence and len(self.presence) >= 1024:
            raise Bad("presence-overflow")
        p = _Presence(state, now + ttl)
        self.presence[doc] = p
        self._due(p.expires_at)
        return [PresenceReceived(doc, p.state, ttl, p.expires_at)]

    def _on_profile(self, msg: dict[str, Any], now: float) -> list[Event]:
        name, color = msg.get("name"), msg.get("color", "")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_PROFILE_NAME:
            raise Bad("bad-field", f"name must be 1 to {MAX_PROFILE_NAME} characters")
        if not (color == "" or (isinstance(color, str) and len(color) == 7 and color[0] == "#"
                                and all(c in "0123456789abcdefABCDEF" for c in color[1:]))):
            raise Bad("bad-field", "color must be #rrggbb")
        return [ProfileReceived(name, color.lower())]

    def _on_signal(self, msg: dict[str, Any], now: float) -> list[Event]:
        # Shape only: whether the peer may read the doc is the host's call
        # (node/calls.py asks the gate, and counts what it drops).
        doc = doc_field(msg)
        kind = msg.get("kind")
        if not isinstance(kind, str) or kind not in SIGNAL_KINDS:
            raise Bad("bad-signal", f"unknown signal kind {str(kind)[:32]!r}")
        data = msg.get("data", "")
        if not isinstance(data, str):
            raise Bad("bad-signal", "signal data must be a str")
        if len(data) > MAX_SIGNAL:
            raise Bad("signal-too-large", f"{len(data)} > {MAX_SIGNAL} characters")
        return [SignalReceived(doc, kind, data)]

    def _on_grants(self, msg: dict[str, Any], now: float) -> list[Event]:
        return [GrantsReceived(tuple(bytes_list_field(msg, "grants", MAX_GRANTS, MAX_GRANT)))]

    def _on_carry(self, msg: dict[str, Any], now: float) -> list[Event]:
        return [CarryReceived(tuple(bytes_list_field(msg, "docs", MAX_CARRY, MAX_GRANT)))]

    _handlers: dict[str, Callable[[Any, dict[str, Any], float], list[Event]]] = {
        "peers": _on_peers,
        "ping": _on_ping,
        "pong": _on_pong,
        "presence": _on_presence,
        "profile": _on_profile,
        "grants": _on_grants,
        "carry": _on_carry,
        "signal": _on_signal,
    }


__all__ = ["CLOSED", "HANDSHAKE", "OPEN", "Session"]
