"""The comments widget (``ui.comments(doc.text("body"))``, issue #12 §3).

The text with every thread's anchor highlighted, and beside it, in the
margin, the threads in document order: who said what, replies, resolve /
reopen. Select characters in the text and write a comment to start a thread
on them. Threads are the document's (crdt/comments.py): anchored by CRDT
ids, they stay on their characters while anyone edits. Each state is sent
whole; refreshes are coalesced to one per ``REFRESH_DELAY``.

Browser -> Python: ``{"t": "add", "start": s, "end": e, "text": ...}`` (code
point offsets), ``{"t": "reply", "id": tid, "text": ...}``,
``{"t": "resolve", "id": tid, "on": bool}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import traitlets

from ownkernel.ui.base import STATIC, LiveWidget, colour_of
from ownkernel.ui.docview import _names

__all__ = ["CommentsView", "comments_state"]

REFRESH_DELAY = 0.1  # seconds: a burst of edits costs one refresh


def _target(text: Any) -> tuple[Any, str]:
    handle = getattr(text, "handle", None)
    name = getattr(text, "name", None)
    if handle is None or not hasattr(handle, "comments") or not isinstance(name, str):
        raise TypeError("ui.comments needs a text root of a node's doc (doc.text('body')), "
                        f"not {type(text).__name__}")
    return handle, name


def comments_state(handle: Any, name: str) -> dict[str, Any]:
    """What the widget shows, as plain JSON."""
    node = handle.node
    with node.lock:
        crdt = handle.crdt
        text = str(crdt.text(name))
        threads = crdt.text(name).comments().threads()
        role = handle.role
    names = _names(node)
    authors: dict[str, dict[str, Any]] = {}

    def who(a: bytes) -> str:
        if a.hex() not in authors:
            n, colour = names.get(a, (a.hex()[:8], colour_of(a)))
            authors[a.hex()] = {"name": n, "color": colour, "me": a == node.id}
        return a.hex()

    out = [{"id": t.id, "start": t.start, "end": t.end, "quote": t.quote, "author": who(t.author),
            "text": t.text, "time": t.time, "resolved": t.resolved,
            "replies": [{"id": r.id, "author": who(r.author), "text": r.text, "time": r.time}
                        for r in t.replies]} for t in threads]
    return {"root": name, "text": text, "threads": out, "authors": authors,
            "can_write": role in ("owner", "admin", "writer")}


class CommentsView(LiveWidget):
    """A text with its comment threads in the margin; live."""

    _esm = STATIC / "comments.js"
    doc_id = traitlets.Unicode("").tag(sync=True)
    root = traitlets.Unicode("").tag(sync=True)

    def __init__(self, text: Any) -> None:
        handle, name = _target(text)
        super().__init__(handle.node, kind="comments", doc_id=handle.id.hex(), root=name)
        self._handle = handle
        self._name = name
        self._due = False
        self._off: list[Any] = []
        try:
            self._off.append(handle.node.on("doc_changed", self._changed))
        except RuntimeError:  # no network: refreshed after each of our own writes
            pass

    def _snapshot(self) -> dict[str, Any]:
        return {"state": comments_state(self._handle, self._name)}

    def _changed(self, doc_id: bytes = b"", *_: Any) -> None:
        if (doc_id and doc_id != self._handle.id) or self._due:
            return
        self._due = True
        try:
            asyncio.get_running_loop().call_later(REFRESH_DELAY, self._refresh)
        except RuntimeError:
            self._refresh()

    def _refresh(self) -> None:
        self._due = False
        if self._ready and not self._closed:
            self._push({"state": comments_state(self._handle, self._name)})

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        text = self._handle.text(self._name)
        if t == "add":
            text.comment(content.get("start"), content.get("end"), content.get("text"))
        elif t == "reply":
            text.comments().reply(content.get("id"), content.get("text"))
        elif t == "resolve":
            text.comments().resolve(content.get("id"), bool(content.get("on", True)))
        else:
            raise ValueError(f"unknown message type {t!r}")
        self._refresh()

