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
from bisect import bisect_right
from collections.abc import Iterator
from operator import add, attrgetter
from typing import Any

MAX_RUNS = 64  # a block splits in two when it holds more runs than this
# Runs stop growing at this many elements: extending a run copies its
# content, so unbounded runs would make typing a long paragraph quadratic.
RUN_CAP = 512
# Up to this many blocks a lookup walks the blocks' lengths instead of using
# the tree: no index to bring up to date after a merge touched most blocks
# (a hundred writers on a small text: every local edit follows remote ones).
LINEAR_BLOCKS = 32


class Run:
    """A fragment of consecutive elements of one actor (see module docs)."""

    # n and dead first: a block scan reads only those two, which then share
    # a cache line of each Run it touches
    __slots__ = ("n", "dead", "lam", "act", "content", "olam", "oact", "blk", "nxt")

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
    """Runs in document order; ``lens[i]`` is the visible length of
    ``runs[i]`` (0 when deleted), kept in step with every change, so that
    finding a position scans a list of small ints instead of touching each
    Run (a cache miss apiece on a document that other work evicted)."""

    __slots__ = ("runs", "lens", "vis", "idx")

    def __init__(self, runs: list[Run], idx: int) -> None:
        self.runs = runs
        lens = self.lens = [0] * len(runs)
        for i, r in enumerate(runs):
            r.blk = self
            if not r.dead:
                lens[i] = r.n
        self.vis = sum(lens)
        self.idx = idx


