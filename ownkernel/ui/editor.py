"""``ui.editor(text)``: a CodeMirror 6 editor bound to a text root, character by character.

The kernel is the authority of ``@codemirror/collab`` for its browser: a
version is the number of updates it has accepted. The browser pushes its
unconfirmed updates with the version they are based on; if that is the
current version we apply them to the CRDT as character ops and echo them
(the echo confirms them), otherwise we drop the push: the browser first
receives the updates it missed, rebases its own over them and pushes again.
Pushes are pipelined (no round trip per key), so each carries an epoch: once
one push of an epoch is refused, the later ones of that epoch are too, since
they build on it (see widgets/src/editor.js).
Changes from elsewhere (peers, cell code) become updates with client id
``"py"``, so CodeMirror maps the local caret and selection through them.

Positions on the wire are UTF-16 units; :class:`AstralIndex` mirrors the text
as the browser knows it (at our current version) to convert them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import traitlets

from ownkernel.node.handle import RootProxy
from ownkernel.ui.base import STATIC, LiveWidget, PresenceBoard, colour_of
from ownkernel.ui.utf16 import AstralIndex

__all__ = ["Editor", "parse_changes"]

PY_CLIENT = "py"


def parse_changes(spec: Any, length16: int) -> list[tuple[int, int, str]]:
    """A CodeMirror ``ChangeSet.toJSON()`` as ``[(from, to, insert)]`` in the
    pre-change document's UTF-16 offsets, ascending; checks it covers ``length16``."""
    out, pos = _walk_checked(spec)
    if pos != length16:
        raise ValueError(f"changes cover {pos} UTF-16 units, the text has {length16}")
    return out


def _walk(spec: Any) -> list[tuple[int, int, str]]:
    return _walk_checked(spec)[0]


def _walk_checked(spec: Any) -> tuple[list[tuple[int, int, str]], int]:
    if not isinstance(spec, list):
        raise ValueError("changes must be a list (ChangeSet JSON)")
    out: list[tuple[int, int, str]] = []
    pos = 0
    for part in spec:
        if isinstance(part, int) and not isinstance(part, bool):
            if part < 0:
                raise ValueError("negative retain in changes")
            pos += part
        elif (isinstance(part, list) and part and isinstance(part[0], int)
              and not isinstance(part[0], bool) and part[0] >= 0
              and all(isinstance(s, str) for s in part[1:])):
            out.append((pos, pos + part[0], "\n".join(part[1:])))
            pos += part[0]
        else:
            raise ValueError(f"bad section in changes: {part!r:.60}")
    return out, pos


def _map_pos(x: int, remote: list[tuple[int, int, int]], assoc: int) -> int:
    """``x`` through remote sections ``(from, to, inserted length)`` (pre-change,
    ascending); at an insert on ``x`` it moves after it if ``assoc > 0``."""
    off = 0
    for rf, rt, n in remote:
        if rf == rt:
            if rf < x or (rf == x and assoc > 0):
                off += n
        elif rt <= x:
            off -= rt - rf
        elif rf < x:
            return rf + off  # inside a deleted range: to where it was
    return x + off


def rebase(own: list[tuple[int, int, str]],
           remote: list[tuple[int, int, int]]) -> list[tuple[int, int, str]] | None:
    """Own sections over one remote update, as CodeMirror's ``ChangeSet.map``
    (ours after theirs at the same place) does in the browser; None for the cases
    we leave to a refusal (a replacement on either side meeting the other)."""
    if any(rf < rt and n for rf, rt, n in remote):
        return None
    out = []
    for f, t, ins in own:
        if f < t:
            if any(rf == rt and f < rf < t for rf, rt, _ in remote):
                return None  # their insert inside our deletion: it would split
            if ins and any(rf < rt and rf < t and rt > f for rf, rt, _ in remote):
                return None
        nf = _map_pos(f, remote, 1)
        nt = max(nf, _map_pos(t, remote, -1)) if f < t else nf
        if nt > nf or ins:
            out.append((nf, nt, ins))
    return out


def _sections_json(sections: list[tuple[int, int, str]], len16: int) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for f, t, ins in sections:
        if f > pos:
            out.append(f - pos)
        out.append([t - f, *ins.split("\n")] if ins else [t - f])
        pos = t
    if len16 > pos:
        out.append(len16 - pos)
    return out


def _changes_json(pos16: int, del16: int, ins: str, len16: int) -> list[Any]:
    out: list[Any] = []
    if pos16:
        out.append(pos16)
    out.append([del16, *ins.split("\n")] if ins else [del16])
    rest = len16 - pos16 - del16
    if rest:
        out.append(rest)
    return out


