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

__all__ = ["AstralIndex", "units"]

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
