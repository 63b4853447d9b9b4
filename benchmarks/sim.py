"""Gossip simulation figures for the sans-IO sync protocol (no sockets).

    python benchmarks/sim.py [--n 1000] [--seed 1]

Prints, for each network size: rounds until one node's change reaches every
node (target <= 2*log2(N)), frames and bytes that took, the same under 10%
message loss, and rounds to converge after a half/half partition heals.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ownkernel.net.sim import Simulation, partition_heal, spread  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = sorted({10, 100, args.n})
    print(f"{'N':>6} {'target':>6} {'rounds':>6} {'frames':>8} {'KiB':>8} "
          f"{'rounds@10%loss':>14} {'heal':>5} {'heal@10%loss':>12} {'secs':>6}")
    for n in sizes:
        t = time.perf_counter()
        r = spread(n, seed=args.seed)
        lossy = spread(n, seed=args.seed, loss=0.1)
        heal = partition_heal(n, seed=args.seed)
        heal_lossy = partition_heal(n, seed=args.seed, loss=0.1)
        print(f"{n:>6} {2 * math.log2(n):>6.1f} {r.rounds:>6} {r.messages:>8} "
              f"{r.bytes / 1024:>8.0f} {lossy.rounds:>14} {heal.rounds_to_converge:>5} "
              f"{heal_lossy.rounds_to_converge:>12} {time.perf_counter() - t:>6.1f}")
    print(f"\ncoverage per round, N={args.n}: {curve(args.n, args.seed)}")


if __name__ == "__main__":
    main()
