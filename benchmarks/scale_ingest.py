"""Receiver CPU per document of a many-doc catch-up, without the network (issue #15 target 1).

    python benchmarks/scale_ingest.py [--docs 2000] [--repeat 3]

Node A owns N small docs (3 changes each: access list, title, text); node B
joined them all while offline. We hand B, in bursts of 64 docs under one store
transaction as the network layer does, what A's ``outgoing`` gives for each doc,
and report B's CPU time per doc (process time: verify, decrypt-free decode,
admission, CRDT apply, SQLite). This is the part of `scale_sync.py`'s figure
that a faster protocol cannot remove. Both nodes in one process, profiles
under $TMPDIR.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel import Node  # noqa: E402


def one_run(n: int, hold_gc: bool) -> float:
    tmp = tempfile.mkdtemp(prefix="ok-ingest-")
    a = Node(f"{tmp}/a", name="a", network=False)
    b = Node(f"{tmp}/b", name="b", network=False)
    try:
        docs = []
        with a.lock, a.store.batch():
            for i in range(n):
                d = a.new_doc(f"doc {i}")
                d.text().insert(0, f"content of doc {i}")
                docs.append((d.id, a.invite(d, write=False, addresses=[])))
        with b.lock, b.store.batch():
            for _, t in docs:
                b.join(t)
        outs = [(d, a.replica.outgoing(d, {})) for d, _ in docs]
        # as the network layer does when it connects: every doc's version in one query
        # (a doc known to hold nothing then loads without reading its heads)
        b.replica.prefetch_versions()
        was = gc.isenabled()
        t0 = time.process_time()
        with b.lock:
            for k in range(0, n, 64):
                if hold_gc:
                    gc.disable()  # as the network layer does for a burst
                with b.store.batch(durable=False):  # as the network layer does
                    for d, envs in outs[k:k + 64]:
                        b.replica.ingest(d, envs, a.id)
                if hold_gc and was:
                    gc.enable()
        took = time.process_time() - t0
        assert all(a.id in b.replica.version(d) for d, _ in docs), "not all docs ingested"
        return took / n
    finally:
        a.close()
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"receiver CPU per doc, {args.docs} docs (3 changes each), median of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for hold in (True, False):
        xs = [one_run(args.docs, hold) for _ in range(args.repeat)]
        print(f"  GC {'held per burst' if hold else 'running       '}: "
              f"{statistics.median(xs) * 1e6:6.0f} us/doc  (runs: "
              f"{', '.join(f'{x * 1e6:.0f}' for x in xs)})")


if __name__ == "__main__":
    main()
