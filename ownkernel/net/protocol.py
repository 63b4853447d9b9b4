"""Sans-IO sync protocol: one :class:`PeerSession` state machine per peer.

Model: h11. No sockets, no threads, no clocks: bytes come in through
:meth:`PeerSession.receive` together with the current time, frames to send
pile up in an outbox drained by :meth:`PeerSession.data_to_send`, and timers
fire from :meth:`PeerSession.tick`. This keeps the protocol testable without a
network and lets ``ownkernel.net.sim`` run 1,000 nodes in one process.

Frames are CBOR maps with a ``type`` field (see ``docs`` in each sender);
several small messages travel packed in one ``batch`` frame. Bad input never
raises out of ``receive()``: it becomes a :class:`ProtocolError` event with a
stable reason key, counted in ``session.errors``; only unrecoverable faults
(no common version, identity mismatch, handshake timeout) close the session.

Messages after a verified hello (protocol version 2):

=========  ==============================================================
have       {doc, vv, reply?, part?}: "I hold vv". Answered with `changes`
           beyond max(vv, what we already sent): a repeated ``have {}``
           costs nothing. ``part``: vv lists only some actors. A partial
           have is an *announce* (not answered with changes) or, with
           ``reply``, a *pull* (answered for the actors it names). A peer
           that lacks what a have names pulls it.
changes    {doc, blobs, vv?}: change blobs; ``vv``: the sender holds these.
digest     {d, n}: digest of all docs shared with the peer (anti-entropy).
digests    {docs: [[doc, version digest]...], d, of, end}: on mismatch.
settled    {mine, yours}: that pair of digests differs but nothing can be
           synced (the sides share different doc sets): stop resending.
batch      {msgs: [message...]}: packing (no hello/error/batch inside).
grants     {grants: [bytes]}, carry {docs: [bytes]}: opaque, for the host.
presence   {doc, state: bytes, ttl}; peers; ping/pong; error.
=========  ==============================================================
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

from .peerstate import PeerKnowledge, PullTracker, vv_max
from .wire import (  # noqa: F401  (re-exported: part of this API)
    _DECODE_KW,
    _FRAME_OVERHEAD,
    BATCH_OVERHEAD,
    DEFAULT_MAX_FRAME,
    MAX_ACTOR,
    MAX_ADDR,
    MAX_ADDRS,
    MAX_BATCH,
    MAX_CARRY,
    MAX_DIGESTS,
    MAX_DOC_ID,
    MAX_GRANT,
    MAX_GRANTS,
    MAX_NAME,
    MAX_PEERS,
    MAX_PRESENCE,
    MAX_SEQ,
    MAX_TTL,
    PROTOCOL_VERSIONS,
    DocId,
    VersionVector,
    _addrs,
    _Bad,
    _bytes_list,
    _digest,
    _doc,
    _flag,
    _int,
    _node_id,
    _num,
    _str,
    _vv,
    batch_frame,
    decode,
    encode,
    shared_digest,
    vv_digest,
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
    relay: bool = False  # the peer says it is a relay (a claim: verify before trusting)


@dataclass(frozen=True)
class HaveReceived(Event):
    doc: DocId
    vv: VersionVector
    reply: bool
    partial: bool = False  # vv lists only some actors (an announce or a pull)


@dataclass(frozen=True)
class ChangesReceived(Event):
    doc: DocId
    blobs: tuple[bytes, ...]


@dataclass(frozen=True)
class PeersReceived(Event):
    peers: tuple[PeerInfo, ...]


@dataclass(frozen=True)
class GrantsReceived(Event):
    grants: tuple[bytes, ...]  # opaque to the protocol: the host verifies them


@dataclass(frozen=True)
class CarryReceived(Event):
    docs: tuple[bytes, ...]  # "please carry these docs" (to a relay)


@dataclass(frozen=True)
class PresenceReceived(Event):
    doc: DocId
    state: bytes  # opaque (a signed blob): the host verifies it
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
    """What a node provides to the sessions it runs. All calls are synchronous.

    Cost matters: the session calls some of these for every message.

    ``may_share(peer, doc) -> bool``  — per message, so O(1): may ``peer`` see
        ``doc`` (access list / grants)? Nothing is offered to or accepted from
        a peer for a doc where this is False.
    ``shared_docs(peer) -> Iterable[DocId]`` — every doc shared with ``peer``.
        Only called on anti-entropy *mismatch* (to list per-doc digests) and
        by the default ``shared_digest``; never per message.
    ``version(doc) -> {actor: seq}`` — current version vector ({} if unknown).
    ``version_digest(doc) -> bytes`` — ``wire.vv_digest(version(doc))``, which
        the host should cache (invalidate when the doc changes): it is called
        for every doc listed in a `digests` message. Both sides must use
        ``vv_digest`` so that equal versions give equal digests.
    ``shared_digest(peer) -> bytes`` *(optional)* — ``wire.shared_digest`` over
        ``(doc, version_digest(doc))`` for ``shared_docs(peer)``; called once
        per anti-entropy round per peer. If absent the session computes it
        (O(shared docs) per round); a host that caches it makes idle rounds O(1).
    ``changes_since(doc, vv) -> [blob]`` — what a replica at ``vv`` lacks.
    ``ingest(doc, blobs, source)`` — verify, store, apply; raise ValueError to
        reject. Forwarding is the host's: for each change accepted, for each
        other open session ``s`` sharing ``doc``: if not
        ``s.peer_has(doc, actor, seq)``, either ``s.send_changes(doc, [blob],
        upto={actor: seq})`` (eager, e.g. our own edits) or
        ``s.announce(doc, {actor: seq})`` (lazy, e.g. changes we relay).
    ``claim_pull(doc, actor, seq, now) -> bool`` *(optional)* — "may this
        session pull (actor, seq) now?": one node-wide
        :class:`~ownkernel.net.peerstate.PullTracker` makes several peers'
        announces of one change cause one pull. Absent: always pull.

    The host also calls, on a session: ``reset_sent(doc=None)`` when its
    transport dropped frames to the peer (send failed), and ``refresh()`` when
    grants changed what it shares with the peer (runs the digest exchange
    again, so newly shared docs sync).
    """

    def may_share(self, peer_id: bytes, doc: DocId) -> bool: ...

    def shared_docs(self, peer_id: bytes) -> Iterable[DocId]: ...

    def version(self, doc: DocId) -> Mapping[bytes, int]: ...

    def version_digest(self, doc: DocId) -> bytes: ...

    def changes_since(self, doc: DocId, vv: Mapping[bytes, int]) -> list[bytes]: ...

    def ingest(self, doc: DocId, blobs: list[bytes], source: bytes) -> None: ...


class _HostView:
    """The host's calls, with the optional ones filled in (and a v1-style host adapted)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.version = host.version
        self.changes_since = host.changes_since
        self.ingest = host.ingest
        self.shared_docs = host.shared_docs
        may = getattr(host, "may_share", None)
        # a host of the old interface (shared_docs only) still works, at O(docs)
        self.may_share: Callable[[bytes, DocId], bool] = may if may is not None else (
            lambda peer, doc: doc in host.shared_docs(peer))
        vd = getattr(host, "version_digest", None)
        self.version_digest: Callable[[DocId], bytes] = vd if vd is not None else (
            lambda doc: vv_digest(host.version(doc)))
        self._shared_digest = getattr(host, "shared_digest", None)
        self.claim_pull: Callable[..., bool] | None = getattr(host, "claim_pull", None)

    def shared_digest(self, peer: bytes) -> tuple[bytes, int]:
        if self._shared_digest is not None:
            return self._shared_digest(peer), 0
        docs = list(self.shared_docs(peer))
        return shared_digest((d, self.version_digest(d)) for d in docs), len(docs)


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
    relay: bool = False


