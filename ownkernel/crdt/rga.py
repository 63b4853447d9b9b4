"""The replicated growable array (RGA) behind Text and List.

Order rule (RGA): every element has an id ``(lamport, actor)`` and an
*origin*, the element it was typed after. The document order is the
depth-first walk of the origin tree with siblings in *descending* id order;
integrating one element means: start right after its origin, skip every
element whose id is greater, insert. Both the one-at-a-time path
(:meth:`Sequence.integrate`) and the whole-history path (:func:`.batch.build`)
compute that same order.

Data layout: runs, blocks and the positional index are in :mod:`.blocks`;
this module adds the id index:

* **Entries**: per actor, the start lamports of the runs as first created
  (append-only: an actor's lamports only grow), each pointing at its first
  fragment; splitting a run links the fragments (``nxt``). Finding an id is
  one ``bisect`` plus a short walk; an entry split into many fragments (a
  paste edited all over) gets a snapshot of its fragment starts to bisect
  (see :meth:`Sequence.find_id`). Local typing never touches this index
  except to append.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from .blocks import MAX_RUNS, RUN_CAP, Block, Blocks, Run

__all__ = ["HEAD", "MAX_RUNS", "RUN_CAP", "Block", "Run", "Sequence"]

HEAD = (0, -1)


class Sequence(Blocks):
    """An RGA of elements; ``empty`` is ``""`` for text or ``[]`` for lists.

    ``actors`` is the document's actor table (index -> bytes), shared and
    only ever appended to; runs store actor indexes, comparisons use bytes.
    """

    def __init__(self, actors: list[bytes], empty: Any) -> None:
        super().__init__(empty)
        self.actors = actors
        self.entries: dict[int, tuple[list[int], list[Run]]] = {}
        self._rtail: Run | None = None  # run of the last remote insert, for replay
        self._rtail_at = 0  # its index in its block when last seen (checked before use)
        # fragment starts of entries with long chains, by first fragment (see find_id)
        self._frags: dict[Run, tuple[list[int], list[Run]]] = {}

    def _defer(self, lazy: Any, length: int) -> None:
        """Install a saved sequence without building it (load): ``lazy.value()``
        gives the visible content, ``lazy.build(self)`` installs the runs (via
        ``_set_blocks`` and ``entries``). The first use of ``blocks``,
        ``_slots`` or ``entries`` builds it (see :class:`_LazySequence`);
        reading the text does not."""
        del self.blocks, self.entries, self._slots
        self._lazy = lazy
        self.length = length
        self.__class__ = _LazySequence

    def _set_blocks(self, blocks: list[Block]) -> None:
        super()._set_blocks(blocks)
        self._rtail = None
        self._frags.clear()

    # ------------------------------------------------------------------ ids
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
            origin = (prev.lam + k, prev.act)
            if k < prev.n - 1:  # inside a run: split it around the new one
                run = Run(lam, act, content, origin[0], origin[1])
                self._split_insert(prev, k + 1, run)
                self._add_entry(run)
                self._tail, self._tail_end = run, pos + n
                return origin
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
        if n == 1 and k > 0:
            if k < r.n - 1:  # inside a run (a random delete)
                return [(r.act, r.lam + k, 1)], self._cut_out(r, k)
            if k == r.n - 1 and self._shift_last_into_dead(r):  # a backspace
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
            r.blk.lens[self._ix(r)] = 0
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
        r.blk.lens[i - 1] = k
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
                del r.blk.lens[i + 1]
        if i > 0:
            pv = runs[i - 1]
            if pv.dead and pv.nxt is r and pv.n + r.n <= RUN_CAP:
                pv.content = pv.content + r.content
                pv.n += r.n
                pv.nxt = r.nxt
                r.n = 0
                del runs[i]
                del pv.blk.lens[i]
                self._hint = i - 1
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
                blk.lens[i - 1] += n
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
            r.blk.lens[self._ix(r)] = 0
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


class _LazySequence(Sequence):
    """A loaded :class:`Sequence` whose runs are not built yet (``_defer``).

    The ``__getattr__`` that builds them lives on this subclass only, and a
    built sequence becomes a plain ``Sequence`` again: on a class defining
    ``__getattr__``, CPython does not specialize attribute reads, so every
    ``self.x`` in the hot paths would cost about twice as much.
    """

    def __getattr__(self, name: str) -> Any:
        if name in ("blocks", "entries", "_slots"):
            lazy = self.__dict__.get("_lazy")
            if lazy is not None:
                lazy.build(self)  # a DecodeError leaves it unbuilt: raised again next time
                del self.__dict__["_lazy"]
                self.__class__ = Sequence
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
