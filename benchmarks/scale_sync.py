"""Sync of many documents between two node processes, and idle cost (issue #15, targets 1, 2).

    python benchmarks/scale_sync.py                 # 1,000 docs (and the loro baseline)
    python benchmarks/scale_sync.py --docs 10000    # 10,000
    python benchmarks/scale_sync.py --idle 60       # idle frames/bytes per minute, 1 vs N docs

A (its own process) owns N small documents; B joins all of them while offline,
then starts with A as its only bootstrap: we time "B started -> every doc has
A's changes" in B. Then both sit idle and we count the frames and bytes that
cross the pair per minute. Baseline in the same run: a loro-over-ZeroMQ server
(ROUTER) that answers one request with a snapshot of each of its N docs,
imported by the client (DEALER): the floor of "ship N small docs".
Everything on 127.0.0.1; profiles under $TMPDIR.

SCALE_TRACE=1: the timeline on stderr (when B's node was up and its k-th doc
landed, each side's CPU per phase, B's RSS); SCALE_TRACE=2: also per 250 ms.
SCALE_PROFILE=dir: yappi profiles (CPU clock, all threads) of A and B there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ownkernel.node import Node  # noqa: E402
from ownkernel.node.config import NetConfig  # noqa: E402

CFG = dict(ping_interval=5.0, peer_timeout=15.0, anti_entropy=10.0)


class Sampler:
    """(wall clock, process CPU) every ``every`` s on a thread: each side's CPU per phase
    of the timeline (the two processes share the wall clock: ``time.time()``)."""

    def __init__(self, every: float = 0.05) -> None:
        self.marks: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._every = every
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.marks.append((time.time(), time.process_time()))
            self._stop.wait(self._every)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._t.join()
        self.marks.append((time.time(), time.process_time()))
        return self.marks


def _rss_mb() -> float:
    """This process's resident memory now (B: the joiner), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_between(marks: list[tuple[float, float]], t0: float, t1: float) -> float:
    """CPU seconds spent between wall times ``t0`` and ``t1`` (sampling resolution)."""
    def at(t: float) -> float:
        best = marks[0][1]
        for w, c in marks:
            if w > t:
                break
            best = c
        return best
    return at(t1) - at(t0)


def _profiler() -> Any:
    """yappi over all threads when $SCALE_PROFILE names a directory (else None)."""
    if not os.environ.get("SCALE_PROFILE"):
        return None
    import yappi
    yappi.set_clock_type("cpu")
    yappi.start()
    return yappi


def _save_profile(yp: Any, name: str) -> None:
    if yp is None:
        return
    yp.stop()
    out = Path(os.environ["SCALE_PROFILE"]) / f"{name}.pstat"
    out.parent.mkdir(parents=True, exist_ok=True)
    yp.get_func_stats().save(str(out), type="pstat")


