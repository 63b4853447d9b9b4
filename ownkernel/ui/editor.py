"""``ui.editor(text)``: a CodeMirror 6 editor bound to a text root, character by character.

The kernel is the authority of ``@codemirror/collab`` for its browser: a
version is the number of updates it has accepted, and it sends them all, in
order, to every view. A view pushes its local updates at once (pipelined: no
round trip per key) with the version it had received when it made them. By the
time a push arrives the kernel may have accepted other updates (a peer's, cell
code's, another view's), so each push goes through that client's **bridge**, as
an OT server keeps one: a replay of what the view does with its own unconfirmed
updates as it receives ours (``receiveUpdates``: drop its own, rebase the rest
over everyone else's), from which we know the exact document the update was
made on, and map it, with CodeMirror's own rules (utf16.ChangeSet, a port),
over every update the view had not seen. Every push is applied on arrival; none
is refused, so two pages typing at once never wait for each other.
Changes from elsewhere become updates with client id ``"py"``, so CodeMirror
maps the local caret and selection through them.

Positions on the wire are UTF-16 units; :class:`AstralIndex` mirrors the text
as the browser knows it (at our current version) to convert them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import traitlets

from ownkernel.crdt.comments import KEY as COMMENTS_KEY
from ownkernel.node.handle import RootProxy
from ownkernel.ui.base import (
    HISTORY,
    STATIC,
    LiveWidget,
    PresenceBoard,
    announce,
    colour_of,
    node_colour,
    safe_colour,
)
from ownkernel.ui.channel import DirectWidget
from ownkernel.ui.docview import _names
from ownkernel.ui.utf16 import AstralIndex, ChangeSet

__all__ = ["Editor", "parse_changes"]

log = logging.getLogger("ownkernel.ui")

PY_CLIENT = "py"
MAX_SECTIONS = 64  # remote edits composed into one update until it has this many parts


# Latency tracing for benchmarks/ui.py --trace: with $OWNKERNEL_UI_TRACE set,
# each kernel appends "stage text-length wall-clock-ms" lines to that path plus
# its pid, for every step a keystroke takes through it. Off: one test per step.
_TRACE_PATH = os.environ.get("OWNKERNEL_UI_TRACE")
_trace_file: Any = None


def _trace(stage: str, length16: int) -> None:
    global _trace_file
    if _trace_file is None:
        _trace_file = open(f"{_TRACE_PATH}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
    _trace_file.write(f"{stage} {length16} {time.time() * 1000:.3f}\n")


def parse_changes(spec: Any, length16: int) -> list[tuple[int, int, str]]:
    """A CodeMirror ``ChangeSet.toJSON()`` as ``[(from, to, insert)]`` in the
    pre-change document's UTF-16 offsets, ascending; checks it covers ``length16``."""
    cs = ChangeSet.from_json(spec)
    if cs.length != length16:
        raise ValueError(f"changes cover {cs.length} UTF-16 units, the text has {length16}")
    return cs.edits()


@dataclass
class Bridge:
    """What the kernel knows of one view (client id): the version ``v`` it had
    last received when it pushed, its updates not yet confirmed by then (in its
    own frame, as it holds them), and the number of the next update it sends."""

    gen: int
    v: int
    unconfirmed: list[ChangeSet] = field(default_factory=list)
    seq: int = 0


BLAME_EVERY = 0.3  # seconds: while blame is on, edits refresh it at most this often