@dataclass
class SessionConfig:
    max_frame_size: int = DEFAULT_MAX_FRAME
    anti_entropy_interval: float = 30.0
    ping_interval: float = 10.0
    peer_timeout: float = 30.0
    handshake_timeout: float = 10.0
    # Wait this long after an announce before pulling what it names (the
    # author's eager push is usually on its way: pulling at once duplicates it).
    pull_delay: float = 0.02
    # Hold announces this long so several changes go in one partial `have`.
    announce_delay: float = 0.05
    # A `have` naming less than we sent that long ago is believed (lost frames).
    resend_after: float | None = None  # None: 2 x anti_entropy_interval
    # Answer a peer's `digest` with the per-doc list at most this often.
    digest_min_interval: float = 1.0


HANDSHAKE, OPEN, CLOSED = "handshake", "open", "closed"
_NOT_BATCHED = frozenset({"hello", "error", "batch"})
_MAX_PULLS = 10_000  # delayed pulls held per session


@dataclass
class _Presence:
    state: bytes
    expires_at: float


@dataclass
class SessionStats:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    changes_in: int = 0
    changes_out: int = 0
    digests_out: int = 0  # anti-entropy digests sent
    doc_digests_out: int = 0  # per-doc rows sent on digest mismatch
    answers_skipped: int = 0  # haves the cursor answered with nothing