def serve_a(profile: str, n: int, out: str) -> None:
    """Child: own ``n`` docs, write the tokens, serve until stdin closes."""
    a = Node(profile, name="a", network=NetConfig(**CFG))
    tokens = []
    with a.lock, a.store.batch() if hasattr(a.store, "batch") else _null():
        for i in range(n):
            d = a.new_doc(f"doc {i}")
            d.text().insert(0, f"content of doc {i}")
            tokens.append(a.invite(d, write=False, addresses=[]))
    Path(out).write_text(json.dumps({"address": a.address, "id": a.id.hex(),
                                     "tokens": tokens}))
    print("ready", flush=True)
    yp = _profiler()
    sampler = Sampler()
    cpu0 = time.process_time()
    sys.stdin.readline()  # B reports "synced": A's CPU while serving the sync
    cpu = time.process_time() - cpu0
    marks = sampler.stop()
    _save_profile(yp, "a")
    net = a.stats().get("net", {})
    print(json.dumps({"cpu_s": cpu, "marks": marks,
                      "net": {k: v for k, v in net.items() if k != "sessions_now"},
                      "session": net.get("sessions_now", {})}), flush=True)
    sys.stdin.read()
    a.close()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def run_pair(n: int, idle: float) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="ok-scale-"))
    info = tmp / "a.json"
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--serve-a", str(tmp / "a"), str(n),
                              str(info)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    made = time.perf_counter() - t0
    meta = json.loads(info.read_text())
    with Node(tmp / "b", name="b", network=False) as b:
        for t in meta["tokens"]:
            b.join(t)
    a_id = bytes.fromhex(meta["id"])
    # "Synced" is watched through the node's own doc_changed events (run on the
    # node thread right after a doc's changes are stored), so the measurement
    # does not compete with the node for its lock. The final check reads every doc.
    changed: set[bytes] = set()
    arrivals: list[float] = []
    all_in = threading.Event()
    total = len(meta["tokens"])

    def on_changed(doc: bytes, source: object) -> None:
        if source == a_id:
            changed.add(doc)
            arrivals.append(time.perf_counter())
            if len(changed) >= total:
                all_in.set()

    yp = _profiler()
    sampler = Sampler()
    wall0 = time.time()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    b = Node(tmp / "b", name="b", bootstrap=[meta["address"]], network=NetConfig(**CFG))
    started = time.perf_counter() - t0
    b.on("doc_changed", on_changed)
    with b.lock:  # what landed before the callback was registered
        changed.update(d.id for d in b.docs() if a_id in b.replica.version(d.id))
    if len(changed) >= total:
        all_in.set()
    all_in.wait(600)
    synced = time.perf_counter() - t0
    b_cpu = time.process_time() - cpu0
    b_marks = sampler.stop()
    _save_profile(yp, "b")
    rss = _rss_mb()
    loaded = b.stats().get("docs_loaded", -1)  # (the check below loads every doc)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("synced\n")
    child.stdin.flush()
    a_info = json.loads(child.stdout.readline())
    a_cpu = a_info["cpu_s"]
    a_marks = a_info.pop("marks")
    if os.environ.get("SCALE_TRACE"):
        print("A:", a_info, file=sys.stderr)
    with b.lock:
        missing = {d.id for d in b.docs() if b.replica.open(d.id).heads.get(a_id) is None}
    if os.environ.get("SCALE_TRACE"):
        marks = [sum(1 for x in arrivals if x - t0 <= q) for q in (0.25, 0.5, 1, 2, 4, 8, 16)]
        print("synced by 0.25/0.5/1/2/4/8/16 s:", marks, file=sys.stderr)
        if arrivals:
            print(f"first doc at {arrivals[0] - t0:.3f} s, last at {arrivals[-1] - t0:.3f} s",
                  file=sys.stderr)
        timeline(started, arrivals, t0, wall0, a_marks, b_marks)
        print("B net:", {k: v for k, v in b.stats()["net"].items() if k != "sessions_now"},
              file=sys.stderr)
    out = {"docs": n, "create_s": made, "sync_s": synced, "missing": len(missing),
           "first_s": arrivals[0] - t0 if arrivals else float("nan"),
           "a_cpu_s": a_cpu, "b_cpu_s": b_cpu,
           "duplicates": b.stats()["duplicates"], "b_rss_mb": rss,
           "b_docs_loaded": loaded}
    if idle:
        s0 = b.stats()["net"]["sessions_now"]
        time.sleep(idle)
        s1 = b.stats()["net"]["sessions_now"]
        per_min = 60.0 / idle
        out["idle_frames_per_min"] = ((s1["frames_in"] + s1["frames_out"])
                                      - (s0["frames_in"] + s0["frames_out"])) * per_min
        out["idle_bytes_per_min"] = ((s1["bytes_in"] + s1["bytes_out"])
                                     - (s0["bytes_in"] + s0["bytes_out"])) * per_min
    b.close()
    child.communicate("", timeout=60)
    return out


