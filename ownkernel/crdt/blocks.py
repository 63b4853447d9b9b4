"""Runs in blocks with a positional index: the layout under :mod:`.rga`.

This module knows positions, not ids or the RGA order rule: it finds the
run holding visible element ``p``, the position of a run, and keeps the
structure (splitting runs and blocks, inserting runs) consistent. The id
index and integration live in :mod:`.rga`.

* **Runs**: consecutive elements typed by one actor with consecutive
  lamports, each after the previous one, are one :class:`Run` holding a
  ``str`` (Text) or ``list`` (List) slice. A run's first element carries an
  explicit origin; the others' origin is implicitly the element before.
* **Blocks** (the sortedcontainers layout): runs live in a list of small
  lists, each with its visible length.
* **Positional index**: a segment tree over the blocks' visible lengths
  (a flat ``array``, root at 1, leaf of block ``i`` at ``size + i``), so
  finding position ``p`` or the position of a block is O(log blocks), then
  a scan of one block's runs from its nearer end. It is synced lazily: edits
  only note the blocks whose length changed (``_dirty``, one set insert),
  the next lookup folds those in; a new block (a split) shifts the leaves
  after it with C-level slices (the tree is rebuilt when it needs more
  leaves).
* **Cursor cache**: the block of the last lookup and the number of
  visible elements before it; typing near the previous edit costs O(1)
  without touching the tree.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from itertools import islice
from operator import add
from typing import Any

MAX_RUNS = 64  # a block splits in two when it holds more runs than this
# Runs stop growing at this many elements: extending a run copies its
# content, so unbounded runs would make typing a long paragraph quadratic.
RUN_CAP = 512


class Run:
    """A fragment of consecutive elements of one actor (see module docs)."""

    __slots__ = ("lam", "act", "n", "content", "dead", "olam", "oact", "blk", "nxt")

    def __init__(
        self, lam: int, act: int, content: Any, olam: int, oact: int, dead: bool = False
    ) -> None:
        self.lam = lam
        self.act = act
        self.n = len(content)
        self.content = content
        self.dead = dead
        self.olam = olam  # origin of the first element; (0, -1) is the head
        self.oact = oact
        self.blk: Block = None  # type: ignore[assignment]
        self.nxt: Run | None = None  # next fragment of the same entry, in lamport order

    def __repr__(self) -> str:
        state = "†" if self.dead else ""
        return f"Run({self.lam}@{self.act}{state} {self.content!r} after {self.olam}@{self.oact})"


class Block:
    __slots__ = ("runs", "vis", "idx")

    def __init__(self, runs: list[Run], idx: int) -> None:
        self.runs = runs
        self.vis = 0
        for r in runs:
            r.blk = self
            if not r.dead:
                self.vis += r.n
        self.idx = idx


class Blocks:
    """The runs of one sequence in blocks, found by position (see module docs);
    ``empty`` is ``""`` for text or ``[]`` for lists."""

    def __init__(self, empty: Any) -> None:
        self.empty = empty
        self.blocks: list[Block] = [Block([], 0)]
        self.length = 0
        self._cb = 0  # cursor: index of a block ...
        self._cpos = 0  # ... and the number of visible elements before it
        self._tail: Run | None = None  # run of the last local insert, for typing
        self._tail_end = -1
        self._tree: array[int] | None = None  # positional index; None: rebuild at next use
        self._size = 1  # leaves in the tree (a power of two >= number of blocks)
        self._dirty: set[Block] = set()  # blocks whose vis changed since the tree saw them

    def _set_blocks(self, blocks: list[Block]) -> None:
        """Install a freshly built block list (whole-history build, load)."""
        self.blocks = blocks or [Block([], 0)]
        self.length = sum(b.vis for b in self.blocks)
        self._cb, self._cpos, self._tail = 0, 0, None
        self._tree = None
        self._dirty.clear()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self.length

    def runs(self) -> Iterator[Run]:
        for b in self.blocks:
            yield from b.runs

    def value(self) -> Any:
        lazy = self.__dict__.get("_lazy")
        if lazy is not None:  # loaded, not built yet
            return lazy.value()
        if isinstance(self.empty, str):
            return "".join([r.content for b in self.blocks for r in b.runs if not r.dead])
        out: list[Any] = []
        for b in self.blocks:
            for r in b.runs:
                if not r.dead:
                    out.extend(r.content)
        return out

    # ------------------------------------------------------------ positioning
    def _index(self) -> array[int]:
        """The positional index, brought up to date."""
        t = self._tree
        if t is None:
            return self._build_index()
        dirty = self._dirty
        if dirty:
            if len(dirty) * 4 > len(self.blocks):
                # many blocks changed (remote edits merged since the last lookup):
                # one rebuild by C-level maps beats a Python walk up per block
                return self._build_index()
            size = self._size
            for b in dirty:
                i = size + b.idx
                d = b.vis - t[i]
                if d:
                    while i:
                        t[i] += d
                        i >>= 1
            dirty.clear()
        return t

    def _build_index(self) -> array[int]:
        blocks = self.blocks
        size = 1
        while size < len(blocks):
            size *= 2
        row = [b.vis for b in blocks]
        row.extend([0] * (size - len(row)))
        levels = [row]
        while len(row) > 1:
            row = list(map(add, row[0::2], row[1::2]))
            levels.append(row)
        # an array, not a list: its numbers sit inline, where a list's ints
        # are separate objects (a cache miss per level on a big document)
        t = array("q", [0])
        for lv in reversed(levels):
            t.extend(lv)
        self._tree, self._size = t, size
        self._dirty.clear()
        return t

    def _index_insert(self, blk: Block, nb: Block) -> None:
        """Make room in the index for ``nb``, just split off ``blk``: shift the
        leaves after it and recompute their ancestors, all by C-level slices."""
        t = self._tree
        size = self._size
        n = len(self.blocks)
        if t is None or n > size:
            self._tree = None  # no spare leaf: rebuilt (twice as wide) at the next lookup
            return
        lo = size + blk.idx
        hi = size + n - 1  # last leaf in use
        t[lo + 2 : hi + 1] = t[lo + 1 : hi]
        t[lo] = blk.vis
        t[lo + 1] = nb.vis
        while lo > 1:
            lo >>= 1
            hi >>= 1
            t[lo : hi + 1] = array(
                "q", map(add, t[2 * lo : 2 * hi + 2 : 2], t[2 * lo + 1 : 2 * hi + 2 : 2])
            )

    def _block_start(self, bi: int) -> int:
        """Number of visible elements before block ``bi``."""
        t = self._index()
        i = self._size + bi
        s = 0
        while i > 1:
            if i & 1:
                s += t[i - 1]
            i >>= 1
        return s

    def _block_at(self, p: int) -> tuple[int, int]:
        """Block index and its start for the block holding visible element p."""
        blocks = self.blocks
        bi, start = self._cb, self._cpos
        if bi < len(blocks):
            # near the previous lookup (typing, backspacing): walk a few blocks
            steps = 3
            while p < start and steps and bi:
                bi -= 1
                start -= blocks[bi].vis
                steps -= 1
            while steps and bi < len(blocks) and p >= start + blocks[bi].vis:
                start += blocks[bi].vis
                bi += 1
                steps -= 1
            if bi < len(blocks) and start <= p < start + blocks[bi].vis:
                self._cb, self._cpos = bi, start
                return bi, start
        t = self._tree
        if t is None or self._dirty:
            t = self._index()
        size = self._size
        i = 1
        q = p
        while i < size:
            i <<= 1
            left = t[i]
            if q >= left:
                q -= left
                i += 1
        bi, start = i - size, p - q
        self._cb, self._cpos = bi, start
        return bi, start

    def _find(self, p: int) -> tuple[Run, int]:
        """The run holding visible element ``p`` and the offset in it."""
        if not 0 <= p < self.length:
            raise IndexError(f"position {p} out of range for length {self.length}")
        bi, start = self._cb, self._cpos
        blocks = self.blocks
        if bi < len(blocks) and start <= p < start + blocks[bi].vis:
            blk = blocks[bi]  # the block of the previous lookup
        else:
            bi, start = self._block_at(p)
            blk = blocks[bi]
        p -= start
        runs = blk.runs
        if 2 * p < blk.vis:
            for i, r in enumerate(runs):
                if not r.dead:
                    if p < r.n:
                        self._hint = i
                        return r, p
                    p -= r.n
        else:  # nearer the end: count back from there (halves the mean scan)
            q = blk.vis - p  # element p is the q-th visible one from the end
            i = len(runs)
            for r in reversed(runs):
                i -= 1
                if not r.dead:
                    if q <= r.n:
                        self._hint = i
                        return r, r.n - q
                    q -= r.n
        raise AssertionError("block visible count is inconsistent")

    _hint = 0  # index in its block of the run last found or placed (checked before use)

    def _ix(self, r: Run) -> int:
        """Index of ``r`` in its block: the hint when it is right, else a search
        (list.index touches every run before it, a cache miss each)."""
        runs = r.blk.runs
        i = self._hint
        if i < len(runs):
            if runs[i] is r:
                return i
            if i and runs[i - 1] is r:  # the hint is the right part of r's split
                return i - 1
        return runs.index(r)

    def _pos_of_run(self, run: Run) -> int:
        blk = run.blk
        pos = self._block_start(blk.idx)
        runs = blk.runs
        i = self._ix(run)
        if 2 * i < len(runs):
            for r in islice(runs, i):
                if not r.dead:
                    pos += r.n
            return pos
        pos += blk.vis
        for r in islice(runs, i, None):
            if not r.dead:
                pos -= r.n
        return pos

    # --------------------------------------------------------------- structure
    def _extend(self, r: Run, content: Any) -> None:
        """Append visible ``content`` to live run ``r`` (ids continue r's)."""
        n = len(content)
        r.content = r.content + content
        r.n += n
        blk = r.blk
        blk.vis += n
        self._dirty.add(blk)
        self.length += n
        if self._cb > blk.idx:
            self._cpos += n

    def _split(self, r: Run, k: int) -> Run:
        """Split ``r`` before offset ``k`` (0 < k < n); returns the right part."""
        right = Run(r.lam + k, r.act, r.content[k:], r.lam + k - 1, r.act, r.dead)
        r.content = r.content[:k]
        r.n = k
        right.nxt = r.nxt
        r.nxt = right
        blk = right.blk = r.blk
        runs = blk.runs
        i = self._ix(r) + 1
        runs.insert(i, right)
        self._hint = i
        if len(runs) > MAX_RUNS:
            self._split_block(blk)
        if self._tail is r:
            self._tail = None
        return right

    def _split_block(self, blk: Block) -> None:
        half = len(blk.runs) // 2
        if self._hint >= half:
            self._hint -= half
        moved = blk.runs[half:]
        del blk.runs[half:]
        nb = Block(moved, blk.idx + 1)
        blk.vis -= nb.vis
        blocks = self.blocks
        blocks.insert(blk.idx + 1, nb)
        for i, b in enumerate(islice(blocks, blk.idx + 2, None), blk.idx + 2):
            b.idx = i
        self._index_insert(blk, nb)
        # the cursor's block start is still right if it pointed at or before blk
        if self._cb > blk.idx:
            self._cb, self._cpos = 0, 0

    def _insert_after(self, prev: Run | None, run: Run) -> None:
        """Place ``run`` right after ``prev`` (None: at the very start)."""
        if prev is None:
            blk = self.blocks[0]
            blk.runs.insert(0, run)
            if self._cb > 0:
                self._cpos += run.n
        else:
            blk = prev.blk
            runs = blk.runs
            i = self._ix(prev) + 1
            runs.insert(i, run)
            self._hint = i
            if self._cb > blk.idx:
                self._cpos += 0 if run.dead else run.n
        run.blk = blk
        if not run.dead:
            blk.vis += run.n
            self._dirty.add(blk)
            self.length += run.n
        if len(blk.runs) > MAX_RUNS:
            self._split_block(blk)

    def _next_run(self, r: Run) -> Run | None:
        runs = r.blk.runs
        i = self._ix(r) + 1
        if i < len(runs):
            return runs[i]
        bi = r.blk.idx + 1
        while bi < len(self.blocks):
            if self.blocks[bi].runs:
                return self.blocks[bi].runs[0]
            bi += 1
        return None

    def _first_run(self) -> Run | None:
        for b in self.blocks:
            if b.runs:
                return b.runs[0]
        return None