class Blocks:
    """The runs of one sequence in blocks, found by position (see module docs);
    ``empty`` is ``""`` for text or ``[]`` for lists."""

    def __init__(self, empty: Any) -> None:
        self.empty = empty
        first = Block([], 0)
        self.blocks: list[Block] = [first]  # in document order
        # leaf slot of the positional index -> block (None: a free slot); a
        # block's ``idx`` is its slot, increasing along ``blocks`` with gaps
        self._slots: list[Block | None] = [first, None]
        self.length = 0
        self._cb = 0  # cursor: the slot of a block ...
        self._cpos = 0  # ... and the number of visible elements before it
        self._tail: Run | None = None  # run of the last local insert, for typing
        self._tail_end = -1
        self._tree: array[int] | None = None  # positional index; None: rebuild at next use
        self._size = 2  # leaves in the tree and slots (a power of two >= 2 x blocks at layout)
        self._dirty: set[Block] = set()  # blocks whose vis changed since the tree saw them

    def _set_blocks(self, blocks: list[Block]) -> None:
        """Install a freshly built block list (whole-history build, load)."""
        self.blocks = blocks or [Block([], 0)]
        self.length = sum(b.vis for b in self.blocks)
        self._tail = None
        self._dirty.clear()
        self._layout()

    def _layout(self) -> None:
        """Spread the blocks evenly over at least twice as many slots: a block
        that splits then mostly finds a free slot next to it, so a split costs
        O(log blocks) instead of renumbering every block after it. The tree is
        rebuilt at the next lookup."""
        blocks = self.blocks
        n = len(blocks)
        size = 2
        while size < 2 * n:
            size *= 2
        slots: list[Block | None] = [None] * size
        for i, b in enumerate(blocks):
            b.idx = j = i * size // n
            slots[j] = b
        self._slots, self._size = slots, size
        self._tree = None
        self._cb, self._cpos = 0, 0  # blocks[0] is always at slot 0

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
            size = self._size
            if len(dirty) * 4 > len(self.blocks):
                # many blocks changed (remote edits merged since the last lookup):
                # set their leaves, then recompute the levels above by C-level
                # maps; a Python walk up per block would cost more, and reading
                # every block's length (a rebuild) touches blocks that did not
                # change (a cache miss each when a node holds many documents)
                for b in dirty:
                    t[size + b.idx] = b.vis
                dirty.clear()
                lo, hi = size >> 1, size
                while lo:
                    t[lo:hi] = array(
                        "q", map(add, t[2 * lo : 2 * hi : 2], t[2 * lo + 1 : 2 * hi : 2])
                    )
                    lo >>= 1
                    hi >>= 1
                return t
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
        row = [0 if b is None else b.vis for b in self._slots]
        levels = [row]
        while len(row) > 1:
            row = list(map(add, row[0::2], row[1::2]))
            levels.append(row)
        # an array, not a list: its numbers sit inline, where a list's ints
        # are separate objects (a cache miss per level on a big document)
        t = array("q", [0])
        for lv in reversed(levels):
            t.extend(lv)
        self._tree = t
        self._dirty.clear()
        return t

    def _block_start(self, bi: int) -> int:
        """Number of visible elements before the block in slot ``bi``."""
        blocks = self.blocks
        if len(blocks) <= LINEAR_BLOCKS:
            s = 0
            for b in blocks:
                if b.idx >= bi:
                    break
                s += b.vis
            return s
        t = self._index()
        i = self._size + bi
        s = 0
        while i > 1:
            if i & 1:
                s += t[i - 1]
            i >>= 1
        return s

    def _block_at(self, p: int) -> tuple[int, int]:
        """Slot and start of the block holding visible element p."""
        blocks = self.blocks
        if len(blocks) <= LINEAR_BLOCKS:
            # walk from the nearer end: after a merge every block is a cache
            # miss, so this halves the mean cost of a random-position lookup
            q = p
            length = self.length
            if 2 * p < length:
                for b in blocks:
                    if q < b.vis:
                        bi, start = b.idx, p - q
                        self._cb, self._cpos = bi, start
                        return bi, start
                    q -= b.vis
            else:
                q = length - p  # element p is the q-th visible one from the end
                for b in reversed(blocks):
                    if q <= b.vis:
                        bi, start = b.idx, p - (b.vis - q)
                        self._cb, self._cpos = bi, start
                        return bi, start
                    q -= b.vis
            raise AssertionError("block visible counts are inconsistent")
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
        slots = self._slots  # first: on a loaded sequence this builds the runs
        start = self._cpos
        blk = slots[self._cb]  # the block of the previous lookup, if p is there
        if not start <= p < start + blk.vis:  # type: ignore[union-attr]
            bi, start = self._block_at(p)
            blk = slots[bi]
        p -= start
        lens = blk.lens  # (dead runs count 0: p < 0 never holds for them)
        if 2 * p < blk.vis:
            for i, n in enumerate(lens):
                if p < n:
                    self._hint = i
                    return blk.runs[i], p
                p -= n
        else:  # nearer the end: count back from there (halves the mean scan)
            q = blk.vis - p  # element p is the q-th visible one from the end
            i = len(lens)
            for n in reversed(lens):
                i -= 1
                if q <= n:
                    self._hint = i
                    return blk.runs[i], n - q
                q -= n
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
        i = self._ix(run)
        lens = blk.lens
        if 2 * i < len(lens):
            return pos + sum(lens[:i])
        return pos + blk.vis - sum(lens[i:])

    # --------------------------------------------------------------- structure
    def _extend(self, r: Run, content: Any) -> None:
        """Append visible ``content`` to live run ``r`` (ids continue r's)."""
        n = len(content)
        r.content = r.content + content
        r.n += n
        blk = r.blk
        blk.lens[self._ix(r)] += n
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
        if r.dead:
            blk.lens.insert(i, 0)
        else:
            lens = blk.lens
            lens[i - 1] = k
            lens.insert(i, right.n)
        self._hint = i
        if len(runs) > MAX_RUNS:
            self._split_block(blk)
        if self._tail is r:
            self._tail = None
        return right

    def _split_insert(self, r: Run, k: int, run: Run) -> None:
        """Split live run ``r`` before offset ``k`` (0 < k < n) and place the new
        visible ``run`` between the halves: ``_split`` + ``_insert_after`` with
        one list operation (typing at a random place lands inside a run)."""
        right = Run(r.lam + k, r.act, r.content[k:], r.lam + k - 1, r.act)
        r.content = r.content[:k]
        r.n = k
        right.nxt = r.nxt
        r.nxt = right
        blk = right.blk = run.blk = r.blk
        runs = blk.runs
        i = self._ix(r) + 1
        runs[i:i] = (run, right)
        lens = blk.lens
        lens[i - 1] = k
        lens[i:i] = (run.n, right.n)
        self._hint = i
        n = run.n
        blk.vis += n
        self._dirty.add(blk)
        self.length += n
        if self._cb > blk.idx:
            self._cpos += n
        if self._tail is r:
            self._tail = None
        if len(runs) > MAX_RUNS:
            self._split_block(blk)

    def _cut_out(self, r: Run, k: int) -> Any:
        """Delete element ``k`` (0 < k < n - 1) of live run ``r``: three
        fragments, the middle one dead, placed with one list operation.
        Returns the deleted element's content."""
        lam, act, c = r.lam, r.act, r.content
        mid = Run(lam + k, act, c[k : k + 1], lam + k - 1, act, True)
        right = Run(lam + k + 1, act, c[k + 1 :], lam + k, act)
        r.content = c[:k]
        r.n = k
        right.nxt = r.nxt
        mid.nxt = right
        r.nxt = mid
        blk = mid.blk = right.blk = r.blk
        runs = blk.runs
        i = self._ix(r) + 1
        runs[i:i] = (mid, right)
        lens = blk.lens
        lens[i - 1] = k
        lens[i:i] = (0, right.n)
        self._hint = i
        blk.vis -= 1
        self._dirty.add(blk)
        self.length -= 1
        if self._cb > blk.idx:
            self._cpos -= 1
        if self._tail is r:
            self._tail = None
        if len(runs) > MAX_RUNS:
            self._split_block(blk)
        return mid.content

    def _split_block(self, blk: Block) -> None:
        half = len(blk.runs) // 2
        if self._hint >= half:
            self._hint -= half
        moved = blk.runs[half:]
        del blk.runs[half:]
        del blk.lens[half:]
        nb = Block(moved, 0)
        blk.vis -= nb.vis
        blocks = self.blocks
        blocks.insert(bisect_right(blocks, blk.idx, key=_idx), nb)
        # a slot for nb right after blk: free, or freed by moving the few
        # blocks up to the nearest free slot one to the right
        slots = self._slots
        s = blk.idx + 1
        e = s
        end = min(self._size, s + 16)
        while e < end and slots[e] is not None:
            e += 1
        if e == end:
            self._layout()  # crowded here: spread everything out again
            return
        if e > s:
            slots[s + 1 : e + 1] = slots[s:e]
            for b in slots[s + 1 : e + 1]:  # (islice would skip the s slots before)
                b.idx += 1  # type: ignore[union-attr]
            t = self._tree
            if t is not None:
                # the leaves move with their blocks; their ancestors are
                # recomputed over that range only, by C-level slices
                size = self._size
                lo, hi = size + s, size + e
                t[lo + 1 : hi + 1] = t[lo:hi]
                t[lo] = 0
                while lo > 1:
                    lo >>= 1
                    hi >>= 1
                    t[lo : hi + 1] = array(
                        "q", map(add, t[2 * lo : 2 * hi + 2 : 2], t[2 * lo + 1 : 2 * hi + 2 : 2])
                    )
            if s <= self._cb < e:
                self._cb += 1
        slots[s] = nb
        nb.idx = s
        # nb's leaf holds 0 and blk's its old length: both are folded in at
        # the next lookup like any edit
        dirty = self._dirty
        dirty.add(blk)
        dirty.add(nb)

    def _insert_after(self, prev: Run | None, run: Run) -> None:
        """Place ``run`` right after ``prev`` (None: at the very start)."""
        v = 0 if run.dead else run.n
        if prev is None:
            blk = self.blocks[0]
            blk.runs.insert(0, run)
            blk.lens.insert(0, v)
            self._hint = 0
            if self._cb > 0:
                self._cpos += v
        else:
            blk = prev.blk
            runs = blk.runs
            i = self._ix(prev) + 1
            runs.insert(i, run)
            blk.lens.insert(i, v)
            self._hint = i
            if self._cb > blk.idx:
                self._cpos += v
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
        slots = self._slots
        i = r.blk.idx + 1
        n = len(slots)
        while i < n:  # gaps between blocks are short
            b = slots[i]
            if b is not None and b.runs:
                return b.runs[0]
            i += 1
        return None

    def _first_run(self) -> Run | None:
        for b in self.blocks:
            if b.runs:
                return b.runs[0]
        return None


_idx = attrgetter("idx")


def check_lens(seq: Blocks) -> None:
    """Assert that every block's ``lens`` and ``vis`` match its runs (tests)."""
    for b in seq.blocks:
        want = [0 if r.dead else r.n for r in b.runs]
        assert b.lens == want, (b.idx, b.lens, want)
        assert b.vis == sum(want), (b.idx, b.vis, sum(want))
        assert all(r.blk is b for r in b.runs)
