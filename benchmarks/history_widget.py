"""What the history features cost (issue #12): the ``_time`` marks, the
undo-state rebuild after a load, and the history widget's work per slider move.

    python benchmarks/history_widget.py [TRACE] [KEYS_PER_SECOND]

Replays an editing trace (default automerge-paper) as one actor, one change
per transaction, twice: without marks, and with ``stamp()`` before each
commit at a simulated typing speed (default 5 keystrokes/s, so a mark every
5th change). Prints the bytes of all changes and of ``save()``, and the CPU
time of building each. Then, on the marked doc: the CPU time of
``history_steps`` (the widget's timeline) and of ``step_view`` (one slider
move: two replays and a text diff) at the middle and the last step, and
with the widget's view cache when the slider moved by one step; and of
rebuilding the undo state after ``Doc.load`` with 1,000 undo changes in it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trace import load_trace  # noqa: E402  (benchmarks/trace.py, not the stdlib module)

from ownkernel.crdt import Doc  # noqa: E402
from ownkernel.crdt.history import stamp  # noqa: E402
from ownkernel.ui.history import history_steps, step_view  # noqa: E402


def cpu(fn):  # type: ignore[no-untyped-def]
    t0 = time.process_time()
    r = fn()
    return time.process_time() - t0, r


def build(trace: dict, kps: float | None) -> tuple[Doc, int]:
    d = Doc(actor=b"A" * 32)
    t = d.text("body")
    size = 0
    clock = 1_800_000_000.0
    for tx in trace["txns"]:
        for pos, n, s in tx["patches"]:
            if n:
                t.delete(pos, n)
            if s:
                t.insert(pos, s)
        if kps:
            clock += 1.0 / kps
            stamp(d, clock)
        size += len(d.commit() or b"")
    return d, size


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "automerge-paper"
    kps = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    trace = load_trace(name)
    print(f"trace {name}, {kps:g} keystrokes/s simulated")
    rows = []
    for label, k in (("no marks", None), ("_time marks", kps)):
        s, (d, size) = cpu(lambda k=k: build(trace, k))
        saved = len(d.save())
        rows.append((label, s, size, saved))
        print(f"{label:12} build {s:7.2f} s CPU   changes {size / 1e6:7.3f} MB"
              f"   save() {saved / 1e3:8.1f} kB")
    assert str(d.text("body")) == trace["endContent"]
    (_, s0, c0, v0), (_, s1, c1, v1) = rows
    print(f"marks cost: +{(c1 - c0) / 1e3:.1f} kB of changes ({(c1 / c0 - 1) * 100:.1f} %),"
          f" +{(v1 - v0) / 1e3:.1f} kB saved ({(v1 / v0 - 1) * 100:.1f} %),"
          f" build CPU {(s1 / s0 - 1) * 100:+.1f} %")
    h = SimpleNamespace(crdt=d, history=d.history, at=d.at)
    s, steps = cpu(lambda: history_steps(h))
    print(f"history_steps      {s * 1000:9.1f} ms CPU  ({len(steps)} steps of "
          f"{d.version[d.actor]} changes)")
    for label, i in (("middle", len(steps) // 2), ("last", len(steps) - 1)):
        s, v = cpu(lambda i=i: step_view(h, steps, i))
        print(f"step_view({label:6})  {s * 1000:9.1f} ms CPU  ({len(v['roots'][0]['segs'])} segs)")
    cache: dict = {}
    step_view(h, steps, len(steps) - 2, cache)
    s, v = cpu(lambda: step_view(h, steps, len(steps) - 1, cache))
    print(f"step_view(last), slider moved one step (view cache warm) {s * 1000:.1f} ms CPU")
    # undo state rebuilt from the marks after a load
    u = Doc(actor=b"U" * 32)
    ut = u.text("body")
    for _ in range(2000):
        ut.insert(len(ut), "x")
        u.commit()
    for _ in range(1000):
        u.undo()
    data = u.save()
    s, loaded = cpu(lambda: Doc.load(data, actor=b"U" * 32))
    s2, ok = cpu(loaded.can_redo)
    assert ok and len(loaded.text("body")) == 1000
    print(f"Doc.load           {s * 1000:9.1f} ms CPU  (3,000 changes, 1,000 of them undos)")
    print(f"rebuild undo state {s2 * 1000:9.1f} ms CPU  (first can_redo() after the load)")


if __name__ == "__main__":
    main()
