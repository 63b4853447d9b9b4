"""Tornado handlers: the relay's WebSocket endpoint and its ``/info``.

``RelaySocketHandler`` (``<base_url>ownkernel/relay``) admits any WebSocket:
the Jupyter token means code execution on this server, so it must never be what
a peer needs to join. What admits a peer is its own key and the grants the
docs' owners signed, checked by the relay node after the CurveZMQ handshake and
the hello — exactly as for a TCP connection, because the bytes *are* that TCP
stream (``net/wstunnel.py``). Before anything is opened upstream, the first 10
bytes must be a ZMTP signature: garbage gets not one byte back.

``RelayInfoHandler`` (``<base_url>ownkernel/relay/info``) is for a Jupyter user
(token or login): it returns the relay's address as this request reached us.
``PublicInfoHandler`` is the same for ``ownkernel node --websocket`` (no Jupyter
users there; the address is what invites carry anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ownkernel.net.wstunnel import CHUNK, MAX_MESSAGE, zmtp_signature

from .host import RELAY_PATH, RelayHost, public_origin

log = logging.getLogger(__name__)

__all__ = ["PublicInfoHandler", "RelayInfoHandler", "RelaySocketHandler", "info"]


class RelaySocketHandler(WebSocketHandler):
    """One WebSocket = one TCP connection to the relay node's ROUTER on loopback."""

    def initialize(self, host: RelayHost) -> None:
        self.host = host
        self._head = b""
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False

    @property
    def max_message_size(self) -> int:  # tornado closes the socket past it (1009)
        return MAX_MESSAGE

    @allow_unauthenticated  # on purpose: see the module doc
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.host.connections >= self.host.max_connections:
            self.host.stats["ws-full"] += 1
            raise web.HTTPError(503, "relay full")
        await super().get(*args, **kwargs)

    async def open(self, *args: str, **kwargs: str) -> None:
        self.host.connections += 1
        self._counted = True
        self.host.stats["ws-open"] += 1
        self._timer = asyncio.get_running_loop().call_later(
            self.host.first_bytes_timeout, self._too_slow)
        try:
            await self.host.ready()
        except Exception:
            log.exception("ownkernel relay: cannot start the relay node")
            self.host.stats["ws-no-relay"] += 1
            self.close(1011, "relay unavailable")

    def _too_slow(self) -> None:
        if self._writer is None:
            self.host.stats["ws-silent"] += 1
            self.close(1008, "no ZMTP greeting")

    async def on_message(self, message: str | bytes) -> None:
        # A coroutine: tornado reads the next message only once this returns, so
        # a client that outpaces the relay is held back by TCP, not buffered here.
        if isinstance(message, str):
            self.host.stats["ws-text"] += 1
            self.close(1003, "binary only")
            return
        if self._writer is None:
            self._head += message
            ok = zmtp_signature(self._head)
            if ok is None:
                return
            if not ok:
                self.host.stats["ws-garbage"] += 1
                self.close(1008, "not ZMTP")
                return
            if not await self._open_upstream():
                return
            message, self._head = self._head, b""
        assert self._writer is not None
        try:
            self._writer.write(message)
            await self._writer.drain()
        except OSError:
            self.close(1011, "relay connection lost")

    async def _open_upstream(self) -> bool:
        try:
            host, port = self.host.upstream()
            reader, self._writer = await asyncio.open_connection(host, port)
        except (OSError, RuntimeError) as e:
            log.warning("ownkernel relay: cannot reach the relay node: %s", e)
            self.host.stats["ws-no-relay"] += 1
            self.close(1011, "relay unavailable")
            return False
        if self.ws_connection is None:  # closed meanwhile
            self._writer.close()
            return False
        self.host.stats["ws-tunnels"] += 1
        self._pump = asyncio.ensure_future(self._relay_to_client(reader))
        return True

    async def _relay_to_client(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self.write_message(data, binary=True)
        except (OSError, StreamClosedError, WebSocketClosedError):
            pass
        finally:
            self.close()

    def on_close(self) -> None:
        if self._counted:
            self._counted = False
            self.host.connections -= 1
        if self._timer is not None:
            self._timer.cancel()
        if self._writer is not None:
            self._writer.close()
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()


async def info(handler: web.RequestHandler, host: RelayHost, relay_path: str) -> None:
    node = await host.ready()
    scheme, where = public_origin(handler.request.headers, handler.request.protocol,
                                  handler.request.host)
    address = host.address(scheme, where, relay_path)
    host.advertise(address)
    handler.set_header("Content-Type", "application/json")
    handler.set_header("Cache-Control", "no-store")
    body: dict[str, Any] = {"address": address, "id": node.id.hex(),
                            "connections": host.connections}
    if handler.get_argument("stats", None) is not None:  # for whoever runs the relay
        net = node.stats().get("net", {})
        body["stats"] = {"websocket": dict(host.stats), "peers_online": net.get("peers_online"),
                         "errors": net.get("errors"), "transport": net.get("transport")}
    handler.finish(json.dumps(body, default=str))


class RelayInfoHandler(APIHandler):
    """``GET <base_url>ownkernel/relay/info`` for a Jupyter user: ``{"address": …}``."""

    auth_resource = "ownkernel"

    def initialize(self, host: RelayHost) -> None:
        self.host = host

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await info(self, self.host, url_path_join(self.base_url, RELAY_PATH))


class PublicInfoHandler(web.RequestHandler):
    """``GET /ownkernel/relay/info`` of the standalone endpoint (no Jupyter users)."""

    def initialize(self, host: RelayHost) -> None:
        self.host = host

    @allow_unauthenticated
    async def get(self) -> None:
        with contextlib.suppress(StreamClosedError):
            await info(self, self.host, "/" + RELAY_PATH)
