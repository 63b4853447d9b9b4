"""Other authors' live changes held in memory briefly before they are written.

A node that reads along while someone types receives one change per keystroke.
Stored at once, each is its own SQLite transaction (BEGIN, two inserts, COMMIT
and its WAL pages): about a fifth of a reader's CPU per keystroke in a mesh of
eight (BENCHMARKS.md, session 9). ``Store.append(..., defer=True)`` instead
holds such rows here and writes them together, in one transaction:

- when any other store operation runs, read or write (``WritesFirst``, the
  store's lock, writes them as it is entered). So every reader of the store sees
  exactly what it would have seen had they been written at once, and every write
  lands after them: a snapshot never covers changes that are not stored, a local
  change never reaches the disk before the changes it was made on top of;
- at the latest ``HOLD_SECONDS`` after the first of them (the network's timer
  round calls ``Store.write_deferred``), or once ``HOLD_ROWS`` rows or
  ``HOLD_BYTES`` bytes are held (a writer sending big changes fast holds no
  more memory than that here);
- at close.

What it costs: a process killed within that second loses the held rows (they
were never acknowledged: their authors and our peers still hold them, and
anti-entropy fetches them again, as after a power cut in ``batch(durable=False)``).
Only other authors' changes are ever held (the node's own are fsynced before
they are sent: a lost own change that peers hold would fork its chain).

If writing them fails (disk full), or the batch they were written in is undone,
they are dropped and their docs are named in ``Store.lost``: the replica reloads
those docs so that memory equals the disk again (node/replica.py), and
anti-entropy fetches the changes later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ownkernel.store.rows import ChangeRow, Head

__all__ = ["HOLD_BYTES", "HOLD_ROWS", "HOLD_SECONDS", "Deferred", "WritesFirst"]

HOLD_SECONDS = 1.0
HOLD_ROWS = 256
HOLD_BYTES = 1 << 20

# doc id -> (rows in arrival order, newest head per author)
Held = dict[bytes, tuple[list[ChangeRow], dict[bytes, Head]]]


class Deferred:
    """The held rows of one store (see the module docstring). Not thread-safe: the
    store calls it under its lock."""

    __slots__ = ("bytes", "docs", "rows", "since")

    def __init__(self) -> None:
        self.docs: Held = {}
        self.rows = 0
        self.bytes = 0
        self.since = 0.0  # monotonic time the oldest held row arrived

    def __bool__(self) -> bool:
        return self.rows > 0

    def add(self, doc_id: bytes, rows: Sequence[ChangeRow], heads: dict[bytes, Head],
            now: float) -> bool:
        """Hold ``rows`` (and ``heads``, newer than any held for the same authors);
        returns True when what is held should now be written."""
        if not self.rows:
            self.since = now
        held = self.docs.get(doc_id)
        if held is None:
            self.docs[doc_id] = (list(rows), dict(heads))
        else:
            held[0].extend(rows)
            held[1].update(heads)
        self.rows += len(rows)
        self.bytes += sum(len(r.blob) for r in rows)
        return (self.rows >= HOLD_ROWS or self.bytes >= HOLD_BYTES
                or now - self.since >= HOLD_SECONDS)

    def due(self, now: float) -> bool:
        return self.rows > 0 and now - self.since >= HOLD_SECONDS

    def take(self) -> Held:
        """Everything held, leaving nothing."""
        docs, self.docs, self.rows, self.bytes = self.docs, {}, 0, 0
        return docs


class WritesFirst:
    """The store's lock (re-entrant). Entering it first writes what is held
    (``write``), so that nothing that runs under it can tell held rows from stored
    ones. If that write fails, entering fails with its error and the lock is not
    held. ``mutex`` is the bare lock, for the few places that must not write."""

    __slots__ = ("deferred", "mutex", "write")

    def __init__(self, deferred: Deferred, write: Callable[[], Any]) -> None:
        self.mutex = threading.RLock()
        self.deferred = deferred
        self.write = write

    def __enter__(self) -> WritesFirst:
        self.mutex.acquire()
        if self.deferred.rows:
            try:
                self.write()
            except BaseException:
                self.mutex.release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.mutex.release()
