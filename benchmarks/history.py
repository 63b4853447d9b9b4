"""Walking a real editing history: history(), at(version), blame(), undo()/redo().

    python benchmarks/history.py [TRACE]

Builds the trace (default automerge-paper: 259,778 keystrokes, one change
per transaction) as one actor, then prints the CPU time of each call:
``history()`` over every change, ``at()`` of the middle and of the last
version (a replay of that prefix), ``blame()`` of the final text, and an
``undo()`` + ``redo()`` pair of the last change. Each call's result is
checked (the view at the last version equals the trace's endContent, undo
then redo leaves the text unchanged).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trace import load_trace  # noqa: E402  (benchmarks/trace.py, not the stdlib module)

from ownkernel.crdt import Doc  # noqa: E402


def cpu(fn):  # type: ignore[no-untyped-def]
    t0 = time.process_time()
    r = fn()
    return time.process_time() - t0, r


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "automerge-paper"
    trace = load_trace(name)
    d = Doc(actor=b"A" * 32)
    t = d.text("body")
    for tx in trace["txns"]:
        for pos, n, s in tx["patches"]:
            if n:
                t.delete(pos, n)
            if s:
                t.insert(pos, s)
        d.commit()
    print(f"trace {name}: {d.version[d.actor]} changes, final length {len(t)}")
    s, h = cpu(d.history)
    print(f"history()          {s * 1000:9.1f} ms CPU  ({len(h)} entries)")
    mid = h[len(h) // 2].version
    s, v = cpu(lambda: d.at(mid))
    print(f"at(middle)         {s * 1000:9.1f} ms CPU  (length {len(v.text('body'))})")
    s, v = cpu(lambda: d.at(h[-1].version))
    assert v.text("body") == trace["endContent"]
    print(f"at(last)           {s * 1000:9.1f} ms CPU")
    s, b = cpu(t.blame)
    print(f"blame()            {s * 1000:9.1f} ms CPU  ({len(b)} ranges)")
    before = str(t)
    s, _ = cpu(lambda: (d.undo(), d.redo()))
    assert str(t) == before
    print(f"undo() + redo()    {s * 1000:9.1f} ms CPU")


if __name__ == "__main__":
    main()
