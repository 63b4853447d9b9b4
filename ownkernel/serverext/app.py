"""The extension app: its settings (``c.OwnkernelRelay.*``) and handlers."""

from __future__ import annotations

import asyncio

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Integer, Unicode

from .handlers import RelayInfoHandler, RelaySocketHandler
from .host import RELAY_PATH, RelayHost
from .widgets import WIDGET_PATH, WidgetSocketHandler

__all__ = ["OwnkernelRelay"]


class OwnkernelRelay(ExtensionApp):
    """Runs an ownkernel relay node in the server process, reachable over WebSocket."""

    name = "ownkernel"
    load_other_extensions = True

    enabled = Bool(True, config=True, help="Serve the relay endpoint at all.")
    profile = Unicode(
        "jupyter-relay", config=True,
        help="Profile (name under $OWNKERNEL_HOME, or a directory) of the relay node: its "
        "key is the relay's identity, so keep it across restarts.")
    node_name = Unicode("relay", config=True, help="Name the relay shows to peers.")
    public_url = Unicode(
        "", config=True,
        help="ws(s):// URL of the relay endpoint as peers reach it (behind a proxy). "
        "Default: learned from each authenticated /info request.")
    max_connections = Integer(128, config=True, help="Concurrent WebSocket tunnels.")
    first_bytes_timeout = Float(
        10.0, config=True, help="Seconds a WebSocket may stay silent before its ZMTP greeting.")

    widget_channel = Bool(
        True, config=True,
        help="Serve the widgets' direct channel to their kernels (ownkernel/widget/<kernel "
        "id>); off: widgets talk over the kernel's comm only.")

    def initialize_settings(self) -> None:
        self.host = RelayHost(
            self.profile or None, name=self.node_name, public_url=self.public_url,
            max_connections=self.max_connections, first_bytes_timeout=self.first_bytes_timeout)

    def initialize_handlers(self) -> None:
        if self.widget_channel:
            self.handlers.append(
                (rf"/{WIDGET_PATH}/(?P<kernel_id>[\w-]+)", WidgetSocketHandler))
        if not self.enabled:
            self.log.info("ownkernel relay disabled (OwnkernelRelay.enabled = False)")
            return
        self.handlers.extend([
            (f"/{RELAY_PATH}", RelaySocketHandler, {"host": self.host}),
            (f"/{RELAY_PATH}/info", RelayInfoHandler, {"host": self.host}),
        ])

    async def stop_extension(self) -> None:
        # node.close() joins the node's thread: keep it off the server's loop
        await asyncio.get_running_loop().run_in_executor(None, self.host.close)
