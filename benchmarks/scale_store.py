"""Reopen cost of a profile with many documents (issue #15 target 3: 1,000 docs <= 10 ms).

    python benchmarks/scale_store.py            # 1 and 1,000 docs (~49 MB), ~1-2 min to build
    python benchmarks/scale_store.py --quick    # 1 and 100 docs, for a smoke run

For each profile it prints the median of ``--repeat`` reopens of:

- Store alone: ``Store(path)`` + ``documents()`` (open and list every doc; also with
  ``doc_ids()``, which lists without decoding each row), after a
  clean close (the normal case: no integrity check) and with ``check=True`` (what
  every open did before: ``PRAGMA quick_check`` reads the whole file);
- ``Node(profile, network=False)`` construction, and construction + ``node.docs()``.

Profiles live in a temporary directory on the disk of $TMPDIR.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel.node import Node  # noqa: E402
from ownkernel.store import DB_FILE, Store  # noqa: E402


def build(profile: Path, ndocs: int, chars: int) -> float:
    """ndocs docs with ``chars`` (odd docs: +1,000) of random text in a few changes;
    returns MB. (Stored size jumps between 27,000 and 28,000 chars per doc, 41 vs 57 KB:
    alternating the two gives the ~49 MB profile issue #15 measured.)"""
    rnd = random.Random(1)
    with Node(profile=profile, network=False) as node:
        for i in range(ndocs):
            doc = node.new_doc(f"doc {i}")
            t = doc.text("body")
            k = (chars + 1000 * (i % 2)) // 4
            for _ in range(4):  # a few durable commits per doc, as a short editing session
                t.insert(len(t), "".join(rnd.choices(string.ascii_letters + " ", k=k)))
    return (profile / DB_FILE).stat().st_size / 1e6


def median_ms(fn: Callable[[], Callable[[], None]], repeat: int) -> str:
    """``fn`` opens and returns its closer; only the opening is timed. "median (min)":
    the min shows the cost without interference from other processes."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        close = fn()
        times.append(time.perf_counter() - t)
        close()
    return f"{statistics.median(times) * 1000:.2f} ({min(times) * 1000:.2f})"


def store_open(path: Path, check: bool | None, ids_only: bool = False) -> Callable[[], None]:
    st = Store(path, check=check)
    if ids_only:
        st.doc_ids()
    else:
        st.documents()
    return st.close


def node_open(profile: Path, listing: bool) -> Callable[[], None]:
    node = Node(profile=profile, network=False)
    if listing:
        node.docs()
    return node.close


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--chars", type=int, default=27_000,
                    help="text per doc (27,000: a ~49 MB profile at 1,000 docs)")
    args = ap.parse_args()
    sizes = [1, 100] if args.quick else [1, 1000]
    print(f"python {sys.version.split()[0]}, median (min) of {args.repeat} reopens, ms; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'docs':>6} {'MB':>6} {'Store+list':>14} {'Store+doc_ids':>14} "
          f"{'Store+list check=True':>22} "
          f"{'Node()':>14} {'Node()+docs()':>14}")
    with tempfile.TemporaryDirectory(prefix="ownkernel-scale-store-") as tmp:
        for n in sizes:
            profile = Path(tmp) / f"p{n}"
            t = time.perf_counter()
            mb = build(profile, n, args.chars)
            built = time.perf_counter() - t
            path = profile / DB_FILE
            fast = median_ms(partial(store_open, path, None), args.repeat)
            ids = median_ms(partial(store_open, path, None, True), args.repeat)
            checked = median_ms(partial(store_open, path, True), args.repeat)
            node = median_ms(partial(node_open, profile, False), args.repeat)
            node_docs = median_ms(partial(node_open, profile, True), args.repeat)
            print(f"{n:>6} {mb:>6.1f} {fast:>14} {ids:>14} {checked:>22} {node:>14} "
                  f"{node_docs:>14}   (built in {built:.0f} s)")


if __name__ == "__main__":
    main()
