"""`Sharing`: what a node shares with its peers, as the sync protocol sees it.

The protocol (``net/protocol.py``) asks its host who may read a doc, a doc's
version and version digest, the changes a peer lacks, and hands it what
arrives (``net/syncapi.py``: the ``SyncHost`` interface). This part answers
from the node's gate and replica, and spreads changes: our own commits go at
once to every peer that may read the doc and lacks them; changes accepted from
a peer are announced (a relay pushes them). The address book travels as a doc
of its own (``BOOK_DOC``). Runs on the network thread.
"""

from __future__ import annotations

import asyncio
import hashlib
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ownkernel.net.peerstate import PullTracker
from ownkernel.net.wire import EMPTY_VV_DIGEST, MAX_GRANTS, vv_digest
from ownkernel.node.addressbook import BOOK_DOC
from ownkernel.store import decode_envelope, encode_envelope

if TYPE_CHECKING:
    from ownkernel.node.network import Link, NodeNetwork

__all__ = ["Sharing", "strip_signature"]


def strip_signature(env: bytes) -> bytes:
    """The envelope without its signature (a later one in the same frame covers it)."""
    return encode_envelope(decode_envelope(env)._replace(sig=None))


class Sharing:
    """The node as the sync protocol's host, and the spreading of changes."""

    def __init__(self, net: NodeNetwork) -> None:
        self.net = net
        self.node = net.node
        self.digests: dict[bytes, bytes] = {}  # doc -> version digest (cleared on change)
        self.pulls = PullTracker()  # several peers announcing one change: one pull
        self._local: dict[bytes, list[bytes]] = {}
        self._local_scheduled = False
        # doc -> (its version digest, sort key, its bytes in the shared digest)
        self._digest_parts: dict[Any, tuple[bytes, bytes, bytes]] = {}

    # ------------------------------------------------------------ the sync protocol's host
    def may_share(self, peer_id: bytes, doc: Any) -> bool:
        with self.node.lock:
            return doc in self.node.gate.shared_with(peer_id)

    may_read = may_share

    def shared_docs(self, peer_id: bytes) -> frozenset[Any]:
        with self.node.lock:
            return frozenset(self.node.gate.shared_with(peer_id))

    def version(self, doc: Any) -> dict[bytes, int]:
        if doc == BOOK_DOC:
            assert self.net.book is not None
            return self.net.book.version
        node = self.node
        with node.lock:
            if not node.gate.knows(doc):
                return {}
            return node.replica.version(doc)

    def version_digest(self, doc: Any) -> bytes:
        if doc == BOOK_DOC:
            return vv_digest(self.version(doc))
        d = self.digests.get(doc)
        if d is None:
            v = self.version(doc)  # most docs of a first sync hold nothing yet
            d = self.digests[doc] = vv_digest(v) if v else EMPTY_VV_DIGEST
        return d

    def shared_digest(self, peer_id: bytes) -> bytes:
        """``wire.shared_digest`` over the docs shared with ``peer_id`` (the optional
        SyncHost hook), byte for byte, with each doc's part kept while its version
        digest stays the same: the session asks at every anti-entropy round and on
        every `digest` it answers, and a catch-up of 10,000 docs spent ~0.2 s per
        call hashing them one by one (tests/test_scale_digest.py compares both)."""
        parts = self._digest_parts
        out: list[tuple[bytes, bytes]] = []
        with self.node.lock:
            docs = list(self.node.gate.shared_with(peer_id))
        for d in docs:
            vd = self.version_digest(d)
            p = parts.get(d)
            if p is None or p[0] != vd:
                # as wire._doc_key: str and bytes ids never collide
                key = (b"s" + d.encode()) if isinstance(d, str) else (b"b" + d)
                p = (vd, key, len(key).to_bytes(2, "big") + key
                     + len(vd).to_bytes(1, "big") + vd)
                if len(parts) > 200_000:  # bounded (docs forgotten leave entries)
                    parts.clear()
                parts[d] = p
            out.append((p[1], p[2]))
        out.sort()
        h = hashlib.blake2b(digest_size=16, person=b"ownkernel-docs")
        h.update(b"".join(part for _key, part in out))
        return h.digest()

    def claim_pull(self, doc: Any, actor: bytes, seq: int, now: float) -> bool:
        return self.pulls.claim(doc, actor, seq, now)

    def changes_since(self, doc: Any, vv: Any) -> list[bytes]:
        if doc == BOOK_DOC:
            assert self.net.book is not None
            return self.net.book.changes_since(dict(vv))
        return self.node.replica.outgoing(doc, dict(vv))

    def ingest(self, doc: Any, blobs: list[bytes], source: bytes) -> None:
        if doc == BOOK_DOC:
            assert self.net.book is not None
            if self.net.book.ingest(blobs):
                self.net.dialing.dial_from_book()
                self.forward(BOOK_DOC, [], source, book=True)
            return
        node = self.node
        rejected = node.replica.rejected
        before = dict(rejected)  # (a dict copy: no Counter arithmetic per frame)
        # Forwarding goes to open sessions other than the source's; with none (a
        # joiner catching up from its one peer) the accepted changes are neither
        # re-encoded nor announced. Only a relay passes envelopes on (as bytes);
        # a plain node announces (actor, seq) from the tuples ingest decoded
        # anyway: no re-encode there and decode again in _announce per change.
        relay = self.net.config.relay
        others = relay and self._others_open(source)
        # nothing passed on at once, and the session's peer id is the one its
        # transport key proved: a live change from its author may be taken now and
        # its signature verified later (node/direct.py)
        link = self.net.by_peer.get(source)
        direct = not others and link is not None and link.session.transport_key is not None
        accepted = node.replica.ingest(doc, blobs, source, encode=others, direct=direct)
        if rejected != before:
            for reason, n in rejected.items():
                if n > before.get(reason, 0):
                    self.net.count(f"rejected:{reason}", n - before.get(reason, 0))
        if accepted:
            self.digests.pop(doc, None)
            self.net.counts["accepted"] += len(accepted)
            # A live keystroke (one change) on a plain node: announcing it is one
            # pass over the peers, the same pass that would look for an open one.
            if others or (not relay and (len(accepted) == 1 or self._others_open(source))):
                self.forward(doc, accepted, source)
            self.net._emit("doc_changed", doc, source)

    def _others_open(self, source: bytes | None) -> bool:
        return any(p != source and lk.session.is_open for p, lk in self.net.by_peer.items())

    # ------------------------------------------------------------ our grants out
    def show_grants(self, link: Link) -> None:
        """Show ``link``'s peer our grants (Gate.grants_for), each chunk followed by a
        ``have {}`` for the docs of that chunk we hold nothing of yet, where the peer
        is the doc's owner or our inviter. The peer checks the chunk's grants, then
        reads those haves and answers them with the docs at once: a node that joined
        10,000 docs offline gets its first ones while the peer still checks later
        grants, and no `have`/pull round trip per doc (the `have` is "full": when the
        peer's own `have` for the doc crosses it, we do not pull as well).
        Reconnects (docs held) send no haves: the digest exchange covers them."""
        assert link.peer is not None
        node = self.node
        with node.lock:
            shown = node.gate.grants_shown(link.peer)
        for i in range(0, len(shown), MAX_GRANTS):
            chunk = shown[i:i + MAX_GRANTS]
            link.session.send_grants([raw for _doc, raw, _src in chunk])
            with node.lock:
                empty = [doc for doc, _raw, src in chunk
                         if src and not node.replica.version(doc)]
            for doc in empty:
                link.session.send_have(doc, {})

    # ------------------------------------------------------------ what a peer may read grew
    def offer_new(self, link: Link) -> None:
        """What ``link``'s peer may read grew (grants, carried docs): offer the new docs
        with a `have` each (the digest exchange at open covered the others)."""
        if link.peer is None or not link.session.is_open:
            return
        with self.node.lock:
            new = self.node.gate.shared_with(link.peer) - link.offered
        for doc in new:
            link.session.send_have(doc)
        link.offered |= new

    def forward(self, doc: Any, envs: list[Any], source: bytes | None,
                book: bool = False) -> None:
        """Our own changes (``source`` None) go at once to every peer that may read
        ``doc`` and lacks them; others' changes are announced (a relay pushes them).
        ``envs``: encoded envelopes, except others' changes on a plain node, which
        may be ``Envelope`` tuples (only announced: ``ingest(encode=False)``)."""
        if book:
            for peer, link in list(self.net.by_peer.items()):
                if peer != source and link.session.is_open and self.may_share(peer, doc):
                    link.session.send_have(doc)  # small doc: the versions decide
            return
        if not (source is None or self.net.config.relay):
            self._announce(doc, envs, source)
            return
        if len(envs) == 1:
            self._push_one(doc, envs[0], source)
            return
        ids: list[tuple[bytes, int]] | None = None  # decoded for the first taker only
        for peer, link in list(self.net.by_peer.items()):
            s = link.session
            # (whether the peer may read doc: send_changes asks the gate, once)
            if peer == source or not s.is_open:
                continue
            if ids is None:
                ids = [(env.actor, env.seq) for env in map(decode_envelope, envs)]
            mark = s.peer_mark(doc)  # peer_has(doc, a, q) is mark(a) >= q
            lack = [(e, a, q) for e, (a, q) in zip(envs, ids) if mark(a) < q]
            if not lack:
                continue
            upto: dict[bytes, int] = {}
            first: dict[bytes, int] = {}
            for _e, a, q in lack:
                upto[a] = max(upto.get(a, 0), q)
                first[a] = min(first.get(a, q), q)
            # Claim "it holds up to q" only where the push joins what the peer is known
            # to hold: after a gap (e.g. changes made offline, not yet sent) the claim
            # would hide the gap from the answer to its `have` for as long as we push.
            upto = {a: q for a, q in upto.items() if first[a] <= 1 or mark(a) >= first[a] - 1}
            if not s.send_changes(doc, [e for e, _a, _q in lack], upto=upto or None):
                continue
            self.net.counts["pushed"] += len(lack)

    def _push_one(self, doc: Any, env: bytes, source: bytes | None) -> None:
        """``forward``'s per-peer loop for one change (a keystroke to n-1 peers): one
        mark lookup per peer, no per-peer lists and dicts; the same decisions."""
        e = decode_envelope(env)
        actor, seq = e.actor, e.seq
        for peer, link in list(self.net.by_peer.items()):
            s = link.session
            if peer == source or not s.is_open:
                continue
            mark = s.peer_mark_of(doc, actor)
            if mark >= seq:
                continue
            # claim "it holds up to seq" only where the push joins what it holds
            upto = {actor: seq} if announce_one_to(mark, seq) else None
            if s.send_changes(doc, [env], upto=upto):
                self.net.counts["pushed"] += 1

    def _announce(self, doc: Any, envs: list[Any], source: bytes | None) -> None:
        """Announce others' changes to the peers that lack them: what ``forward``'s
        per-peer loop over changes gives, with the envelopes decoded once and per peer
        one or two ``peer_has`` per actor in the common case (a receiver in a mesh of n runs
        this for every change it gets, over n-1 peers). The share check is left to
        the session's ``announce``, only for peers that lack something.
        ``envs``: encoded envelopes or ``Envelope`` tuples (``ingest(encode=False)``)."""
        if len(envs) == 1:  # a live keystroke: one change, one lookup per peer
            self._announce_one(doc, envs[0], source)
            return
        seqs: dict[bytes, list[int]] = {}
        for env in envs:
            if isinstance(env, (bytes, bytearray, memoryview)):
                env = decode_envelope(env)
            seqs.setdefault(env.actor, []).append(env.seq)
        for qs in seqs.values():
            qs.sort()
        for peer, link in list(self.net.by_peer.items()):
            s = link.session
            if peer == source or not s.is_open:
                continue
            upto = lacking_from_marks(seqs, s.peer_mark(doc))
            if upto and s.announce(doc, upto):
                self.net.counts["announced"] += 1

    def _announce_one(self, doc: Any, env: Any, source: bytes | None) -> None:
        """``_announce`` of one change: where ``lacking_from_marks`` would name it
        (``announce_one_to``), without the per-peer closure and dicts."""
        if isinstance(env, (bytes, bytearray, memoryview)):
            env = decode_envelope(env)
        actor, seq = env.actor, env.seq
        before = seq - 1
        for peer, link in list(self.net.by_peer.items()):
            s = link.session
            if peer == source or not s.is_open:
                continue
            # announce_one_to(mark, seq), inlined: every reader runs this per keystroke
            if s.peer_mark_of(doc, actor) == before and s.announce(doc, {actor: seq}):
                self.net.counts["announced"] += 1

    # ------------------------------------------------------------ our own commits
    def on_commit(self, doc_id: bytes, env: bytes) -> None:
        """Node change listener: called in the committing thread, after the fsync."""
        loop = self.net._loop
        if loop is None or self.net._closed:
            return
        try:
            loop.call_soon_threadsafe(self._queue_local, doc_id, env)
        except RuntimeError:  # loop closed under us: nothing to push to anyway
            pass

    def _queue_local(self, doc_id: bytes, env: bytes) -> None:
        self._local.setdefault(doc_id, []).append(env)
        if not self._local_scheduled:
            self._local_scheduled = True
            # call_soon runs after the commits already queued: they go in one frame
            asyncio.get_running_loop().call_soon(self._push_local)

    def _push_local(self) -> None:
        self._local_scheduled = False
        pending, self._local = self._local, {}
        for doc, envs in pending.items():
            self.digests.pop(doc, None)
            if doc not in self.net._seen_docs:  # a new doc: ask relays to carry it
                self.net._seen_docs.add(doc)
                self.net.relay.ask_all_relays([doc])
                self.node._devices.share_docs([doc])  # to our user's other devices
            if len(envs) > 1:  # one signature per frame is enough: it covers the chain
                envs = [strip_signature(e) for e in envs[:-1]] + envs[-1:]
            self.forward(doc, envs, None)
            self.net._emit("doc_changed", doc, None)
        self.net.outbox.flush_all()


