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
digests    {docs: [[doc, version digest, vv?]...], d, of, end}: the answer to
           a `digest` that differs (chunked; the first rows carry their
           version while small, so the peer pushes/pulls without a `have`).
settled    {mine, yours}: that pair of digests differs but nothing can be
           synced (the sides share different doc sets): stop resending.
batch      {msgs: [message...]}: packing (never hello, error, batch, grants, carry).
grants     {grants: [bytes]}, carry {docs: [bytes]}: opaque, for the host.
presence   {doc, state: bytes, ttl}; peers; ping/pong; error.
=========  ==============================================================
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .peerstate import PeerKnowledge, PullTracker, vv_max
from .session import CLOSED, HANDSHAKE, OPEN, Session  # noqa: F401
from .syncapi import (  # noqa: F401  (re-exported: part of this API)
    CarryReceived,
    ChangesReceived,
    ErrorReceived,
    Event,
    GrantsReceived,
    HaveReceived,
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
    SyncPlan,
    curve_key_of,
    plan_sync,
)
from .wire import (  # noqa: F401  (re-exported: part of this API)
    DECODE_KW,
    DEFAULT_MAX_FRAME,
    EMPTY_VV_DIGEST,
    FRAME_OVERHEAD,
    MAX_DIGESTS,
    PROTOCOL_VERSIONS,
    Bad,
    DocId,
    VersionVector,
    chunked,
    decode,
    digest_field,
    doc_field,
    encode,
    flag_field,
    parse_digest_rows,
    shared_digest,
    vv_digest,
    vv_field,
)

log = logging.getLogger(__name__)

_MAX_PULLS = 10_000  # delayed pulls held per session
_NO_VV: Mapping[bytes, int] = {}
_VV_IN_DIGESTS = 4096  # bytes of version vectors a `digests` answer may carry
# Answers (changes a peer lacks) are produced when frames are taken, at most
# this many bytes per data_to_send() call: a catch-up of thousands of docs then
# streams (the peer ingests while we read the next docs) instead of being built
# whole, held in memory and refused by the send budget.
ANSWER_BYTES = 512 * 1024


