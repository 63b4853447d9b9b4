"""A browser stand-in for the widget protocol tests: what the JS front-ends do,
in Python, against real widgets on real nodes (no browser)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from waiting import until

from ownkernel.node import Node
from ownkernel.node.config import NetConfig
from ownkernel.ui.editor import parse_changes
from ownkernel.ui.utf16 import ChangeSet

# Short network timers: a peer lost or a change missed shows within seconds.
FAST = dict(ping_interval=0.3, peer_timeout=2.0, anti_entropy=1.0, backoff_min=0.05,
            backoff_max=0.5, connect_timeout=1.0)


def fast_node(path: Path, name: str) -> Node:
    """A node listening on 127.0.0.1 (a fresh port) with the FAST timers."""
    return Node(path, name=name, listen="tcp://127.0.0.1:0", network=NetConfig(**FAST))


@contextlib.contextmanager
def two_nodes(tmp_path: Path, fill: Callable[[Any], Any],
              title: str = "shared") -> Iterator[tuple[Node, Node, Any, Any]]:
    """ann's doc ``title``, filled by ``fill(doc)``, joined by ben: ``(a, b, da, db)``."""
    a = fast_node(tmp_path / "a", "ann")
    b = fast_node(tmp_path / "b", "ben")
    try:
        da = a.new_doc(title)
        fill(da)
        db = b.join(a.invite(da), timeout=10)
        yield a, b, da, db
    finally:
        b.close()
        a.close()


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
    """The collab client of widgets/src/editor.js, in Python (UTF-16 units):
    @codemirror/collab's ``receiveUpdates`` over utf16.ChangeSet (a port of
    CodeMirror's), pipelined pushes numbered within a snapshot generation.
    Several fronts may share one widget (``share=``): two views of one model."""

    def __init__(self, widget: Any, client: str = "web1", share: Front | None = None) -> None:
        if share is None:
            super().__init__(widget)
        else:  # a second view: it sees what the first one sees
            self.w, self.sent, self.lock = widget, share.sent, share.lock
        self.client = client
        self.doc: list[int] = []
        self.version = -1
        self.unconfirmed: list[ChangeSet] = []
        self.pushed = 0  # of the unconfirmed, how many were sent
        self.gen = 0
        self.seq = 0
        self.seen = 0  # messages processed
        self.resyncs = 0
        self.length_errors = 0

    def pump(self, limit: int | None = None) -> None:
        """Process the messages that arrived (at most ``limit``), like the browser."""
        with self.lock:
            end = len(self.sent) if limit is None else min(len(self.sent), self.seen + limit)
            new = [m for _, m in self.sent[self.seen:end]]
            self.seen = end
        for m in new:
            if m["t"] == "snapshot":
                self.doc, self.version = to_units(m["text"]), m["v"]
                self.unconfirmed, self.pushed, self.gen, self.seq = [], 0, m["g"], 0
            elif m["t"] == "deltas" and self.version >= 0:
                if m["from"] > self.version + 1:
                    self.resyncs += 1
                    self.deliver({"t": "resync", "v": self.version})
                    continue
                ops = m["ops"][self.version + 1 - m["from"]:]
                for op in ops:  # one at a time, as editor.js does (see there)
                    self.receive([op])
                if ops and not self.unconfirmed and len(self.doc) != m["n16"]:
                    self.length_errors += 1
                    self.deliver({"t": "resync", "v": -1})

    def receive(self, ops: list[dict[str, Any]]) -> None:
        """@codemirror/collab ``receiveUpdates``, line by line."""
        changes: ChangeSet | None = None
        own = 0
        for op in ops:
            ours = self.unconfirmed[own] if own < len(self.unconfirmed) else None
            if ours is not None and op["c"] == self.client:
                if changes is not None:
                    changes = changes.map(ours, True)
                own += 1
            else:
                cs = ChangeSet.from_json(op["ch"])
                changes = cs if changes is None else changes.compose(cs)
        self.unconfirmed = self.unconfirmed[own:]
        self.pushed = max(0, self.pushed - own)
        if self.unconfirmed and changes is not None:
            out = []
            for u in self.unconfirmed:
                out.append(u.map(changes))
                changes = changes.map(u, True)
            self.unconfirmed = out
        if changes is not None:
            self.doc = self.apply(self.doc, changes.to_json())
        self.version += len(ops)

    @staticmethod
    def apply(doc: list[int], ch: Any) -> list[int]:
        out = list(doc)
        for f, t, ins in reversed(parse_changes(ch, len(doc))):
            out[f:t] = to_units(ins)
        return out

    @property
    def text(self) -> str:
        return from_units(self.doc)

    def change(self, ch: Any, push: bool = True) -> None:
        """A local update (ChangeSet JSON on the current document)."""
        self.doc = self.apply(self.doc, ch)
        self.unconfirmed.append(ChangeSet.from_json(ch))
        if push:
            self.push()

    def edit(self, pos16: int, delete16: int, insert: str, push: bool = True) -> None:
        """A local edit, pushed at once unless ``push=False``."""
        self.change(ChangeSet.single(len(self.doc), pos16, delete16, insert).to_json(), push)

    def push(self) -> None:
        """Send the unconfirmed updates not sent yet (no waiting for the others)."""
        unsent = self.unconfirmed[self.pushed:]
        if not unsent:
            return
        self.deliver({"t": "push", "v": self.version, "c": self.client, "g": self.gen,
                      "n": self.seq, "updates": [{"c": self.client, "ch": u.to_json()}
                                                 for u in unsent]})
        self.seq += len(unsent)
        self.pushed = len(self.unconfirmed)

    def settle(self, timeout: float = 10.0) -> None:
        def done() -> bool:
            self.pump()
            self.push()
            return not self.unconfirmed and self.version == self.w._version
        until(done, timeout, "front settled")