def timeline(started: float, arrivals: list[float], t0: float, wall0: float,
             a_marks: list[tuple[float, float]], b_marks: list[tuple[float, float]]) -> None:
    """Phases of the sync from B's start: when B's node was up, when its k-th doc
    landed, and the CPU each side spent in each phase (stderr)."""
    points = [("B node up", started)]
    for k in (1, 100, 1000, 2000, 5000, 10000, 20000):
        if k <= len(arrivals):
            points.append((f"doc {k}", arrivals[k - 1] - t0))
    if arrivals and len(arrivals) not in (1, 100, 1000, 2000, 5000, 10000, 20000):
        points.append((f"doc {len(arrivals)}", arrivals[-1] - t0))
    print(f"{'phase end':>12} {'at':>8} {'CPU A':>7} {'CPU B':>7}   (in the phase)",
          file=sys.stderr)
    prev = 0.0
    for name, at in points:
        ca = cpu_between(a_marks, wall0 + prev, wall0 + at)
        cb = cpu_between(b_marks, wall0 + prev, wall0 + at)
        print(f"{name:>12} {at * 1000:>6.0f}ms {ca * 1000:>5.0f}ms {cb * 1000:>5.0f}ms",
              file=sys.stderr)
        prev = at
    if os.environ.get("SCALE_TRACE") == "2":  # per 250 ms: docs landed, CPU of A and B
        end = arrivals[-1] - t0 if arrivals else started
        k = 0
        while k * 0.25 < end + 0.25:
            lo, hi = k * 0.25, (k + 1) * 0.25
            n = sum(1 for x in arrivals if lo < x - t0 <= hi)
            ca = cpu_between(a_marks, wall0 + lo, wall0 + hi)
            cb = cpu_between(b_marks, wall0 + lo, wall0 + hi)
            print(f"  {lo:5.2f}s +{n:5d} docs  A {ca * 1000:4.0f} B {cb * 1000:4.0f} ms",
                  file=sys.stderr)
            k += 1


def loro_server(n: int, port_file: str) -> None:
    import loro
    import zmq

    docs = []
    for i in range(n):
        d = loro.LoroDoc()
        d.get_text("body").insert(0, f"content of doc {i}")
        d.commit()
        docs.append(d)
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.SNDHWM, 0)  # a ROUTER drops at the high-water mark: no limit here
    port = s.bind_to_random_port("tcp://127.0.0.1")
    Path(port_file).write_text(str(port))
    print("ready", flush=True)
    rid, _ = s.recv_multipart()
    for d in docs:  # one frame per doc, exported on request
        s.send_multipart([rid, d.export(loro.ExportMode.Snapshot())])
    s.send_multipart([rid, b""])
    sys.stdin.read()


def loro_baseline(n: int) -> float:
    import loro
    import zmq

    tmp = Path(tempfile.mkdtemp(prefix="ok-loro-"))
    child = subprocess.Popen([sys.executable, __file__, "--loro-server", str(n),
                              str(tmp / "port")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    port = int((tmp / "port").read_text())
    ctx = zmq.Context()
    c = ctx.socket(zmq.DEALER)
    c.setsockopt(zmq.RCVHWM, 0)
    c.connect(f"tcp://127.0.0.1:{port}")
    t0 = time.perf_counter()
    c.send(b"all")
    got = []
    while True:
        f = c.recv()
        if not f:
            break
        d = loro.LoroDoc()
        d.import_(f)
        got.append(d)
    took = time.perf_counter() - t0
    assert len(got) == n
    c.close(0)
    child.communicate("", timeout=30)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, nargs="*", default=[1000])
    ap.add_argument("--idle", type=float, default=0.0, help="seconds of idle to measure")
    ap.add_argument("--serve-a", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--loro-server", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_a:
        serve_a(args.serve_a[0], int(args.serve_a[1]), args.serve_a[2])
        return
    if args.loro_server:
        loro_server(int(args.loro_server[0]), args.loro_server[1])
        return
    # first doc: B started -> the first doc holds A's changes; all synced: the last one
    print(f"{'docs':>6} {'first doc':>10} {'all synced':>11} {'CPU A+B':>13} {'loro/zmq':>9} "
          f"{'dups':>5} {'idle frames/min':>16} {'idle bytes/min':>15} {'load':>5} "
          f"{'B RSS':>7} {'loaded':>6}")
    for n in args.docs:
        r = run_pair(n, args.idle)
        load = os.getloadavg()[0]
        lo = loro_baseline(n)
        print(f"{n:>6} {r['first_s'] * 1000:>7.0f} ms {r['sync_s'] * 1000:>8.0f} ms "
              f"{r['a_cpu_s']:>5.2f}+{r['b_cpu_s']:.2f} s "
              f"{lo * 1000:>6.0f} ms {r['duplicates']:>5} "
              f"{r.get('idle_frames_per_min', float('nan')):>16.0f} "
              f"{r.get('idle_bytes_per_min', float('nan')):>15.0f} {load:>5.1f} "
              f"{r['b_rss_mb']:>4.0f} MB {r['b_docs_loaded']:>6}"
              + (f"   MISSING {r['missing']}" if r["missing"] else ""), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