class PeerSession:
    """Protocol state with one peer. Not thread-safe: drive it from one loop.

    ``host`` (optional, see :class:`SyncHost`) automates sync: after the
    handshake the session runs a digest exchange (then `have` only for docs
    whose digests differ), answers `have` beyond its per-doc cursor, pulls
    what announces name, and hands received changes to ``host.ingest``.
    Without a host it only emits events.

    ``transport_key`` is the Curve25519 key the transport authenticated; when
    given, the peer's hello must carry the Ed25519 id that maps to it.
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
        self._h = _HostView(host) if host is not None else None
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
        resend = cfg.resend_after if cfg.resend_after is not None else (
            2 * cfg.anti_entropy_interval)
        self.known = PeerKnowledge(resend)
        self._outbox: list[tuple[bytes, bool]] = []  # (encoded message, must go alone)
        self._hello_sent = False
        self._started = self._now = now
        self._last_recv = now
        self._last_ping = now
        self._last_anti_entropy = now
        self._pings: dict[int, float] = {}
        self._nonce = 0
        self._timed_out = False
        # pulls asked of this peer since the last anti-entropy round
        self._asked: dict[DocId, dict[bytes, int]] = {}
        self._full_asked: set[DocId] = set()  # docs we sent a full have for, this round
        # delayed pulls, each with its own due time (merging them would pull a
        # change named a moment ago at once, racing its author's push)
        self._pulls: deque[tuple[float, DocId, dict[bytes, int]]] = deque()
        self._announces: dict[DocId, dict[bytes, int]] = {}
        self._announce_due: float | None = None
        self._settled: tuple[bytes, bytes] | None = None  # (our digest, theirs)
        self._recon_found = False
        self._digest_answered = -math.inf
        self._digest_pending: bytes | None = None

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

    def data_to_send(self) -> list[bytes]:
        """Frames to send, small messages packed into `batch` frames under the frame limit."""
        if self._announces and self.config.announce_delay <= 0:
            self._flush_announces()
        limit = self._limit - BATCH_OVERHEAD
        frames: list[bytes] = []
        cur: list[bytes] = []
        size = 0
        for enc, alone in self._outbox:
            if cur and (alone or size + len(enc) > limit or len(cur) >= MAX_BATCH):
                frames.append(batch_frame(cur))
                cur, size = [], 0
            if alone:
                frames.append(enc)
            else:
                cur.append(enc)
                size += len(enc)
        if cur:
            frames.append(batch_frame(cur))
        self._outbox = []
        self.stats.frames_out += len(frames)
        self.stats.bytes_out += sum(map(len, frames))
        return frames

    def peer_has(self, doc: DocId, actor: bytes, seq: int) -> bool:
        """Is the peer known to hold change (actor, seq) of doc (it said so, sent or got it)?"""
        return self.known.has(doc, actor, seq)

    def reset_sent(self, doc: DocId | None = None) -> None:
        """Frames to the peer were lost: answer its next `have` (for doc, or all) in full."""
        self.known.reset_sent(doc)

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

    def send_have(self, doc: DocId, vv: Mapping[bytes, int] | None = None, *,
                  reply: bool = False, partial: bool = False) -> bool:
        """Queue `have`; vv defaults to the host's. False if closed or doc not shared."""
        if not self.is_open or not self._may_share(doc):
            return False
        if vv is None:
            vv = self._h.version(doc) if self._h else {}
        msg: dict[str, Any] = {"type": "have", "doc": doc, "vv": dict(vv)}
        if reply:
            msg["reply"] = True
        if partial:
            msg["part"] = True
        else:
            self._full_asked.add(doc)
        self._queue(msg)
        return True

    def announce(self, doc: DocId, vv: Mapping[bytes, int]) -> bool:
        """Tell the peer we now hold ``vv`` (some actors); it pulls what it lacks.

        Actors the peer is known to hold are left out; nothing is sent if none
        remain. Announces are merged until the next ``data_to_send`` (or for
        ``announce_delay`` seconds).
        """
        if not self.is_open or not self._may_share(doc):
            return False
        news = {a: s for a, s in vv.items() if s and not self.known.has(doc, a, s)}
        if not news:
            return False
        self._announces[doc] = vv_max(self._announces.get(doc, {}), news)
        if self._announce_due is None:
            self._announce_due = self._now + self.config.announce_delay
        return True

    def _flush_announces(self) -> None:
        pending, self._announces, self._announce_due = self._announces, {}, None
        for doc, vv in pending.items():
            # the peer may have told us meanwhile (its own announce crossed ours)
            news = {a: s for a, s in vv.items() if not self.known.has(doc, a, s)}
            if news and self.is_open:
                self._queue({"type": "have", "doc": doc, "vv": news, "part": True})

    def send_changes(self, doc: DocId, blobs: Sequence[bytes],
                     upto: Mapping[bytes, int] | None = None) -> bool:
        """Queue `changes`, split under the smaller of both frame limits.

        ``upto``: the peer holds at least this after these blobs (e.g. the
        {actor: seq} of a pushed change); remembered as sent, and told to the
        peer so it will not forward them back.
        """
        if not self.is_open or not self._may_share(doc) or not blobs:
            return False
        limit = self._limit - _FRAME_OVERHEAD
        batches: list[list[bytes]] = [[]]
        size = 0
        for b in blobs:
            if len(b) + 16 > limit:
                # cannot ever fit: the peer would drop it, so do not send it
                self.errors["blob-too-large"] += 1
                continue
            if batches[-1] and size + len(b) + 16 > limit:
                batches.append([])
                size = 0
            batches[-1].append(bytes(b))
            size += len(b) + 16
        for i, batch in enumerate(batches):
            if not batch:
                continue
            msg: dict[str, Any] = {"type": "changes", "doc": doc, "blobs": batch}
            if upto and i == len(batches) - 1:  # only once the last part is out
                msg["vv"] = dict(upto)
            self._queue(msg)
        if upto:
            self.known.sent_upto(doc, upto, self._now)
        self.stats.changes_out += len(blobs)
        return True

    def _send_chunked(self, kind: str, key: str, items: Sequence[bytes], max_items: int,
                      max_len: int) -> bool:
        if not self.is_open:
            return False
        for it in items:
            if not isinstance(it, bytes) or not 0 < len(it) <= max_len:
                raise ValueError(f"{kind}: each item must be 1..{max_len} bytes")
        limit = self._limit - _FRAME_OVERHEAD
        chunk: list[bytes] = []
        size = 0
        for it in items:
            if chunk and (len(chunk) >= max_items or size + len(it) + 8 > limit):
                self._queue({"type": kind, key: chunk})
                chunk, size = [], 0
            chunk.append(it)
            size += len(it) + 8
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

    def send_presence(self, doc: DocId, state: bytes, ttl: float) -> bool:
        """Queue presence: ``state`` is opaque bytes (≤ 16 KiB), e.g. a signed blob."""
        if not isinstance(state, bytes) or len(state) > MAX_PRESENCE:
            raise TypeError(f"presence state must be bytes of at most {MAX_PRESENCE}")
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
        """Anti-entropy round: one `digest` of every doc shared with the peer.

        The peer answers only on mismatch (per-doc digests), and `have` goes
        only for docs whose digests differ. Returns the number of messages queued.
        """
        self._last_anti_entropy = now
        self._now = max(self._now, now)
        if not self.is_open or self._h is None:
            return 0
        assert self.peer is not None
        self._asked.clear()
        self._full_asked.clear()
        d, n = self._h.shared_digest(self.peer.node_id)
        self._queue({"type": "digest", "d": d, "n": n})
        self.stats.digests_out += 1
        return 1

    def refresh(self, now: float | None = None) -> int:
        """What we share with the peer changed (grants): run the digest exchange again now."""
        self._settled = None
        return self.sync_all(self._now if now is None else now)

    def close(self, reason: str = "closed") -> list[Event]:
        """Close locally, telling the peer why."""
        if self.state == CLOSED:
            return []
        self._queue({"type": "error", "reason": reason[:MAX_NAME]})
        self.state = CLOSED
        return [SessionClosed(reason)]

    # ------------------------------------------------------------ timers
    def tick(self, now: float) -> list[Event]:
        """Fire due timers (handshake, ping, anti-entropy, pulls, announces, presence)."""
        if self.state == CLOSED:
            return []
        self._now = max(self._now, now)
        events: list[Event] = []
        if self.state == HANDSHAKE:
            if now - self._started >= self.config.handshake_timeout:
                events += self._fail("handshake-timeout", "no hello from peer")
            return events
        if now - self._last_ping >= self.config.ping_interval:
            self.ping(now)
        if now - self._last_anti_entropy >= self.config.anti_entropy_interval:
            self.sync_all(now)
        if (self._digest_pending is not None
                and now - self._digest_answered >= self.config.digest_min_interval):
            self._answer_digest(self._digest_pending, now)
        while self._pulls and self._pulls[0][0] <= now:
            _, doc, lack = self._pulls.popleft()
            self._pull(doc, lack, now)
        if self._announce_due is not None and now >= self._announce_due:
            self._flush_announces()
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
            if kind == "batch":
                return self._on_batch(msg, now)
            return self._dispatch(kind, msg, now)
        except _Bad as bad:
            return [self._error(bad.reason, bad.detail)]

    def _dispatch(self, kind: str, msg: dict[str, Any], now: float) -> list[Event]:
        handler = self._handlers.get(kind)
        if handler is None:
            # forward compatibility: newer peers may send types we do not know
            raise _Bad("unknown-type", kind[:32])
        self.stats.messages_in += 1
        return handler(self, msg, now)

    def _on_batch(self, msg: dict[str, Any], now: float) -> list[Event]:
        msgs = msg.get("msgs")
        if not isinstance(msgs, list) or len(msgs) > MAX_BATCH:
            raise _Bad("bad-field", f"msgs must be a list of at most {MAX_BATCH}")
        events: list[Event] = []
        for m in msgs:  # one bad message costs only itself
            try:
                kind = m.get("type") if isinstance(m, dict) else None
                if not isinstance(kind, str):
                    raise _Bad("bad-message", "batched message without type")
                if kind in _NOT_BATCHED:
                    raise _Bad("bad-message", f"{kind} inside a batch")
                events += self._dispatch(kind, m, now)
            except _Bad as bad:
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
            if self._h is not None:
                self.sync_all(self._now)  # the digest exchange replaces a have per doc
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
        relay = _flag(msg, "relay")
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
        self.peer = HelloReceived(node_id, name, addrs, self.version, docs, relay)
        self.hello()  # answer if we had not spoken yet; opens the session
        self._maybe_open()
        return [self.peer]

    # ------------------------------------------------------------ sync
    def _on_have(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc = _doc(msg)
        vv = _vv(msg.get("vv"))
        reply, part = _flag(msg, "reply"), _flag(msg, "part")
        event = HaveReceived(doc, vv, reply, part)
        if self._h is None:
            return [event]
        if not self._may_share(doc):
            # say nothing: an error would reveal the doc exists
            raise _Bad("doc-not-shared")
        self.known.believe(doc, vv, now, vv if part else None)
        self.known.heard(doc, vv, replace=not part)
        local = self._h.version(doc)
        # answer beyond what they hold or we already sent (the cursor), and for a
        # partial have only for the actors it names
        since = self.known.cursor(doc)
        if part:
            since = {**local, **{a: since.get(a, 0) for a in vv}}
        # an announce (partial, not a reply) only informs: answering it would
        # race the author's own push of whatever we hold beyond it
        ahead = {a: s for a, s in local.items() if s > since.get(a, 0)} if (
            reply or not part) else {}
        if ahead:
            blobs = self._h.changes_since(doc, since)
            if blobs:
                self.send_changes(doc, blobs, upto=ahead)
        else:
            self.stats.answers_skipped += 1
        lack = {a: s for a, s in vv.items() if s > local.get(a, 0)}
        # Never ask in answer to an answer; after our own full have this round
        # the peer's answer to it already brings what this have names.
        if lack and not reply and (part or doc not in self._full_asked):
            if part and self.config.pull_delay > 0:
                if len(self._pulls) >= _MAX_PULLS:  # a flood of announces: pull now
                    _, d0, lack0 = self._pulls.popleft()
                    self._pull(d0, lack0, now)
                self._pulls.append((now + self.config.pull_delay, doc, lack))
            else:
                self._pull(doc, lack, now)
        return [event]

    def _pull(self, doc: DocId, lack: Mapping[bytes, int], now: float) -> None:
        """Ask for what we still lack of ``lack`` (a partial reply have), once per peer/round."""
        if self._h is None or not self.is_open:
            return
        local = self._h.version(doc)
        asked = self._asked.setdefault(doc, {})
        claim = self._h.claim_pull
        need = {a: s for a, s in lack.items()
                if s > local.get(a, 0) and asked.get(a, 0) < s
                and (claim is None or claim(doc, a, s, now))}
        if need:
            asked.update(need)
            self.send_have(doc, {a: local.get(a, 0) for a in need}, reply=True, partial=True)

    def _on_changes(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc = _doc(msg)
        blobs = msg.get("blobs")
        if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
            raise _Bad("bad-field", "blobs must be a list of bytes")
        has = _vv(msg["vv"]) if "vv" in msg else None
        self.stats.changes_in += len(blobs)
        if self._h is not None:
            if not self._may_share(doc):
                raise _Bad("doc-not-shared")
            if has:
                self.known.heard(doc, has)
            assert self.peer is not None
            try:
                self._h.ingest(doc, blobs, self.peer.node_id)
            except ValueError as e:
                raise _Bad("rejected-changes", f"{type(e).__name__}: {e}"[:200]) from None
        return [ChangesReceived(doc, tuple(blobs))]

    def _on_digest(self, msg: dict[str, Any], now: float) -> list[Event]:
        theirs = _digest(msg, "d")
        if self._h is None:
            return []
        if now - self._digest_answered < self.config.digest_min_interval:
            self._digest_pending = theirs  # answered from tick: a flood costs one list
            return []
        self._answer_digest(theirs, now)
        return []

    def _answer_digest(self, theirs: bytes, now: float) -> None:
        assert self._h is not None and self.peer is not None
        self._digest_pending = None
        mine, _ = self._h.shared_digest(self.peer.node_id)
        if mine == theirs or self._settled == (mine, theirs):
            return
        self._digest_answered = now
        vd = self._h.version_digest
        rows = [[d, vd(d)] for d in self._h.shared_docs(self.peer.node_id)]
        limit = self._limit - _FRAME_OVERHEAD
        chunk: list[list[Any]] = []
        size = 0
        chunks: list[list[list[Any]]] = []
        for row in rows:
            n = len(row[0]) + len(row[1]) + 8
            if chunk and (len(chunk) >= MAX_DIGESTS or size + n > limit):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(row)
            size += n
        chunks.append(chunk)
        for i, c in enumerate(chunks):
            self._queue({"type": "digests", "docs": c, "d": mine, "of": theirs,
                         "end": i == len(chunks) - 1})
        self.stats.doc_digests_out += len(rows)

    def _on_digests(self, msg: dict[str, Any], now: float) -> list[Event]:
        rows = msg.get("docs")
        if not isinstance(rows, list) or len(rows) > MAX_DIGESTS:
            raise _Bad("bad-field", f"docs must be a list of at most {MAX_DIGESTS}")
        theirs, of, end = _digest(msg, "d"), _digest(msg, "of"), _flag(msg, "end")
        parsed = []
        for row in rows:
            if not isinstance(row, list) or len(row) != 2:
                raise _Bad("bad-field", "digest rows are [doc, digest]")
            parsed.append((_doc({"doc": row[0]}), _digest({"v": row[1]}, "v")))
        if self._h is None:
            return []
        for doc, vd in parsed:
            if self._may_share(doc) and self._h.version_digest(doc) != vd:
                self._recon_found = True
                self.send_have(doc)
        if end:
            if not self._recon_found:
                # the digests differ only in docs one side does not share: tell the
                # peer, so it does not send this list again until something changes
                self._queue({"type": "settled", "mine": of, "yours": theirs})
            self._recon_found = False
        return []

    def _on_settled(self, msg: dict[str, Any], now: float) -> list[Event]:
        mine, yours = _digest(msg, "mine"), _digest(msg, "yours")
        self._settled = (yours, mine)
        return []

    # ------------------------------------------------------------ other messages
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
        state = msg.get("state")
        if not isinstance(state, bytes) or len(state) > MAX_PRESENCE:
            raise _Bad("bad-field", f"presence state must be bytes of at most {MAX_PRESENCE}")
        if self._h is not None and not self._may_share(doc):
            raise _Bad("doc-not-shared")
        if doc not in self.presence and len(self.presence) >= 1024:
            raise _Bad("presence-overflow")
        p = _Presence(state, now + ttl)
        self.presence[doc] = p
        return [PresenceReceived(doc, p.state, ttl, p.expires_at)]

    def _on_grants(self, msg: dict[str, Any], now: float) -> list[Event]:
        return [GrantsReceived(tuple(_bytes_list(msg, "grants", MAX_GRANTS, MAX_GRANT)))]

    def _on_carry(self, msg: dict[str, Any], now: float) -> list[Event]:
        return [CarryReceived(tuple(_bytes_list(msg, "docs", MAX_CARRY, MAX_GRANT)))]

    _handlers = {
        "have": _on_have,
        "changes": _on_changes,
        "digest": _on_digest,
        "digests": _on_digests,
        "settled": _on_settled,
        "peers": _on_peers,
        "ping": _on_ping,
        "pong": _on_pong,
        "presence": _on_presence,
        "grants": _on_grants,
        "carry": _on_carry,
    }


__all__ = [
    "CarryReceived", "ChangesReceived", "DocId", "ErrorReceived", "Event", "GrantsReceived",
    "HaveReceived", "HelloReceived", "LocalInfo", "PROTOCOL_VERSIONS", "PeerInfo",
    "PeerSession", "PeersReceived", "PeerTimeout", "Pong", "PresenceExpired",
    "PresenceReceived", "ProtocolError", "PullTracker", "SessionClosed", "SessionConfig",
    "SyncHost", "SyncPlan", "VersionVector", "curve_key_of", "decode", "encode", "plan_sync",
    "shared_digest", "vv_digest",
]
