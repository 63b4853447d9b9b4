"""The replicated growable array (RGA) behind Text and List.

Order rule (RGA): every element has an id ``(lamport, actor)`` and an
*origin*, the element it was typed after. The document order is the
depth-first walk of the origin tree with siblings in *descending* id order;
integrating one element means: start right after its origin, skip every
element whose id is greater, insert. Both the one-at-a-time path
(:meth:`Sequence.integrate`) and the whole-history path (:func:`.batch.build`)
compute that same order.

Data layout (why it is fast in pure Python):

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
* **Entries**: per actor, the start lamports of the runs as first created
  (append-only: an actor's lamports only grow), each pointing at its first
  fragment; splitting a run links the fragments (``nxt``). Finding an id is
  one ``bisect`` plus a short walk; an entry split into many fragments (a
  paste edited all over) gets a snapshot of its fragment starts to bisect
  (see :meth:`Sequence.find_id`). Local typing never touches this index
  except to append.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator
from itertools import islice
from operator import add
from typing import Any

HEAD = (0, -1)
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


class Sequence:
    """An RGA of elements; ``empty`` is ``""`` for text or ``[]`` for lists.

    ``actors`` is the document's actor table (index -> bytes), shared and
    only ever appended to; runs store actor indexes, comparisons use bytes.
    """

    def __init__(self, actors: list[bytes], empty: Any) -> None:
        self.actors = actors
        self.empty = empty
        self.blocks: list[Block] = [Block([], 0)]
        self.length = 0
        self.entries: dict[int, tuple[list[int], list[Run]]] = {}
        self._cb = 0  # cursor: index of a block ...
        self._cpos = 0  # ... and the number of visible elements before it
        self._tail: Run | None = None  # run of the last local insert, for typing
        self._rtail: Run | None = None  # run of the last remote insert, for replay
        self._rtail_at = 0  # its index in its block when last seen (checked before use)
        self._tail_end = -1
        self._tree: array[int] | None = None  # positional index; None: rebuild at next use
        self._size = 1  # leaves in the tree (a power of two >= number of blocks)
        self._dirty: set[Block] = set()  # blocks whose vis changed since the tree saw them
        # fragment starts of entries with long chains, by first fragment (see find_id)
        self._frags: dict[Run, tuple[list[int], list[Run]]] = {}

    def _defer(self, lazy: Any, length: int) -> None:
        """Install a saved sequence without building it (load): ``lazy.value()``
        gives the visible content, ``lazy.build(self)`` installs the runs (via
        ``_set_blocks`` and ``entries``). The first use of ``blocks`` or
        ``entries`` builds it (``__getattr__`` runs only for attributes not set,
        so a built sequence pays nothing); reading the text does not."""
        del self.blocks, self.entries
        self._lazy = lazy
        self.length = length

    def __getattr__(self, name: str) -> Any:
        if name in ("blocks", "entries"):
            lazy = self.__dict__.get("_lazy")
            if lazy is not None:
                lazy.build(self)  # a DecodeError leaves it unbuilt: raised again next time
                del self.__dict__["_lazy"]
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _set_blocks(self, blocks: list[Block]) -> None:
        """Install a freshly built block list (whole-history build, load)."""
        self.blocks = blocks or [Block([], 0)]
        self.length = sum(b.vis for b in self.blocks)
        self._cb, self._cpos, self._tail, self._rtail = 0, 0, None, None
        self._tree = None
        self._dirty.clear()
        self._frags.clear()

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

    def element_id(self, pos: int) -> tuple[int, int]:
        """(lamport, actor index) of the visible element at ``pos``."""
        r, k = self._find(pos)
        return r.lam + k, r.act

    def position_of_id(self, lam: int, act: int) -> int | None:
        """Visible index of element ``(lam, act)``, or None when deleted/unknown."""
        r = self.find_id(lam, act)
        if r is None or r.dead:
            return None
        return self._pos_of_run(r) + (lam - r.lam)

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

    def _add_entry(self, run: Run) -> None:
        ent = self.entries.get(run.act)
        if ent is None:
            self.entries[run.act] = ([run.lam], [run])
            return
        starts, firsts = ent
        if not starts or run.lam > starts[-1]:
            starts.append(run.lam)
            firsts.append(run)
        else:  # out of order (only when integrating unusual histories): keep sorted
            i = bisect_right(starts, run.lam)
            starts.insert(i, run.lam)
            firsts.insert(i, run)

    def find_id(self, lam: int, act: int) -> Run | None:
        """The fragment holding element ``(lam, act)``, or None if unknown."""
        ent = self.entries.get(act)
        if ent is None:
            return None
        starts, firsts = ent
        i = bisect_right(starts, lam) - 1
        if i < 0:
            return None
        r: Run | None = firsts[i]
        steps = 0
        while r is not None and lam >= r.lam + r.n:
            r = r.nxt
            steps += 1
            if steps == 16:  # a long chain (text pasted once, edited all over)
                r = self._find_fragment(firsts[i], lam)
                break
        if r is None or lam < r.lam:
            return None
        return r

    def _find_fragment(self, first: Run, lam: int) -> Run | None:
        """find_id for an entry split into many fragments: bisect a snapshot of
        its fragment starts, then walk a few steps. The snapshot may be stale:
        later splits are walked over, fragments merged away have ``n == 0``
        (see _merge_dead); when the walk gets long it is taken again."""
        fx = self._frags.get(first)
        if fx is not None:
            fs, fr = fx
            j = bisect_right(fs, lam) - 1
            while j > 0 and not fr[j].n:
                j -= 1
            c: Run | None = fr[j]
            for _ in range(32):
                if c is None or lam < c.lam + c.n:
                    return c
                c = c.nxt
        fs, fr = [], []
        c = first
        while c is not None:
            fs.append(c.lam)
            fr.append(c)
            c = c.nxt
        self._frags[first] = (fs, fr)
        c = fr[bisect_right(fs, lam) - 1]
        return c if lam < c.lam + c.n else None

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

    # ---------------------------------------------------------------- local ops
    def local_insert(self, pos: int, content: Any, lam: int, act: int) -> tuple[int, int]:
        """Insert ``content`` at visible ``pos`` with ids ``lam, lam+1, ...``.

        Returns the origin id ``(lamport, actor)`` of the first new element.
        """
        n = len(content)
        tail = self._tail
        if (
            tail is not None
            and pos == self._tail_end
            and tail.lam + tail.n == lam
            and tail.n + n <= RUN_CAP
        ):
            # typing: extend the run we just typed into
            self._extend(tail, content)
            self._tail_end += n
            return (lam - 1, act)
        if not 0 <= pos <= self.length:
            raise IndexError(f"insert position {pos} out of range for length {self.length}")
        if pos == 0:
            prev = None
            origin = HEAD
        else:
            prev, k = self._find(pos - 1)
            if k < prev.n - 1:
                self._split(prev, k + 1)
            origin = (prev.lam + k, prev.act)
            if (
                prev.act == act
                and prev.lam + prev.n == lam
                and prev.nxt is None
                and prev.n + n <= RUN_CAP
            ):
                self._extend(prev, content)
                self._tail, self._tail_end = prev, pos + n
                return origin
        run = Run(lam, act, content, origin[0], origin[1])
        self._insert_after(prev, run)
        self._add_entry(run)
        self._tail, self._tail_end = run, pos + n
        return origin

    def local_delete(self, pos: int, n: int) -> tuple[list[tuple[int, int, int]], Any]:
        """Delete ``n`` visible elements from ``pos``.

        Returns the deleted id ranges ``[(actor, lamport, length)]`` in
        document order (adjacent ascending ranges merged) and the removed
        content.
        """
        if n <= 0:
            return [], self.empty
        if pos < 0 or pos + n > self.length:
            raise IndexError(f"delete range {pos}..{pos + n} out of range for length {self.length}")
        self._tail = None
        r, k = self._find(pos)
        if n == 1 and 0 < k == r.n - 1 and self._shift_last_into_dead(r):
            return [(r.act, r.lam + r.n, 1)], r.nxt.content[:1]  # type: ignore[union-attr]
        if k:
            r = self._split(r, k)
        ranges: list[tuple[int, int, int]] = []
        removed = []
        left = n
        while left:
            if r.dead:
                r = self._next_run(r)  # type: ignore[assignment]
                continue
            if r.n > left:
                self._split(r, left)
            m = r.n
            r.dead = True
            r.blk.vis -= m
            self._dirty.add(r.blk)
            self.length -= m
            if self._cb > r.blk.idx:
                self._cpos -= m
            removed.append(r.content)
            if ranges and ranges[-1][0] == r.act and ranges[-1][1] + ranges[-1][2] == r.lam:
                a, lo, ln = ranges[-1]
                ranges[-1] = (a, lo, ln + m)
            else:
                ranges.append((r.act, r.lam, m))
            left -= m
            r = self._merge_dead(r)
            if left:
                r = self._next_run(r)  # type: ignore[assignment]
        if isinstance(self.empty, str):
            return ranges, "".join(removed)
        out: list[Any] = []
        for c in removed:
            out.extend(c)
        return ranges, out

    def _shift_last_into_dead(self, r: Run) -> bool:
        """Delete the last element of live run ``r`` by growing the deleted
        fragment right after it (the previous backspace's), when there is
        one: the common backspace needs no split and no new run."""
        nx = r.nxt
        if nx is None or not nx.dead or nx.n >= RUN_CAP:
            return False
        runs = r.blk.runs
        i = self._ix(r) + 1
        if i >= len(runs) or runs[i] is not nx:
            return False
        k = r.n - 1
        ch = r.content[k:]
        r.content = r.content[:k]
        r.n = k
        nx.lam -= 1
        nx.olam = nx.lam - 1
        nx.content = ch + nx.content
        nx.n += 1
        blk = r.blk
        blk.vis -= 1
        self._dirty.add(blk)
        self.length -= 1
        if self._cb > blk.idx:
            self._cpos -= 1
        if self._rtail is r:
            self._rtail = None
        return True

    def _merge_dead(self, r: Run) -> Run:
        """Fuse a deleted fragment with deleted neighbours of the same entry;
        returns the run that now holds r's elements."""
        runs = r.blk.runs
        i = self._ix(r)
        if i + 1 < len(runs):
            nx = runs[i + 1]
            if nx.dead and r.nxt is nx and r.n + nx.n <= RUN_CAP:
                r.content = r.content + nx.content
                r.n += nx.n
                r.nxt = nx.nxt
                nx.n = 0  # merged away: a stale fragment snapshot must not use it
                del runs[i + 1]
        if i > 0:
            pv = runs[i - 1]
            if pv.dead and pv.nxt is r and pv.n + r.n <= RUN_CAP:
                pv.content = pv.content + r.content
                pv.n += r.n
                pv.nxt = r.nxt
                r.n = 0
                del runs[i]
                return pv
        return r

    # --------------------------------------------------------------- remote ops
    def integrate(
        self, lam: int, act: int, olam: int, oact: int, content: Any
    ) -> tuple[int, int] | None:
        """Integrate a remote insert; returns (position, length) when visible
        positions are wanted by :attr:`want_positions`, else None."""
        self._tail = None
        actors = self.actors
        r = self._rtail
        if (
            r is not None
            and olam == r.lam + r.n - 1
            and lam == olam + 1
            and oact == act == r.act
            and r.nxt is None
            and not r.dead
            and r.n + len(content) <= RUN_CAP
        ):
            # a remote typist continuing the run we integrated last (inlined:
            # this is the whole cost of replaying someone's typing)
            blk = r.blk
            runs = blk.runs
            i = self._rtail_at
            if i >= len(runs) or runs[i] is not r:  # moved since: look it up again
                i = self._rtail_at = runs.index(r)
            i += 1
            nxt = runs[i] if i < len(runs) else self._next_run(r)
            if nxt is None or nxt.lam < lam or (nxt.lam == lam and actors[nxt.act] < actors[act]):
                n = len(content)
                r.content = r.content + content
                r.n += n
                blk.vis += n
                self._dirty.add(blk)
                self.length += n
                if self._cb > blk.idx:
                    self._cpos += n
                return (self._pos_of_run(r) + r.n - n, n) if self.want_positions else None
        key = (lam, actors[act])
        if oact < 0:
            prev = None
            nxt = self._first_run()
        else:
            prev = self.find_id(olam, oact)
            if prev is None:
                raise KeyError((olam, oact))
            k = olam - prev.lam
            if k < prev.n - 1:
                self._split(prev, k + 1)
            nxt = self._next_run(prev)
            if (
                prev.act == act
                and prev.lam + prev.n == lam
                and prev.nxt is None
                and not prev.dead
                and prev.n + len(content) <= RUN_CAP
                and (nxt is None or (nxt.lam, actors[nxt.act]) < key)
            ):
                self._extend(prev, content)
                self._rtail = prev
                n = len(content)
                return (self._pos_of_run(prev) + prev.n - n, n) if self.want_positions else None
        while nxt is not None and (nxt.lam, actors[nxt.act]) > key:
            prev = nxt
            nxt = self._next_run(nxt)
        run = Run(lam, act, content, olam, oact)
        self._insert_after(prev, run)
        self._add_entry(run)
        self._rtail = run
        return (self._pos_of_run(run), run.n) if self.want_positions else None

    want_positions = False

    def remote_delete(self, act: int, lam: int, n: int) -> list[tuple[int, int]]:
        """Mark elements ``(lam .. lam+n-1, act)`` deleted.

        Returns visible ``(position, count)`` spans removed when
        :attr:`want_positions` is set (positions after earlier spans'
        removal), else an empty list. Unknown ids raise KeyError.
        """
        self._tail = None
        spans: list[tuple[int, int]] = []
        found = self.find_id(lam, act)  # reused by the first step below
        if (
            n == 1
            and found is not None
            and not self.want_positions
            and not found.dead
            and found.n > 1
            and lam == found.lam + found.n - 1
            and self._shift_last_into_dead(found)
        ):
            return spans
        end = lam + n
        while lam < end:
            r = found if found is not None else self.find_id(lam, act)
            found = None
            if r is None:
                raise KeyError((lam, act))
            k = lam - r.lam
            if k:
                r = self._split(r, k)
            if r.n > end - lam:
                self._split(r, end - lam)
            lam += r.n
            if r.dead:
                continue
            if self.want_positions:
                spans.append((self._pos_of_run(r), r.n))
            r.dead = True
            r.blk.vis -= r.n
            self._dirty.add(r.blk)
            self.length -= r.n
            if self._cb > r.blk.idx:
                self._cpos -= r.n
            self._merge_dead(r)
        return spans

    def covers(self, act: int, lam: int, n: int) -> bool:
        """True when every element (lam .. lam+n-1, act) is known."""
        end = lam + n
        while lam < end:
            r = self.find_id(lam, act)
            if r is None:
                return False
            lam = r.lam + r.n
        return True

    # ----------------------------------------------------------- history reads
    def inserts_in(self, act: int, lo: int, hi: int) -> list[tuple[int, int, int, Any]]:
        """Insert ops of ``act`` with lamports in [lo, hi), merged maximally:
        ``[(lam, olam, oact, content)]`` in lamport order."""
        ent = self.entries.get(act)
        if ent is None:
            return []
        starts, firsts = ent
        i = max(bisect_right(starts, lo) - 1, 0)
        out: list[tuple[int, int, int, Any]] = []
        while i < len(starts) and starts[i] < hi:
            r: Run | None = firsts[i]
            while r is not None:
                if r.lam + r.n > lo and r.lam < hi:
                    a, b = max(lo, r.lam) - r.lam, min(hi, r.lam + r.n) - r.lam
                    lam = r.lam + a
                    if a == 0 and r is firsts[i]:
                        olam, oact = r.olam, r.oact
                    else:
                        olam, oact = lam - 1, act
                    piece = r.content[a:b]
                    if (
                        out
                        and out[-1][0] + len(out[-1][3]) == lam
                        and olam == lam - 1
                        and oact == act
                    ):
                        p = out[-1]
                        out[-1] = (p[0], p[1], p[2], p[3] + piece)
                    else:
                        out.append((lam, olam, oact, piece))
                r = r.nxt
            i += 1
        return out

    def all_inserts(self) -> Iterator[tuple[int, int, int, int, Any]]:
        """Every entry as (act, lam, olam, oact, content), content re-joined."""
        for act, (_starts, firsts) in self.entries.items():
            for first in firsts:
                parts = []
                r: Run | None = first
                while r is not None:
                    parts.append(r.content)
                    r = r.nxt
                yield act, first.lam, first.olam, first.oact, _concat(self.empty, parts)


def _concat(empty: Any, parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(empty, str):
        return "".join(parts)
    return [x for p in parts for x in p]
