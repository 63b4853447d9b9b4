"""The local control socket: the CLI talks to the node that holds a profile.

A profile is used by one process at a time (store/profile.py holds an OS lock),
so `ownkernel status / new / invite / join / docs` cannot open a profile whose
node runs in a kernel or in `ownkernel node`. That node therefore serves a
unix-domain socket in its profile, and the CLI sends it one request.

Who may talk to it: only the OS user who owns the profile. The socket lives in
``<profile>/control/`` (a directory made 0700 before the socket is bound, so
there is no window in which someone else could connect), the socket file is
0600, and on Linux the server also checks the peer's uid (SO_PEERCRED). That
user can read the identity key anyway, so the socket grants nothing new.

Wire: one request per connection, a 4-byte big-endian length then a CBOR map
``{"op": ..., ...}``; the answer is framed the same way, ``{"ok": True, ...}``
or ``{"error": "one line", "kind": "KeyError"}``. Requests are at most 64 KiB.
A path too long for AF_UNIX (~107 bytes) is bound in a 0700 per-user directory
under ``$XDG_RUNTIME_DIR`` or the temp dir instead, and ``control/where`` in
the profile names it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import selectors
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cbor2

if TYPE_CHECKING:
    from ownkernel.node.node import Node

__all__ = ["ControlError", "ControlServer", "ControlUnavailable", "request", "socket_path"]

log = logging.getLogger(__name__)

CONTROL_DIR = "control"
SOCK_NAME = "node.sock"
WHERE_NAME = "where"
MAX_REQUEST = 64 * 1024
MAX_REPLY = 16 * 1024 * 1024
MAX_CLIENTS = 8  # concurrent requests; more wait in the listen backlog
IO_TIMEOUT = 10.0  # reading a request / writing a reply
_SUN_PATH_MAX = 107


class ControlUnavailable(OSError):
    """No node serves this profile's control socket (not running, or a stale socket)."""


class ControlError(RuntimeError):
    """The running node answered with an error (the message is the node's)."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


def _private_dir(path: Path) -> None:
    """Make ``path`` a directory only we can enter (create it 0700, or tighten it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def _fallback_path(profile: Path) -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    digest = hashlib.sha256(str(profile.resolve()).encode()).hexdigest()[:20]
    return Path(base) / f"ownkernel-{uid}" / f"{digest}.sock"


def socket_path(profile: Path) -> Path:
    """Where the node of ``profile`` serves (or would serve) its control socket."""
    control = Path(profile) / CONTROL_DIR
    where = control / WHERE_NAME
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return Path(where.read_text(encoding="utf-8").strip())
    return control / SOCK_NAME


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    data = cbor2.dumps(msg)
    sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError("the other side closed the control connection")
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket, limit: int) -> dict[str, Any]:
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    if n > limit:
        raise ValueError(f"control message of {n} bytes is over the {limit}-byte limit")
    msg = cbor2.loads(_recv_exact(sock, n))
    if not isinstance(msg, dict):
        raise ValueError("a control message must be a CBOR map")
    return msg


