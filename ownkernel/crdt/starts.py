"""Starts: the lamport start of each change of one actor, run-length encoded.

An actor's change ``seq`` covers the lamports ``[starts[seq-1], starts[seq])``.
Someone typing alone makes changes one lamport apart, so the whole
automerge-paper history (259,778 changes) is a single run here instead of a
2 MB array, appends cost O(1), and saving needs no encoding pass.

A run is ``(first index, first lamport, delta, count)``: starts
``lam0, lam0 + delta, …`` for ``count`` changes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator


class Starts:
    __slots__ = ("_idx", "_lam", "_delta", "_count", "_n", "buf")

    def __init__(self, starts: Iterable[int] = ()) -> None:
        self._idx: list[int] = []  # index of each run's first change
        self._lam: list[int] = []  # its lamport
        self._delta: list[int] = []
        self._count: list[int] = []
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
        idx, lams, deltas, counts = self._idx, self._lam, self._delta, self._count
        n = self._n
        if n:
            # the usual case: the whole buffer continues the last run (checked in C)
            c = counts[-1]
            last = lams[-1] + deltas[-1] * (c - 1)
            d = buf[0] - last if c == 1 else deltas[-1]
            if d > 0 and buf == list(range(last + d, last + d * (len(buf) + 1), d)):
                deltas[-1] = d
                counts[-1] = c + len(buf)
                self._n = n + len(buf)
                buf.clear()
                return
        for lam in buf:  # _add, inlined: this runs once per change
            if n:
                c = counts[-1]
                d = lam - (lams[-1] + deltas[-1] * (c - 1))
                if c == 1:
                    deltas[-1] = d
                    counts[-1] = 2
                    n += 1
                    continue
                if d == deltas[-1]:
                    counts[-1] = c + 1
                    n += 1
                    continue
            idx.append(n)
            lams.append(lam)
            deltas.append(1)
            counts.append(1)
            n += 1
        self._n = n
        buf.clear()

    def _add(self, lam: int) -> None:
        if self._n:
            c = self._count[-1]
            last = self._lam[-1] + self._delta[-1] * (c - 1)
            d = lam - last
            if c == 1:
                self._delta[-1] = d  # a run of one adopts the first delta it meets
                self._count[-1] = 2
                self._n += 1
                return
            if d == self._delta[-1]:
                self._count[-1] = c + 1
                self._n += 1
                return
        self._idx.append(self._n)
        self._lam.append(lam)
        self._delta.append(1)
        self._count.append(1)
        self._n += 1

    def extend_rle(self, rle: list[int]) -> None:
        """Append starts given as :func:`codec.rle_encode` form ``[s0, d, c, …]``."""
        if not rle:
            return
        self.fold()
        self._add(rle[0])
        for i in range(1, len(rle), 2):
            d, c = rle[i], rle[i + 1]
            cnt = self._count[-1]
            if cnt == 1:
                self._delta[-1] = d
                self._count[-1] = 1 + c
            elif self._delta[-1] == d:
                self._count[-1] = cnt + c
            else:
                self._idx.append(self._n)
                self._lam.append(self._lam[-1] + self._delta[-1] * (cnt - 1) + d)
                self._delta.append(d)
                self._count.append(c)
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
        r = bisect_right(self._idx, i) - 1
        return self._lam[r] + self._delta[r] * (i - self._idx[r])

    def slice(self, i: int, j: int) -> list[int]:
        return [self[k] for k in range(i, j)]

    def count_le(self, lam: int) -> int:
        """How many changes start at or before ``lam`` (``bisect_right`` semantics)."""
        if self.buf:
            self.fold()
        r = bisect_right(self._lam, lam) - 1
        if r < 0:
            return 0
        k = (lam - self._lam[r]) // self._delta[r] + 1
        return self._idx[r] + min(k, self._count[r])

    def __iter__(self) -> Iterator[int]:
        self.fold()
        for lam, d, c in zip(self._lam, self._delta, self._count):
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

        prev = out[0]
        k = i + 1
        while k < j:
            r = bisect_right(self._idx, k) - 1
            v = self._lam[r] + self._delta[r] * (k - self._idx[r])
            add(v - prev, 1)
            prev, k = v, k + 1
            m = min(self._idx[r] + self._count[r], j) - k  # the rest of this run
            if m > 0:
                add(self._delta[r], m)
                prev += self._delta[r] * m
                k += m
        return out