def announce_one_to(mark: int, seq: int) -> bool:
    """``lacking_from_marks({a: [seq]}, lambda _a: mark)`` for one change: the peer
    lacks it and it joins what the peer holds, i.e. it holds exactly seq - 1."""
    return mark == seq - 1


def lacking_from_marks(seqs: dict[bytes, list[int]],
                       mark: Callable[[bytes], int]) -> dict[bytes, int]:
    """:func:`lacking_upto` where the peer's knowledge is one number per actor,
    ``mark(actor)`` (it holds ``actor``'s seqs up to it): one lookup per actor and
    peer instead of two or more ``has`` calls."""
    upto: dict[bytes, int] = {}
    for a, qs in seqs.items():
        m = mark(a)
        last = qs[-1]
        if m >= last:
            continue
        # the first seq it lacks (qs sorted): joins what it holds if it is m + 1 or 1
        first = qs[0] if qs[0] > m else qs[bisect_right(qs, m)]
        if first <= 1 or m >= first - 1:
            upto[a] = last
    return upto


def lacking_upto(seqs: dict[bytes, list[int]],
                 has: Callable[[bytes, int], bool]) -> dict[bytes, int]:
    """{actor: last seq} for the actors whose changes (``seqs``: actor -> sorted seqs)
    a peer lacks, where ``has(actor, seq)`` says what it is known to hold (monotone:
    holding a seq means holding those below). As ``Sharing.forward`` decides per
    change: an actor counts where the peer lacks its last seq and the first seq it
    lacks joins what it holds (after a gap the claim would hide the gap)."""
    upto: dict[bytes, int] = {}
    for a, qs in seqs.items():
        if has(a, qs[-1]):
            continue
        lo, hi = 0, len(qs) - 1  # bisect for the first seq it lacks
        while lo < hi:
            mid = (lo + hi) // 2
            if has(a, qs[mid]):
                lo = mid + 1
            else:
                hi = mid
        first = qs[lo]
        if first <= 1 or has(a, first - 1):
            upto[a] = qs[-1]
    return upto
