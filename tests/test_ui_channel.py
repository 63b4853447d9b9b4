"""The widgets' direct channel (ownkernel/ui/channel.py) against real nodes and a
real Unix socket: the token check, frames, bad input, and switching between the
direct channel and the comm without losing or duplicating an edit."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_front import EditorFront, two_nodes
from waiting import until

from ownkernel import ui
from ownkernel.ui import channel
from ownkernel.ui.channel import Channel, encode, pointer_path


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    ids = iter(["kernel-a", "kernel-b"])  # one "kernel" per node, as in a Jupyter server
    monkeypatch.setattr(channel, "kernel_identity", lambda: (next(ids), str(runtime)))
    with two_nodes(tmp_path, lambda d: d.text("body").insert(0, "héllo 😀 wörld")) as p:
        yield (*p, runtime)


def connect(runtime: Path, kernel: str) -> socket.socket:
    """What the server extension does: find the kernel's socket from its pointer file."""
    with open(pointer_path(str(runtime), kernel)) as f:
        path = json.load(f)["socket"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the node closes the connection."""
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


class DirectFront(EditorFront):
    """editor.js with channel.js: ready over the comm (with its client id), then the
    direct channel with the token it was offered; back to the comm on ``drop``."""

    def __init__(self, widget: Any, client: str, runtime: Path) -> None:
        super().__init__(widget, client)
        self.runtime = runtime
        self.sock: socket.socket | None = None
        self.comm: list[dict[str, Any]] = []  # everything the comm carried
        self.hold: list[dict[str, Any]] = []  # comm pushes held back (a slow comm)
        self.slow_comm = False
        self.closing = False  # ws.close() called, onclose not yet: comm sends, no reads
        self.held_direct: list[bytes] = []  # direct frames not yet on the wire
        self.slow_direct = False

    def _record(self, msg: dict[str, Any], buffers: Any = None) -> None:
        with self.lock:
            self.comm.append(msg)
            if self.sock is None:  # a direct view ignores the comm
                self.sent.append((time.monotonic(), msg))

    def deliver(self, content: dict[str, Any]) -> None:
        if self.sock is not None and not self.closing:
            if self.slow_direct:
                self.held_direct.append(encode(content))
            else:
                self.sock.sendall(encode(content))
            return
        if self.closing and content["t"] == "push":  # channel.js: not OPEN -> the comm
            super().deliver(content)
            return
        if content["t"] in ("ready", "resync", "direct?"):
            content = {**content, "c": self.client, "direct": True}
        if content["t"] == "push" and self.slow_comm:
            self.hold.append(content)
            return
        super().deliver(content)

    def offers(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.comm if m.get("t") == "direct" and m["c"] == self.client]

    def offer(self) -> dict[str, Any]:
        return until(lambda: (self.offers() or [None])[-1], 10, "direct channel offered")

    def attach(self) -> None:
        offer = self.offer()
        s = connect(self.runtime, offer["kernel"])
        s.sendall(encode({"t": "hello", "token": offer["token"], "v": self.version}))
        threading.Thread(target=self._read, args=(s,), daemon=True).start()
        self.sock = s
        self.switched()

    def _read(self, s: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
                *lines, buf = buf.split(b"\n")
                with self.lock:
                    if self.closing:  # a closing WebSocket hands the page nothing more
                        continue
                    self.sent.extend((time.monotonic(), json.loads(x)) for x in lines if x)
        except OSError:
            return

    def switched(self) -> None:
        # what editor.js does on a switch: resend every unconfirmed update
        self.seq -= self.pushed
        self.pushed = 0
        self.push()

    def drop(self) -> None:
        """The WebSocket closes: resync over the comm, resend what is unconfirmed."""
        assert self.sock is not None
        s, self.sock = self.sock, None
        s.shutdown(socket.SHUT_RDWR)
        s.close()
        self.deliver({"t": "resync", "v": self.version, "g": self.gen})
        self.switched()


def direct_view(doc: Any, runtime: Path) -> tuple[Any, DirectFront]:
    """An editor on ``doc``'s body with one view: ready over the comm, then attached
    to the direct channel with the token it was offered."""
    w = ui.editor(doc.text("body"))
    f = DirectFront(w, "pageA", runtime)
    f.deliver({"t": "ready"})
    f.settle()
    f.attach()
    return w, f


def both_ready(wa: Any, wb: Any, runtime: Path) -> tuple[DirectFront, DirectFront]:
    fa, fb = DirectFront(wa, "pageA", runtime), DirectFront(wb, "pageB", runtime)
    for f in (fa, fb):
        f.deliver({"t": "ready"})
        f.settle()
    return fa, fb


def test_typing_both_ways_over_the_direct_channel(pair) -> None:
    a, b, da, db, runtime = pair
    wa, wb = ui.editor(da.text("body")), ui.editor(db.text("body"))
    fa, fb = both_ready(wa, wb, runtime)
    fa.attach()
    fb.attach()
    comm_before = len(fa.comm)
    fa.settle()
    fa.edit(8, 0, "é😀")
    fa.settle()
    assert str(da.text("body")) == "héllo 😀é😀 wörld"
    until(lambda: (fb.pump(), fb.text)[1] == "héllo 😀é😀 wörld", 10, "A's edit on page B")
    fb.settle()
    fb.edit(6, 2, "")  # B deletes the first emoji: two UTF-16 units, one character
    fb.settle()
    until(lambda: (fa.pump(), fa.text)[1] == "héllo é😀 wörld", 10, "B's edit on page A")
    assert str(da.text("body")) == str(db.text("body")) == "héllo é😀 wörld"
    # every view is direct: nothing more went over the comm
    assert fa.comm[comm_before:] == []
    wa.close()
    wb.close()


def test_a_stranger_or_a_wrong_token_gets_nothing(pair) -> None:
    a, b, da, db, runtime = pair
    wa = ui.editor(da.text("body"))
    fa = DirectFront(wa, "pageA", runtime)
    fa.deliver({"t": "ready"})
    offer = fa.offer()
    for first in [{"t": "hello", "token": "x" + offer["token"][1:]},
                  {"t": "hello", "token": 42},
                  {"t": "push", "c": "pageA", "g": 1, "n": 0, "v": 0, "updates": []},
                  {"t": "ready"}]:
        s = connect(runtime, offer["kernel"])
        s.sendall(encode(first))
        assert read_all(s) == b""  # closed, without a byte
        s.close()
    s = connect(runtime, offer["kernel"])
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert read_all(s).startswith(b'{"t":"error"')  # not JSON: said so, then closed
    s.close()
    # the right token still works, and the text is intact
    fa.attach()
    fa.settle()
    assert fa.text == "héllo 😀 wörld"
    wa.close()


def test_bad_input_on_the_channel_closes_it_and_the_view_goes_on_over_the_comm(pair) -> None:
    a, b, da, db, runtime = pair
    wa, fa = direct_view(da, runtime)
    assert fa.sock is not None
    fa.sock.sendall(b"[1, 2]\n")  # a frame that is not an object
    until(lambda: any(m.get("t") == "error" for _, m in fa.sent), 10, "an error frame")
    errors = [m["error"] for _, m in fa.sent if m.get("t") == "error"]
    assert "not a JSON object" in errors[0]
    # a push claiming another view's client id on this view's channel
    fa.attach()
    fa.sock.sendall(encode({"t": "push", "c": "pageX", "g": wa._gen, "n": 0, "v": 0,
                            "updates": [{"c": "pageX", "ch": [0, [0, "x"], 16]}]}))
    until(lambda: sum(m.get("t") == "error" for _, m in fa.sent) >= 2, 10, "refused")
    assert "pageX" in [m["error"] for _, m in fa.sent if m.get("t") == "error"][-1]
    fa.sock.close()
    fa.sock = None
    fa.deliver({"t": "resync", "v": fa.version})
    fa.edit(0, 0, "ok ")
    fa.settle()
    assert str(da.text("body")) == "ok héllo 😀 wörld"
    assert a.network is not None and a.network._loop.is_running()
    wa.close()


def test_switching_roads_mid_typing_loses_and_duplicates_nothing(pair) -> None:
    a, b, da, db, runtime = pair
    wa, wb = ui.editor(da.text("body")), ui.editor(db.text("body"))
    fa, fb = both_ready(wa, wb, runtime)
    fa.attach()
    fa.settle()
    typed = ""
    for ch in "abc":  # over the direct channel, not waiting for confirmations
        fa.edit(len(fa.doc), 0, ch)
        typed += ch
    fa.drop()  # the WebSocket closes with pushes in flight; they are sent again
    for ch in "déf😀":
        fa.edit(len(fa.doc), 0, ch)
        typed += ch
    fa.settle()
    # comm -> direct with comm pushes still on their way: the direct resend
    # overtakes them, and when they land they are copies
    fa.slow_comm = True
    for ch in "gh":
        fa.edit(len(fa.doc), 0, ch)
        typed += ch
    fa.slow_comm = False
    held, fa.hold = fa.hold, []
    fa.attach()  # resends "gh" directly
    fa.settle()
    for msg in held:  # the late comm pushes
        wa._on_comm_msg(wa, msg, [])
    fb.edit(0, 0, "B:")  # and the other page types meanwhile
    fa.edit(len(fa.doc), 0, "!")
    typed += "!"
    want = "B:héllo 😀 wörld" + typed
    until(lambda: (fa.pump(), fa.push(), fb.pump(), fb.push(), fa.text, fb.text)[-2:]
          == (want, want), 10, "both pages equal")
    until(lambda: str(da.text("body")) == str(db.text("body")) == want, 10, "nodes equal")
    assert fa.resyncs == 0 and fa.length_errors == 0
    assert not [m for _, m in fa.sent if m.get("t") == "error"]
    # a view that lost its channel asks for a new offer; the old token is void
    old, n = fa.offer(), len(fa.offers())
    fa.drop()
    fa.deliver({"t": "direct?"})
    until(lambda: len(fa.offers()) == n + 1, 10, "a new offer")
    new = fa.offer()
    assert new["token"] != old["token"]
    s = connect(runtime, old["kernel"])
    s.sendall(encode({"t": "hello", "token": old["token"], "v": fa.version}))
    assert read_all(s) == b""
    s.close()
    fa.attach()
    fa.edit(len(fa.doc), 0, "?")
    want += "?"
    until(lambda: (fa.pump(), fa.push(), fb.pump(), fb.push(), fa.text, fb.text)[-2:]
          == (want, want), 10, "both pages equal again")
    wa.close()
    wb.close()


def test_the_socket_and_pointer_are_the_users_own(pair) -> None:
    a, b, da, db, runtime = pair
    wa = ui.editor(da.text("body"))
    fa = DirectFront(wa, "pageA", runtime)
    fa.deliver({"t": "ready"})
    kernel = fa.offer()["kernel"]
    ptr = pointer_path(str(runtime), kernel)
    with open(ptr) as f:
        path = json.load(f)["socket"]
    assert os.stat(ptr).st_mode & 0o077 == 0
    assert os.stat(path).st_mode & 0o077 == 0
    assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0
    ch = Channel._instances[a]
    assert ch.kernel_id == kernel
    a.network._call(ch.close)
    assert not os.path.exists(ptr) and not os.path.exists(path)
    wa.close()


def test_a_comm_push_overtaking_the_closing_channel_loses_nothing(pair) -> None:
    """The page closes its WebSocket with pushes still in it; the key typed next goes
    over the comm (the socket is CLOSING) and reaches the kernel first. That push is
    ahead of its number: the kernel waits for the resend instead of answering with
    an error and a snapshot (which the closing socket would swallow, leaving the view
    on a snapshot the kernel no longer accepts pushes for)."""
    a, b, da, db, runtime = pair
    wa, wb = ui.editor(da.text("body")), ui.editor(db.text("body"))
    fa, fb = both_ready(wa, wb, runtime)
    fa.attach()
    fa.settle()
    fa.slow_direct = True  # "ab" sit in the WebSocket's send buffer
    fa.edit(len(fa.doc), 0, "a")
    fa.edit(len(fa.doc), 0, "b")
    fa.closing = True  # ws.close(): "c" goes over the comm and overtakes them
    fa.edit(len(fa.doc), 0, "c")
    until(lambda: not wa._pushes and not wa._pushes_scheduled, 10, "the comm push taken")
    assert fa.sock is not None
    for frame in fa.held_direct:  # now the direct ones arrive
        fa.sock.sendall(frame)
    fa.held_direct, fa.slow_direct = [], False
    fa.closing = False
    fa.drop()  # onclose: resync over the comm, resend everything unconfirmed
    want = "héllo 😀 wörldabc"
    until(lambda: (fa.pump(), fa.push(), fb.pump(), fa.text, fb.text)[-2:] == (want, want),
          10, "both pages have abc")
    until(lambda: str(da.text("body")) == str(db.text("body")) == want, 10, "nodes equal")
    assert not [m for _, m in fa.sent if m.get("t") in ("error", "snapshot")][1:], \
        "no error, no second snapshot"
    wa.close()
    wb.close()


def test_a_view_on_a_lost_snapshot_gets_it_again_on_its_next_road(pair) -> None:
    """A snapshot sent only down a road the view was leaving never reaches it, and the
    kernel ignores pushes built on an older one: the view's resync over the comm names
    the snapshot it holds, and an older one gets the current snapshot."""
    a, b, da, db, runtime = pair
    wa, fa = direct_view(da, runtime)
    until(lambda: wa._direct, 10, "attached")  # (its hello went before the resync)
    fa.settle()
    g = wa._gen
    assert fa.gen == g
    fa.gen -= 1  # as if the current snapshot had gone down the road the view leaves
    snaps = sum(m.get("t") == "snapshot" for _, m in fa.sent)
    fa.drop()  # resync {v, g}: g is stale
    until(lambda: (fa.pump(), fa.gen)[1] == wa._gen > g, 10, "the current snapshot")
    assert sum(m.get("t") == "snapshot" for _, m in fa.sent) > snaps
    fa.edit(0, 0, "ok ")
    fa.settle()
    assert str(da.text("body")) == "ok héllo 😀 wörld"
    wa.close()
