"""Gossip simulation figures for the sans-IO sync protocol (no sockets).

    python benchmarks/sim.py [--n 1000] [--docs 1000] [--seed 1] [--quick]

Prints:
1. spread: rounds until one node's change reaches every node (target
   <= 2*log2(N)), frames and bytes that took, the same under 10% loss, and
   rounds to converge after a half/half partition heals; at N nodes also with
   ``--docs`` shared docs (the change is in one of them).
2. idle: frames and bytes each node sends per minute when nothing changes
   (pings, pongs and anti-entropy digests), N nodes x ``--docs`` docs, each
   node connected to a ring neighbour plus random chords; per connected peer
   (target <= 100 frames and <= 10 KB per minute, whatever the doc count).
3. fan-out: 12 nodes fully meshed, 60 keystrokes/s in total on one doc for
   10 s (simulated), 1-10 ms links: duplicate change blobs received per
   change per node (target <= 1), delay made -> stored, frames per change;
   with the eager-push + lazy-announce policy and with relay-everything
   ("flood"), and along a 12-node chain.
4. open: two sessions sharing 10,000 docs, one side empty: one-way hops,
   frames and bytes until converged (in memory, 256 KiB frames).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ownkernel.net.protocol import LocalInfo, PeerSession, SessionConfig  # noqa: E402
from ownkernel.net.sim import (  # noqa: E402
    SetHost,
    Simulation,
    doc_ids,
    fanout,
    idle_cost,
    partition_heal,
    spread,
)


def curve(n: int, seed: int) -> list[int]:
    """How many nodes hold the change after each round."""
    sim = Simulation(n, seed=seed)
    origin = sim.nodes[sorted(sim.nodes)[0]].host
    origin.make_change()
    out = []
    while not sim.converged():
        sim.step()
        out.append(sim.coverage(origin.actor, 1))
    return out


def open_sync(docs: int) -> tuple[int, int, int, float]:
    """(one-way hops, frames, bytes, CPU seconds of both sessions and hosts)."""
    shared = doc_ids(docs)
    ha, hb = SetHost(b"a" * 32, shared), SetHost(b"b" * 32, shared)
    for d in shared:
        ha.make_change(d)
    cfg = SessionConfig(max_frame_size=256 * 1024, ping_interval=1e9,
                        anti_entropy_interval=1e9, peer_timeout=1e9)
    t = time.process_time()  # CPU, not wall: shared CI machines are noisy
    a = PeerSession(LocalInfo(ha.node_id), 0, host=ha, config=cfg)
    b = PeerSession(LocalInfo(hb.node_id), 0, host=hb, config=cfg)
    a.hello()
    hops = frames = nbytes = 0
    while True:
        fa, fb = a.data_to_send(), b.data_to_send()
        if not fa and not fb:
            break
        hops += 1
        for f in fa:
            b.receive(f, 0)
        for f in fb:
            a.receive(f, 0)
        frames += len(fa) + len(fb)
        nbytes += sum(map(len, fa)) + sum(map(len, fb))
    took = time.process_time() - t
    assert all(hb.vv[d] == ha.vv[d] for d in shared)
    return hops, frames, nbytes, took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="skip the loss/partition columns")
    args = ap.parse_args()

    print("## spread (anti-entropy rounds; one doc changes)")
    sizes = sorted({10, 100, args.n})
    print(f"{'N':>6} {'docs':>5} {'target':>6} {'rounds':>6} {'frames':>8} {'KiB':>8} "
          f"{'rounds@10%loss':>14} {'heal':>5} {'heal@10%loss':>12} {'secs':>6}")
    runs = [(n, 1) for n in sizes] + [(args.n, args.docs)]
    for n, docs in runs:
        t = time.perf_counter()
        r = spread(n, seed=args.seed, docs=docs)
        extra = "" if args.quick or docs > 1 else (
            f"{spread(n, seed=args.seed, loss=0.1).rounds:>14} "
            f"{partition_heal(n, seed=args.seed).rounds_to_converge:>5} "
            f"{partition_heal(n, seed=args.seed, loss=0.1).rounds_to_converge:>12}")
        extra = extra or f"{'-':>14} {'-':>5} {'-':>12}"
        print(f"{n:>6} {docs:>5} {2 * math.log2(n):>6.1f} {r.rounds:>6} {r.messages:>8} "
              f"{r.bytes / 1024:>8.0f} {extra} {time.perf_counter() - t:>6.1f}")
    if not args.quick:
        print(f"\ncoverage per round, N={args.n}: {curve(args.n, args.seed)}")

    print("\n## idle (30 s anti-entropy, 10 s ping; per minute, measured over 2 min)")
    print(f"{'N':>6} {'docs':>6} {'peers':>5} {'frames/node':>11} {'B/node':>8} "
          f"{'frames/peer':>11} {'B/peer':>7} {'secs':>6}")
    for n, docs in [(100, 1), (100, args.docs), (args.n, args.docs)]:
        t = time.perf_counter()
        r = idle_cost(n, docs, seed=args.seed)
        print(f"{n:>6} {docs:>6} {r.sessions_per_node:>5.1f} {r.frames_per_node_min:>11.1f} "
              f"{r.bytes_per_node_min:>8.0f} {r.frames_per_peer_min:>11.1f} "
              f"{r.bytes_per_peer_min:>7.0f} {time.perf_counter() - t:>6.1f}")

    print("\n## fan-out (60 changes/s in total, 10 s, one doc)")
    print(f"{'nodes':>5} {'topology':>8} {'policy':>8} {'changes':>7} {'dup/chg/node':>12} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'frames/chg':>10}")
    for topo, policy in [("full", "announce"), ("full", "flood"), ("chain", "announce")]:
        r = fanout(12, topology=topo, rate=60, seconds=10, seed=args.seed, policy=policy)
        assert r.converged
        print(f"{r.nodes:>5} {topo:>8} {policy:>8} {r.changes:>7} "
              f"{r.dup_per_change_per_node:>12.3f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
              f"{r.frames_per_change:>10.1f}")

    print("\n## open: two sessions, 10,000 shared docs, one side empty")
    hops, frames, nbytes, took = open_sync(10_000)
    print(f"one-way hops {hops}, frames {frames}, {nbytes / 1024:.0f} KiB, "
          f"{took * 1000:.0f} ms CPU in-process (both sides)")


if __name__ == "__main__":
    main()
