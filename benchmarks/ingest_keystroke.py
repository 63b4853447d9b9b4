"""A reader's CPU per live keystroke below the network (issue #15 target 6).

    python benchmarks/ingest_keystroke.py [--keys 2000]

Node A types; node B (a reader of A's doc) takes each keystroke as the network
layer hands it over: one signed envelope per call to ``Replica.ingest``, inside
``Store.batch(durable=False)`` with the cyclic GC held, as ``Inbox.process``
does. Two ways: the usual path (chain and Ed25519 signature checked at once) and
``direct=True`` (the change came over its author's own session: its signature is
verified later, once, by ``Replica.settle``; node/direct.py). Process CPU per
keystroke, back to back in one process (warm caches: a live reader woken every
50 ms pays several times this, see wake_cost.py). Profiles under $TMPDIR.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel import Node  # noqa: E402
from ownkernel.crdt.integrate import gc_paused  # noqa: E402


def run(keys: int, direct: bool) -> float:
    tmp = tempfile.mkdtemp(prefix="ownk-ingest-")
    a = Node(f"{tmp}/a", name="a", network=False)
    b = Node(f"{tmp}/b", name="b", network=False)
    try:
        d = a.new_doc("typed")
        d.text().insert(0, "hello")
        b.join(a.invite(d, write=False, addresses=[]))
        b.replica.ingest(d.id, a.replica.outgoing(d.id, {}), a.id)
        pushes = []
        for i in range(keys):  # what A pushes: each keystroke alone, signed
            since = dict(a.replica.version(d.id))
            d.text().insert(5 + i, "x")
            pushes.append(a.replica.outgoing(d.id, since))
        assert all(len(p) == 1 for p in pushes)
        t0 = time.process_time()
        for env in pushes:
            with b.lock, b.store.batch(durable=False), gc_paused(True):
                b.replica.ingest(d.id, env, a.id, direct=direct)
        took = (time.process_time() - t0) / keys
        b.replica.settle()
        assert str(b.open(d.id).text()) == str(d.text()), "B does not hold what A typed"
        return took * 1e6
    finally:
        a.close()
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=2000)
    args = ap.parse_args()
    print(f"reader CPU per keystroke, {args.keys} keystrokes; load average "
          f"{os.getloadavg()[0]:.1f}")
    for direct in (False, True, False, True):
        label = "direct (signature later)" if direct else "usual (signature now)  "
        print(f"  {label}: {run(args.keys, direct):6.1f} us")


if __name__ == "__main__":
    main()
