"""What one event costs when it comes after a pause (issue #15 target 6).

    python benchmarks/wake_cost.py [--keys 300]

A fan-out reader or typist handles one keystroke every 50 ms and sleeps in
between. Measured here, in one process, without the network: the thread CPU
time of one local keystroke (edit, commit, sign, SQLite) typed back to back,
and typed at 20/s; and, for scale, a fixed piece of pure-Python work run back
to back and after 1, 10 and 50 ms sleeps. On this project's 2-core VM a
keystroke at 20/s costs several times its back-to-back figure (cold caches
and a woken vCPU), which is why per-keystroke CPU in the fan-out benchmark is
far above what microbenchmarks of its parts add up to: fewer instructions help,
but so does touching less code and memory per event. Profiles go to $TMPDIR
(on disk: the commit's fsync is part of the keystroke) and, where it exists,
/dev/shm (no fsync).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel import Node  # noqa: E402


def keystrokes(where: str, n: int, rate: float) -> float:
    """Thread CPU per keystroke (µs) of ``n`` keystrokes at ``rate``/s (inf: no pause)."""
    tmp = tempfile.mkdtemp(prefix="ownk-wake-", dir=where)
    node = Node(f"{tmp}/a", name="a", network=False)
    try:
        node.replica.listeners.append(lambda d, e: None)  # live changes signed, as online
        h = node.new_doc("typed")
        t = h.text("body")
        for _ in range(50):  # warm up
            t.insert(len(t), "x")
        c0 = time.thread_time()
        at = time.perf_counter()
        for i in range(n):
            pause = at + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            t.insert(len(t), "y")
        return (time.thread_time() - c0) / n * 1e6
    finally:
        node.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _work() -> int:
    s = 0
    d: dict[int, int] = {}
    for i in range(2000):
        d[i % 97] = s
        s += i * 3
    json.dumps(d)
    hashlib.sha256(b"x" * 1000).digest()
    return s


def work_after(gap: float, n: int = 100) -> float:
    c0 = time.thread_time()
    for _ in range(n):
        if gap:
            time.sleep(gap)
        _work()
    return (time.thread_time() - c0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=300)
    args = ap.parse_args()
    print(f"thread CPU per event; load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} cores")
    places = [tempfile.gettempdir()] + (["/dev/shm"] if Path("/dev/shm").is_dir() else [])
    for where in places:
        hot = keystrokes(where, args.keys, float("inf"))
        live = keystrokes(where, args.keys, 20.0)
        print(f"keystroke (profile in {where}): back to back {hot:6.0f} us, "
              f"at 20/s {live:6.0f} us  ({live / hot:.1f}x)")
    base = work_after(0.0)
    for gap in (0.001, 0.01, 0.05):
        print(f"fixed Python work: back to back {base:5.0f} us, after a {gap * 1e3:g} ms "
              f"sleep {work_after(gap):5.0f} us")


if __name__ == "__main__":
    main()
