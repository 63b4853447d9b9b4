"""The widgets' direct channel: page ⇄ jupyter-server extension ⇄ this kernel's node,
beside the kernel's comm (issue #9 §5, session 6).

A key typed in an editor used to travel browser → jupyter-server → kernel shell
(comm) → node thread, and back kernel IOPub → server → JupyterLab's kernel
connection → widget manager → the view. The direct channel cuts both Jupyter
hops: the node listens on an owner-only Unix socket, the server extension
(``ownkernel/serverext/widgets.py``) serves ``<base_url>ownkernel/widget/<kernel
id>`` as a WebSocket for authenticated Jupyter users and pipes its frames to that
socket, and the frames are handled right on the node thread (no hand-over).

Who may attach: the socket is the user's own (a 0700 directory, a 0600 socket),
and a connection must first say ``{"t": "hello", "token": T, "v": V}`` with a
token the node sent to exactly one view over the comm (``{"t": "direct", "c":
client, ...}``). A wrong token, or anything else first, gets the connection
closed without one byte back. The server learns where the socket is from a
pointer file next to the kernel's connection file (``ownkernel-widget-<kernel
id>.json``): the socket itself lives in a short /tmp directory, because a Unix
socket path must fit in 108 bytes and Jupyter's runtime directories often do not.

Frames: one JSON object per line (UTF-8, ``\\n``-terminated) both ways; JSON
never holds a raw newline inside a string, so a line is a message. A bad line
(not JSON, not an object, too long) gets ``{"t": "error", ...}`` and the
connection closed; the view falls back to the comm and the node keeps running.

Off with ``$OWNKERNEL_UI_DIRECT=0`` (then everything goes over the comm, as before).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hmac
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import weakref
from typing import Any, Protocol

from ownkernel.widgetpath import MAX_LINE, pointer_path

log = logging.getLogger("ownkernel.ui")

__all__ = ["Channel", "DirectView", "MAX_LINE", "encode", "kernel_identity", "pointer_path"]

ENV = "OWNKERNEL_UI_DIRECT"
MAX_BUFFERED = 16 * 1024 * 1024  # a page that stops reading is dropped past this (it resyncs)


def encode(msg: Any) -> bytes:
    """One frame: compact JSON (raw UTF-8, so ``é😀`` stays short) and ``\\n``."""
    return (json.dumps(msg, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def kernel_identity() -> tuple[str, str] | None:
    """(kernel id, runtime directory) of the Jupyter kernel we run in, from its
    connection file ``kernel-<id>.json``; None outside a kernel or when off."""
    if os.environ.get(ENV, "1") == "0":
        return None
    try:
        from ipykernel.kernelapp import IPKernelApp
    except ImportError:
        return None
    if not IPKernelApp.initialized():
        return None
    cf = os.path.abspath(IPKernelApp.instance().abs_connection_file)
    base = os.path.basename(cf)
    if not (base.startswith("kernel-") and base.endswith(".json")):
        return None  # not started by a Jupyter server that names its files so
    return base[len("kernel-"):-len(".json")], os.path.dirname(cf)


class Target(Protocol):
    """What a widget offers to the channel (see ``editor.Editor``)."""

    def _direct_attach(self, view: DirectView, client: str, hello: dict[str, Any]) -> None: ...

    def _direct_messages(self, view: DirectView, msgs: list[Any]) -> None: ...

    def _direct_closed(self, view: DirectView) -> None: ...


class DirectView(asyncio.Protocol):
    """One connection from the server extension: one widget view once it said hello."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.target: Target | None = None
        self.client = ""
        self._buf = bytearray()
        self.closed = False

    # -- asyncio.Protocol (node thread) ------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > MAX_LINE:
                self.fail(f"a frame longer than {MAX_LINE} bytes")
            return
        *lines, rest = bytes(self._buf).split(b"\n")
        self._buf = bytearray(rest)
        msgs = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                msg = json.loads(raw)
            except ValueError as exc:
                self.fail(f"a frame that is not JSON ({exc})")
                return
            if not isinstance(msg, dict):
                self.fail(f"a frame that is not a JSON object: {raw[:60]!r}")
                return
            msgs.append(msg)
        # the first frame must be the hello
        if not msgs or (self.target is None and (not self._hello(msgs.pop(0)) or not msgs)):
            return
        try:
            # all the lines that came in one read go in together: one transaction
            # (one commit) for every key typed while the node was busy
            assert self.target is not None
            self.target._direct_messages(self, msgs)
        except Exception:  # never let a widget's failure take the node's loop down
            log.exception("direct channel: a widget failed on a message")

    def _hello(self, msg: dict[str, Any]) -> bool:
        entry = self.channel.claim(msg.get("token")) if msg.get("t") == "hello" else None
        if entry is None:
            # a stranger (or a stale page): nothing back, not even an error
            self.channel.stats["refused"] += 1
            self.close()
            return False
        self.target, self.client = entry
        self.channel.stats["attached"] += 1
        self.target._direct_attach(self, self.client, msg)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.target is not None:
            target, self.target = self.target, None
            try:
                target._direct_closed(self)
            except Exception:
                log.exception("direct channel: a widget failed on close")

    # -- sending (node thread) ---------------------------------------------------
    def send(self, msg: Any) -> None:
        t = self.transport
        if self.closed or t is None or t.is_closing():
            return
        t.write(encode(msg))
        if t.get_write_buffer_size() > MAX_BUFFERED:  # the page stopped reading
            log.warning("direct channel: view %s is not reading; dropped", self.client)
            self.close()

    def fail(self, why: str) -> None:
        """Bad input: say what, close; the view goes back to the comm, nothing is lost."""
        log.warning("direct channel: %s; connection closed", why)
        self.channel.stats["bad"] += 1
        self.send({"t": "error", "error": f"direct channel: {why}"})
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Channel:
    """The node's widget socket (one per kernel process) and its tokens."""

    _lock = threading.Lock()
    # node -> its channel; weak: a closed and dropped node takes its entry along
    _instances: weakref.WeakKeyDictionary[Any, Channel] = weakref.WeakKeyDictionary()

    def __init__(self, kernel_id: str, runtime_dir: str, loop: asyncio.AbstractEventLoop
                 ) -> None:
        self.kernel_id = kernel_id
        self.loop = loop
        # token -> (widget, view's client id); weak: a closed widget's tokens go with it
        self._tokens: dict[str, tuple[weakref.ReferenceType[Any], str]] = {}
        self.stats = {"attached": 0, "refused": 0, "bad": 0}
        self._dir = tempfile.mkdtemp(prefix="okw-")  # 0700, and short enough for sun_path
        self.path = os.path.join(self._dir, "s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            sock.listen(16)
            sock.setblocking(False)
        except OSError:
            sock.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._sock = sock
        self._server: asyncio.AbstractServer | None = None
        # listening already: connections queue until the server below accepts them
        self._task = loop.create_task(self._serve())
        self.pointer = pointer_path(runtime_dir, kernel_id)
        tmp = f"{self.pointer}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"socket": self.path, "pid": os.getpid()}, f)
        os.replace(tmp, self.pointer)

    async def _serve(self) -> None:
        self._server = await self.loop.create_unix_server(
            lambda: DirectView(self), sock=self._sock)

    @classmethod
    def for_node(cls, node: Any) -> Channel | None:
        """The node's channel, started on first use (node thread); None when there
        is none to offer: not in a Jupyter kernel, switched off, no node loop."""
        net = getattr(node, "network", None)
        loop = getattr(net, "_loop", None)
        if loop is None:
            return None
        with cls._lock:
            ch = cls._instances.get(node)
            if ch is not None:
                if ch.loop is loop:
                    return ch
                ch.remove_files()  # the node's network restarted: a new loop, a new socket
            who = kernel_identity()
            if who is None:
                return None
            try:
                ch = cls(who[0], who[1], loop)
            except OSError as exc:
                log.warning("direct channel unavailable (%s): widgets use the comm", exc)
                return None
            cls._instances[node] = ch
        atexit.register(ch.remove_files)  # the process owns them; no one else cleans up
        return ch

    def offer(self, widget: Any, client: str) -> str:
        """A fresh token that attaches one connection as view ``client`` of ``widget``."""
        for tok, (ref, c) in list(self._tokens.items()):
            if ref() is None or (ref() is widget and c == client):
                del self._tokens[tok]  # one live token per view
        tok = secrets.token_urlsafe(24)
        self._tokens[tok] = (weakref.ref(widget), client)
        return tok

    def claim(self, token: Any) -> tuple[Any, str] | None:
        """The (widget, client) a hello's token names; None for anything else."""
        if not isinstance(token, str):
            return None
        for tok, (ref, client) in self._tokens.items():
            if hmac.compare_digest(tok.encode(), token.encode()):
                widget = ref()
                if widget is None or getattr(widget, "_closed", False):
                    return None
                return widget, client
        return None

    def forget(self, widget: Any) -> None:
        for tok, (ref, _c) in list(self._tokens.items()):
            if ref() is widget or ref() is None:
                del self._tokens[tok]

    def remove_files(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.pointer)
        shutil.rmtree(self._dir, ignore_errors=True)

    def close(self) -> None:
        """Node thread: stop listening and remove the socket and pointer files."""
        if self._server is not None:
            self._server.close()
        self._sock.close()
        self.remove_files()
        with self._lock:
            for k, v in list(self._instances.items()):
                if v is self:
                    del self._instances[k]


class DirectWidget:
    """Mixin for a :class:`~ownkernel.ui.base.LiveWidget` whose views may attach
    over the direct channel (the editor). Same messages, same numbering, same
    resync protocol as over the comm; what changes is only the road.

    The kernel posts to every attached view directly, and over the comm only while
    some view may be listening there: one that said ``ready``/``resync`` over the
    comm with its client id ``c`` and has not attached since (or said ``bye``), or
    an older front-end that sends no ``c``. A view that loses its direct channel
    says ``resync`` over the comm and resends its unconfirmed updates: the editor
    skips the ones it already has (see ``Editor._on_push``)."""

    _node: Any
    _ready: bool
    _closed: bool
    _version: int
    _history: Any

    def _direct_init(self) -> None:
        self._direct: dict[str, DirectView] = {}
        self._comm_views: set[str] = set()
        self._comm_anon = False  # a view that does not say who it is: always the comm

    # -- comm side (bookkeeping, then the usual handling) ----------------------------
    def _on_comm_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        self._node.call_soon(self._from_comm, content)

    def _from_comm(self, content: Any) -> None:
        """Node thread: a message that came over the comm."""
        t = content.get("t") if isinstance(content, dict) else None
        c = content.get("c") if isinstance(content, dict) else None
        known = isinstance(c, str) and bool(c)
        if t in ("ready", "resync"):
            if known:
                self._comm_views.add(c)
                stale = self._direct.pop(c, None)  # it went back to the comm
                if stale is not None:
                    stale.close()
            elif t == "ready":
                self._comm_anon = True
        elif t == "bye":
            if known:
                self._comm_views.discard(c)
            return
        elif t == "direct?":  # a view that lost its channel asks for a new one
            if known and self._ready and not self._closed:
                self._offer_direct(c)
            return
        self._receive(content)  # type: ignore[attr-defined]
        if t == "ready" and known and content.get("direct") is True and not self._closed:
            self._offer_direct(c)

    def _offer_direct(self, client: str) -> None:
        ch = Channel.for_node(self._node)
        if ch is None:
            return
        # over the comm only, to that view (the others ignore another client's offer)
        self.send({"t": "direct", "c": client, "token": ch.offer(self, client),  # type: ignore[attr-defined]
                   "kernel": ch.kernel_id})

    def _comm_needed(self) -> bool:
        return self._comm_anon or bool(self._comm_views) or not self._direct

    def _post(self, msg: dict[str, Any]) -> None:
        for view in list(self._direct.values()):
            view.send(msg)
        if self._comm_needed():
            super()._post(msg)  # type: ignore[misc]
        else:
            self.messages_sent += 1  # type: ignore[attr-defined]

    # -- direct side (node thread) ---------------------------------------------------
    def _direct_attach(self, view: DirectView, client: str, hello: dict[str, Any]) -> None:
        old = self._direct.get(client)
        if old is not None and old is not view:
            old.close()
        self._direct[client] = view
        self._comm_views.discard(client)
        if not self._ready:
            return  # its snapshot is on its way (to every view)
        v = hello.get("v")
        first = self._version - len(self._history) + 1
        if isinstance(v, int) and not isinstance(v, bool) and first - 1 <= v <= self._version:
            # catch this view up from where it left the comm; the others need nothing
            ops = list(self._history)[v - first + 1:]
            view.send({"t": "deltas", "from": v + 1, "ops": ops,
                       **self._deltas_extra()})  # type: ignore[attr-defined]
        else:
            self._send_snapshot()  # type: ignore[attr-defined]

    def _direct_messages(self, view: DirectView, msgs: list[Any]) -> None:
        """Node thread, straight from the socket (no hand-over). Pushes (the
        editor's ``_pushes``) queue up and are taken together: one transaction,
        one commit for all the keys in one read. A view speaks only for itself."""
        pushes: Any = getattr(self, "_pushes", None)
        waiting = False
        for msg in msgs:
            if self._closed:
                return
            if msg.get("t") == "push" and pushes is not None:
                if msg.get("c") != view.client:
                    view.fail(f"a push for client {str(msg.get('c'))[:40]!r} "
                              f"on {view.client!r}'s channel")
                    break
                self._note_push(msg)  # type: ignore[attr-defined]
                pushes.append(msg)
                waiting = True
                continue
            if waiting:  # in order: the pushes before this message first
                self._take_pushes()  # type: ignore[attr-defined]
                waiting = False
            self._receive(msg)  # type: ignore[attr-defined]
        if waiting:
            self._take_pushes()  # type: ignore[attr-defined]

    def _direct_closed(self, view: DirectView) -> None:
        if self._direct.get(view.client) is view:
            del self._direct[view.client]
            # the view is back on the comm (channel.js always falls back), even when
            # its hello reached us after its resync there (the socket path can be
            # the slower one): keep posting to it until it attaches again or says bye
            self._comm_views.add(view.client)

    def _direct_close_all(self) -> None:
        for view in list(getattr(self, "_direct", {}).values()):
            view.close()
        for ch in list(Channel._instances.values()):
            ch.forget(self)
