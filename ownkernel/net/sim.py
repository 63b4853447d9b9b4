"""Deterministic in-process network simulator for the sans-IO sync protocol.

Many toy nodes, each running real :class:`PeerSession` objects against a tiny
CRDT-like host (a set of change ids per actor with version vectors), talk over
a simulated network with random topology, message loss and partitions. One
seeded ``random.Random`` drives everything, so a run is reproducible.

A *round* is one anti-entropy period: every node starts one push-pull
exchange with a random peer from its partial view (``have`` → ``changes`` +
``have`` → ``changes``), and the messages of the round are delivered hop by
hop until the round is quiet. Peer exchange (``peers``) rides along with each
exchange so partial views stay random.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from .peerstate import PullTracker
from .protocol import (
    DocId,
    LocalInfo,
    PeerInfo,
    PeerSession,
    PeersReceived,
    SessionConfig,
)
from .wire import EMPTY_VV_DIGEST, shared_digest, vv_digest

DOC = "doc"


def doc_ids(n: int) -> frozenset[DocId]:
    """``n`` doc ids, the first being ``DOC``."""
    return frozenset([DOC, *(f"doc-{k}" for k in range(1, n))])


class SetHost:
    """Minimal SyncHost: changes are CBOR ``[actor, seq]`` blobs; state is their set.

    ``allowed`` maps peer id → docs that peer may see (None: every doc to everyone).
    Per-doc storage is created on first write, so 1,000 nodes × 1,000 empty
    docs cost little; ``docs`` may be one frozenset shared by many hosts.
    """

    def __init__(self, node_id: bytes, docs: Iterable[DocId] = (DOC,),
                 allowed: dict[bytes, set[DocId]] | None = None) -> None:
        self.node_id = node_id
        self.actor = node_id[:8]
        self.docs = docs if isinstance(docs, frozenset) else frozenset(docs)
        self.allowed = allowed
        self.store: dict[DocId, dict[bytes, dict[int, bytes]]] = {}
        self.vv: dict[DocId, dict[bytes, int]] = _EmptyDefault()
        self.ingested = 0
        self.duplicates = 0  # blobs received that were already stored
        self.pulls = PullTracker()
        self.on_accept: Callable[[DocId, list[tuple[bytes, int, bytes]], bytes], None] | None \
            = None
        self._vd: dict[DocId, bytes] = {}
        self._digest: bytes | None = None  # shared_digest when allowed is None

    # SyncHost
    def may_share(self, peer_id: bytes, doc: DocId) -> bool:
        if doc not in self.docs:
            return False
        return self.allowed is None or doc in self.allowed.get(peer_id, ())

    def shared_docs(self, peer_id: bytes) -> Iterable[DocId]:
        if self.allowed is None:
            return self.docs
        return self.docs & self.allowed.get(peer_id, set())

    def version(self, doc: DocId) -> Mapping[bytes, int]:
        return dict(self.vv.get(doc, {}))

    def version_digest(self, doc: DocId) -> bytes:
        vd = self._vd.get(doc)
        if vd is None:
            vd = EMPTY_VV_DIGEST if doc not in self.vv else vv_digest(self.vv[doc])
            if doc in self.vv:
                self._vd[doc] = vd
        return vd

    def shared_digest(self, peer_id: bytes) -> bytes:
        if self.allowed is not None:
            docs = self.shared_docs(peer_id)
            return shared_digest((d, self.version_digest(d)) for d in docs)
        if self._digest is None:
            self._digest = shared_digest((d, self.version_digest(d)) for d in self.docs)
        return self._digest

    def claim_pull(self, doc: DocId, actor: bytes, seq: int, now: float) -> bool:
        return self.pulls.claim(doc, actor, seq, now)

    def changes_since(self, doc: DocId, vv: Mapping[bytes, int]) -> list[bytes]:
        out = []
        for actor, seqs in self.store.get(doc, {}).items():
            have = vv.get(actor, 0)
            out += [blob for seq, blob in sorted(seqs.items()) if seq > have]
        return out

    def ingest(self, doc: DocId, blobs: list[bytes], source: bytes) -> None:
        if doc not in self.docs:
            raise ValueError("unknown doc")
        parsed = []
        for blob in blobs:  # validate all first so a bad batch changes nothing
            try:
                actor, seq = cbor2.loads(blob)
            except Exception as e:
                raise ValueError(f"bad change: {e}") from None
            if not isinstance(actor, bytes) or not isinstance(seq, int) or seq < 1:
                raise ValueError("bad change")
            parsed.append((actor, seq, blob))
        accepted = []
        for actor, seq, blob in parsed:
            if seq in self.store.get(doc, {}).get(actor, {}):
                self.duplicates += 1
                continue
            self._add(doc, actor, seq, blob)
            self.ingested += 1
            accepted.append((actor, seq, blob))
        if accepted and self.on_accept is not None:
            self.on_accept(doc, accepted, source)

    # local edits
    def make_change(self, doc: DocId = DOC) -> bytes:
        seq = self.vv.get(doc, {}).get(self.actor, 0) + 1
        blob = cbor2.dumps([self.actor, seq])
        self._add(doc, self.actor, seq, blob)
        return blob

    def _add(self, doc: DocId, actor: bytes, seq: int, blob: bytes) -> None:
        seqs = self.store.setdefault(doc, {}).setdefault(actor, {})
        seqs[seq] = blob
        # version vector: highest *contiguous* seq, so a gap stays requested
        vv = self.vv.setdefault(doc, {})
        top = vv.get(actor, 0)
        while top + 1 in seqs:
            top += 1
        vv[actor] = top
        self._vd.pop(doc, None)
        self._digest = None


class _EmptyDefault(dict):  # type: ignore[type-arg]
    """vv by doc: a missing doc reads as {} (``host.vv[doc]``), without storing it."""

    def __missing__(self, key: Any) -> dict[bytes, int]:
        return {}


@dataclass
class SimNode:
    node_id: bytes
    host: SetHost
    view: list[bytes]
    sessions: dict[bytes, PeerSession] = field(default_factory=dict)


@dataclass
class SimStats:
    rounds: int = 0
    messages: int = 0  # frames delivered or lost, handshakes excluded
    bytes: int = 0
    lost: int = 0
    handshake_messages: int = 0
    errors: int = 0


class Simulation:
    def __init__(self, n: int, *, seed: int = 0, degree: int = 4, view_size: int = 16,
                 loss: float = 0.0, pex: bool = True, docs: int = 1) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.pex = pex
        self.view_size = view_size
        self.stats = SimStats()
        self.group: dict[bytes, int] | None = None  # partition: node → side
        ids = [self.rng.randbytes(32) for _ in range(n)]
        # every node shares every doc; one frozenset for all hosts keeps memory flat
        shared = doc_ids(docs)
        self.nodes: dict[bytes, SimNode] = {
            i: SimNode(i, SetHost(i, shared), []) for i in ids
        }
        # random topology: each node knows `degree` random others, links both ways
        for i in ids:
            for j in self.rng.sample(ids, min(degree + 1, n)):
                if j != i:
                    self._learn(i, j)
                    self._learn(j, i)
        # time is the round number: a have naming less than we sent a round
        # ago means the changes were lost, so resend (the real host also calls
        # reset_sent when its transport reports a failed send)
        self._config = SessionConfig(anti_entropy_interval=1.0, ping_interval=1e9,
                                     peer_timeout=1e9, handshake_timeout=1e9,
                                     resend_after=1.0, digest_min_interval=0.0)

    # ---------------------------------------------------------------- topology
    def _learn(self, i: bytes, j: bytes) -> None:
        view = self.nodes[i].view
        if j == i or j in view:
            return
        if len(view) >= self.view_size:
            view[self.rng.randrange(len(view))] = j  # random eviction keeps views mixed
        else:
            view.append(j)

    def partition(self, fraction: float = 0.5) -> None:
        ids = sorted(self.nodes)
        self.rng.shuffle(ids)
        cut = int(len(ids) * fraction)
        self.group = {i: int(k >= cut) for k, i in enumerate(ids)}

    def heal(self) -> None:
        self.group = None

    def _reachable(self, a: bytes, b: bytes) -> bool:
        return self.group is None or self.group[a] == self.group[b]

    # ---------------------------------------------------------------- sessions
    def _session(self, a: bytes, b: bytes) -> PeerSession | None:
        """The session a→b, connecting (hello both ways, no loss) if needed."""
        na, nb = self.nodes[a], self.nodes[b]
        if b in na.sessions:
            return na.sessions[b]
        if not self._reachable(a, b):
            return None
        sa = PeerSession(LocalInfo(a), self.stats.rounds, host=na.host, config=self._config)
        sb = PeerSession(LocalInfo(b), self.stats.rounds, host=nb.host, config=self._config)
        na.sessions[b], nb.sessions[a] = sa, sb
        sa.hello()
        for f in sa.data_to_send():
            sb.receive(f, self.stats.rounds)
        for f in sb.data_to_send():  # hello back, and (opened) the first haves
            self.stats.handshake_messages += 1
            self._inflight.append((b, a, f))
        self.stats.handshake_messages += 1
        return sa

    # ---------------------------------------------------------------- running
    def _collect(self) -> None:
        for node in self.nodes.values():
            for peer, s in node.sessions.items():
                for f in s.data_to_send():
                    self._inflight.append((node.node_id, peer, f))

    def _deliver(self, src: bytes, dst: bytes, frame: bytes) -> None:
        self.stats.messages += 1
        self.stats.bytes += len(frame)
        if not self._reachable(src, dst) or (self.loss and self.rng.random() < self.loss):
            self.stats.lost += 1
            return
        node = self.nodes[dst]
        for ev in node.sessions[src].receive(frame, self.stats.rounds):
            if isinstance(ev, PeersReceived):
                for p in ev.peers:
                    self._learn(dst, p.node_id)
            elif type(ev).__name__ == "ProtocolError":
                self.stats.errors += 1

    def _sample(self, i: bytes, k: int = 4) -> list[PeerInfo]:
        view = self.nodes[i].view
        picks = [i, *self.rng.sample(view, min(k, len(view)))]
        return [PeerInfo(p, "", (), float(self.stats.rounds)) for p in picks]

    def step(self) -> None:
        """One gossip round."""
        self._inflight: list[tuple[bytes, bytes, bytes]] = []
        order = list(self.nodes)
        self.rng.shuffle(order)
        for i in order:
            node = self.nodes[i]
            if not node.view:
                continue
            j = self.rng.choice(node.view)
            s = self._session(i, j)
            if s is None:
                continue
            s.sync_all(self.stats.rounds)
            if self.pex:
                s.send_peers(self._sample(i))
                # the partner answers with its own sample (a shuffle, as in Cyclon)
                self.nodes[j].sessions[i].send_peers(self._sample(j))
        # deliver hop by hop until the round is quiet (an exchange is ≤ 3 hops)
        for _hop in range(16):
            self._collect()
            if not self._inflight:
                break
            batch, self._inflight = self._inflight, []
            self.rng.shuffle(batch)
            for src, dst, f in batch:
                self._deliver(src, dst, f)
        self.stats.rounds += 1

    def converged(self, doc: DocId = DOC) -> bool:
        vvs = [n.host.vv[doc] for n in self.nodes.values()]
        return all(v == vvs[0] for v in vvs)

    def coverage(self, actor: bytes, seq: int, doc: DocId = DOC) -> int:
        return sum(n.host.vv[doc].get(actor, 0) >= seq for n in self.nodes.values())

    def run_until_converged(self, max_rounds: int = 200, doc: DocId = DOC) -> int:
        """Rounds taken until every node has the same state (raises if never)."""
        start = self.stats.rounds
        while not self.converged(doc):
            if self.stats.rounds - start >= max_rounds:
                raise RuntimeError(f"no convergence in {max_rounds} rounds")
            self.step()
        return self.stats.rounds - start


@dataclass
class SpreadResult:
    n: int
    rounds: int
    messages: int
    bytes: int
    lost: int
    handshake_messages: int


def spread(n: int, *, seed: int = 0, loss: float = 0.0, degree: int = 4,
           pex: bool = True, docs: int = 1) -> SpreadResult:
    """One node edits one doc (of ``docs``); rounds and messages until it reaches every node."""
    sim = Simulation(n, seed=seed, loss=loss, degree=degree, pex=pex, docs=docs)
    sim.run_until_converged()  # the empty start is already converged; no-op
    origin = sim.nodes[sorted(sim.nodes)[0]]
    origin.host.make_change()
    before = sim.stats.messages, sim.stats.bytes, sim.stats.lost
    rounds = sim.run_until_converged()
    return SpreadResult(n, rounds, sim.stats.messages - before[0], sim.stats.bytes - before[1],
                        sim.stats.lost - before[2], sim.stats.handshake_messages)


@dataclass
class PartitionResult:
    n: int
    partitioned_rounds: int
    rounds_to_converge: int
    messages_after_heal: int


def partition_heal(n: int, *, seed: int = 0, loss: float = 0.0, edits_per_side: int = 3,
                   partitioned_rounds: int = 10) -> PartitionResult:
    """Split in two, edit on both sides, heal, and count rounds until all converge."""
    sim = Simulation(n, seed=seed, loss=loss)
    for _ in range(3):  # warm up: sessions and views in place before the split
        sim.step()
    sim.partition()
    assert sim.group is not None
    for side in (0, 1):
        members = sorted(i for i, g in sim.group.items() if g == side)
        for i in sim.rng.sample(members, min(edits_per_side, len(members))):
            sim.nodes[i].host.make_change()
    for _ in range(partitioned_rounds):
        sim.step()
    sim.heal()
    before = sim.stats.messages
    rounds = sim.run_until_converged()
    return PartitionResult(n, partitioned_rounds, rounds, sim.stats.messages - before)


# ------------------------------------------------------------------ timed mesh


@dataclass
class MeshStats:
    changes: int = 0
    frames: int = 0
    bytes: int = 0
    duplicates: int = 0  # change blobs received that the receiver already had
    delays: list[float] = field(default_factory=list)  # made → stored, per (change, node)

    def dup_per_change_per_node(self, nodes: int) -> float:
        return self.duplicates / max(1, self.changes * (nodes - 1))


class MeshSim:
    """Sessions over links with latency, in simulated time: live push and idle cost.

    Unlike :class:`Simulation` (anti-entropy rounds), every node keeps a
    session to each neighbour, frames take a per-link latency (in order, as on
    a stream), and timers fire from ``tick``. The host policy is the one
    :class:`SyncHost` documents: the author pushes its change to every
    neighbour (eager), a node that received a change announces it to the
    neighbours not known to hold it (lazy), and those pull what they lack.
    """

    def __init__(self, n: int, *, topology: str = "full", degree: int = 4, docs: int = 1,
                 seed: int = 0, latency: tuple[float, float] = (0.001, 0.010),
                 config: SessionConfig | None = None, policy: str = "announce") -> None:
        if policy not in ("announce", "flood"):
            raise ValueError(f"unknown policy {policy!r} (announce, flood)")
        self.policy = policy  # flood: relay every change eagerly (the old way), to compare
        self.rng = random.Random(seed)
        self.now = 0.0
        self.stats = MeshStats()
        self.config = config or SessionConfig(ping_interval=10, anti_entropy_interval=30,
                                              peer_timeout=1e9, handshake_timeout=1e9)
        shared = doc_ids(docs)
        self.ids = [bytes([k % 256, k // 256]) + self.rng.randbytes(30) for k in range(n)]
        self.hosts = [SetHost(i, shared) for i in self.ids]
        self.sessions: list[dict[int, PeerSession]] = [{} for _ in range(n)]
        self.latency: dict[tuple[int, int], float] = {}
        self._free_at: dict[tuple[int, int], float] = {}  # links deliver in order
        self._queue: list[tuple[float, int, int, int, bytes]] = []
        self._seq = 0
        self.made: dict[tuple[DocId, bytes, int], float] = {}
        self.sent_frames = [0] * n
        self.sent_bytes = [0] * n
        for k, h in enumerate(self.hosts):
            h.on_accept = self._forwarder(k)
        for a, b in self._links(n, topology, degree):
            lat = self.rng.uniform(*latency)
            self.latency[a, b] = self.latency[b, a] = lat
            sa = PeerSession(LocalInfo(self.ids[a]), 0.0, host=self.hosts[a], config=self.config)
            sb = PeerSession(LocalInfo(self.ids[b]), 0.0, host=self.hosts[b], config=self.config)
            self.sessions[a][b], self.sessions[b][a] = sa, sb
            sa.hello()
            self._flush(a)

    def _links(self, n: int, topology: str, degree: int) -> set[tuple[int, int]]:
        if topology == "full":
            return {(a, b) for a in range(n) for b in range(a + 1, n)}
        if topology == "chain":
            return {(a, a + 1) for a in range(n - 1)}
        if topology == "random":  # a ring (connected) plus random chords
            links = {(a, (a + 1) % n) for a in range(n)}
            for a in range(n):
                for b in self.rng.sample(range(n), min(degree, n)):
                    if a != b:
                        links.add((min(a, b), max(a, b)))
            return {(min(a, b), max(a, b)) for a, b in links if a != b}
        raise ValueError(f"unknown topology {topology!r} (full, chain, random)")

    # ------------------------------------------------------------ host policy
    def _forwarder(self, k: int) -> Callable[[DocId, list[tuple[bytes, int, bytes]], bytes],
                                              None]:
        def on_accept(doc: DocId, accepted: list[tuple[bytes, int, bytes]],
                      source: bytes) -> None:
            top: dict[bytes, int] = {}
            for actor, seq, _blob in accepted:
                top[actor] = max(top.get(actor, 0), seq)
                made = self.made.get((doc, actor, seq))
                if made is not None:
                    self.stats.delays.append(self.now - made)
            for s in self.sessions[k].values():
                if s.peer_id == source:
                    continue
                if self.policy == "flood":
                    s.send_changes(doc, [b for *_, b in accepted], upto=top)
                else:
                    s.announce(doc, top)  # skips what the peer is known to hold
        return on_accept

    def type_change(self, k: int, doc: DocId = DOC) -> None:
        """Node ``k`` edits ``doc`` and pushes the change to every neighbour."""
        h = self.hosts[k]
        blob = h.make_change(doc)
        seq = h.vv[doc][h.actor]
        self.made[doc, h.actor, seq] = self.now
        self.stats.changes += 1
        for s in self.sessions[k].values():
            if not s.peer_has(doc, h.actor, seq):
                s.send_changes(doc, [blob], upto={h.actor: seq})
        self._flush(k)

    # ------------------------------------------------------------ running
    def _flush(self, k: int) -> None:
        for j, s in self.sessions[k].items():
            for f in s.data_to_send():
                self.sent_frames[k] += 1
                self.sent_bytes[k] += len(f)
                self.stats.frames += 1
                self.stats.bytes += len(f)
                at = max(self.now + self.latency[k, j], self._free_at.get((k, j), 0.0))
                self._free_at[k, j] = at
                self._seq += 1
                heapq.heappush(self._queue, (at, self._seq, k, j, f))

    def run(self, until: float, *, tick: float = 0.05,
            typing: Callable[[float], None] | None = None, type_every: float = 0.0) -> None:
        """Deliver frames and fire timers until simulated time ``until``."""
        next_tick = self.now
        next_type = self.now if typing is not None and type_every > 0 else math.inf
        while True:
            t_frame = self._queue[0][0] if self._queue else math.inf
            t = min(t_frame, next_tick, next_type)
            if t > until:
                self.now = until
                return
            self.now = t
            if t == t_frame:
                _, _, src, dst, f = heapq.heappop(self._queue)
                dups = self.hosts[dst].duplicates
                self.sessions[dst][src].receive(f, t)
                self.stats.duplicates += self.hosts[dst].duplicates - dups
                self._flush(dst)
            elif t == next_tick:
                next_tick += tick
                for k in range(len(self.hosts)):
                    for s in self.sessions[k].values():
                        s.tick(t)
                    self._flush(k)
            else:
                assert typing is not None
                typing(t)
                next_type += type_every

    def converged(self, doc: DocId = DOC) -> bool:
        vvs = [h.vv[doc] for h in self.hosts]
        return all(v == vvs[0] for v in vvs)


@dataclass
class FanoutResult:
    nodes: int
    topology: str
    changes: int
    duplicates: int
    dup_per_change_per_node: float
    p50_ms: float
    p99_ms: float
    frames_per_change: float
    converged: bool


def fanout(n: int = 12, *, topology: str = "full", rate: float = 60.0, seconds: float = 5.0,
           seed: int = 0, pull_delay: float = 0.02, announce_delay: float = 0.05,
           latency: tuple[float, float] = (0.001, 0.010), policy: str = "announce"
           ) -> FanoutResult:
    """Random typists, ``rate`` changes/s in total on one doc: duplicates and delays."""
    cfg = SessionConfig(ping_interval=1e9, anti_entropy_interval=30, peer_timeout=1e9,
                        handshake_timeout=1e9, pull_delay=pull_delay,
                        announce_delay=announce_delay)
    sim = MeshSim(n, topology=topology, seed=seed, latency=latency, config=cfg, policy=policy)
    sim.run(1.0)  # handshakes
    before = sim.stats.frames
    sim.run(1.0 + seconds - 1e-9, typing=lambda t: sim.type_change(sim.rng.randrange(n)),
            type_every=1.0 / rate)
    sim.run(sim.now + 5.0)  # let the last changes land (no anti-entropy round yet)
    st = sim.stats
    delays = sorted(st.delays) or [0.0]
    return FanoutResult(
        n, topology, st.changes, st.duplicates, st.dup_per_change_per_node(n),
        1000 * delays[len(delays) // 2], 1000 * delays[min(len(delays) - 1,
                                                           int(len(delays) * 0.99))],
        (st.frames - before) / max(1, st.changes), sim.converged())


@dataclass
class IdleResult:
    nodes: int
    docs: int
    sessions_per_node: float
    frames_per_node_min: float
    bytes_per_node_min: float
    frames_per_peer_min: float
    bytes_per_peer_min: float


def idle_cost(n: int, docs: int, *, minutes: float = 2.0, degree: int = 4,
              topology: str = "random", seed: int = 0) -> IdleResult:
    """Frames and bytes each node sends per minute when nothing changes (pings included)."""
    sim = MeshSim(n, topology=topology, degree=degree, docs=docs, seed=seed)
    sim.run(60.0, tick=1.0)  # handshakes and the first anti-entropy round
    f0, b0 = sum(sim.sent_frames), sum(sim.sent_bytes)
    sim.run(60.0 + 60.0 * minutes, tick=1.0)
    frames = (sum(sim.sent_frames) - f0) / n / minutes
    nbytes = (sum(sim.sent_bytes) - b0) / n / minutes
    per_node = sum(len(s) for s in sim.sessions) / n
    return IdleResult(n, docs, per_node, frames, nbytes, frames / per_node, nbytes / per_node)


__all__ = ["FanoutResult", "IdleResult", "MeshSim", "MeshStats", "PartitionResult", "SetHost",
           "SimNode", "SimStats", "Simulation", "SpreadResult",
           "doc_ids", "fanout", "idle_cost", "partition_heal", "spread"]
