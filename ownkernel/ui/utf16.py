"""Positions across the browser boundary: UTF-16 units (JS) <-> code points (Python).

The browser counts UTF-16 units ("a😀b" is 4), the CRDT counts code points (3).
Re-encoding a prefix per edit is O(n); instead we keep a sorted list of the
code-point positions of astral characters (the only ones that take two units)
and convert with a binary search. Typical text has few or none of them, so the
list stays short and the usual edit touches nothing.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from typing import Any

__all__ = ["AstralIndex", "ChangeSet", "units"]

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def units(s: str) -> int:
    """UTF-16 length of ``s``."""
    if s.isascii():
        return len(s)
    return len(s) + sum(1 for _ in _ASTRAL.finditer(s))


class AstralIndex:
    """Where the astral characters of a text are; the text itself is not kept."""

    __slots__ = ("pos", "length")

    def __init__(self, text: str = "") -> None:
        self.pos: list[int] = [m.start() for m in _ASTRAL.finditer(text)]
        self.length = len(text)  # in code points

    @property
    def length16(self) -> int:
        return self.length + len(self.pos)

    def to16(self, cp: int) -> int:
        """UTF-16 offset of code-point offset ``cp``."""
        if not 0 <= cp <= self.length:
            raise IndexError(f"code-point offset {cp} outside 0..{self.length}")
        return cp + bisect_left(self.pos, cp)

    def to_cp(self, u: int) -> int:
        """Code-point offset of UTF-16 offset ``u``.

        An offset inside a surrogate pair (a lone half, which a well-behaved
        editor never produces) snaps to the start of that character, so we never
        split a character in two.
        """
        if not 0 <= u <= self.length16:
            raise IndexError(f"UTF-16 offset {u} outside 0..{self.length16}")
        pos = self.pos
        # k = number of astral chars whose UTF-16 start (pos[k] + k) is < u
        lo, hi = 0, len(pos)
        while lo < hi:
            mid = (lo + hi) // 2
            if pos[mid] + mid < u:
                lo = mid + 1
            else:
                hi = mid
        cp = u - lo
        if lo and pos[lo - 1] + lo == u:  # u is the low half of astral char lo-1
            cp = pos[lo - 1]
        return cp

    def insert(self, cp: int, text: str) -> None:
        if not 0 <= cp <= self.length:
            raise IndexError(f"insert at {cp} outside 0..{self.length}")
        n = len(text)
        if not n:
            return
        pos = self.pos
        i = bisect_left(pos, cp)
        if i < len(pos):  # astral chars after the insert move right
            pos[i:] = [p + n for p in pos[i:]]
        if not text.isascii():
            for m in _ASTRAL.finditer(text):
                insort(pos, cp + m.start())
        self.length += n

    def delete(self, cp: int, n: int) -> int:
        """Forget ``n`` code points at ``cp``; returns how many UTF-16 units they were."""
        if n < 0 or cp < 0 or cp + n > self.length:
            raise IndexError(f"delete {cp}..{cp + n} outside 0..{self.length}")
        pos = self.pos
        i = bisect_left(pos, cp)
        j = bisect_left(pos, cp + n, i)
        gone = j - i
        pos[i:] = [p - n for p in pos[j:]]
        self.length -= n
        return n + gone


# -- CodeMirror change sets, in UTF-16 units ------------------------------------------
# The kernel keeps, per browser client, the client's view of the document (see
# editor.py's bridge), so it must map and compose changes exactly as
# @codemirror/state does; this is a line-by-line port of its ``mapSet`` and
# ``composeSets`` (state/src/change.ts), over ``[len, ins]`` sections where
# ``ins`` is -1 for kept text, else the length of the replacement.
def _slice16(s: str, start: int, end: int | None = None) -> str:
    if s.isascii():
        return s[start:end]
    b = s.encode("utf-16-le", "surrogatepass")
    return b[2 * start:None if end is None else 2 * end].decode("utf-16-le", "surrogatepass")


class ChangeSet:
    """A CodeMirror ``ChangeSet``: ``sections`` as in CodeMirror, ``inserted[i]``
    the text of section ``i`` (lines joined with ``\\n``)."""

    __slots__ = ("sections", "inserted")

    def __init__(self, sections: list[int], inserted: list[str]) -> None:
        self.sections = sections
        self.inserted = inserted

    @classmethod
    def from_json(cls, spec: Any) -> ChangeSet:
        """From ``ChangeSet.toJSON()``; a clear ValueError for anything else."""
        if not isinstance(spec, list):
            raise ValueError("changes must be a list (ChangeSet JSON)")
        sections: list[int] = []
        inserted: list[str] = []
        for i, part in enumerate(spec):
            if isinstance(part, int) and not isinstance(part, bool):
                if part < 0:
                    raise ValueError("negative retain in changes")
                sections += [part, -1]
            elif (isinstance(part, list) and part and isinstance(part[0], int)
                  and not isinstance(part[0], bool) and part[0] >= 0
                  and all(isinstance(s, str) for s in part[1:])):
                if len(part) == 1:
                    sections += [part[0], 0]
                else:
                    text = "\n".join(part[1:])
                    while len(inserted) < i:
                        inserted.append("")
                    inserted.append(text)
                    sections += [part[0], units(text)]
            else:
                raise ValueError(f"bad section in changes: {part!r:.60}")
        return cls(sections, inserted)

    @classmethod
    def single(cls, length: int, pos: int, deleted: int, text: str) -> ChangeSet:
        """One replacement of ``deleted`` units at ``pos`` in a text of ``length`` units."""
        out = cls([], [])
        _add(out.sections, pos, -1)
        _add(out.sections, deleted, units(text))
        _add_insert(out.inserted, out.sections, text)
        _add(out.sections, length - pos - deleted, -1)
        return out

    def to_json(self) -> list[Any]:
        parts: list[Any] = []
        s = self.sections
        for i in range(0, len(s), 2):
            n, ins = s[i], s[i + 1]
            if ins < 0:
                parts.append(n)
            elif ins == 0:
                parts.append([n])
            else:
                parts.append([n, *self.inserted[i >> 1].split("\n")])
        return parts

    @property
    def length(self) -> int:
        """Length of the document it applies to."""
        return sum(self.sections[0::2])

    @property
    def new_length(self) -> int:
        s = self.sections
        return sum(s[i] if s[i + 1] < 0 else s[i + 1] for i in range(0, len(s), 2))

    @property
    def empty(self) -> bool:
        return all(ins == -1 for ins in self.sections[1::2])

    def edits(self) -> list[tuple[int, int, str]]:
        """``[(from, to, insert)]`` in the old document's offsets, ascending."""
        out, pos, s = [], 0, self.sections
        for i in range(0, len(s), 2):
            n, ins = s[i], s[i + 1]
            if ins >= 0:
                text = self.inserted[i >> 1] if ins and (i >> 1) < len(self.inserted) else ""
                out.append((pos, pos + n, text))
            pos += n
        return out

    def map(self, other: ChangeSet, before: bool = False) -> ChangeSet:
        """This change set applied after ``other`` (both on the same document);
        at the same place ours go after theirs unless ``before``."""
        if self.length != other.length:
            raise ValueError(f"cannot map changes of a {self.length}-unit text over "
                             f"changes of a {other.length}-unit text")
        return self if other.empty else _map_set(self, other, before)

    def compose(self, other: ChangeSet) -> ChangeSet:
        """This change set followed by ``other``."""
        if self.new_length != other.length:
            raise ValueError(f"cannot compose: {self.new_length} units then {other.length}")
        return _compose_sets(self, other)


