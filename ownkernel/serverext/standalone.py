"""``ownkernel node --relay --websocket HOST:PORT``: the relay endpoint without jupyter-server.

The same handlers as the extension, on a plain tornado HTTP server in its own
thread (its own asyncio loop), piping to a node that is already running.
``/ownkernel/relay/info`` needs no login here: it tells only the relay's
address, which every invite through it carries anyway.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .host import RELAY_PATH, RelayHost

__all__ = ["WebSocketEndpoint", "parse_hostport", "websocket_listen"]

_WILDCARD = ("", "0.0.0.0", "::", "*")


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[v6]:PORT`` / ``:PORT`` -> (host, port); ValueError naming the fault."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--websocket {value!r}: expected HOST:PORT, e.g. 0.0.0.0:8765")
    return host.strip("[]"), int(port)


def websocket_listen(listen: list[str] | None) -> list[str] | None:
    """The node's listen list, plus a loopback endpoint when none is reachable from here
    (the WebSocket endpoint pipes to the node over 127.0.0.1). None keeps the default
    (``tcp://127.0.0.1:0``, which is loopback)."""
    if listen is None:
        return None
    for ep in listen:
        host = ep.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if ep.startswith("tcp://") and host in ("127.0.0.1", "localhost", "::1", *_WILDCARD):
            return list(listen)
    return [*listen, "tcp://127.0.0.1:0"]


class WebSocketEndpoint:
    """Serve ``node`` at ``ws://HOST:PORT/ownkernel/relay``; ``close()`` stops it."""

    def __init__(self, node: Any, host: str, port: int, *, max_connections: int = 128,
                 first_bytes_timeout: float = 10.0) -> None:
        self.relay = RelayHost(node=node, max_connections=max_connections,
                               first_bytes_timeout=first_bytes_timeout)
        self.relay.upstream()  # fails now, with a clear message, if it cannot work
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, args=(host, port), daemon=True,
                                        name="ownkernel-websocket")
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise OSError(f"cannot serve the WebSocket endpoint on {host}:{port}: "
                          f"{self._error}") from None
        self.port: int = self._port
        self.address = ""  # ws://HOST:PORT/ownkernel/relay#<id>; "" on a wildcard host
        if host not in _WILDCARD:  # a concrete host: peers can be told where we are
            shown = f"[{host}]" if ":" in host else host
            self.address = f"ws://{shown}:{self.port}/{RELAY_PATH}#{node.id.hex()}"
            self.relay.advertise(self.address)

    def _run(self, host: str, port: int) -> None:
        asyncio.run(self._main(host, port))

    async def _main(self, host: str, port: int) -> None:
        from tornado.httpserver import HTTPServer
        from tornado.web import Application

        from .handlers import PublicInfoHandler, RelaySocketHandler

        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        app = Application([
            (f"/{RELAY_PATH}", RelaySocketHandler, {"host": self.relay}),
            (f"/{RELAY_PATH}/info", PublicInfoHandler, {"host": self.relay}),
        ])
        try:
            self._server = HTTPServer(app, xheaders=False)
            self._server.listen(port, host or "")
            self._port = next(iter(self._server._sockets.values())).getsockname()[1]
        except Exception as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        self._server.stop()
        await self._server.close_all_connections()

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            self._thread.join(5)
