"""jupyter-server extension: a relay node served as a WebSocket at ``<base_url>ownkernel/relay``.

Enabled on install (``etc/jupyter/jupyter_server_config.d/ownkernel.json``);
disable with ``jupyter server extension disable ownkernel.serverext`` or
``--OwnkernelRelay.enabled=False``. See docs/relay.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import OwnkernelRelay

    return [{"module": "ownkernel.serverext", "app": OwnkernelRelay}]
