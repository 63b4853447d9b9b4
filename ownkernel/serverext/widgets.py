"""``<base_url>ownkernel/widget/<kernel id>``: a widget view's direct channel to its
kernel's node (ownkernel/ui/channel.py), for an authenticated Jupyter user.

The page's keystrokes then skip the kernel's comm (browser → server → kernel shell
→ node thread) and the kernel's IOPub on the way back: this handler pipes text
frames to the node's owner-only Unix socket, one JSON message per line, and the
node's lines back as text frames. Who may use it: a Jupyter user allowed to
execute code in that kernel (``execute`` on ``kernels``, as the kernel's own
WebSocket); and the node attaches a connection to a widget view only after a
hello with the token it sent that view over the comm. The server does not read
the messages (it only keeps them one per line).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ownkernel.widgetpath import MAX_LINE, pointer_path

log = logging.getLogger(__name__)

__all__ = ["WIDGET_PATH", "WidgetSocketHandler", "widget_socket"]

WIDGET_PATH = "ownkernel/widget"


def widget_socket(kernel_manager: Any, kernel_id: str) -> str:
    """The Unix socket of ``kernel_id``'s widget channel; HTTPError 404 when there is none
    (an unknown kernel, a kernel that offers none, a remote kernel)."""
    try:
        km = kernel_manager.get_kernel(kernel_id)
    except KeyError:
        raise web.HTTPError(404, f"no kernel {kernel_id}") from None
    cf = getattr(km, "connection_file", "") or ""
    if not cf:
        raise web.HTTPError(404, "this kernel has no connection file")
    try:
        with open(pointer_path(os.path.dirname(os.path.abspath(cf)), kernel_id)) as f:
            path = json.load(f)["socket"]
    except (OSError, ValueError, KeyError, TypeError):
        raise web.HTTPError(404, "this kernel offers no widget channel") from None
    if not isinstance(path, str) or not os.path.isabs(path):
        raise web.HTTPError(404, "this kernel's widget channel is unusable")
    return path


class WidgetSocketHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """One WebSocket = one connection to one kernel's widget socket."""

    auth_resource = "kernels"

    def initialize(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._path = ""

    def set_default_headers(self) -> None:
        """Not JupyterHandler's: they make no sense for a WebSocket (as the kernels' one)."""

    @property
    def max_message_size(self) -> int:
        return MAX_LINE

    @ws_authenticated
    async def get(self, kernel_id: str) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"))
        if not allowed:
            raise web.HTTPError(403)
        self._path = widget_socket(self.kernel_manager, kernel_id)
        await super().get(kernel_id)

    async def open(self, kernel_id: str) -> None:  # type: ignore[override]
        super().open()  # WebSocketMixin's pings
        # one small frame per key: never hold one back waiting for the last one's ACK
        self.set_nodelay(True)
        try:
            reader, self._writer = await asyncio.open_unix_connection(self._path, limit=MAX_LINE)
        except OSError as e:
            log.info("ownkernel widget channel of kernel %s unavailable: %s", kernel_id, e)
            self.close(1011, "widget channel unavailable")
            return
        if self.ws_connection is None:  # closed meanwhile
            self._writer.close()
            return
        self._pump = asyncio.ensure_future(self._to_page(reader))

    async def _to_page(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                await self.write_message(line[:-1].decode(), binary=False)
        except (OSError, ValueError, StreamClosedError, WebSocketClosedError,
                asyncio.LimitOverrunError):
            pass
        finally:
            self.close()

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes) or self._writer is None:
            self.close(1003, "text frames only")
            return
        # one message per line: JSON has no raw newline inside strings, so outside
        # them a newline is whitespace and a space means the same
        self._writer.write(message.replace("\n", " ").encode() + b"\n")
        try:
            await self._writer.drain()
        except OSError:
            self.close(1011, "widget channel lost")

    def on_close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
