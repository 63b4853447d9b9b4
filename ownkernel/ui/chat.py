"""``ui.chat(log)``: a chat over a log root.

Messages are ordered by their log id ``(lamport, actor)``, the same order on
every replica; each delta is one new message with that id as its sort key, so a
late message from a peer lands where it belongs. Typing shows through presence.
"""

from __future__ import annotations

import time
from typing import Any

import traitlets

from ownkernel.node.handle import RootProxy
from ownkernel.ui.base import (
    STATIC,
    LiveWidget,
    PresenceBoard,
    announce,
    colour_of,
    in_call,
    node_colour,
    safe_colour,
)

__all__ = ["Chat"]

MAX_MESSAGE = 10_000  # characters


def _view(mid: tuple[int, bytes], m: Any,
          names: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """What the browser shows of one message (any log value, not only ours).
    ``names``: the current name and colour of authors by node id (hex), so a
    renamed peer shows under its new name everywhere at once."""
    key = [mid[0], mid[1].hex()]
    if isinstance(m, dict):
        author = m.get("author") or m.get("name") or m.get("from") or "?"
        colour = safe_colour(m.get("color"), colour_of(str(author).encode()))
        now = (names or {}).get(str(m.get("from")))
        if now is not None:
            author, colour = now[0], now[1] or colour
        text = m.get("text", "")
        t = m.get("time")
        return {"key": key, "author": str(author), "text": str(text), "color": str(colour),
                "time": t if isinstance(t, (int, float)) else None}
    return {"key": key, "author": "?", "text": str(m), "color": "#666", "time": None}


class Chat(LiveWidget):
    _esm = STATIC / "chat.js"
    root = traitlets.Unicode("").tag(sync=True)

    def __init__(self, log: Any) -> None:
        handle = log.handle if isinstance(log, RootProxy) else None
        if handle is None or not hasattr(log, "messages") or not hasattr(log, "append"):
            raise TypeError(f"ui.chat needs a log root (doc.log('chat')), not {type(log).__name__}")
        super().__init__(handle.node, kind="chat", root=log.name)
        self._watch_first_sync(handle)
        self._log = log
        self._handle = handle
        self._seen: set[tuple[int, bytes]] = set()
        self._names: dict[str, tuple[str, str]] = {}
        self._drain_scheduled = False
        self._off: list[Any] = []
        with handle.transaction():
            obj = handle.crdt.log(log.name)
            self._off.append(obj.observe(self._observe))
            self._seen = set(obj.ids())
        try:
            self._off.append(self._node.on("presence", self._on_presence))
        except RuntimeError:
            pass
        if hasattr(self._node, "on_profile"):
            self._off.append(self._node.on_profile(self._on_profile))

    def _observe(self, _message: Any, _local: bool) -> None:
        # Any thread, under the node lock: only ask the node thread to look.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._node.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        with self._handle.transaction():
            obj = self._handle.crdt.log(self._log.name)
            new = [(mid, obj[i]) for i, mid in enumerate(obj.ids()) if mid not in self._seen]
        for mid, m in new:
            self._seen.add(mid)
            self._push(_view(mid, m, self._names))

    def _snapshot(self) -> dict[str, Any]:
        with self._handle.transaction():
            obj = self._handle.crdt.log(self._log.name)
            ids = obj.ids()
            self._names = self._current_names()
            msgs = [_view(mid, obj[i], self._names) for i, mid in enumerate(ids)]
            self._seen = set(ids)
        announce(self._node, self._handle.id, "chat", self._log.name, True)
        return {"messages": msgs, "call": sorted(in_call(self._present()))}

    def _present(self) -> Any:
        try:
            return self._node.presence(self._handle).values()
        except RuntimeError:  # no network: nobody present
            return ()

    def _current_names(self) -> dict[str, tuple[str, str]]:
        node = self._node
        try:
            names = {k.hex(): v for k, v in node.peer_profiles().items()}
        except (AttributeError, RuntimeError):
            names = {}
        names[node.id.hex()] = (node.name, node_colour(node))
        return names

    def _on_profile(self) -> None:
        if self._ready and not self._closed and self._current_names() != self._names:
            self._send_snapshot()  # messages show under the new name

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        if t == "send":
            text = content.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError("a chat message needs non-empty text")
            if len(text) > MAX_MESSAGE:
                raise ValueError(f"a chat message is at most {MAX_MESSAGE} characters")
            self.send_message(text.replace("\r\n", "\n").replace("\r", "\n"))
            PresenceBoard.update(self._node, self._handle.id, "typing", self._log.name, None)
        elif t == "typing":
            PresenceBoard.update(self._node, self._handle.id, "typing", self._log.name,
                                 True if content.get("on") else None)
        else:
            super()._on_message(t, content)

    def send_message(self, text: str) -> None:
        """Append a message as this node (name, colour, time)."""
        node = self._node
        self._log.append({"author": node.name, "from": node.id.hex(), "text": text,
                          "color": node_colour(node), "time": time.time()})

    def _on_presence(self, doc: Any, _peer: Any, _state: Any) -> None:
        if not self._ready or self._closed:
            return
        self._on_profile()  # a peer may have a new name (any doc tells)
        if doc != self._handle.id:
            return
        present = self._present()
        names = [str(st.get("name", "?")) for st in present
                 if isinstance(st, dict) and (st.get("typing") or {}).get(self._log.name)]
        self._post({"t": "typing", "names": sorted(names)})
        # who is in this doc's call (ui.call puts "call": {"joined": true} in presence)
        self._post({"t": "call", "names": sorted(in_call(present))})

    def _detach(self) -> None:
        if getattr(self, "_ready", False):
            announce(self._node, self._handle.id, "chat", self._log.name, False)
        super()._detach()

    @property
    def messages(self) -> list[Any]:
        return list(self._log.messages())
