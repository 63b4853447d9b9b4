"""How fast a follower sees the presenter's slide (issue #12 §4: within 200 ms on
loopback): two real nodes on 127.0.0.1, ann presents, ``goto`` N times;
each time, the wall time until ben's ``Deck.presenter`` names the new slide
(ben polls every 1 ms; the presence claim travels as the network sends it).

    python benchmarks/deck_follow.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from ownkernel import Node
from ownkernel.apps import Deck


def until(pred, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.001)
    raise AssertionError("timed out")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    root = Path(tempfile.mkdtemp(prefix="deck-follow-"))
    a = Node(root / "a", "ann", listen="tcp://127.0.0.1:0")
    b = Node(root / "b", "ben", listen="tcp://127.0.0.1:0")
    try:
        doc = a.new_doc("talk")
        deck = Deck(doc)
        ids = [deck.add(f"# {i}") for i in range(5)]
        other = Deck(b.join(a.invite(doc), timeout=30))
        until(lambda: other.ids == ids)
        deck.present()
        until(lambda: other.presenter is not None)
        lat = []
        for k in range(n):
            i = (k + 1) % len(ids)
            t0 = time.perf_counter()
            deck.goto(i)
            until(lambda i=i: other.presenter is not None and other.presenter.slide == ids[i])
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        print(f"{n} slide changes, presenter -> follower's Deck.presenter, ms: "
              f"median {statistics.median(lat):.1f}, p90 {lat[int(0.9 * n) - 1]:.1f}, "
              f"max {lat[-1]:.1f}")
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
