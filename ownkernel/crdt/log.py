"""Log: a chat-style, append-mostly list of messages.

Messages are ordered by their id ``(lamport, actor)``. Lamport order extends
causal order (a reply always sorts after what its author had seen), and the
actor breaks ties between concurrent messages, so every replica shows the
same order without any coordination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedDict

from .codec import APPEND, REDACT
from .values import tree_copy

if TYPE_CHECKING:
    from .types import DocCore


class Log:
    __slots__ = ("_doc", "_key", "_msgs", "_hidden", "_observers")

    def __init__(self, doc: DocCore, key: str) -> None:
        self._doc = doc
        self._key = key
        self._msgs: SortedDict = SortedDict()  # (lamport, actor bytes) -> message
        self._hidden: set[tuple[int, bytes]] = set()
        self._observers: list[Callable[[Any, bool], None]] = []

    @property
    def name(self) -> str:
        return self._key[2:]

    def observe(self, callback: Callable[[Any, bool], None]) -> Callable[[], None]:
        """``callback(message, local)`` for each appended message."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    def append(self, message: Any) -> tuple[int, bytes]:
        """Append a message (usually a dict; a tree of plain values, copied); returns its id."""
        message = tree_copy(message, f"message for log {self.name!r}")
        doc = self._doc
        lam = doc._local_op([APPEND, self._key, 0, message])
        mid = (lam, doc.actor)
        self._add(mid, message, True)
        return mid

    def _add(self, mid: tuple[int, bytes], message: Any, local: bool) -> None:
        self._msgs[mid] = message
        for cb in list(self._observers):
            cb(message, local)

    def has(self, mid: tuple[int, bytes]) -> bool:
        return mid in self._msgs

    def redact(self, index: int) -> None:
        """Hide the message at ``index`` on every replica."""
        mid = self._ids()[index]
        doc = self._doc
        doc._local_op([REDACT, self._key, 0, doc._aidx[mid[1]], mid[0]])
        self._hidden.add(mid)

    def _ids(self) -> list[tuple[int, bytes]]:
        return [k for k in self._msgs if k not in self._hidden]

    def ids(self) -> list[tuple[int, bytes]]:
        return self._ids()

    def messages(self) -> list[Any]:
        return [self._msgs[k] for k in self._ids()]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.messages())

    def __len__(self) -> int:
        return len(self._msgs) - len(self._hidden)

    def __getitem__(self, i: int) -> Any:
        return self._msgs[self._ids()[i]]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self.messages() == other
        if isinstance(other, Log):
            return self.messages() == other.messages()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Log({self.name!r}, {len(self)} messages)"
