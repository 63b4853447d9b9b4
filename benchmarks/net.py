"""Network benchmarks, all in one run (127.0.0.1 only):

    python benchmarks/net.py            # everything
    python benchmarks/net.py --quick    # fewer samples, a trace prefix

1. raw pyzmq round trip on loopback, plain and CurveZMQ (the floor);
2. edit on A -> visible on B: two node processes, Curve, signed envelopes,
   durable (fsync) on both sides; p50/p99 (timestamps taken inside the two
   processes with CLOCK_MONOTONIC, which all processes share);
3. changes/s streamed A -> B (one durable change per keystroke);
4. a fresh peer syncing the whole automerge-paper history.

Profiles live under $TMPDIR (disk); 2 and 3 are repeated on /dev/shm (tmpfs)
when it exists, to separate the network from the fsync cost.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_net_processes import Child  # noqa: E402

from ownkernel.node import Node  # noqa: E402
from ownkernel.store import Identity  # noqa: E402

TRACE = Path("/work/shared/data/editing-traces/sequential_traces/automerge-paper.json.gz")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1e3:6.2f} ms"


# ------------------------------------------------------------------ 1. raw pyzmq
def raw_round_trip(n: int, curve: bool) -> list[float]:
    ctx = zmq.Context()
    srv, cli = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    if curve:
        s, c = Identity.generate(), Identity.generate()
        srv.curve_server = True
        srv.curve_secretkey, srv.curve_publickey = s.curve_secret, s.curve_public
        cli.curve_secretkey, cli.curve_publickey = c.curve_secret, c.curve_public
        cli.curve_serverkey = s.curve_public
    port = srv.bind_to_random_port("tcp://127.0.0.1")
    cli.connect(f"tcp://127.0.0.1:{port}")

    def echo() -> None:
        for _ in range(n + 10):
            srv.send_multipart(srv.recv_multipart())
    t = threading.Thread(target=echo)
    t.start()
    times = []
    payload = b"x" * 100
    for i in range(n + 10):
        t0 = time.perf_counter()
        cli.send(payload)
        cli.recv()
        if i >= 10:
            times.append(time.perf_counter() - t0)
    t.join()
    srv.close(0)
    cli.close(0)
    ctx.term()
    return times


# ------------------------------------------------------------------ 2., 3.
def pair(base: Path) -> tuple[Child, Child, str]:
    a = Child(base, "a", fast=False)
    b = Child(base, "b", fast=False)
    doc = a("new_doc", title="bench")["doc"]
    b("join", token=a("invite", doc=doc)["token"])
    b.wait_text(doc, "")
    a("insert", doc=doc, text="warm")
    b.wait_text(doc, "warm")
    return a, b, doc


def edit_latency(base: Path, n: int) -> tuple[list[float], list[float]]:
    a, b, doc = pair(base)
    try:
        seen = b("changed_at", n=1)["count"]
        lat, commit = [], []
        for i in range(n):
            e = a("edit", doc=doc, ch="abcdefghij"[i % 10])
            at = b("changed_at", n=seen + i + 1)["at"]
            assert at is not None, "edit never arrived"
            lat.append(at - e["t0"])
            commit.append(e["t1"] - e["t0"])
        return lat, commit
    finally:
        a.stop()
        b.stop()


def stream(base: Path, n: int) -> float:
    a, b, doc = pair(base)
    try:
        t0 = time.perf_counter()
        a("insert", doc=doc, text="y" * n, timeout=600)
        b.wait_text(doc, length=4 + n, timeout=600)
        return n / (time.perf_counter() - t0)
    finally:
        a.stop()
        b.stop()


# ------------------------------------------------------------------ 4. trace
def trace_sync(base: Path, per_change: int, limit: int | None) -> dict[str, Any]:
    with gzip.open(TRACE) as f:
        data = json.load(f)
    patches = [p for t in data["txns"] for p in t["patches"]]
    if limit:
        patches = patches[:limit]
    t = time.perf_counter()
    with Node(base / "a", name="a", network=False) as node:
        doc = node.new_doc("automerge-paper")
        text = doc.text("body")
        for i in range(0, len(patches), per_change):
            with doc.transaction():
                for pos, dl, ins in patches[i:i + per_change]:
                    if dl:
                        text.delete(pos, dl)
                    if ins:
                        text.insert(pos, ins)
        final = str(text)
        if not limit:
            assert final == data["endContent"]
        commits = node.stats()["commits"]
        doc_hex = doc.hex
    build = time.perf_counter() - t
    a = Child(base, "a", fast=False)
    b = Child(base, "b", fast=False)
    try:
        token = a("invite", doc=doc_hex)["token"]
        t0 = time.perf_counter()
        b("join", token=token)
        b.wait_text(doc_hex, length=len(final), timeout=300)
        took = time.perf_counter() - t0
        assert b("text", doc=doc_hex)["text"] == final
    finally:
        a.stop()
        b.stop()
    return {"keystrokes": len(patches), "changes": commits, "build_s": build, "sync_s": took,
            "chars": len(final)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--per-change", type=int, default=100,
                    help="trace keystrokes per durable change on the source node")
    args = ap.parse_args()
    n_rt, n_edit, n_stream = (2000, 50, 200) if args.quick else (20000, 300, 1000)
    print("== 1. raw pyzmq round trip, loopback, 100 B (the floor)")
    for curve in (False, True):
        xs = raw_round_trip(n_rt, curve)
        print(f"{'CurveZMQ' if curve else 'plain   '}  p50 {ms(pct(xs, 50))}  "
              f"p99 {ms(pct(xs, 99))}  ({n_rt} round trips)")
    places = [("disk", Path(tempfile.gettempdir()))]
    if Path("/dev/shm").is_dir():
        places.append(("tmpfs", Path("/dev/shm")))
    print("\n== 2. edit on A -> visible on B (2 processes, Curve, signed, durable)")
    for label, where in places:
        base = Path(tempfile.mkdtemp(prefix="ownk-bench-", dir=where))
        try:
            lat, commit = edit_latency(base, n_edit)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{label:5s}  p50 {ms(pct(lat, 50))}  p99 {ms(pct(lat, 99))}  "
              f"mean {ms(statistics.mean(lat))}   (of which A's durable commit: p50 "
              f"{ms(pct(commit, 50))}; {n_edit} edits)")
    print("\n== 3. changes/s streamed A -> B (one durable change per keystroke)")
    for label, where in places:
        base = Path(tempfile.mkdtemp(prefix="ownk-bench-", dir=where))
        try:
            rate = stream(base, n_stream)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{label:5s}  {rate:8.0f} changes/s  ({n_stream} changes, until all stored on B)")
    print("\n== 4. a fresh peer syncs the whole automerge-paper history")
    for label, where in places:
        base = Path(tempfile.mkdtemp(prefix="ownk-bench-", dir=where))
        try:
            r = trace_sync(base, args.per_change, 20000 if args.quick else None)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{label:5s}  {r['keystrokes']} keystrokes in {r['changes']} changes "
              f"({args.per_change} per change), {r['chars']} chars: synced in "
              f"{r['sync_s']:.2f} s (join -> full text on B; source built in "
              f"{r['build_s']:.1f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
