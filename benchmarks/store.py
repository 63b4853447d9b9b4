"""Storage benchmarks: durable commits/s, trace reopen time, bytes on disk, auth cost.

    python benchmarks/store.py            # everything (the trace part takes a minute)
    python benchmarks/store.py --quick    # smaller numbers, for a smoke run

Prints figures; BENCHMARKS.md quotes them. Profiles live in a temporary
directory on the same disk as $TMPDIR (use TMPDIR=... to measure another disk).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ownkernel.node import Node  # noqa: E402
from ownkernel.store import Envelope, Identity, chain_hash, encode_envelope, verify_head  # noqa: E402
from ownkernel.store.auth import ZERO_HASH, head_message  # noqa: E402

TRACE = next((p for p in (ROOT.parent / "shared" / "data" / "editing-traces",
                          ROOT / "tests" / "data" / "editing-traces")
              if p.is_dir()), ROOT / "tests" / "data" / "editing-traces") / \
    "sequential_traces" / "automerge-paper.json.gz"
AUTOMERGE_BYTES = 129_078


def bench_auth(n: int) -> None:
    ident = Identity.generate()
    doc = os.urandom(16)
    body = os.urandom(60)  # about one keystroke's change
    t = time.perf_counter()
    h = ZERO_HASH
    for seq in range(1, n + 1):
        h = chain_hash(h, doc, ident.node_id, seq, body)
    hash_us = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for _ in range(n):
        sig = ident.sign(head_message(h))
    sign_us = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for _ in range(n):
        verify_head(ident.node_id, h, sig)
    verify_us = (time.perf_counter() - t) / n * 1e6
    plain = len(encode_envelope(Envelope(doc, ident.node_id, 1234, body)))
    signed = len(encode_envelope(Envelope(doc, ident.node_id, 1234, body, sig)))
    print("== authentication (hash chain + signed heads)")
    print(f"chain hash per change      {hash_us:7.2f} µs   0 B stored per change "
          f"(32 B hash + 64 B sig kept once per author per doc)")
    print(f"Ed25519 sign per head      {sign_us:7.2f} µs   64 B")
    print(f"Ed25519 verify per head    {verify_us:7.2f} µs")
    for batch in (1, 20, 100):
        print(f"batch of {batch:3d} changes: per change {hash_us + sign_us / batch:6.2f} µs to "
              f"author, {hash_us + verify_us / batch:6.2f} µs to verify, "
              f"{64 / batch:5.1f} B of signature")
    print(f"envelope header on the wire: {plain - len(body)} B unsigned, "
          f"{signed - len(body)} B signed (doc 16 + actor 32 + seq + CBOR)")


def bench_commits(n: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, Node(profile=os.path.join(tmp, "p")) as node:
        doc = node.new_doc("bench")
        text = doc.text("body")
        t = time.perf_counter()
        for i in range(n):
            text.insert(i, "x")
        one = time.perf_counter() - t
        t = time.perf_counter()
        nb = max(1, n // batch)
        for _ in range(nb):
            with doc.transaction():
                for _ in range(batch):
                    text.insert(0, "y")
        many = time.perf_counter() - t
    print("== durable commits (synchronous=FULL, WAL; one fsync per commit)")
    print(f"one change per commit     {n / one:8.0f} commits/s  ({one / n * 1e3:.2f} ms each)")
    print(f"{batch} ops per commit        {nb / many:8.0f} commits/s  "
          f"{nb * batch / many:8.0f} ops/s")


def load_trace() -> tuple[list[list], str]:
    with gzip.open(TRACE, "rt") as f:
        data = json.load(f)
    patches = [p for txn in data["txns"] for p in txn["patches"]]
    return patches, data["endContent"]


def bench_trace(per_change: int, limit: int | None) -> None:
    patches, end = load_trace()
    if limit:
        patches = patches[:limit]
    with tempfile.TemporaryDirectory() as tmp:
        prof = os.path.join(tmp, "p")
        t = time.perf_counter()
        with Node(profile=prof) as node:
            doc = node.new_doc("automerge-paper")
            text = doc.text("body")
            for i in range(0, len(patches), per_change):
                with doc.transaction():
                    for pos, dl, ins in patches[i:i + per_change]:
                        if dl:
                            text.delete(pos, dl)
                        if ins:
                            text.insert(pos, ins)
            doc_id = doc.id
            commits = node.stats()["commits"]
            changes_bytes = sum(
                len(r.blob) for r in node.store.iter_all_changes(doc_id))
            tables = node.store.table_bytes()
            final = str(text)
        write_s = time.perf_counter() - t
        if not limit:
            assert final == end, "trace replay differs from endContent"
        db = Path(prof) / "ownkernel.sqlite3"
        total = db.stat().st_size
        times = _reopen_times(prof, doc_id, final)
        with Node(profile=prof) as node:
            node.compact()
            compact_tables = node.store.table_bytes()
        compact_total = db.stat().st_size
        ctimes = _reopen_times(prof, doc_id, final)
    print(f"== automerge-paper trace ({len(patches)} keystrokes, one change per {per_change})")
    print(f"written with {commits} durable commits in {write_s:.1f} s "
          f"({commits / write_s:.0f} commits/s incl. CRDT work)")
    print(f"change bodies            {changes_bytes:9,d} B  "
          f"({changes_bytes / max(commits, 1):.1f} B per change, before storage compression)")
    if tables:
        ch = tables.get("changes", 0) + tables.get("changes_auth", 0)
        print(f"changes table (pages)    {ch:9,d} B   snapshots {tables.get('snapshots', 0):,d} B")
    print(f"database file total      {total:9,d} B   (automerge: {AUTOMERGE_BYTES:,d} B "
          f"for the same history)")
    print(f"after node.compact()     {compact_total:9,d} B   "
          f"(snapshot {compact_tables.get('snapshots', 0):,d} B; history still verifiable "
          f"and servable)")
    for label, ts in (("reopen", times), ("reopen after compact", ctimes)):
        print(f"{label} (Node + open + text): median {statistics.median(ts) * 1e3:.0f} ms, "
              f"min {min(ts) * 1e3:.0f} ms (target 200 ms)")


def _reopen_times(prof: str, doc_id: bytes, final: str) -> list[float]:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        with Node(profile=prof) as node:
            got = str(node.open(doc_id).text("body"))
            times.append(time.perf_counter() - t)
        assert got == final
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    bench_auth(2000 if a.quick else 20000)
    bench_commits(300 if a.quick else 2000, 100)
    bench_trace(20, 20000 if a.quick else None)


if __name__ == "__main__":
    main()
