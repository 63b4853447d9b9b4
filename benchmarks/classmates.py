"""How many simulated classmates one machine carries while an editor stays under 50 ms p99.

A hub node (this process, the teacher's kernel) owns a doc; an observer node (a
separate process, a student's kernel) joins it by invite; N classmates (one
process each, human pace: ``speed=1``, offline spells on) join it too and type,
chat and add rows. The hub then types probes into a text root of the same doc
every ``--interval`` seconds; the observer stamps when each becomes visible
there (CLOCK_MONOTONIC is one clock for all processes of a machine). Reported
per N: edit->visible p50/p99/max, the CPU the classmates and the hub used (share
of one core: this is what the machine's cores must carry), and the load average.

    python benchmarks/classmates.py                     # N = 0 4 8 16 24 32
    python benchmarks/classmates.py --n 0 8 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ownkernel import Node  # noqa: E402
from ownkernel.apps.classmates import classmates  # noqa: E402

TARGET_MS = 50.0


def observer_main() -> int:
    """The student's node: join, stamp each probe as it becomes visible, report on EOF."""
    cfg = json.loads(sys.stdin.readline())
    with Node(None, "observer", listen=None) as node:
        doc = node.join(cfg["token"], timeout=30)
        seen: dict[int, float] = {}

        def changed(doc_id: bytes, _source: object) -> None:
            if doc_id != doc.id:
                return
            now = time.monotonic()
            for x in str(doc.text("probe")).split("|"):
                if x and int(x) not in seen:
                    seen[int(x)] = now

        node.on("doc_changed", changed)
        print("ready", flush=True)
        sys.stdin.readline()  # the hub says when it is done
        print(json.dumps(seen), flush=True)
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc: no extra dependency)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def one_level(n: int, seconds: float, interval: float, seed: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Node(None, "hub", listen="tcp://127.0.0.1:0") as hub:
        doc = hub.new_doc(title="bench")
        doc.text("probe")
        obs = subprocess.Popen([sys.executable, __file__, "--observer"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env)
        assert obs.stdin and obs.stdout
        obs.stdin.write(json.dumps({"token": hub.invite(doc)}) + "\n")
        obs.stdin.flush()
        assert obs.stdout.readline().strip() == "ready"
        cm = classmates(hub, doc, n=n, seed=seed, speed=1.0, wait=120) if n else None
        try:
            time.sleep(3.0)  # let them get going
            pids = cm.pids if cm else []
            cpu0 = {p: cpu_seconds(p) for p in pids}
            hub0 = time.process_time()
            wall0 = time.monotonic()
            load0 = os.getloadavg()[0]
            sent: dict[int, float] = {}
            probe = doc.text("probe")
            i = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                i += 1
                sent[i] = time.monotonic()
                probe.insert(len(probe), f"|{i}")
                time.sleep(interval)
            time.sleep(1.0)  # the last probes land
            wall = time.monotonic() - wall0
            bots_cpu = sum(cpu_seconds(p) - cpu0[p] for p in pids)
            hub_cpu = time.process_time() - hub0
            load1 = os.getloadavg()[0]
            alive = len(cm.alive()) if cm else 0
        finally:
            if cm:
                cm.stop()
            obs.stdin.write("done\n")
            obs.stdin.flush()
            seen = {int(k): v for k, v in json.loads(obs.stdout.readline()).items()}
            obs.wait(30)
    lat = sorted((seen[k] - sent[k]) * 1000 for k in sent if k in seen)
    lost = len(sent) - len(lat)
    nan = [float("nan")] * 99
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else nan
    return {"n": n, "alive": alive, "probes": len(sent), "lost": lost,
            "p50": statistics.median(lat), "p99": q[98], "max": lat[-1],
            "bots_core": bots_cpu / wall, "per_bot_core": bots_cpu / wall / n if n else 0.0,
            "hub_core": hub_cpu / wall, "load": (load0 + load1) / 2}


def main() -> int:
    if "--observer" in sys.argv:
        return observer_main()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[0, 4, 8, 16, 24, 32])
    ap.add_argument("--seconds", type=float, default=20.0, help="probing time per level")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"# {os.cpu_count()} cores, Python {sys.version.split()[0]}; probes every "
          f"{args.interval:g} s for {args.seconds:g} s per level; target p99 < {TARGET_MS:g} ms")
    print("| classmates | p50 ms | p99 ms | max ms | probes (lost) | classmates' CPU "
          "(cores) | per classmate | hub CPU (cores) | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.n:
        r = one_level(n, args.seconds, args.interval, args.seed)
        flag = "" if r["p99"] < TARGET_MS else " (over)"
        print(f"| {n} | {r['p50']:.1f} | {r['p99']:.1f}{flag} | {r['max']:.1f} | "
              f"{r['probes']} ({r['lost']}) | {r['bots_core']:.2f} | {r['per_bot_core']:.3f} | "
              f"{r['hub_core']:.2f} | {r['load']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
