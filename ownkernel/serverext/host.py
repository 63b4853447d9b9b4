"""The relay node behind a WebSocket endpoint (jupyter-server extension or standalone).

A :class:`RelayHost` owns (or borrows) one relay :class:`~ownkernel.node.Node`
whose ROUTER listens on loopback only; the WebSocket handlers
(``serverext/handlers.py``) pipe each WebSocket to it. Inside jupyter-server the
node starts on first use (the first WebSocket or ``/info`` request), so a
server where nobody uses the relay pays nothing but an import.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ownkernel.net.wstunnel import split_ws_url

log = logging.getLogger(__name__)

__all__ = ["RelayHost", "public_origin"]

RELAY_PATH = "ownkernel/relay"
MAX_LEARNED = 4  # ws addresses learned from /info requests, advertised newest first
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def _first(value: str | None) -> str:
    return (value or "").split(",")[0].strip()


def public_origin(headers: Any, protocol: str, host: str) -> tuple[str, str]:
    """(``ws``/``wss``, host[:port]) peers use to reach this server, from one request.

    Behind a proxy (Binder, JupyterHub, nginx) the request tornado sees is the
    proxy's: ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` say what the client
    used. Only ``/info`` asks, and it is authenticated: the headers come from a
    user who already holds the server, and the address they shape is pinned to
    the relay's key by its ``#<id>`` anyway.
    """
    proto = _first(headers.get("X-Forwarded-Proto")).lower() or protocol
    fwd_host = _first(headers.get("X-Forwarded-Host"))
    if fwd_host and _HOST.match(fwd_host):
        host = fwd_host
    return ("wss" if proto in ("https", "wss") else "ws"), host


def _is_loopback(address: str) -> bool:
    host = urlsplit(address).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


class RelayHost:
    """One relay node and the bookkeeping of the WebSocket tunnels into it.

    ``node``: an already-running node to serve (``ownkernel node --websocket``);
    else one is opened on first use from ``profile`` (a name or a path; when it
    is locked by another process, a temporary profile, with a warning).
    """

    def __init__(self, profile: str | Path | None = "jupyter-relay", *, name: str = "relay",
                 node: Any = None, public_url: str = "", max_connections: int = 128,
                 first_bytes_timeout: float = 10.0) -> None:
        if public_url:
            split_ws_url(public_url)  # a typo in the config fails at startup, named
        self.profile, self.name, self.public_url = profile, name, public_url
        self.max_connections = max_connections
        self.first_bytes_timeout = first_bytes_timeout
        self.stats: Counter[str] = Counter()
        self.connections = 0
        self._node = node
        self._owned = node is None
        self._lock = threading.Lock()
        self._learned: list[str] = []
        self._upstream: tuple[str, int] | None = None

    # -- the node ------------------------------------------------------------------
    @property
    def node(self) -> Any:
        return self._node

    def start(self) -> Any:
        """Open the relay node if not yet (blocking: call from a worker thread)."""
        with self._lock:
            if self._node is None:
                self._node = self._open()
                if self.public_url:
                    self.advertise(self.public_url)
            return self._node

    async def ready(self) -> Any:
        if self._node is not None:
            return self._node
        return await asyncio.get_running_loop().run_in_executor(None, self.start)

    def _open(self) -> Any:
        from ownkernel.node import Node
        from ownkernel.node.config import NetConfig
        from ownkernel.store import ProfileLockedError

        # Loopback only: the WebSocket endpoint is the way in. Nothing advertised
        # until a public ws address is known (public_url or an /info request).
        cfg = NetConfig(listen=["tcp://127.0.0.1:0"], relay=True, advertise=[])
        try:
            node = Node(self.profile, self.name, network=cfg)
        except ProfileLockedError as e:
            log.warning("ownkernel relay: %s; using a temporary profile (its id changes "
                        "at every start: set OwnkernelRelay.profile)", e)
            node = Node(None, self.name, network=cfg)
        log.info("ownkernel relay %s started (profile %s)", node.id.hex()[:12], node.profile)
        return node

    def upstream(self) -> tuple[str, int]:
        """(host, port) of the relay's ROUTER on loopback, for the tunnels to connect to."""
        if self._upstream is None:
            net = getattr(self._node, "network", None)
            endpoints = list(getattr(getattr(net, "transport", None), "endpoints", []) or [])
            for ep in endpoints:
                if not ep.startswith("tcp://"):
                    continue
                host, _, port = ep[len("tcp://"):].rpartition(":")
                host = host.strip("[]")
                if host in ("127.0.0.1", "0.0.0.0", "*", "localhost"):
                    self._upstream = ("127.0.0.1", int(port))
                elif host in ("::1", "::"):
                    self._upstream = ("::1", int(port))
                if self._upstream is not None:
                    break
            else:
                raise RuntimeError(
                    "the relay node listens on no loopback or wildcard TCP endpoint "
                    f"({', '.join(endpoints) or 'none'}): the WebSocket endpoint needs one, "
                    "e.g. --listen tcp://127.0.0.1:0")
        return self._upstream

    # -- addresses -----------------------------------------------------------------
    def address(self, scheme: str, host: str, path: str) -> str:
        """``ws(s)://host/path#<relay node id>`` (the node must be running)."""
        return f"{scheme}://{host}/{path.lstrip('/')}#{self._node.id.hex()}"

    def advertise(self, address: str) -> None:
        """Announce a ws address of ours (newest first) in hellos and the address book,
        so peers that met the relay once find it again after a restart."""
        if address in self._learned[:1]:
            return
        node = self._node
        if node is None or getattr(node, "network", None) is None:
            return
        if "#" not in address:
            address = f"{address}#{node.id.hex()}"
        self._learned = [address, *[a for a in self._learned if a != address]][:MAX_LEARNED]
        # a loopback address reaches only this machine: list it after the others, so a
        # peer elsewhere that learns them (hello, address book) dials a reachable one first
        addrs = sorted(self._learned, key=_is_loopback)
        net = node.network

        def apply() -> None:  # on the node's loop: hellos and the book read it there
            net.addresses = [*addrs, *[a for a in net.addresses
                                       if a not in addrs and not a.startswith("ws")]][:16]
        try:
            node.call_soon(apply)
        except RuntimeError:  # closing
            pass

    def close(self) -> None:
        with self._lock:
            node, self._node = self._node, None
        if node is not None and self._owned:
            node.close()
            log.info("ownkernel relay %s stopped", node.id.hex()[:12])
