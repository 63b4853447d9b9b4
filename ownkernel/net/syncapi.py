"""The sync protocol's API surface: events, the host interface, configuration.

Split out of ``protocol`` (which re-exports all of it) so the state machine
reads on its own. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

from .wire import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSIONS,
    DocId,
    VersionVector,
    shared_digest,
    vv_digest,
)

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
class ProfileReceived(Event):
    """The peer's display name and colour changed (what its key calls itself)."""

    name: str
    color: str  # "#rrggbb" or ""


@dataclass(frozen=True)
class PresenceReceived(Event):
    doc: DocId
    state: bytes  # opaque (a signed blob): the host verifies it
    ttl: float
    expires_at: float


@dataclass(frozen=True)
class SignalReceived(Event):
    """A call signal from the peer (issue #14): ephemeral, never stored.

    ``kind`` is one of ``SIGNAL_KINDS`` (net/session.py); ``data`` is opaque text
    (an SDP or a JSON candidate), at most ``MAX_SIGNAL`` characters. The host
    checks that the peer may read ``doc`` before it acts on it."""

    doc: DocId
    kind: str
    data: str


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
    transport dropped frames to the peer (send failed), ``refresh()`` when
    grants changed what it shares with the peer (runs the digest exchange
    again, so newly shared docs sync), and ``tick(now)`` often (≤ 50 ms):
    delayed pulls (``pull_delay``) and held announces (``announce_delay``)
    leave from there.
    """

    def may_share(self, peer_id: bytes, doc: DocId) -> bool: ...

    def shared_docs(self, peer_id: bytes) -> Iterable[DocId]: ...

    def version(self, doc: DocId) -> Mapping[bytes, int]: ...

    def version_digest(self, doc: DocId) -> bytes: ...

    def changes_since(self, doc: DocId, vv: Mapping[bytes, int]) -> list[bytes]: ...

    def ingest(self, doc: DocId, blobs: list[bytes], source: bytes) -> None: ...


class HostView:
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
            # the count is informational (the `digest` message's ``n``)
            return self._shared_digest(peer), len(self.shared_docs(peer))
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
    # Answer a peer's `digest` with the per-doc list at most this often (the list
    # is O(docs): a peer must not make us send it at will).
    digest_min_interval: float = 5.0




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
