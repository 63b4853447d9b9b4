"""Replay a real editing trace in ownkernel, pycrdt and loro, side by side.

    python benchmarks/trace.py [TRACE] [--libs ownkernel,pycrdt,loro] [--repeat N]

TRACE is a name in shared/data/editing-traces/sequential_traces (default
automerge-paper) or a path to a .json.gz trace. Each library runs in its own
subprocess (so RSS is its own), ``--repeat`` times; medians are printed.

Measured, per library:
 (a) local: every patch applied locally, one commit per trace transaction
     (ownkernel: insert/delete + ``commit()`` returning the encoded change;
     loro: insert/delete + ``commit()``; pycrdt: one transaction per
     transaction of the trace; the update each produces is captured by a
     subscription, as a syncing app would)
 (b) remote: the per-commit updates of (a) applied one by one to a fresh doc
 (c) merge: the whole history applied to a fresh doc in one call
 (d) load: the saved document loaded again
 (e) memory of the document, built once more untimed: the Python heap it
     holds (tracemalloc; Rust libraries keep theirs outside it, so they
     show only their Python wrappers) and the growth of the process RSS
 (f) size of the saved document in bytes
 (g) whether every final text equals the trace's endContent
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRACES = Path(
    os.environ.get("OWNKERNEL_TRACES", ROOT.parent / "shared" / "data" / "editing-traces")
)
if not TRACES.is_dir():  # a bare clone: the copy the tests use (CC BY 4.0, PROVENANCE.md)
    TRACES = ROOT / "tests" / "data" / "editing-traces"


def load_trace(name: str) -> dict[str, Any]:
    p = Path(name)
    if not p.exists():
        p = TRACES / "sequential_traces" / f"{name}.json.gz"
    with gzip.open(p) as f:
        return json.load(f)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_pass(out: dict[str, Any], build: Any) -> None:
    """Build the document once more, untimed: Python heap (tracemalloc) held by
    the document and the growth of the process RSS (which is where Rust
    libraries keep theirs)."""
    gc.collect()
    rss0 = rss_mb()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keep = build()
    gc.collect()
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["e_heap_MB"] = (cur - base) / 2**20
    out["e_heap_peak_MB"] = (peak - base) / 2**20
    out["e_rss_growth_MB"] = rss_mb() - rss0
    del keep
    gc.collect()


def run_ownkernel(trace: dict[str, Any]) -> dict[str, Any]:
    from ownkernel.crdt import Doc

    out: dict[str, Any] = {}

    def build(keep: list[bytes] | None) -> Any:
        d = Doc(actor=b"A" * 32)
        t = d.text("body")
        ins, dele, commit = t.insert, t.delete, d.commit
        push = keep.append if keep is not None else (lambda _b: None)
        for tx in trace["txns"]:
            for pos, n, s in tx["patches"]:
                if n:
                    dele(pos, n)
                if s:
                    ins(pos, s)
            push(commit())
        return d

    # the change blobs are what a node stores or sends, not part of the doc
    memory_pass(out, lambda: build(None))
    changes: list[bytes] = []
    t0 = time.perf_counter()
    d = build(changes)
    out["a_local_s"] = time.perf_counter() - t0
    t = d.text("body")
    ok = [str(t) == trace["endContent"]]

    b = Doc()
    apply = b.apply
    t0 = time.perf_counter()
    for c in changes:
        apply([c])
    out["b_remote_s"] = time.perf_counter() - t0
    ok.append(str(b.text("body")) == trace["endContent"])
    del changes, b

    blobs = d.changes()
    c = Doc()
    t0 = time.perf_counter()
    c.apply(blobs)
    out["c_merge_s"] = time.perf_counter() - t0
    ok.append(str(c.text("body")) == trace["endContent"])

    saved = d.save()
    t0 = time.perf_counter()
    e = Doc.load(saved)
    out["d_load_s"] = time.perf_counter() - t0
    ok.append(str(e.text("body")) == trace["endContent"])
    out["f_saved_bytes"] = len(saved)
    out["g_correct"] = all(ok)
    return out


def run_pycrdt(trace: dict[str, Any]) -> dict[str, Any]:
    import pycrdt

    out: dict[str, Any] = {}

    def build(keep: list[bytes] | None) -> Any:
        d = pycrdt.Doc()
        t = d.get("body", type=pycrdt.Text)
        if keep is not None:
            d.observe(lambda ev: keep.append(ev.update))
        for tx in trace["txns"]:
            with d.transaction():
                for pos, n, s in tx["patches"]:
                    if n:
                        del t[pos : pos + n]
                    if s:
                        t.insert(pos, s)
        return d, t

    memory_pass(out, lambda: build(None))
    updates: list[bytes] = []
    t0 = time.perf_counter()
    d, t = build(updates)
    out["a_local_s"] = time.perf_counter() - t0
    ok = [str(t) == trace["endContent"]]

    b = pycrdt.Doc()
    tb = b.get("body", type=pycrdt.Text)
    t0 = time.perf_counter()
    for u in updates:
        b.apply_update(u)
    out["b_remote_s"] = time.perf_counter() - t0
    ok.append(str(tb) == trace["endContent"])
    del updates, b

    full = d.get_update()
    c = pycrdt.Doc()
    tc = c.get("body", type=pycrdt.Text)
    t0 = time.perf_counter()
    c.apply_update(full)
    out["c_merge_s"] = time.perf_counter() - t0
    ok.append(str(tc) == trace["endContent"])

    t0 = time.perf_counter()
    e = pycrdt.Doc()
    e.apply_update(full)
    te = e.get("body", type=pycrdt.Text)
    s = str(te)
    out["d_load_s"] = time.perf_counter() - t0
    ok.append(s == trace["endContent"])
    out["f_saved_bytes"] = len(full)
    out["g_correct"] = all(ok)
    return out


def run_loro(trace: dict[str, Any]) -> dict[str, Any]:
    import loro

    out: dict[str, Any] = {}

    def build(keep: list[bytes] | None) -> Any:
        d = loro.LoroDoc()
        t = d.get_text("body")
        sub = None
        if keep is not None:

            def on_update(b: bytes) -> bool:
                keep.append(b)
                return True

            sub = d.subscribe_local_update(on_update)
        for tx in trace["txns"]:
            for pos, n, s in tx["patches"]:
                if n:
                    t.delete(pos, n)
                if s:
                    t.insert(pos, s)
            d.commit()
        return d, t, sub

    memory_pass(out, lambda: build(None))
    updates: list[bytes] = []
    t0 = time.perf_counter()
    d, t, sub = build(updates)
    out["a_local_s"] = time.perf_counter() - t0
    ok = [t.to_string() == trace["endContent"]]
    del sub

    b = loro.LoroDoc()
    t0 = time.perf_counter()
    for u in updates:
        b.import_(u)
    out["b_remote_s"] = time.perf_counter() - t0
    ok.append(b.get_text("body").to_string() == trace["endContent"])
    del updates, b

    full = d.export(loro.ExportMode.Updates(loro.VersionVector()))
    c = loro.LoroDoc()
    t0 = time.perf_counter()
    c.import_(full)
    s = c.get_text("body").to_string()
    out["c_merge_s"] = time.perf_counter() - t0
    ok.append(s == trace["endContent"])

    snap = d.export(loro.ExportMode.Snapshot())
    t0 = time.perf_counter()
    e = loro.LoroDoc.from_snapshot(snap) if hasattr(loro.LoroDoc, "from_snapshot") else None
    if e is None:
        e = loro.LoroDoc()
        e.import_(snap)
    s = e.get_text("body").to_string()
    out["d_load_s"] = time.perf_counter() - t0
    ok.append(s == trace["endContent"])
    out["f_saved_bytes"] = len(snap)
    out["g_correct"] = all(ok)
    return out


RUNNERS = {"ownkernel": run_ownkernel, "pycrdt": run_pycrdt, "loro": run_loro}
KEYS = [
    "a_local_s",
    "b_remote_s",
    "c_merge_s",
    "d_load_s",
    "e_heap_MB",
    "e_heap_peak_MB",
    "e_rss_growth_MB",
    "f_saved_bytes",
    "g_correct",
]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("trace", nargs="?", default="automerge-paper")
    ap.add_argument("--libs", default="ownkernel,pycrdt,loro")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        trace = load_trace(args.trace)
        print(json.dumps(RUNNERS[args.child](trace)))
        return
    libs = [x for x in args.libs.split(",") if x]
    print(
        f"trace={args.trace} repeat={args.repeat} python={platform.python_version()} "
        f"machine={platform.machine()} cpus={os.cpu_count()} date={time.strftime('%Y-%m-%d')}"
    )
    results: dict[str, dict[str, Any]] = {}
    for lib in libs:
        runs = []
        for _ in range(args.repeat):
            p = subprocess.run(
                [sys.executable, __file__, args.trace, "--child", lib],
                capture_output=True,
                text=True,
            )
            if p.returncode:
                print(f"{lib}: failed: {p.stderr.strip().splitlines()[-1:]}")
                break
            runs.append(json.loads(p.stdout))
        if not runs:
            continue
        med = {}
        for k in KEYS:
            vals = [r[k] for r in runs]
            med[k] = all(vals) if k == "g_correct" else statistics.median(vals)
        results[lib] = med
    header = f"{'metric (median)':18s}" + "".join(f"{lib:>14s}" for lib in results)
    print(header)
    for k in KEYS:
        row = f"{k:18s}"
        for lib in results:
            v = results[lib][k]
            row += (
                f"{v!s:>14s}"
                if isinstance(v, bool)
                else (f"{v:14,.0f}" if k == "f_saved_bytes" else f"{v:14.4f}")
            )
        print(row)


if __name__ == "__main__":
    main()