def _add(sections: list[int], n: int, ins: int, force_join: bool = False) -> None:
    if n == 0 and ins <= 0:
        return
    last = len(sections) - 2
    if last >= 0 and ins <= 0 and ins == sections[last + 1]:
        sections[last] += n
    elif last >= 0 and n == 0 and sections[last] == 0:
        sections[last + 1] += ins
    elif force_join:
        sections[last] += n
        sections[last + 1] += ins
    else:
        sections += [n, ins]


def _add_insert(values: list[str], sections: list[int], value: str) -> None:
    if not value:
        return
    index = (len(sections) - 2) >> 1
    if index < len(values):
        values[-1] += value
    else:
        while len(values) < index:
            values.append("")
        values.append(value)


class _Iter:
    __slots__ = ("cs", "i", "len", "ins", "off")

    def __init__(self, cs: ChangeSet) -> None:
        self.cs = cs
        self.i = 0
        self.next()

    def next(self) -> None:
        s = self.cs.sections
        if self.i < len(s):
            self.len, self.ins = s[self.i], s[self.i + 1]
            self.i += 2
        else:
            self.len, self.ins = 0, -2
        self.off = 0

    @property
    def done(self) -> bool:
        return self.ins == -2

    @property
    def len2(self) -> int:
        return self.len if self.ins < 0 else self.ins

    @property
    def text(self) -> str:
        index, ins = (self.i - 2) >> 1, self.cs.inserted
        return ins[index] if index < len(ins) else ""

    def text_bit(self, n: int) -> str:
        return _slice16(self.text, self.off, self.off + n)

    def forward(self, n: int) -> None:
        if n == self.len:
            self.next()
        else:
            self.len -= n
            self.off += n

    def forward2(self, n: int) -> None:
        if self.ins == -1:
            self.forward(n)
        elif n == self.ins:
            self.next()
        else:
            self.ins -= n
            self.off += n


