"""``ui.items(list)``: a shared to-do list over a list root.

Items are records (``ownkernel.crdt.records``): text, done, who added it and
when, each field its own register, and moves that never duplicate or lose an
item. The whole list is small enough to resend: the snapshot and every delta
carry all items (``{"items": [{"id", "text", "done", "by", "when"}, ...]}``),
one delta per batch of changes, so a burst of remote edits costs one message.

Browser → Python:
  ``{"t": "add", "text": T, "at": I?}``      a new item (default: at the end)
  ``{"t": "set", "id": ID, "field": "text"|"done", "value": V}``
  ``{"t": "move", "id": ID, "to": I}``       to visible index I (without the item)
  ``{"t": "delete", "id": ID}``
"""

from __future__ import annotations

import time
from typing import Any

import traitlets

from ownkernel.crdt.records import Records
from ownkernel.node.handle import RootProxy
from ownkernel.ui.base import STATIC, LiveWidget

__all__ = ["Items"]

MAX_TEXT = 10_000  # characters of one item


def _view(item: dict[str, Any]) -> dict[str, Any]:
    when = item.get("when")
    return {"id": item["id"], "text": str(item.get("text", "")), "done": bool(item.get("done")),
            "by": str(item.get("by") or ""),
            "when": when if isinstance(when, (int, float)) and not isinstance(when, bool) else None}


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"an item's text must be a string, not {type(v).__name__}")
    if len(v) > MAX_TEXT:
        raise ValueError(f"an item's text is at most {MAX_TEXT} characters")
    return v.replace("\r\n", "\n").replace("\r", "\n")


class Items(LiveWidget):
    _esm = STATIC / "items.js"
    root = traitlets.Unicode("").tag(sync=True)

    def __init__(self, lst: Any) -> None:
        handle = lst.handle if isinstance(lst, RootProxy) else None
        if handle is None or not hasattr(lst, "insert_many"):
            raise TypeError(f"ui.items needs a list root (doc.list('todo')), "
                            f"not {type(lst).__name__}")
        super().__init__(handle.node, kind="items", root=lst.name)
        self._watch_first_sync(handle)
        self._handle = handle
        self._name = lst.name
        self._drain_scheduled = False
        self._last: list[dict[str, Any]] = []
        self._off: list[Any] = []
        with handle.transaction():
            rec = self._records()
            self._off.append(rec.order.observe(self._observe))
            self._off.append(rec.fields.observe(lambda *_a: self._observe(None)))

    def _records(self) -> Records:
        return Records(self._handle.crdt, self._name)

    def _observe(self, _delta: Any) -> None:
        # any thread, under the node lock: only ask the node thread to look
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._node.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        items = self.items
        if items != self._last:
            self._last = items
            self._push({"items": items})

    def _snapshot(self) -> dict[str, Any]:
        self._last = self.items
        return {"items": self._last}

    @property
    def items(self) -> list[dict[str, Any]]:
        """The items as the page shows them, in order."""
        with self._handle.transaction():
            return [_view(i) for i in self._records().items()]

    # -- editing (from the page, or from Python) ----------------------------------
    def add(self, text: str, at: int | None = None) -> str:
        """A new item by this node, now; returns its id."""
        with self._handle.transaction():
            return self._records().add(_text(text), index=at, by=self._node.name,
                                       when=time.time())

    def check(self, iid: str, done: bool = True) -> None:
        with self._handle.transaction():
            self._records().set(iid, "done", bool(done))

    def edit(self, iid: str, text: str) -> None:
        with self._handle.transaction():
            self._records().set(iid, "text", _text(text))

    def move(self, iid: str, to: int) -> None:
        with self._handle.transaction():
            self._records().move(iid, to)

    def delete(self, iid: str) -> None:
        with self._handle.transaction():
            self._records().delete(iid)

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        iid = content.get("id")
        if t != "add" and not isinstance(iid, str):
            raise ValueError(f"{t}: needs the item's id")
        if t == "add":
            at = content.get("at")
            if at is not None and (not isinstance(at, int) or isinstance(at, bool) or at < 0):
                raise ValueError(f"add: bad position {at!r}")
            self.add(content.get("text"), at)  # type: ignore[arg-type]
        elif t == "set":
            field, value = content.get("field"), content.get("value")
            if field == "done":
                if not isinstance(value, bool):
                    raise ValueError("set done: value must be true or false")
                self.check(iid, value)  # type: ignore[arg-type]
            elif field == "text":
                self.edit(iid, value)  # type: ignore[arg-type]
            else:
                raise ValueError(f"set: field must be text or done, not {field!r}")
        elif t == "move":
            to = content.get("to")
            if not isinstance(to, int) or isinstance(to, bool) or to < 0:
                raise ValueError(f"move: bad position {to!r}")
            self.move(iid, to)  # type: ignore[arg-type]
        elif t == "delete":
            self.delete(iid)  # type: ignore[arg-type]
        else:
            super()._on_message(t, content)

    def __repr__(self) -> str:
        return f"<ui.items of list {self._name!r}>"
