"""Start the kernel's node without blocking the kernel, and stop it cleanly.

Why a starter thread: opening a node means importing crypto and zmq, reading
or creating the identity key, opening SQLite and binding sockets. None of it
may delay the kernel's first reply, so `NodeHost.start()` returns at once and
the work happens on a daemon thread. The Node then runs its own network
thread (see DESIGN.md "In the kernel"); this module never touches widgets or
traitlets.

The user namespace gets a `NodeProxy` immediately. It forwards attribute
access to the Node, waiting (interruptibly, bounded) for it if it is still
starting, and raising `NodeUnavailable` with the reason if it could not start.
The kernel swaps the proxy for the real Node before the first cell that runs
after the node is ready, so `type(node)` is the real class in practice.
"""

from __future__ import annotations

import collections
import dataclasses
import html
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ownkernel.kernel.settings import Settings, SettingsError, profile_candidates

__all__ = ["NetEvent", "NodeHost", "NodeProxy", "NodeUnavailable", "make_node"]

log = logging.getLogger("ownkernel.kernel")

# How long a cell waits for a node that is still starting before giving up
# with a clear error (the user can interrupt sooner).
WAIT_TIMEOUT = 60.0
# Recent events kept for `%own log`: enough to see what happened since the
# notebook was last looked at, small enough to never matter for memory.
MAX_EVENTS = 200
# Remote changes to one doc from one peer within this many seconds are one
# log line ("12 changes"), so a collaborator typing doesn't flood the log.
COALESCE_S = 10.0


class NodeUnavailable(RuntimeError):
    """The kernel has no working node; the message says why and what to do."""


def _is_locked(exc: BaseException) -> bool:
    """True for the store's "this profile is in use by another process" error."""
    # By name, not isinstance: importing ownkernel.store here would make the
    # kernel fail to start if that layer is broken, and we'd rather report it.
    return type(exc).__name__ == "ProfileLockedError" or isinstance(exc, BlockingIOError)


def make_node(settings: Settings, profile_dir: Path, factory: Callable[..., Any] | None = None,
              strict: bool = False, network: bool = True) -> tuple[Any, list[str]]:
    """Construct a Node for `profile_dir` with the settings its class supports.

    Returns (node, notes). With `strict`, a networking setting the Node class
    does not accept is an error (the headless `ownkernel node`); otherwise it is
    noted and skipped, so a kernel still gets a local node. `network=False`
    makes a purely local node (no sockets, no thread) for one-shot commands.
    """
    if factory is None:
        from ownkernel import Node as factory  # noqa: N813 - late: may not exist yet
    wanted: dict[str, Any] = {"profile": str(profile_dir)}
    if settings.name:
        wanted["name"] = settings.name
    if not network:
        wanted["network"] = False
    else:
        if settings.listen is not None:
            # [] (config "none") means: dial out, but accept no connections.
            wanted["listen"] = (settings.listen[0] if len(settings.listen) == 1
                                else list(settings.listen))
        if settings.bootstrap:
            wanted["bootstrap"] = list(settings.bootstrap)
        if settings.relay:
            wanted["relay"] = True
    try:
        params = inspect.signature(factory).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        params, accepts_any = {}, True
    kwargs: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in wanted.items():
        if accepts_any or key in params:
            kwargs[key] = value
        elif key == "profile":
            raise NodeUnavailable("this Node class takes no profile argument")
        elif key == "network":
            pass  # a Node without networking is local already
        elif strict:
            raise NodeUnavailable(f"this version of ownkernel's Node does not support {key!r}")
        else:
            notes.append(f"{key} setting ignored: this version of Node does not support it")
    return factory(**kwargs), notes


@dataclass
class NetEvent:
    """One network event for `%own log` (peer joined/left, remote changes to a doc).

    Plain data, recorded on the node's network thread: resolving a doc title
    there could wait for the node's lock while the main thread, holding it,
    waits for the network thread. Titles are looked up when the log is shown.
    """

    at: float
    kind: str  # "peer_joined" | "peer_left" | "doc_changed"
    peer: bytes | None
    name: str = ""
    doc: bytes | None = None
    count: int = 1
    addresses: tuple[str, ...] = ()