class Editor(LiveWidget):
    _esm = STATIC / "editor.js"
    root = traitlets.Unicode("").tag(sync=True)
    language = traitlets.Unicode("").tag(sync=True)  # "markdown" or ""

    def __init__(self, text: Any, language: str | None = None) -> None:
        handle = text.handle if isinstance(text, RootProxy) else None
        if handle is None or not hasattr(text, "insert") or not hasattr(text, "delete"):
            raise TypeError(
                f"ui.editor needs a text root of a document (doc.text('name')), "
                f"not {type(text).__name__}")
        node = handle.node
        name = text.name
        if language is None:
            language = "markdown" if name.endswith(".md") else ""
        super().__init__(node, kind="editor", root=name, language=language)
        self._text = text
        self._handle = handle
        self._inbox: deque[Any] = deque()
        self._pushes: deque[Any] = deque()
        self._pushes_scheduled = False
        self._drain_scheduled = False
        self._applying = False
        self._refused: dict[str, int] = {}  # client id -> last epoch with a refused push
        self._unsub: Any = None
        self._observed: Any = None
        self._idx = AstralIndex()
        self._node_off: list[Any] = []
        self._attach()
        try:
            self._node_off.append(node.on("presence", self._on_presence))
            self._node_off.append(node.on("doc_changed", self._on_doc_changed))
        except RuntimeError:  # a node without network: no peers to show
            pass

    # -- CRDT side -------------------------------------------------------------
    def _attach(self) -> None:
        """Observe the root and mirror its text, atomically (under the node lock)."""
        with self._handle.transaction():
            obj = self._handle.crdt.text(self._text.name)
            if self._unsub is not None:
                self._unsub()
            self._inbox.clear()
            self._observed = obj
            self._unsub = obj.observe(self._observe)
            self._idx = AstralIndex(str(obj))

    def _observe(self, delta: Any) -> None:
        # Any thread, under the node lock. Our own applies are mirrored directly.
        if self._applying:
            return
        self._inbox.append(delta)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._node.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        idx = self._idx
        crlf = False
        while self._inbox:
            pos, deleted, inserted, local = self._inbox.popleft()
            crlf = crlf or (local and "\r" in inserted)
            len16 = idx.length16
            pos16 = idx.to16(pos)
            del16 = idx.delete(pos, deleted) if deleted else 0
            if inserted:
                idx.insert(pos, inserted)
            self._push({"c": PY_CLIENT, "ch": _changes_json(pos16, del16, inserted, len16)})
        if crlf:
            self._node.call_soon(self._normalise_line_ends)

    def _normalise_line_ends(self) -> None:
        """CRLF and CR typed on this node (cell code) become LF, as in the browser.

        Only the node that made the edit fixes it, so two peers never both
        replace the same lone CR."""
        if self._closed:
            return
        with self._handle.transaction():
            self._drain()
            s = str(self._observed)
            for i in range(len(s) - 1, -1, -1):
                if s[i] == "\r":
                    self._text.delete(i, 1)
                    if not s.startswith("\n", i + 1):
                        self._text.insert(i, "\n")

    def _on_doc_changed(self, doc_id: bytes, _source: Any) -> None:
        # The node may reload a document (e.g. after refusing a change): the root
        # object is then a new one and our observer went with the old one.
        if doc_id != self._handle.id or self._closed:
            return
        try:
            fresh = self._handle.crdt.text(self._text.name)
        except Exception:
            return
        if fresh is not self._observed:
            self._attach()
            if self._ready:
                self._send_snapshot()

    # -- browser side ----------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        with self._handle.transaction():
            self._drain()
            text = str(self._observed)
        me = self._node
        return {"text": text, "name": me.name, "color": colour_of(me.id),
                "cursors": self._cursors()}

    def _on_comm_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # Comm thread. Pushes queue up and the node thread takes all that are
        # waiting in one transaction: one commit (one fsync, one change on the
        # wire) for every key typed while the node was busy, so a backlog
        # drains instead of growing.
        if isinstance(content, dict) and content.get("t") == "push":
            self._pushes.append(content)
            if not self._pushes_scheduled:
                self._pushes_scheduled = True
                self._node.call_soon(self._take_pushes)
        else:
            super()._on_comm_msg(_widget, content, _buffers)

    def _take_pushes(self) -> None:
        self._pushes_scheduled = False
        if self._closed:
            return
        with self._handle.transaction():
            while self._pushes:
                self._receive(self._pushes.popleft())

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        if t == "push":
            self._on_push(content)
        elif t == "sel":
            self._on_selection(content)
        else:
            super()._on_message(t, content)

    def _on_push(self, msg: dict[str, Any]) -> None:
        updates = msg.get("updates")
        if not isinstance(updates, list):
            raise ValueError("push without updates")
        client, epoch = msg.get("c", ""), msg.get("e", 0)
        if not isinstance(client, str) or not isinstance(epoch, int):
            raise ValueError("push with a bad client id or epoch")
        with self._handle.transaction():
            self._drain()  # under the lock: nothing else can change the text now
            if epoch <= self._refused.get(client, -1):
                return  # made before the browser learnt of an earlier refusal
            mapped = None
            if msg.get("v") != self._version:
                mapped = self._rebase_stale(msg, client)
            if msg.get("v") != self._version and mapped is None:
                # stale: the browser rebases over what it has not seen yet and
                # pushes again in a new epoch; its pipelined pushes of this
                # epoch build on this one, so they are refused too
                self._refused[client] = max(epoch, self._refused.get(client, -1))
                self._flush()  # what it missed first, then the word
                self._post({"t": "refused", "e": epoch})
                return
            idx = self._idx
            for upd in updates:
                if not isinstance(upd, dict) or not isinstance(upd.get("c"), str):
                    raise ValueError("update without a client id")
                if mapped is not None:  # one update, rebased over others' edits
                    edits, upd = mapped, {"c": upd["c"],
                                          "ch": _sections_json(mapped, idx.length16)}
                else:
                    edits = parse_changes(upd.get("ch"), idx.length16)
                self._applying = True
                try:
                    # pre-change offsets, ascending: apply from the end so the
                    # earlier offsets still hold
                    for f16, t16, ins in reversed(edits):
                        cp = idx.to_cp(f16)
                        n = idx.to_cp(t16) - cp
                        if n:
                            self._text.delete(cp, n)
                            idx.delete(cp, n)
                        if ins:
                            self._text.insert(cp, ins)
                            idx.insert(cp, ins)
                finally:
                    self._applying = False
                self._push({"c": upd["c"], "ch": upd["ch"]})

    def _rebase_stale(self, msg: dict[str, Any], client: str) -> Any:
        """A push based on version v < ours: its one update mapped over the
        updates since v, if those are all someone else's (a round trip saved;
        what the browser does with them is the same mapping). None: refuse."""
        v, updates = msg.get("v"), msg.get("updates")
        if not (isinstance(v, int) and isinstance(updates, list) and len(updates) == 1
                and isinstance(updates[0], dict)):
            return None
        first = self._version - len(self._history) + 1
        if not first - 1 <= v < self._version:
            return None
        later = list(self._history)[v - first + 1:]
        if any(u["c"] == client for u in later):
            return None  # our own updates since v: it may build on a refused one
        # the length of the text at version v: ours minus what came since
        len16 = self._idx.length16
        walks = []
        for u in later:
            secs = _walk(u["ch"])
            walks.append(secs)
            len16 -= sum(len(ins.encode("utf-16-le")) // 2 - (t - f) for f, t, ins in secs)
        try:
            own = parse_changes(updates[0].get("ch"), len16)
        except ValueError:
            return None
        for secs in walks:
            own = rebase(own, [(f, t, len(ins.encode("utf-16-le")) // 2) for f, t, ins in secs])
            if own is None:
                return None
        return own

    def _on_selection(self, msg: dict[str, Any]) -> None:
        if msg.get("v") != self._version:
            return  # positions of a version we have moved past: the next one comes
        a, h = msg.get("anchor"), msg.get("head")
        if not (isinstance(a, int) and isinstance(h, int)):
            raise ValueError("selection needs integer anchor and head")
        sel = [self._idx.to_cp(a), self._idx.to_cp(h)]
        PresenceBoard.update(self._node, self._handle.id, "cursors", self._text.name, sel)

    # -- remote cursors ----------------------------------------------------------
    def _cursors(self) -> list[dict[str, Any]]:
        try:
            states = self._node.presence(self._handle)
        except RuntimeError:
            return []
        out = []
        idx = self._idx
        for peer, st in states.items():
            if not isinstance(st, dict):
                continue
            sel = (st.get("cursors") or {}).get(self._text.name)
            if not (isinstance(sel, list) and len(sel) == 2
                    and all(isinstance(x, int) and 0 <= x <= idx.length for x in sel)):
                continue
            out.append({"id": peer.hex()[:8], "name": str(st.get("name", peer.hex()[:8])),
                        "color": str(st.get("color", colour_of(peer))),
                        "anchor": idx.to16(sel[0]), "head": idx.to16(sel[1])})
        return out

    def _on_presence(self, doc: Any, _peer: Any, _state: Any) -> None:
        if doc != self._handle.id or not self._ready or self._closed:
            return
        self._drain()
        self._flush()  # the browser must be at our version to place the cursors
        self._post({"t": "cursors", "v": self._version, "cursors": self._cursors()})

    # -- life ----------------------------------------------------------------------
    def _detach(self) -> None:
        for off in getattr(self, "_node_off", []):
            off()
        self._node_off = []
        if getattr(self, "_unsub", None) is not None:
            unsub, self._unsub = self._unsub, None
            unsub()

    @property
    def value(self) -> str:
        return str(self._text)