def _mismatch() -> ValueError:
    return ValueError("mismatched change set lengths")


def _map_set(set_a: ChangeSet, set_b: ChangeSet, before: bool) -> ChangeSet:
    sections: list[int] = []
    insert: list[str] = []
    a, b = _Iter(set_a), _Iter(set_b)
    inserted = -1
    while True:
        if (a.done and b.len) or (b.done and a.len):
            raise _mismatch()
        if a.ins == -1 and b.ins == -1:
            n = min(a.len, b.len)
            _add(sections, n, -1)
            a.forward(n)
            b.forward(n)
        elif b.ins >= 0 and (a.ins < 0 or inserted == a.i or (
                a.off == 0 and (b.len < a.len or (b.len == a.len and not before)))):
            n = b.len
            _add(sections, b.ins, -1)
            while n:
                piece = min(a.len, n)
                if a.done:
                    raise _mismatch()
                if a.ins >= 0 and inserted < a.i and a.len <= piece:
                    _add(sections, 0, a.ins)
                    _add_insert(insert, sections, a.text)
                    inserted = a.i
                a.forward(piece)
                n -= piece
            b.next()
        elif a.ins >= 0:
            n, left = 0, a.len
            while left:
                if b.ins == -1:
                    piece = min(left, b.len)
                    n += piece
                    left -= piece
                    b.forward(piece)
                elif b.ins == 0 and b.len < left:
                    left -= b.len
                    b.next()
                else:
                    break
            _add(sections, n, a.ins if inserted < a.i else 0)
            if inserted < a.i:
                _add_insert(insert, sections, a.text)
            inserted = a.i
            a.forward(a.len - left)
        elif a.done and b.done:
            return ChangeSet(sections, insert)
        else:
            raise _mismatch()


def _compose_sets(set_a: ChangeSet, set_b: ChangeSet) -> ChangeSet:
    sections: list[int] = []
    insert: list[str] = []
    a, b = _Iter(set_a), _Iter(set_b)
    is_open = False
    while True:
        if a.done and b.done:
            return ChangeSet(sections, insert)
        if a.ins == 0:  # deletion in A
            _add(sections, a.len, 0, is_open)
            a.next()
        elif b.len == 0 and not b.done:  # insertion in B
            _add(sections, 0, b.ins, is_open)
            _add_insert(insert, sections, b.text)
            b.next()
        elif a.done or b.done:
            raise _mismatch()
        else:
            n, before = min(a.len2, b.len), len(sections)
            if a.ins == -1:
                ins_b = -1 if b.ins == -1 else (0 if b.off else b.ins)
                _add(sections, n, ins_b, is_open)
                if ins_b > 0:
                    _add_insert(insert, sections, b.text)
            elif b.ins == -1:
                _add(sections, 0 if a.off else a.len, n, is_open)
                _add_insert(insert, sections, a.text_bit(n))
            else:
                _add(sections, 0 if a.off else a.len, 0 if b.off else b.ins, is_open)
                if not b.off:
                    _add_insert(insert, sections, b.text)
            is_open = ((a.ins > n or (b.ins >= 0 and b.len > n))
                       and (is_open or len(sections) > before))
            a.forward2(n)
            b.forward(n)
