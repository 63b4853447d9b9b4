"""A browser stand-in for the widget protocol tests: what the JS front-ends do,
in Python, against real widgets on real nodes (no browser)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ownkernel.ui.editor import parse_changes


def until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.005)
    raise AssertionError(f"{what} not met within {timeout} s")


def to_units(s: str) -> list[int]:
    b = s.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(b[i:i + 2], "little") for i in range(0, len(b), 2)]


def from_units(u: list[int]) -> str:
    return b"".join(x.to_bytes(2, "little") for x in u).decode("utf-16-le")


class Front:
    """Records what a widget sends; delivers messages as the comm thread would."""

    def __init__(self, widget: Any) -> None:
        self.w = widget
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        widget.send = self._record  # what anywidget would put on the comm

    def _record(self, msg: dict[str, Any], buffers: Any = None) -> None:
        with self.lock:
            self.sent.append((time.monotonic(), msg))

    def deliver(self, content: dict[str, Any]) -> None:
        self.w._on_comm_msg(self.w, content, [])

    def of_type(self, t: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for _, m in self.sent if m.get("t") == t]


class EditorFront(Front):
    """The collab client of widgets/src/editor.js, in Python (UTF-16 units)."""

    def __init__(self, widget: Any, client: str = "web1") -> None:
        super().__init__(widget)
        self.client = client
        self.doc: list[int] = []
        self.version = -1
        self.unconfirmed: list[list[Any]] = []
        self.seen = 0  # messages processed
        self.resyncs = 0

    def pump(self) -> None:
        """Process the messages that arrived, like the browser's handler."""
        with self.lock:
            new = [m for _, m in self.sent[self.seen:]]
            self.seen = len(self.sent)
        for m in new:
            if m["t"] == "snapshot":
                self.doc, self.version, self.unconfirmed = to_units(m["text"]), m["v"], []
            elif m["t"] == "deltas" and self.version >= 0:
                if m["from"] > self.version + 1:
                    self.resyncs += 1
                    self.deliver({"t": "resync", "v": self.version})
                    continue
                for op in m["ops"][self.version + 1 - m["from"]:]:
                    if self.unconfirmed and op["c"] == self.client:
                        self.unconfirmed.pop(0)  # our own, already applied here
                    else:
                        assert not self.unconfirmed, "test fronts push only when settled"
                        self.doc = self.apply(self.doc, op["ch"])
                    self.version += 1

    @staticmethod
    def apply(doc: list[int], ch: Any) -> list[int]:
        out = list(doc)
        for f, t, ins in reversed(parse_changes(ch, len(doc))):
            out[f:t] = to_units(ins)
        return out

    @property
    def text(self) -> str:
        return from_units(self.doc)

    def edit(self, pos16: int, delete16: int, insert: str) -> None:
        """A local edit, pushed at once (the front is settled)."""
        n = len(self.doc)
        ch: list[Any] = []
        if pos16:
            ch.append(pos16)
        ch.append([delete16, *insert.split("\n")] if insert else [delete16])
        if n - pos16 - delete16:
            ch.append(n - pos16 - delete16)
        self.doc = self.apply(self.doc, ch)
        self.unconfirmed.append(ch)
        self.deliver({"t": "push", "v": self.version, "c": self.client, "e": 0,
                      "updates": [{"c": self.client, "ch": ch}]})

    def settle(self, timeout: float = 10.0) -> None:
        def done() -> bool:
            self.pump()
            return not self.unconfirmed and self.version == self.w._version
        until(done, timeout, "front settled")
