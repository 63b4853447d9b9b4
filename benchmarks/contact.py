"""First contact figures: how long `node.join(token)` waits on loopback, and what the
control socket costs (a request in-process, and `ownkernel status` as a command).

    PYTHONPATH=$PWD python benchmarks/contact.py [--joins 30] [--pings 300]

Prints one line per figure, with the load average beside it (the machine may
be shared); CPU time of this process is given where it tells the same story.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel import Node  # noqa: E402
from ownkernel.node.config import NetConfig  # noqa: E402
from ownkernel.node.control import request  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def joins(tmp: Path, n: int) -> None:
    fast = NetConfig(ping_interval=0.5, peer_timeout=3.0, anti_entropy=1.0)
    with Node(tmp / "a", "ann", network=fast) as a, Node(tmp / "b", "ben", network=fast) as b:
        docs = []
        for i in range(n):
            d = a.new_doc(f"doc {i}")
            d.text("body").insert(0, "x" * 200)
            docs.append(a.invite(d))
        b.connect(a.address, timeout=10)  # the first session is not what we time
        took = []
        for tok in docs:
            t0 = time.perf_counter()
            h = b.join(tok, strict=True)
            took.append(time.perf_counter() - t0)
            assert str(h.text("body")) == "x" * 200
    print(f"join -> content on loopback (session up), n={n}: p50 {pct(took, .5) * 1e3:.1f} ms, "
          f"p99 {pct(took, .99) * 1e3:.1f} ms, max {max(took) * 1e3:.1f} ms "
          f"(JOIN_WAIT 5 s; load {load()})")


def pings(tmp: Path, n: int) -> None:
    with Node(tmp / "c", "ctl", listen="tcp://127.0.0.1:0") as c:
        for op in ("ping", "status"):
            took = []
            cpu0 = time.process_time()
            for _ in range(n):
                t0 = time.perf_counter()
                assert request(c.profile, op)["ok"]
                took.append(time.perf_counter() - t0)
            cpu = (time.process_time() - cpu0) / n
            print(f"control request {op!r}, n={n}: p50 {pct(took, .5) * 1e3:.2f} ms, "
                  f"p99 {pct(took, .99) * 1e3:.2f} ms, CPU/request {cpu * 1e3:.2f} ms "
                  f"(both sides, one process; load {load()})")
        env = {**os.environ, "OWNKERNEL_HOME": str(tmp)}
        live = cli(env, "c")
    offline = cli(env, "c")
    print(f"`ownkernel status` (process start to exit), median of 5: via the control socket "
          f"{live * 1e3:.0f} ms, opening the stopped profile {offline * 1e3:.0f} ms "
          f"(load {load()})")


def cli(env: dict[str, str], profile: str) -> float:
    took = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ownkernel", "status", "--profile", profile],
                       env=env, check=True, capture_output=True)
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--joins", type=int, default=30)
    ap.add_argument("--pings", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ok-contact-") as d:
        joins(Path(d), args.joins)
        pings(Path(d), args.pings)


if __name__ == "__main__":
    main()
