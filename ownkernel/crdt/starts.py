"""Starts: the lamport start of each change of one actor, run-length encoded.

An actor's change ``seq`` covers the lamports ``[starts[seq-1], starts[seq])``.
Someone typing alone makes changes one lamport apart, so the whole
automerge-paper history (259,778 changes) is a single run here instead of a
2 MB array, appends cost O(1), and saving needs no encoding pass.

A run is ``(first index, first lamport, delta, count)``: starts
``lam0, lam0 + delta, …`` for ``count`` changes. The runs are one list of
such tuples, not four parallel lists: a document holds one ``Starts`` per
actor (a hundred writers' replicas held 400 lists each), and a tuple of ints
is untracked by the cyclic GC after it survives one collection, so a full
collection scans one list per actor instead of four.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from operator import itemgetter

_IDX = itemgetter(0)
_LAM = itemgetter(1)


class Starts:
    __slots__ = ("_runs", "_n", "buf")

    def __init__(self, starts: Iterable[int] = ()) -> None:
        # (index of the run's first change, its lamport, delta, count)
        self._runs: list[tuple[int, int, int, int]] = []
        self._n = 0  # changes folded into runs
        # Recent starts not yet folded into runs: the hot paths (a commit per
        # keystroke, a remote change per keystroke) append here at C speed;
        # readers fold first. Callers may append to it directly.
        self.buf: list[int] = []
        for s in starts:
            self._add(s)

    def __len__(self) -> int:
        return self._n + len(self.buf)

    def append(self, lam: int) -> None:
        """Add the start of the next change (must exceed the last one)."""
        buf = self.buf
        buf.append(lam)
        if len(buf) >= 1024:
            self.fold()

    def fold(self) -> None:
        """Fold the buffered starts into runs (readers call this)."""
        buf = self.buf
        if not buf:
            return
        runs = self._runs
        n = self._n
        if n:
            # the usual case: the whole buffer continues the last run (checked in C)
            i0, l0, d0, c = runs[-1]
            last = l0 + d0 * (c - 1)
            d = buf[0] - last if c == 1 else d0
            if d > 0 and buf == list(range(last + d, last + d * (len(buf) + 1), d)):
                runs[-1] = (i0, l0, d, c + len(buf))
                self._n = n + len(buf)
                buf.clear()
                return
        for lam in buf:  # _add, inlined: this runs once per change
            if n:
                i0, l0, d0, c = runs[-1]
                d = lam - (l0 + d0 * (c - 1))
                if c == 1:
                    runs[-1] = (i0, l0, d, 2)
                    n += 1
                    continue
                if d == d0:
                    runs[-1] = (i0, l0, d0, c + 1)
                    n += 1
                    continue
            runs.append((n, lam, 1, 1))
            n += 1
        self._n = n
        buf.clear()

    def _add(self, lam: int) -> None:
        runs = self._runs
        if self._n:
            i0, l0, d0, c = runs[-1]
            d = lam - (l0 + d0 * (c - 1))
            if c == 1:
                runs[-1] = (i0, l0, d, 2)  # a run of one adopts the first delta it meets
                self._n += 1
                return
            if d == d0:
                runs[-1] = (i0, l0, d0, c + 1)
                self._n += 1
                return
        runs.append((self._n, lam, 1, 1))
        self._n += 1

    def extend_rle(self, rle: list[int]) -> None:
        """Append starts given as :func:`codec.rle_encode` form ``[s0, d, c, …]``."""
        if not rle:
            return
        self.fold()
        self._add(rle[0])
        runs = self._runs
        for i in range(1, len(rle), 2):
            d, c = rle[i], rle[i + 1]
            i0, l0, d0, cnt = runs[-1]
            if cnt == 1:
                runs[-1] = (i0, l0, d, 1 + c)
            elif d0 == d:
                runs[-1] = (i0, l0, d0, cnt + c)
            else:
                runs.append((self._n, l0 + d0 * (cnt - 1) + d, d, c))
            self._n += c

    def extend(self, starts: Iterable[int]) -> None:
        self.fold()
        for s in starts:
            self._add(s)

    def __getitem__(self, i: int) -> int:
        if self.buf:
            self.fold()
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("change index out of range")
        runs = self._runs
        i0, l0, d, _ = runs[bisect_right(runs, i, key=_IDX) - 1]
        return l0 + d * (i - i0)

    def slice(self, i: int, j: int) -> list[int]:
        return [self[k] for k in range(i, j)]

    def count_le(self, lam: int) -> int:
        """How many changes start at or before ``lam`` (``bisect_right`` semantics)."""
        if self.buf:
            self.fold()
        runs = self._runs
        r = bisect_right(runs, lam, key=_LAM) - 1
        if r < 0:
            return 0
        i0, l0, d, c = runs[r]
        return i0 + min((lam - l0) // d + 1, c)

    def __iter__(self) -> Iterator[int]:
        self.fold()
        for _, lam, d, c in self._runs:
            yield from range(lam, lam + d * c, d)

    def to_rle(self) -> list[int]:
        """``[s0, delta, count, …]``, exactly as :func:`codec.rle_encode` writes it."""
        return self.rle_range(0, len(self))

    def rle_range(self, i: int, j: int) -> list[int]:
        """:meth:`to_rle` of changes ``i..j-1`` only, in O(runs)."""
        self.fold()
        if not 0 <= i < j <= self._n:
            return []
        out = [self[i]]

        def add(d: int, c: int) -> None:
            if len(out) > 1 and out[-2] == d:
                out[-1] += c
            else:
                out.extend((d, c))

        runs = self._runs
        prev = out[0]
        k = i + 1
        while k < j:
            i0, l0, d, c = runs[bisect_right(runs, k, key=_IDX) - 1]
            v = l0 + d * (k - i0)
            add(v - prev, 1)
            prev, k = v, k + 1
            m = min(i0 + c, j) - k  # the rest of this run
            if m > 0:
                add(d, m)
                prev += d * m
                k += m
        return out