class PeerSession(Session):
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
        super().__init__(local, now, host=host, transport_key=transport_key, config=config)
        cfg = self.config
        resend = cfg.resend_after if cfg.resend_after is not None else (
            2 * cfg.anti_entropy_interval)
        self.known = PeerKnowledge(resend)
        self._last_anti_entropy = now
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
        self._listed: tuple[bytes, bytes] | None = None  # (ours, theirs) last listed
        self._digest_pending: bytes | None = None
        # doc -> the version to answer beyond (as of the have), produced lazily
        self._answers: dict[DocId, dict[bytes, int]] = {}

    # ------------------------------------------------------------ knowledge
    def peer_has(self, doc: DocId, actor: bytes, seq: int) -> bool:
        """Is the peer known to hold change (actor, seq) of doc (it said so, sent or got it)?"""
        return self.known.has(doc, actor, seq)

    def peer_mark(self, doc: DocId) -> Callable[[bytes], int]:
        """``mark(actor)``: the highest seq of ``actor`` in ``doc`` the peer is known to
        hold (``peer_has(doc, a, q)`` is ``mark(a) >= q``): one lookup per actor for a
        host deciding over many peers (Sharing's announce). Use it at once: it reads
        the knowledge as it is now."""
        said = self.known.said.get(doc, _NO_VV)
        sent = self.known.sent.get(doc, _NO_VV)
        if not sent:
            return lambda a: said.get(a, 0)
        return lambda a: max(said.get(a, 0), sent.get(a, 0))

    def peer_mark_of(self, doc: DocId, actor: bytes) -> int:
        """``peer_mark(doc)(actor)`` without building the closure: the one lookup a
        receiver makes per peer for a single announced change."""
        said = self.known.said.get(doc)
        sent = self.known.sent.get(doc)
        m = said.get(actor, 0) if said else 0
        if sent:
            q = sent.get(actor, 0)
            if q > m:
                return q
        return m

    def reset_sent(self, doc: DocId | None = None) -> None:
        """Frames to the peer were lost: answer its next `have` (for doc, or all) in full."""
        self.known.reset_sent(doc)

    # ------------------------------------------------------------ senders
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
            self._due(self._announce_due)
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
        limit = self._limit - FRAME_OVERHEAD
        if len(blobs) == 1 and len(blobs[0]) + 16 <= limit:  # a keystroke: one message
            msg = {"type": "changes", "doc": doc, "blobs": [bytes(blobs[0])]}
            if upto:
                msg["vv"] = dict(upto)
                self.known.sent_upto(doc, upto, self._now)
            self._queue(msg)
            self.stats.changes_out += 1
            return True
        fit = [bytes(b) for b in blobs if len(b) + 16 <= limit]
        # one that cannot ever fit would be dropped by the peer: do not send it
        self.errors["blob-too-large"] += len(blobs) - len(fit)
        batches = chunked(fit, [len(b) + 16 for b in fit], 1 << 30, limit)
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

    # ------------------------------------------------------------ hooks
    def _before_send(self) -> None:
        if self._announces and self.config.announce_delay <= 0:
            self._flush_announces()
        if self._answers:
            self._produce_answers(ANSWER_BYTES)

    @property
    def has_output(self) -> bool:
        return bool(self._outbox or self._answers or
                    (self._announces and self.config.announce_delay <= 0))

    @property
    def wants_send(self) -> bool:
        """Answers are still waiting to be produced: call data_to_send() again
        (once the link has room)."""
        return bool(self._answers) and self.is_open

    def _produce_answers(self, budget: int) -> None:
        """Turn pending answers into `changes` messages, oldest first, until about
        ``budget`` bytes are queued (one answer always goes)."""
        assert self._h is not None
        queued = 0
        while self._answers and queued < budget:
            doc = next(iter(self._answers))
            since = self._answers.pop(doc)
            local = self._h.version(doc)
            ahead = {a: s for a, s in local.items() if s > since.get(a, 0)}
            blobs = self._h.changes_since(doc, since) if ahead else []
            if blobs and self.send_changes(doc, blobs, upto=ahead):
                queued += sum(map(len, blobs))
            else:
                self.stats.answers_skipped += 1

    def _opened(self) -> None:
        if self._h is not None:
            self.sync_all(self._now)  # the digest exchange replaces a have per doc

    def _next_due_sync(self) -> float:
        due = self._last_anti_entropy + self.config.anti_entropy_interval
        if self._digest_pending is not None:
            due = min(due, self._digest_answered + self.config.digest_min_interval)
        if self._pulls:
            due = min(due, self._pulls[0][0])
        if self._announce_due is not None:
            due = min(due, self._announce_due)
        return due

    def _tick_sync(self, now: float) -> None:
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

    # ------------------------------------------------------------ sync
    def _on_have(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc = doc_field(msg)
        vv = vv_field(msg.get("vv"))
        reply, part = flag_field(msg, "reply"), flag_field(msg, "part")
        event = HaveReceived(doc, vv, reply, part)
        if self._h is None:
            return [event]
        if not self._may_share(doc):
            # say nothing: an error would reveal the doc exists
            raise Bad("doc-not-shared")
        # an announce (partial, not a reply) only informs: answering it would
        # race the author's own push of whatever we hold beyond it
        local = self._answer(doc, vv, part, now, send=reply or not part)
        lack = {a: s for a, s in vv.items() if s > local.get(a, 0)}
        # Never ask in answer to an answer; after our own full have this round
        # the peer's answer to it already brings what this have names.
        if lack and not reply and (part or doc not in self._full_asked):
            if part and self.config.pull_delay > 0:
                if len(self._pulls) >= _MAX_PULLS:  # a flood of announces: pull now
                    _, d0, lack0 = self._pulls.popleft()
                    self._pull(d0, lack0, now)
                self._pulls.append((now + self.config.pull_delay, doc, lack))
                self._due(now + self.config.pull_delay)
            else:
                self._pull(doc, lack, now, shared=part)
        return [event]

    def _answer(self, doc: DocId, vv: Mapping[bytes, int], part: bool, now: float,
                send: bool = True) -> Mapping[bytes, int]:
        """The peer holds ``vv``: send what it lacks beyond the cursor. Returns our version."""
        assert self._h is not None
        if not self._answers and now - self.known.sent_at.get(doc, now) >= self._stale_for(now):
            self.known.believe(doc, vv, now, vv if part else None)
        self.known.heard(doc, vv, replace=not part)
        local = self._h.version(doc)
        # beyond what they hold or we already sent (the cursor), and for a
        # partial have only for the actors it names
        since = self.known.cursor(doc)
        if part:
            since = {**local, **{a: since.get(a, 0) for a in vv}}
        if send and any(s > since.get(a, 0) for a, s in local.items()):
            # produced when frames are taken (see _produce_answers); the version
            # to answer beyond is fixed now, so a push that moves the cursor
            # meanwhile cannot make this answer skip what the peer lacks
            prev = self._answers.get(doc)
            self._answers[doc] = dict(since) if prev is None else {
                a: min(prev.get(a, 0), since.get(a, 0)) for a in {*prev, *since}}
        else:
            self.stats.answers_skipped += 1
        return local

    def _stale_for(self, now: float) -> float:
        """How long a peer's statement may lag what we sent: ``resend_after``, or twice
        the link's round trip when that is longer (the last pong, or the oldest ping
        still unanswered), capped. In a catch-up of thousands of docs the peer
        processes our frames long after we sent them; what it says meanwhile
        predates them and must not look like a loss (it made every change be sent
        twice). For the same reason nothing is believed while answers are still
        being produced (``_answer``). A real loss still heals, once the backlog has
        drained (and a failed send resets what we believe at once)."""
        rtt = max(self.latency or 0.0, now - min(self._pings.values(), default=now))
        base = self.known.resend_after
        return max(base, min(2 * rtt, 10 * base))

    def _pull(self, doc: DocId, lack: Mapping[bytes, int], now: float,
              shared: bool = True) -> None:
        """Ask for what we still lack of ``lack`` (a partial reply have), once per peer/round.

        ``shared``: a pull after an announce, which the host's node-wide claim
        dedupes across peers. Anti-entropy pulls skip the claim, so fake
        announces (huge seqs) from one peer can delay only announce pulls.
        """
        if self._h is None or not self.is_open:
            return
        local = self._h.version(doc)
        asked = self._asked.setdefault(doc, {})
        claim = self._h.claim_pull if shared else None
        need = {a: s for a, s in lack.items()
                if s > local.get(a, 0) and asked.get(a, 0) < s
                and (claim is None or claim(doc, a, s, now))}
        if need:
            asked.update(need)
            self.send_have(doc, {a: local.get(a, 0) for a in need}, reply=True, partial=True)

    def _on_changes(self, msg: dict[str, Any], now: float) -> list[Event]:
        doc = doc_field(msg)
        blobs = msg.get("blobs")
        if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
            raise Bad("bad-field", "blobs must be a list of bytes")
        has = vv_field(msg["vv"]) if "vv" in msg else None
        self.stats.changes_in += len(blobs)
        if self._h is not None:
            if not self._may_share(doc):
                raise Bad("doc-not-shared")
            if has:
                self.known.heard(doc, has)
            assert self.peer is not None
            try:
                self._h.ingest(doc, blobs, self.peer.node_id)
            except ValueError as e:
                raise Bad("rejected-changes", f"{type(e).__name__}: {e}"[:200]) from None
        return [ChangesReceived(doc, tuple(blobs))]

    def _on_digest(self, msg: dict[str, Any], now: float) -> list[Event]:
        theirs = digest_field(msg, "d")
        if self._h is None:
            return []
        if now - self._digest_answered < self.config.digest_min_interval:
            self._digest_pending = theirs  # answered from tick: a flood costs one list
            self._due(self._digest_answered + self.config.digest_min_interval)
            return []
        self._answer_digest(theirs, now)
        return []

    def _answer_digest(self, theirs: bytes, now: float) -> None:
        assert self._h is not None and self.peer is not None
        self._digest_pending = None
        mine, _ = self._h.shared_digest(self.peer.node_id)
        if mine == theirs or self._settled == (mine, theirs):
            return
        if (self._listed == (mine, theirs)
                and now - self._digest_answered < self.config.anti_entropy_interval / 2):
            return  # this very list went out lately: a repeated digest gets nothing
        self._listed = (mine, theirs)
        self._digest_answered = now
        vd, version = self._h.version_digest, self._h.version
        rows: list[list[Any]] = [[d, vd(d)] for d in self._h.shared_docs(self.peer.node_id)]
        # While small, rows carry the version itself: the peer can then push what
        # we lack and pull what it lacks at once, saving a have round trip.
        budget = _VV_IN_DIGESTS
        for row in rows:
            vv = version(row[0])
            budget -= sum(len(a) + 10 for a in vv)
            if budget < 0:
                break
            row.append(dict(vv))
        sizes = [len(r[0]) + len(r[1]) + 8 + (len(r[2]) * 44 if len(r) > 2 else 0)
                 for r in rows]
        chunks = chunked(rows, sizes, MAX_DIGESTS, self._limit - FRAME_OVERHEAD)
        for i, c in enumerate(chunks):
            self._queue({"type": "digests", "docs": c, "d": mine, "of": theirs,
                         "end": i == len(chunks) - 1})
        self.stats.doc_digests_out += len(rows)

    def _on_digests(self, msg: dict[str, Any], now: float) -> list[Event]:
        parsed = parse_digest_rows(msg)
        theirs, of, end = digest_field(msg, "d"), digest_field(msg, "of"), flag_field(msg, "end")
        if self._h is None:
            return []
        for doc, vd, vv in parsed:
            if self._may_share(doc) and self._h.version_digest(doc) != vd:
                self._recon_found = True
                if vd == EMPTY_VV_DIGEST:  # they hold nothing of it: no need to ask
                    vv = {}
                if vv is None:
                    self.send_have(doc)
                    continue
                local = self._answer(doc, vv, False, now)
                lack = {a: s for a, s in vv.items() if s > local.get(a, 0)}
                if lack:
                    self._pull(doc, lack, now, shared=False)
        if end:
            if not self._recon_found:
                # the digests differ only in docs one side does not share: tell the
                # peer, so it does not send this list again until something changes
                self._queue({"type": "settled", "mine": of, "yours": theirs})
            self._recon_found = False
        return []

    def _on_settled(self, msg: dict[str, Any], now: float) -> list[Event]:
        mine, yours = digest_field(msg, "mine"), digest_field(msg, "yours")
        self._settled = (yours, mine)
        return []

    _handlers = {
        **Session._handlers,
        "have": _on_have,
        "changes": _on_changes,
        "digest": _on_digest,
        "digests": _on_digests,
        "settled": _on_settled,
    }


__all__ = [
    "CarryReceived", "ChangesReceived", "DocId", "ErrorReceived", "Event", "GrantsReceived",
    "HaveReceived", "HelloReceived", "LocalInfo", "PROTOCOL_VERSIONS", "PeerInfo",
    "PeerSession", "PeersReceived", "PeerTimeout", "Pong", "PresenceExpired", "ProfileReceived",
    "PresenceReceived", "ProtocolError", "PullTracker", "Session", "SessionClosed", "SessionConfig",
    "SignalReceived",
    "SyncHost", "SyncPlan", "VersionVector", "curve_key_of", "decode", "encode", "plan_sync",
    "shared_digest", "vv_digest",
]