class Editor(DirectWidget, LiveWidget):
    _esm = STATIC / "editor.js"
    root = traitlets.Unicode("").tag(sync=True)
    language = traitlets.Unicode("").tag(sync=True)  # "markdown" or ""
    # Blame (issue #12 §2): on request the editor colours every character by who
    # wrote it. Set here (``editor.blame = True``) or with the page's button.
    blame = traitlets.Bool(False).tag(sync=True)

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
        self._direct_init()
        self._watch_first_sync(handle)
        self._text = text
        self._handle = handle
        self._inbox: deque[Any] = deque()
        self._pushes: deque[Any] = deque()
        self._pushes_scheduled = False
        self._drain_scheduled = False
        self._applying = False
        self._bridges: dict[str, Bridge] = {}
        self._gen = 0  # snapshots sent: a push names the one it builds on
        self._snap_v = 0  # version of the last snapshot
        # the updates of _history as change sets, with their client id (same length)
        self._updates: deque[tuple[str, ChangeSet]] = deque(maxlen=HISTORY)
        self._unsub: Any = None
        self._doc_unsub: Any = None
        self._observed: Any = None
        self._idx = AstralIndex()
        self._node_off: list[Any] = []
        self._blame_due = False
        self._comments_due = False
        self._comments_key: Any = None  # what the page was last told of the threads
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
            if self._doc_unsub is not None:
                self._doc_unsub()
            # once per change (after its ops), with the objects it touched
            self._doc_unsub = self._handle.crdt.observe(self._on_doc_event)

    def _observe(self, delta: Any) -> None:
        # Any thread, under the node lock. Our own applies are mirrored directly.
        if self._applying:
            return
        self._inbox.append(delta)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._node.call_soon(self._drain)

    def _on_doc_event(self, ev: Any) -> None:
        """Any thread, under the node lock, after each change to the doc is applied.

        A remote change to our text is sent to the page from right here (when the
        rate allows), on the node thread in the middle of storing the frames it
        came in: the drain that ``_observe`` scheduled would run only after the
        store's commit (an fsync), and a key typed on the other node would wait
        for our disk before showing. The page is shown what the node's memory
        holds, as the scheduled drain would show it; only the moment is earlier
        (the change is durable at its author's; a refused store write reloads the
        doc, and the page gets a fresh snapshot). Only the leading edge: within a
        batching window the scheduled drain composes the rest into one update."""
        # Never raise from here: we are inside the CRDT's apply of someone's change
        # (a failing widget must not fail the node's ingest of a frame).
        try:
            if COMMENTS_KEY in ev.objects:
                self._comments_soon(0.1)  # a comment added, replied to or resolved
            if (ev.local or not self._inbox or self._flush_pending or not self._ready
                    or self._closed or not self._on_node_thread()):
                return
            self._eager = True
            try:
                self._drain()
            finally:
                self._eager = False
        except Exception:
            log.exception("editor: sending a remote change to the page failed")

    _eager = False  # _drain is sending the leading edge of a remote change at once

    def _drain(self) -> None:
        """Node thread: the CRDT's changes since the last drain, as few updates:
        consecutive edits are composed (a burst of thousands of remote changes
        costs the browser a few updates, not one each)."""
        with self._node.lock:
            # under the lock, so that the mirror (idx) and the numbered updates
            # move with the text in one step: without it a push handled just
            # after could be mapped against a text the updates do not describe
            self._drain_locked()

    def _drain_locked(self) -> None:
        self._drain_scheduled = False
        idx = self._idx
        crlf = False
        cs: ChangeSet | None = None
        while self._inbox:
            pos, deleted, inserted, local = self._inbox.popleft()
            crlf = crlf or (local and "\r" in inserted)
            len16 = idx.length16
            pos16 = idx.to16(pos)
            if cs is not None and len(cs.sections) > 2 * MAX_SECTIONS:
                self._push_update(PY_CLIENT, cs)  # idx is at its end: n16 is right
                cs = None
            del16 = idx.delete(pos, deleted) if deleted else 0
            if inserted:
                idx.insert(pos, inserted)
            one = ChangeSet.single(len16, pos16, del16, inserted)
            cs = one if cs is None else cs.compose(one)
        if cs is not None:
            if _TRACE_PATH:  # (before the push: a leading edge is posted inside it)
                _trace("drain", idx.length16)
            self._push_update(PY_CLIENT, cs)
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
        # every view starts over from here: its bridge too
        self._gen += 1
        self._snap_v = self._version
        self._bridges.clear()
        announce(me, self._handle.id, "editor", self._text.name, True)
        if self.blame:  # a new view (or a resync): its blame follows the snapshot
            self._blame_soon(0.0)
        self._comments_key = None  # and so do the comments
        self._comments_soon(0.0)
        return {"text": text, "g": self._gen, "name": me.name, "color": node_colour(me),
                "cursors": self._cursors()}

    def _post(self, msg: dict[str, Any]) -> None:
        if not _TRACE_PATH:
            super()._post(msg)
            return
        t0 = time.perf_counter()
        super()._post(msg)
        _trace("send_us", int((time.perf_counter() - t0) * 1e6))  # how long the comm send took

    def _push_update(self, client: str, cs: ChangeSet) -> None:
        self._updates.append((client, cs))
        self._push({"c": client, "ch": cs.to_json()}, now=self._eager)
        if self.blame:
            self._blame_soon(BLAME_EVERY)

    def _stale_view(self, content: dict[str, Any]) -> bool:
        # a view built on an older snapshot: its pushes would all be ignored
        # (``_on_push``), so it gets the current one
        g = content.get("g")
        return isinstance(g, int) and not isinstance(g, bool) and g != self._gen

    def _deltas_extra(self) -> dict[str, Any]:
        # the text's length at the last delta sent: a view with nothing
        # unconfirmed checks it and asks for a snapshot if it differs
        if _TRACE_PATH:
            _trace("post", self._idx.length16)
        return {"n16": self._idx.length16}

    def _on_comm_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # Comm thread. Pushes queue up and the node thread takes all that are
        # waiting in one transaction: one commit (one fsync, one change on the
        # wire) for every key typed while the node was busy, so a backlog
        # drains instead of growing.
        if isinstance(content, dict) and content.get("t") == "push":
            self._note_push(content)
            self._pushes.append(content)
            if not self._pushes_scheduled:
                self._pushes_scheduled = True
                self._node.call_soon(self._take_pushes)
        else:
            super()._on_comm_msg(_widget, content, _buffers)

    def _note_push(self, content: dict[str, Any]) -> None:
        if _TRACE_PATH:
            try:
                _trace("recv", ChangeSet.from_json(content["updates"][-1]["ch"]).new_length)
            except Exception:  # a bad push: the node thread will say what
                pass

    def _take_pushes(self) -> None:
        self._pushes_scheduled = False
        if self._closed or not self._pushes:
            return
        if _TRACE_PATH:
            _trace("take", self._idx.length16)
        with self._handle.transaction():
            while self._pushes:
                self._receive(self._pushes.popleft())
        if _TRACE_PATH:
            _trace("commit", self._idx.length16)

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        if t == "push":
            self._on_push(content)
        elif t == "sel":
            self._on_selection(content)
        elif t == "blame":
            on = content.get("on")
            if not isinstance(on, bool):
                raise ValueError("blame needs on: true or false")
            self.blame = on  # (the observer below sends it)
        else:
            super()._on_message(t, content)

    # -- comments (issue #12 §3: the editor shows the anchors and the threads) -------
    def _comments_soon(self, delay: float) -> None:
        if self._comments_due or self._closed:
            return
        self._comments_due = True
        self._node.call_soon(self._schedule_comments, delay)

    def _schedule_comments(self, delay: float) -> None:
        try:
            asyncio.get_running_loop().call_later(delay, self._send_comments)
        except RuntimeError:
            self._send_comments()

    def _send_comments(self) -> None:
        """Node thread: the text's comment threads with their anchors (UTF-16, at our
        version), when they changed; the page maps the anchors through later edits."""
        self._comments_due = False
        if self._closed or not self._ready:
            return
        self._drain()
        with self._node.lock:
            threads = self._observed.comments().threads()
            # (the peer list behind the names costs ~2 ms: not for a text without threads)
            names = _names(self._node) if threads else {}
            idx = self._idx

            def who(a: bytes) -> dict[str, str]:
                name, colour = names.get(a, (a.hex()[:8], colour_of(a)))
                return {"name": str(name), "color": safe_colour(colour, colour_of(a))}
            out = [{"id": t.id, "quote": t.quote, "text": t.text, "resolved": t.resolved,
                    **who(t.author),
                    "from": None if t.start is None else idx.to16(t.start),
                    "to": None if t.end is None else idx.to16(t.end),
                    "replies": [{"text": r.text, **who(r.author)} for r in t.replies]}
                   for t in threads]
            v = self._version
        key = [{k: x for k, x in t.items() if k not in ("from", "to", "quote")} for t in out]
        if key == self._comments_key:
            return  # only positions moved: the page maps those itself
        self._comments_key = key
        self._flush()  # the page must be at our version (v) to place the anchors
        self._post({"t": "comments", "v": v, "threads": out})

    # -- blame -------------------------------------------------------------------
    @traitlets.observe("blame")
    def _blame_changed(self, _change: Any) -> None:
        # any thread (a cell sets it): the node thread sends
        self._blame_soon(0.0)

    def _blame_soon(self, delay: float) -> None:
        if self._blame_due or self._closed:
            return
        self._blame_due = True
        self._node.call_soon(self._schedule_blame, delay)

    def _schedule_blame(self, delay: float) -> None:
        try:
            asyncio.get_running_loop().call_later(delay, self._send_blame)
        except RuntimeError:  # a node without a loop: now
            self._send_blame()

    def _send_blame(self) -> None:
        """Node thread: who wrote what, as UTF-16 ranges at our current version
        (``ranges`` None: blame is off)."""
        self._blame_due = False
        if self._closed or not self._ready:
            return
        if not self.blame:
            self._post({"t": "blame", "v": self._version, "ranges": None})
            return
        self._drain()
        self._flush()  # the page must be at our version to place the ranges
        with self._node.lock:
            spans = self._observed.blame()
            idx = self._idx
            names = _names(self._node)
            ranges = []
            for start, end, actor in spans:
                name, colour = names.get(actor, (actor.hex()[:8], colour_of(actor)))
                ranges.append([idx.to16(start), idx.to16(end),
                               safe_colour(colour, colour_of(actor)), str(name)])
            v = self._version
        self._post({"t": "blame", "v": v, "ranges": ranges})

    def _on_push(self, msg: dict[str, Any]) -> None:
        updates, client = msg.get("updates"), msg.get("c")
        gen, seq, v = msg.get("g"), msg.get("n"), msg.get("v")
        if not isinstance(updates, list) or not updates:
            raise ValueError("push without updates")
        if not isinstance(client, str) or client == PY_CLIENT or not client:
            raise ValueError(f"push with a bad client id {client!r:.40}")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (gen, seq, v)):
            raise ValueError("push needs integer g (snapshot), n (sequence) and v (version)")
        with self._handle.transaction():
            self._drain()  # under the lock: nothing else can change the text now
            if gen != self._gen:
                return  # built on an older snapshot: the view has dropped it too
            br = self._bridges.get(client)
            if br is None:
                br = self._bridges[client] = Bridge(gen, self._snap_v)
            if seq > br.seq:
                # Its earlier pushes are still on the other road (a comm push can
                # overtake the direct ones a closing WebSocket still carries), or
                # were lost with it. Not an error: a view resends everything
                # unconfirmed, in order, after every switch of road. (An error
                # here would answer with a snapshot, which a view that is
                # leaving the direct road may never see.)
                return
            if seq + len(updates) <= br.seq:
                return  # all of it arrived already (resent after a channel switch)
            self._advance(br, v, client)
            # a view that changed channel resends its unconfirmed updates: skip those
            # we have (after _advance they are exactly br.unconfirmed, in its frame)
            skip = br.seq - seq
            if skip > len(br.unconfirmed):
                raise ValueError(f"push number {seq} from {client} resends confirmed updates")
            for upd in updates[skip:]:
                if not isinstance(upd, dict) or upd.get("c") != client:
                    raise ValueError("update without its client's id")
                own = ChangeSet.from_json(upd.get("ch"))
                self._apply(client, self._through_bridge(br, own, client))
                br.unconfirmed.append(own)
                br.seq += 1

    def _since(self, v: int) -> list[tuple[str, ChangeSet]]:
        """The updates after version ``v``; LookupError if no longer kept."""
        first = self._version - len(self._updates) + 1
        if not first - 1 <= v <= self._version:
            raise LookupError(f"version {v} is not kept (kept: {first}..{self._version})")
        return list(self._updates)[v - first + 1:]

    def _advance(self, br: Bridge, v: int, client: str) -> None:
        """Replay on the bridge what the view did on receiving our updates up to ``v``."""
        if v < br.v or v > self._version:
            raise ValueError(f"push based on version {v}: expected {br.v}..{self._version}")
        if not br.unconfirmed:  # nothing to rebase: no need for the history
            br.v = v
            return
        for c, h in self._since(br.v)[:v - br.v]:
            if c == client:
                br.unconfirmed.pop(0)  # confirmed (ours come back in order)
                if not br.unconfirmed:
                    break
            else:
                br.unconfirmed = _rebase(br.unconfirmed, h)
        br.v = v

    def _through_bridge(self, br: Bridge, own: ChangeSet, client: str) -> ChangeSet:
        """``own``, made on the view's document (version ``br.v`` plus its
        unconfirmed updates), mapped onto the document at our version."""
        pending = list(br.unconfirmed)
        for c, h in self._since(br.v):
            if c == client:
                if not pending:
                    raise ValueError(f"push from {client} does not match what it was sent")
                pending.pop(0)
            else:
                # the other update as it looks after the view's pending ones;
                # ours go after theirs at the same place (as receiveUpdates maps)
                h = _rebase_over(pending, h)
                own = own.map(h)
        if pending:
            raise ValueError(f"push from {client} skips some of its own updates")
        if own.length != self._idx.length16:
            raise ValueError(f"changes cover {own.length} UTF-16 units, "
                             f"the text has {self._idx.length16}")
        return own

    def _apply(self, client: str, cs: ChangeSet) -> None:
        """One update onto the CRDT as character ops, numbered and echoed (the
        echo confirms it to its view; others receive it as any update)."""
        idx = self._idx
        self._applying = True
        try:
            # pre-change offsets, ascending: apply from the end so the
            # earlier offsets still hold
            for f16, t16, ins in reversed(cs.edits()):
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
        self._push_update(client, cs)
        if _TRACE_PATH:
            _trace("applied", idx.length16)

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
                        "color": safe_colour(st.get("color"), colour_of(peer)),
                        "anchor": idx.to16(sel[0]), "head": idx.to16(sel[1])})
        return out

    def _on_presence(self, doc: Any, _peer: Any, _state: Any) -> None:
        if doc != self._handle.id or not self._ready or self._closed:
            return
        self._comments_soon(0.1)  # names travel in presence: the threads show them
        self._drain()
        self._flush()  # the browser must be at our version to place the cursors
        self._post({"t": "cursors", "v": self._version, "cursors": self._cursors()})

    # -- life ----------------------------------------------------------------------
    def _detach(self) -> None:
        node = getattr(self, "_node", None)  # (None: __init__ failed early)
        if node is not None and getattr(self, "_direct", None):
            try:
                node.call_soon(self._direct_close_all)  # (their transports: node thread)
            except RuntimeError:  # the network stopped: the views went with it
                pass
        if getattr(self, "_ready", False):
            announce(self._node, self._handle.id, "editor", self._text.name, False)
        for off in getattr(self, "_node_off", []):
            off()
        self._node_off = []
        if getattr(self, "_unsub", None) is not None:
            unsub, self._unsub = self._unsub, None
            unsub()
        if getattr(self, "_doc_unsub", None) is not None:
            unsub, self._doc_unsub = self._doc_unsub, None
            unsub()

    @property
    def value(self) -> str:
        return str(self._text)


def _rebase(pending: list[ChangeSet], other: ChangeSet) -> list[ChangeSet]:
    """A view's unconfirmed updates after it received ``other`` (receiveUpdates)."""
    out = []
    for u in pending:
        out.append(u.map(other))
        other = other.map(u, True)
    return out


def _rebase_over(pending: list[ChangeSet], other: ChangeSet) -> ChangeSet:
    """``other`` as it applies after the view's unconfirmed updates; ``pending``
    is rebased over it in place (what the view will do on receiving it)."""
    for i, u in enumerate(pending):
        pending[i] = u.map(other)
        other = other.map(u, True)
    return other
