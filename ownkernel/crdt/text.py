"""Text and List: the user-facing sequence types over :mod:`.rga`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from .codec import DEL, INS
from .rga import RUN_CAP, Sequence
from .values import checked_content, checked_text

if TYPE_CHECKING:
    from .types import DocCore


class Delta(NamedTuple):
    """One change of a sequence as seen by an observer.

    ``deleted`` elements were removed at ``pos``, then ``inserted`` was
    inserted there. ``local`` tells whether this replica made the edit.
    """

    pos: int
    deleted: int
    inserted: Any
    local: bool


class PendingRun(list):
    """Pieces of an insert still being typed in an open transaction, joined
    at commit (concatenating each keystroke would be quadratic)."""

    __slots__ = ()

    def joined(self) -> Any:
        first = self[0]
        if isinstance(first, str):
            return "".join(self)
        return [x for piece in self for x in piece]


class _SequenceRoot:
    __slots__ = ("_doc", "_key", "_seq", "_observers")

    def __init__(self, doc: DocCore, key: str, empty: Any) -> None:
        self._doc = doc
        self._key = key
        self._seq = Sequence(doc._actors, empty)
        self._observers: list[Callable[[Delta], None]] = []

    @property
    def name(self) -> str:
        return self._key[2:]

    def __len__(self) -> int:
        return self._seq.length

    def observe(self, callback: Callable[[Delta], None]) -> Callable[[], None]:
        """Call ``callback(Delta)`` after every local and remote edit; returns an unsubscribe."""
        self._observers.append(callback)
        self._seq.want_positions = True

        def unsubscribe() -> None:
            if callback in self._observers:
                self._observers.remove(callback)
            self._seq.want_positions = bool(self._observers)

        return unsubscribe

    def _emit(self, delta: Delta) -> None:
        for cb in list(self._observers):
            cb(delta)

    def _insert(self, pos: int, content: Any) -> None:
        if type(pos) is not int and (not isinstance(pos, int) or isinstance(pos, bool)):
            raise TypeError("position must be an int")
        if not content:
            return
        content = checked_content(content)  # list items: trees, copied (values.py)
        doc = self._doc
        lam = doc._lamport + 1
        olam, oact = self._seq.local_insert(pos, content, lam, 0)
        doc._lamport = lam + len(content) - 1
        pending = doc._pending
        if pending:
            last = pending[-1]
            # canonical form: an insert continuing the previous one is the same op
            if last[0] == INS and olam == lam - 1 and oact == 0 and last[1] == self._key:
                # lam - 1 is the last lamport taken, so it ends this insert
                buf = last[5]
                if type(buf) is not PendingRun:
                    buf = last[5] = PendingRun([buf])
                    doc._pending_runs = True
                buf.append(content)
                if self._observers:
                    self._emit(Delta(pos, 0, content, True))
                return
        pending.append([INS, self._key, lam, olam, oact, content])
        if self._observers:
            self._emit(Delta(pos, 0, content, True))

    def delete(self, pos: int, n: int = 1) -> None:
        """Delete ``n`` elements starting at ``pos``."""
        if not isinstance(pos, int) or not isinstance(n, int):
            raise TypeError("position and count must be ints")
        if n < 0:
            raise ValueError("count must be >= 0")
        if n == 0:
            return
        if pos < 0 or pos + n > self._seq.length:
            raise IndexError(f"delete {pos}..{pos + n} out of range for length {self._seq.length}")
        doc = self._doc
        ranges, _removed = self._seq.local_delete(pos, n)
        pending = doc._pending
        for act, tlam, m in ranges:
            lam = doc._lamport + 1
            doc._lamport += m
            if pending:
                last = pending[-1]
                if (
                    last[0] == DEL
                    and last[1] == self._key
                    and last[3] == act
                    and last[4] + last[5] == tlam
                    and last[2] + last[5] == lam
                ):
                    last[5] += m
                    continue
            pending.append([DEL, self._key, lam, act, tlam, m, 1])
        if self._observers:
            self._emit(Delta(pos, n, self._seq.empty, True))

    def _normalize(self, i: int) -> int:
        n = self._seq.length
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("index out of range")
        return i


class Text(_SequenceRoot):
    """Collaborative text: an RGA of Unicode code points."""

    __slots__ = ()

    def __init__(self, doc: DocCore, key: str) -> None:
        super().__init__(doc, key, "")

    def insert(self, pos: int, text: str) -> None:
        # Typing at the end of the previous insert, first op of a transaction,
        # nobody observing: the hot path of every editor, kept to one frame.
        text = text if type(text) is str and text.isascii() else checked_text(text)
        seq = self._seq
        tail = seq._tail
        if tail is not None and pos == seq._tail_end and type(text) is str and text:
            doc = self._doc
            lam = doc._lamport + 1
            if (
                tail.lam + tail.n == lam
                and tail.n < RUN_CAP
                and not doc._pending
                and not self._observers
            ):
                n = len(text)
                tail.content += text
                tail.n += n
                blk = tail.blk
                i = seq._hint  # the tail's index in its block, unless something moved it
                if i >= len(blk.runs) or blk.runs[i] is not tail:
                    i = seq._ix(tail)
                blk.lens[i] += n
                blk.vis += n
                seq._dirty.add(blk)
                seq.length += n
                seq._tail_end += n
                if seq._cb > blk.idx:
                    seq._cpos += n
                doc._lamport = lam + n - 1
                doc._pending.append([INS, self._key, lam, lam - 1, 0, text])
                return
        if type(text) is not str and not isinstance(text, str):
            raise TypeError("Text.insert needs a str")
        self._insert(pos, text)

    def __str__(self) -> str:
        return self._seq.value()

    def blame(self) -> list[tuple[int, int, bytes]]:
        """``[(start, end, actor), ...]`` covering the text: who wrote each
        visible character (adjacent ranges of one author merged). Text an undo or
        a restore brought back is its original writer's, not the undoer's."""
        from .comments import original_author, undo_copies

        actors = self._doc._actors
        copies = undo_copies(self._doc).get(self._key, [])
        out: list[tuple[int, int, bytes]] = []
        pos = 0
        for r in self._seq.runs():
            if r.dead or not r.n:
                continue
            parts = original_author(copies, r.act, r.lam, r.n) if copies else [(r.act, r.n)]
            for act, n in parts:
                actor = actors[act]
                if out and out[-1][2] == actor and out[-1][1] == pos:
                    out[-1] = (out[-1][0], pos + n, actor)
                else:
                    out.append((pos, pos + n, actor))
                pos += n
        return out

    def __repr__(self) -> str:
        s = str(self)
        return f"Text({self.name!r}, {s[:60]!r}{'…' if len(s) > 60 else ''})"

    def __getitem__(self, i: int | slice) -> str:
        if isinstance(i, slice):
            return str(self)[i]
        r, k = self._seq._find(self._normalize(i))
        return r.content[k]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other
        if isinstance(other, Text):
            return str(self) == str(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    # comment threads (issue #12 §3): the work is in comments.py
    def comment(self, start: int, end: int, text: str) -> str:
        """Anchor a comment thread to characters [start, end); returns its id.
        It stays on those characters (CRDT ids) while the text changes around it."""
        from .comments import Comments

        return Comments(self._doc).add(self, start, end, text)

    def comments(self) -> Any:
        """The comment threads on this text: ``.threads()``, ``.reply()``, ``.resolve()``."""
        from .comments import Comments

        return Comments(self._doc, only=self._key)

    def replace(self, pos: int, n: int, text: str) -> None:
        """Delete ``n`` characters at ``pos`` and insert ``text`` there."""
        checked_text(text)  # before deleting: a refused insert must leave no delete behind
        self.delete(pos, n)
        self.insert(pos, text)

    def set(self, text: str) -> None:
        """Make the text equal to ``text`` with a minimal diff (common prefix/suffix)."""
        checked_text(text)  # before deleting (see replace)
        old = str(self)
        if old == text:
            return
        a = 0
        m = min(len(old), len(text))
        while a < m and old[a] == text[a]:
            a += 1
        b = 0
        while b < m - a and old[len(old) - 1 - b] == text[len(text) - 1 - b]:
            b += 1
        self.delete(a, len(old) - a - b)
        self.insert(a, text[a : len(text) - b])


class List(_SequenceRoot):
    """Collaborative list of CBOR-native values: an RGA of values."""

    __slots__ = ()

    def __init__(self, doc: DocCore, key: str) -> None:
        super().__init__(doc, key, [])

    def insert(self, pos: int, value: Any) -> None:
        self._insert(pos, [value])

    def extend(self, values: list[Any]) -> None:
        self._insert(self._seq.length, list(values))

    def insert_many(self, pos: int, values: list[Any]) -> None:
        self._insert(pos, list(values))

    def append(self, value: Any) -> None:
        self._insert(self._seq.length, [value])

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return self._seq.value()[i]
        r, k = self._seq._find(self._normalize(i))
        return r.content[k]

    def __delitem__(self, i: int) -> None:
        self.delete(self._normalize(i), 1)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._seq.value())

    def to_list(self) -> list[Any]:
        return self._seq.value()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self.to_list() == other
        if isinstance(other, List):
            return self.to_list() == other.to_list()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"List({self.name!r}, {self.to_list()!r:.80})"