class NodeHost:
    """Owns the kernel's node: profile choice, lock, background start, close."""

    def __init__(self, settings: Settings, factory: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.state = "idle"  # idle → starting → ready | failed; → closed
        self.error: str | None = None
        self.profile: str | None = None
        self.profile_dir: Path | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.events: collections.deque[tuple[float, str]] = collections.deque(maxlen=MAX_EVENTS)
        self.net_events: collections.deque[NetEvent] = collections.deque(maxlen=MAX_EVENTS)
        # Guards both deques: the network thread appends while `%own log` reads.
        self._events_lock = threading.Lock()
        self._names: dict[bytes, str] = {}  # peer id -> name, from peer_joined
        self._node: Any = None
        self._ready = threading.Event()  # set when state leaves "starting"
        self._mutex = threading.Lock()
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- events ---------------------------------------------------------------
    def note(self, text: str, level: int = logging.INFO) -> None:
        with self._events_lock:
            self.events.append((time.time(), text))
        log.log(level, "%s", text)

    def recent(self) -> tuple[list[tuple[float, str]], list[NetEvent]]:
        """Copies of the kernel notes and the network events, oldest first."""
        with self._events_lock:
            return list(self.events), [dataclasses.replace(e) for e in self.net_events]

    def _subscribe(self, node: Any) -> None:
        """Record the node's network events; a Node without networking has none."""
        on = getattr(node, "on", None)
        if not callable(on) or getattr(node, "network", None) is None:
            return
        try:
            on("peer_joined", self._on_peer_joined)
            on("peer_left", self._on_peer_left)
            on("doc_changed", self._on_doc_changed)
        except (RuntimeError, ValueError) as exc:
            self.note(f"network events not available: {exc}", logging.WARNING)

    # The three callbacks run on the node's network thread: append and return.
    def _on_peer_joined(self, peer: Any) -> None:
        self._peer_event("peer_joined", peer)

    def _on_peer_left(self, peer: Any) -> None:
        self._peer_event("peer_left", peer)

    def _peer_event(self, kind: str, peer: Any) -> None:
        pid = getattr(peer, "id", None)
        name = str(getattr(peer, "name", "") or "")
        if pid is not None and name:
            self._names[pid] = name
        event = NetEvent(time.time(), kind, pid, name,
                         addresses=tuple(getattr(peer, "addresses", ()) or ()))
        with self._events_lock:
            self.net_events.append(event)
        log.info("%s %s %s", kind.replace("_", " "), _hex(pid)[:12], name)

    def _on_doc_changed(self, doc_id: bytes, source: bytes | None) -> None:
        if source is None:
            return  # our own edit: not a network event
        now = time.time()
        with self._events_lock:
            # Coalesce with a recent entry for the same doc and peer, wherever it
            # is among the last few (changes to two docs may interleave).
            for e in list(self.net_events)[-8:]:
                if (e.kind == "doc_changed" and e.doc == doc_id and e.peer == source
                        and now - e.at < COALESCE_S):
                    e.count += 1
                    e.at = now
                    return
            self.net_events.append(NetEvent(now, "doc_changed", source,
                                            self._names.get(source, ""), doc_id))

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Begin opening the node in the background; returns immediately."""
        with self._mutex:
            if self.state != "idle":
                return
            self.state = "starting"
            self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="ownkernel-node-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            node = self._open()
        except BaseException as exc:  # noqa: BLE001 - any failure becomes a status line
            msg = exc.args[0] if isinstance(exc, NodeUnavailable) else _one_line(exc)
            with self._mutex:
                self.state, self.error = "failed", msg
            self.note(f"node failed to start: {msg}", logging.WARNING)
            self._ready.set()
            return
        with self._mutex:
            closing = self._closing
            if not closing:
                self._node, self.state, self.ready_at = node, "ready", time.time()
        if closing:  # close() ran while we were opening: don't leak the node
            _close_quietly(node)
        else:
            self._subscribe(node)
            elapsed = (self.ready_at or 0) - (self.started_at or 0)
            addrs = list(getattr(node, "addresses", None) or [])
            where = f", listening on {', '.join(a.split('#')[0] for a in addrs)}" if addrs else ""
            self.note(f"node {_short(node)} ready on profile {self.profile}{where} "
                      f"({elapsed:.2f} s)")
        self._ready.set()

    def _open(self) -> Any:
        busy: list[str] = []
        for profile in profile_candidates(self.settings):
            try:
                profile_dir = self.settings.profile_dir(profile)
            except SettingsError as exc:
                raise NodeUnavailable(str(exc)) from None
            try:
                node, notes = make_node(self.settings, profile_dir, self.factory)
            except ImportError as exc:
                raise NodeUnavailable(f"the ownkernel Node is not available: {exc}") from None
            except Exception as exc:
                if _is_locked(exc):
                    pid = getattr(exc, "pid", None)
                    busy.append(f"{profile} (pid {pid or '?'})")
                    continue
                raise
            self.profile, self.profile_dir = profile, profile_dir
            if busy:
                self.note(f"profile(s) in use by other processes: {', '.join(busy)}")
            for n in notes:
                self.note(n, logging.WARNING)
            return node
        if self.settings.explicit_profile:
            raise NodeUnavailable(
                f"profile {self.settings.profile!r} is in use by another process "
                f"({busy[0]}); close it or choose another profile (OWNKERNEL_PROFILE)"
            )
        raise NodeUnavailable(f"all {len(busy)} profiles are in use; close some kernels")

    def wait(self, timeout: float | None = WAIT_TIMEOUT) -> Any:
        """The Node, waiting up to `timeout` s if it is starting; else NodeUnavailable."""
        if self.state == "idle":
            raise NodeUnavailable("the node has not been started")
        if not self._ready.wait(timeout):
            raise NodeUnavailable(
                f"the node is still starting after {timeout:.0f} s; see %own status"
            )
        if self.state == "ready":
            return self._node
        if self.state == "closed":
            raise NodeUnavailable("the node is closed (the kernel is shutting down)")
        raise NodeUnavailable(f"no node: {(self.error or '').rstrip('.')}; see %own status")

    @property
    def node(self) -> Any:
        """The Node if ready, else None (never waits)."""
        return self._node if self.state == "ready" else None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the node: data committed, sockets closed. Idempotent, bounded in time."""
        with self._mutex:
            self._closing = True
            node, self._node = self._node, None
            was = self.state
            self.state = "closed"
        if was == "starting" and self._thread is not None:
            # The starter closes what it opened once it sees _closing.
            self._thread.join(timeout)
        if node is not None:
            closer = threading.Thread(target=_close_quietly, args=(node,), daemon=True)
            closer.start()
            closer.join(timeout)
            if closer.is_alive():
                log.warning("node.close() did not finish within %.1f s", timeout)
            else:
                self.note("node closed")
        self._ready.set()


def _close_quietly(node: Any) -> None:
    try:
        node.close()
    except Exception:  # noqa: BLE001 - shutting down: log, don't raise into the kernel
        log.exception("error while closing the node")


def _short(node: Any) -> str:
    for attr in ("short_id", "id"):
        value = getattr(node, attr, None)
        if value:
            text = value.hex() if isinstance(value, bytes) else str(value)
            return text[:12]
    return "?"


def _hex(value: Any) -> str:
    if value is None:
        return "?"
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class NodeProxy:
    """Stands for the kernel's node in the user namespace until the Node is ready."""

    __slots__ = ("_host",)

    def __init__(self, host: NodeHost) -> None:
        object.__setattr__(self, "_host", host)

    def __getattr__(self, name: str) -> Any:
        host: NodeHost = object.__getattribute__(self, "_host")
        if name.startswith("_"):
            # IPython probes _repr_*_/_ipython_* hooks while displaying; never
            # block a display on a starting node.
            node = host.node
            if node is None:
                raise AttributeError(name)
            return getattr(node, name)
        return getattr(host.wait(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_host").wait(), name, value)

    def __dir__(self) -> list[str]:
        node = object.__getattribute__(self, "_host").node
        return sorted(set(dir(node))) if node is not None else []

    def __enter__(self) -> Any:
        return object.__getattribute__(self, "_host").wait()

    def __exit__(self, *exc: object) -> None:
        # The kernel owns this node's lifetime; `with node:` must not close it.
        return None

    def __repr__(self) -> str:
        host: NodeHost = object.__getattribute__(self, "_host")
        node = host.node
        if node is not None:
            return repr(node)
        if host.state == "failed":
            return f"<ownkernel node: unavailable — {host.error}>"
        return f"<ownkernel node: {host.state} (profile {host.profile or host.settings.profile})>"

    def _repr_html_(self) -> str:
        node = object.__getattribute__(self, "_host").node
        if node is not None and hasattr(node, "_repr_html_"):
            return str(node._repr_html_())
        return f"<code>{html.escape(repr(self))}</code>"
