"""The protocol every ownkernel widget speaks, and its threading.

Python → browser:
  ``{"t": "snapshot", "v": V, ...state}``     the whole state at version V
  ``{"t": "deltas", "from": F, "ops": [...]}`` deltas numbered F, F+1, ...
Browser → Python:
  ``{"t": "ready"}``                 the front-end rendered: send a snapshot
  ``{"t": "resync", "v": V}``        it saw a gap after V: resend from V (or snapshot)
  anything else                      widget-specific (edits, chat messages)

Custom messages sent before the front-end rendered are lost (anywidget docs),
hence nothing is sent before ``ready``. Deltas are batched: at most one message
every ``1 / MAX_RATE`` s per widget, so a burst of remote edits costs the
browser a few messages, not thousands.

Threads: only the node thread writes to a widget. Comm handlers (the kernel's
main or subshell thread) only hand the message over with ``node.call_soon``;
CRDT observers (whichever thread edited, under the node lock) only queue the
change and ask the node thread to drain it, so the order of changes is kept.
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import logging
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import anywidget
import traitlets

log = logging.getLogger("ownkernel.ui")

STATIC = Path(__file__).with_name("static")
MAX_RATE = 60.0  # delta messages per second and widget
HISTORY = 4000  # deltas kept for resync before we fall back to a snapshot

__all__ = ["LiveWidget", "PresenceBoard", "announce", "colour_of", "in_call", "node_colour",
           "safe_colour"]


def colour_of(node_id: bytes) -> str:
    """A stable, readable colour for a peer (hue from its id)."""
    h = hashlib.blake2b(node_id, digest_size=2).digest()
    hue = int.from_bytes(h, "big") / 65536
    r, g, b = colorsys.hls_to_rgb(hue, 0.42, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def safe_colour(value: Any, fallback: str) -> str:
    """``value`` if it is ``#rrggbb``, else ``fallback``: colours come from
    peers (presence, chat messages) and end up in style attributes."""
    return value if isinstance(value, str) and _HEX.fullmatch(value) else fallback


def node_colour(node: Any) -> str:
    """The colour a node chose (``node.color``), else one from its id."""
    c = getattr(node, "color", None)
    return c if isinstance(c, str) and c else colour_of(node.id)


class PresenceBoard:
    """One presence state per (node, doc), merged from every widget showing that doc.

    ``node.set_presence`` replaces a node's whole state for a doc, so two widgets
    on one doc (an editor and a chat) must not overwrite each other's part.
    """

    _states: dict[tuple[int, bytes], dict[str, Any]] = {}

    @classmethod
    def update(cls, node: Any, doc_id: bytes, part: str, key: str, value: Any) -> None:
        st = cls._states.setdefault((id(node), doc_id), {})
        st["name"] = node.name
        st["color"] = node_colour(node)
        section = st.setdefault(part, {})
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
        try:
            node.set_presence(doc_id, dict(st))
        except RuntimeError:  # no network: nobody to tell
            pass


def in_call(states: Any) -> list[str]:
    """Names of the peers whose presence states (of one doc) say they are in its call."""
    return [str(st.get("name") or "?") for st in states
            if isinstance(st, dict) and isinstance(st.get("call"), dict)
            and st["call"].get("joined") is True]


def announce(node: Any, doc_id: bytes, kind: str, root: str, shown: bool) -> None:
    """Tell the doc's peers that a widget of ours shows it (presence "open"):
    they see us present in it, under our current name and colour."""
    try:
        PresenceBoard.update(node, doc_id, "open", f"{kind}:{root}", True if shown else None)
    except Exception as exc:  # a closing node: nobody left to tell
        log.debug("presence not announced: %s", exc)


class LiveWidget(anywidget.AnyWidget):
    """Base class: snapshot on ready, numbered batched deltas, resync on gaps."""

    kind = traitlets.Unicode("").tag(sync=True)
    # a doc joined a moment ago whose first sync has not landed (the page says "syncing…")
    syncing = traitlets.Bool(False).tag(sync=True)

    def __init__(self, node: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._node = node
        self._version = 0
        self._outbox: list[Any] = []
        self._history: deque[Any] = deque(maxlen=HISTORY)  # the last deltas, in order
        self._flush_pending = False
        self._last_flush = 0.0
        self._ready = False
        self._closed = False
        self.messages_sent = 0  # for tests and benchmarks
        self.on_msg(self._on_comm_msg)

    def _watch_first_sync(self, handle: Any) -> None:
        """Show "syncing…" until ``handle``'s doc holds something from another node."""
        if handle.received:
            return
        self.syncing = True
        node, off = self._node, None

        def changed(doc_id: bytes, source: Any) -> None:  # node thread
            if doc_id == handle.id and source is not None and self.syncing:
                self.syncing = False
                if off is not None:
                    off()
        try:
            off = node.on("doc_changed", changed)
        except RuntimeError:  # no network: nothing will arrive
            self.syncing = False
            return
        if handle.received:  # it landed between the check and the subscription
            self.syncing = False
            off()

    # -- browser -> Python --------------------------------------------------------
    def _on_comm_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # Comm thread: hand over, do nothing else (see module doc).
        self._node.call_soon(self._receive, content)

    def _on_node_thread(self) -> bool:
        """True on the node's network thread (the one thread that writes to widgets)."""
        net = getattr(self._node, "network", None)
        return net is not None and threading.current_thread() is getattr(net, "_thread", None)

    def _receive(self, content: Any) -> None:
        """Node thread: one message from the front-end."""
        if self._closed:
            return
        try:
            if not isinstance(content, dict) or not isinstance(content.get("t"), str):
                raise ValueError(f"widget message without a type: {content!r:.80}")
            t = content["t"]
            if t == "ready":
                self._send_snapshot()
            elif t == "resync":
                if self._stale_view(content):
                    self._send_snapshot()
                else:
                    self._resync(content.get("v"))
            else:
                self._on_message(t, content)
        except Exception as exc:
            # Bad input loses nothing: the front-end gets a fresh snapshot.
            log.warning("%s widget: bad message from the browser: %s", self.kind, exc)
            self._post({"t": "error", "error": f"{self.kind}: {exc}"})
            self._send_snapshot()

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        raise ValueError(f"unknown message type {t!r}")

    # -- Python -> browser --------------------------------------------------------
    def _post(self, msg: dict[str, Any]) -> None:
        self.messages_sent += 1
        self.send(msg)

    def _snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def _send_snapshot(self) -> None:
        snap = self._snapshot()
        self._outbox.clear()  # the snapshot covers them
        self._post({"t": "snapshot", "v": self._version, **snap})
        self._ready = True

    def _stale_view(self, content: dict[str, Any]) -> bool:
        """Does a view that asks to catch up over the comm (``resync`` after it left
        the direct channel) hold an older snapshot than ours? Then deltas cannot
        help it: its snapshot went down with the road it was leaving. Widgets that
        number their snapshots (the editor's ``g``) say so; others never are."""
        return False

    def _resync(self, v: Any) -> None:
        hist = self._history
        first = self._version - len(hist) + 1  # number of the oldest kept delta
        if isinstance(v, int) and not isinstance(v, bool) and first - 1 <= v <= self._version:
            self._outbox.clear()
            ops = list(hist)[v - first + 1:]
            self._post({"t": "deltas", "from": v + 1, "ops": ops, **self._deltas_extra()})
            self._last_flush = time.monotonic()
        else:
            self._send_snapshot()

    def _push(self, delta: Any, now: bool = False) -> None:
        """Node thread: number one delta and send it soon (batched).

        ``now``: when the rate allows, send it at once rather than on the loop's
        next turn. For a caller in the middle of a longer node-thread step (a
        network burst being stored): the next turn comes only after that step's
        commit, and the page would wait for our fsync for nothing."""
        self._version += 1
        self._history.append(delta)
        if not self._ready:
            return  # the snapshot on ready will include it
        self._outbox.append(delta)
        if self._flush_pending:
            return
        delay = self._last_flush + 1.0 / MAX_RATE - time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or (now and delay <= 0):  # (no network thread: always now)
            self._flush()
            return
        self._flush_pending = True
        if delay > 0:
            loop.call_later(delay, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if not self._outbox or self._closed:
            return
        ops, self._outbox = self._outbox, []
        self._last_flush = time.monotonic()
        self._post({"t": "deltas", "from": self._version - len(ops) + 1, "ops": ops,
                    **self._deltas_extra()})

    def _deltas_extra(self) -> dict[str, Any]:
        """Fields a subclass adds to every deltas message (state after the last op)."""
        return {}

    # -- polling -----------------------------------------------------------------
    # unsubscribers a subclass collects; a class default, so that closing a widget
    # whose __init__ raised early (a wrong argument) finds none rather than failing
    _off: Any = ()
    POLL: float | None = None  # seconds: a widget whose state also changes without an event
    _poll_timer: asyncio.TimerHandle | None = None

    def _changed(self, *_: Any) -> None:
        """Node thread: re-read the state and push it if it changed (polling widgets)."""

    def _poll(self) -> None:
        """Node thread: ``_changed`` now, then every ``POLL`` seconds until closed
        (started by the first snapshot; a node without a loop only reads on events)."""
        if self._closed or self.POLL is None:
            return
        self._changed()
        try:
            self._poll_timer = asyncio.get_running_loop().call_later(self.POLL, self._poll)
        except RuntimeError:
            self._poll_timer = None

    # -- life --------------------------------------------------------------------
    def _detach(self) -> None:
        """Stop listening to the node: call every unsubscriber in ``_off`` once.
        Subclasses with more to undo extend this and call it."""
        offs, self._off = list(self._off), []
        for off in offs:
            off()

    def close(self) -> None:
        self._closed = True
        if self._poll_timer is not None:
            self._poll_timer.cancel()
        try:
            self._detach()
        finally:
            super().close()