def request(profile: Path, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
    """Send one request to the node running ``profile``; its answer (``ok`` ...).

    Raises ControlUnavailable when no node answers there, ControlError when the
    node refused the request (bad doc, bad token ...).
    """
    path = socket_path(Path(profile))
    if not hasattr(socket, "AF_UNIX") or not path.exists():
        raise ControlUnavailable(f"no control socket at {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except OSError as exc:  # refused: stale socket of a node that died
            raise ControlUnavailable(f"nobody answers on {path}: {exc}") from None
        _send(sock, {"op": op, **args})
        try:
            reply = _recv(sock, MAX_REPLY)
        except TimeoutError:
            raise TimeoutError(f"the node did not answer {op!r} within {timeout:g} s") from None
    finally:
        sock.close()
    if "error" in reply:
        raise ControlError(str(reply["error"]), str(reply.get("kind", "")))
    return reply


def _peer_uid(conn: socket.socket) -> int | None:
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None  # not Linux: the 0700 directory is the guard
    creds = conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class ControlServer:
    """Serves one node's control socket from a thread; ``close()`` removes the socket."""

    def __init__(self, node: Node, handlers: dict[str, Callable[..., dict[str, Any]]]
                 ) -> None:
        if not hasattr(socket, "AF_UNIX"):  # (Windows builds without it: the CLI opens
            raise OSError("unix sockets are not available on this platform")  # profiles)
        self.node = node
        self.handlers = handlers
        self.profile = Path(node.profile)
        control = self.profile / CONTROL_DIR
        _private_dir(control)
        path = control / SOCK_NAME
        where = control / WHERE_NAME
        if len(os.fsencode(str(path))) > _SUN_PATH_MAX:
            path = _fallback_path(self.profile)
            _private_dir(path.parent)
            where.write_text(str(path), encoding="utf-8")
        else:
            with contextlib.suppress(FileNotFoundError):
                where.unlink()
        self.path = path
        # We hold the profile lock: a socket file here is a dead node's.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o600)
        self._sock.listen(16)
        self._sock.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._closed = False
        self.served = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"ownkernel-control-{node.short_id}")
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._closed:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, _ = self._sock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    self._slots.acquire()
                    threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                     name="ownkernel-control-req").start()
        finally:
            sel.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(IO_TIMEOUT)
            uid = _peer_uid(conn)
            if uid is not None and hasattr(os, "getuid") and uid not in (os.getuid(), 0):
                self.refused += 1
                _send(conn, {"error": "this control socket serves its owner only",
                             "kind": "PermissionError"})
                return
            try:
                req = _recv(conn, MAX_REQUEST)
            except (ValueError, cbor2.CBORDecodeError) as exc:
                self.refused += 1
                _send(conn, {"error": f"bad request: {exc}", "kind": "ValueError"})
                return
            _send(conn, self._answer(req))
            self.served += 1
        except (OSError, ConnectionError):
            pass  # the client went away: nothing to answer
        finally:
            conn.close()
            self._slots.release()

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.pop("op", None)
        fn = self.handlers.get(op) if isinstance(op, str) else None
        if fn is None:
            return {"error": f"unknown control request {op!r}; one of "
                             f"{', '.join(sorted(self.handlers))}", "kind": "ValueError"}
        try:
            out = fn(**{k: v for k, v in req.items() if isinstance(k, str)})
        except TypeError as exc:
            return {"error": f"{op}: bad arguments: {exc}", "kind": "TypeError"}
        except Exception as exc:  # noqa: BLE001 - the client shows it as one line
            text = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(exc, KeyError) and text.startswith(("'", '"')):
                text = text[1:-1]  # KeyError's repr quotes
            return {"error": text, "kind": type(exc).__name__}
        return {"ok": True, **out}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(2.0)
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.path.parent != self.profile / CONTROL_DIR:
            with contextlib.suppress(FileNotFoundError):
                (self.profile / CONTROL_DIR / WHERE_NAME).unlink()


# -- what a node answers ---------------------------------------------------------
def _doc_row(node: Node, h: Any) -> dict[str, Any]:
    return {"id": h.hex, "title": h.title, "owner": h.owner.hex(), "role": h.role}


def node_handlers(node: Node) -> dict[str, Callable[..., dict[str, Any]]]:
    """The requests a node answers (the CLI's status/docs/new/invite/join)."""

    def ping() -> dict[str, Any]:
        return {"id": node.id.hex(), "pid": os.getpid()}

    def docs() -> dict[str, Any]:
        return {"docs": [_doc_row(node, h) for h in node.docs()]}

    def status() -> dict[str, Any]:
        peers = [{"id": p.id.hex(), "name": p.name, "online": p.online,
                  "addresses": list(p.addresses), "relay": p.relay,
                  "route": getattr(p, "route", None)} for p in node.peers]
        return {"id": node.id.hex(), "name": node.name, "profile": str(node.profile),
                "pid": os.getpid(), "addresses": node.addresses, "peers": peers,
                **docs()}

    def new(title: str = "") -> dict[str, Any]:
        if not isinstance(title, str):
            raise TypeError("title must be a string")
        return {"doc": node.new_doc(title=title).hex}

    def invite(doc: str, write: bool = True) -> dict[str, Any]:
        return {"token": node.invite(node.open(str(doc)), write=bool(write))}

    def join(token: str, wait: float = 0.0) -> dict[str, Any]:
        h = node.join(str(token), timeout=0)
        received = node._has_content(h.id)
        if wait and wait > 0 and not received:
            try:
                node.join(str(token), timeout=float(wait), strict=True)
                received = True
            except TimeoutError:
                received = False
        return {"doc": h.hex, "received": received}

    def pair(token: str = "", wait: float = 15.0) -> dict[str, Any]:
        """Users and devices (pairing.py): without a token, make one; with one, pair."""
        if not token:
            return {"token": node.pair()}
        u = node.pair_with(str(token), timeout=float(wait))
        return {"user": u.id.hex(), "name": u.name}

    return {"ping": ping, "docs": docs, "status": status, "new": new, "invite": invite,
            "join": join, "pair": pair}
