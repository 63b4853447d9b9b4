"""Map: a last-writer-wins map; Counter: a PN counter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .codec import DELKEY, INC, SET
from .values import check_key, tree_copy

if TYPE_CHECKING:
    from .types import DocCore

_MISSING = object()


class Map:
    """LWW map: each key holds the write with the greatest ``(lamport, actor)``.

    Deletes are writes of a tombstone, so a concurrent set and delete also
    resolve by that order, the same on every replica.
    """

    __slots__ = ("_doc", "_key", "_entries", "_observers")

    def __init__(self, doc: DocCore, key: str) -> None:
        self._doc = doc
        self._key = key
        # key -> (lamport, actor bytes, value, present)
        self._entries: dict[str, tuple[int, bytes, Any, bool]] = {}
        self._observers: list[Callable[[str, Any, bool], None]] = []

    @property
    def name(self) -> str:
        return self._key[2:]

    def observe(self, callback: Callable[[str, Any, bool], None]) -> Callable[[], None]:
        """``callback(key, value_or_None, local)`` after each change of a key."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    def _write(
        self, lam: int, actor: bytes, k: str, value: Any, present: bool, local: bool
    ) -> None:
        cur = self._entries.get(k)
        if cur is not None and (cur[0], cur[1]) >= (lam, actor):
            return
        self._entries[k] = (lam, actor, value, present)
        for cb in list(self._observers):
            cb(k, value if present else None, local)

    def __setitem__(self, k: str, value: Any) -> None:
        self.set(k, value)

    def set(self, k: str, value: Any) -> None:
        """Write ``value`` (a tree of plain values, copied) under ``k``."""
        check_key(k)
        value = tree_copy(value, f"value for key {k!r} of map {self.name!r}")
        doc = self._doc
        lam = doc._local_op([SET, self._key, 0, k, value])
        self._write(lam, doc.actor, k, value, True, True)

    def __delitem__(self, k: str) -> None:
        if k not in self:
            raise KeyError(k)
        self.delete(k)

    def delete(self, k: str) -> None:
        check_key(k)
        doc = self._doc
        lam = doc._local_op([DELKEY, self._key, 0, k])
        self._write(lam, doc.actor, k, None, False, True)

    def __getitem__(self, k: str) -> Any:
        e = self._entries.get(k)
        if e is None or not e[3]:
            raise KeyError(k)
        return e[2]

    def get(self, k: str, default: Any = None) -> Any:
        e = self._entries.get(k)
        return e[2] if e is not None and e[3] else default

    def __contains__(self, k: object) -> bool:
        e = self._entries.get(k)  # type: ignore[arg-type]
        return e is not None and e[3]

    def keys(self) -> list[str]:
        return sorted(k for k, e in self._entries.items() if e[3])

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self._entries[k][2]) for k in self.keys()]

    def values(self) -> list[Any]:
        return [v for _, v in self.items()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if e[3])

    def to_dict(self) -> dict[str, Any]:
        return dict(self.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):
            return self.to_dict() == other
        if isinstance(other, Map):
            return self.to_dict() == other.to_dict()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Map({self.name!r}, {self.to_dict()!r:.80})"


class Counter:
    """PN counter: the sum of every increment; concurrent increments all count."""

    __slots__ = ("_doc", "_key", "value")

    def __init__(self, doc: DocCore, key: str) -> None:
        self._doc = doc
        self._key = key
        self.value: int | float = 0

    @property
    def name(self) -> str:
        return self._key[2:]

    def increment(self, amount: int | float = 1) -> None:
        if not isinstance(amount, (int, float)) or isinstance(amount, bool):
            raise TypeError("amount must be a number")
        self._doc._local_op([INC, self._key, 0, amount])
        self.value += amount

    def decrement(self, amount: int | float = 1) -> None:
        self.increment(-amount)

    def __int__(self) -> int:
        return int(self.value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (int, float)):
            return self.value == other
        if isinstance(other, Counter):
            return self.value == other.value
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, {self.value})"
