"""``ui.peers(node)``: one row per known peer, updated on join and leave."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any
from urllib.parse import urlparse

from ownkernel.ui.base import STATIC, LiveWidget, colour_of

__all__ = ["Peers", "peer_rows"]

REFRESH = 5.0  # seconds: round-trip times change without an event


def _via(p: Any) -> str:
    if getattr(p, "relay", False):
        return "relay"
    for a in getattr(p, "addresses", ()) or ():
        host = urlparse(a.split("#", 1)[0]).hostname or ""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return "direct"
        if ip.is_loopback:
            return "direct (this machine)"
        if ip.is_private or ip.is_link_local:
            return "LAN"
        return "direct"
    return "-"


def peer_rows(peers: Any) -> list[dict[str, Any]]:
    rows = []
    for p in peers:
        rows.append({"id": p.id.hex(), "short_id": p.id.hex()[:8], "name": p.name,
                     "color": colour_of(p.id), "online": bool(p.online), "via": _via(p),
                     "rtt_ms": None if p.latency is None else round(p.latency * 1000, 2),
                     "docs": "-"})
    return rows


class Peers(LiveWidget):
    _esm = STATIC / "peers.js"

    def __init__(self, node: Any) -> None:
        if not hasattr(node, "peers") or not hasattr(node, "on"):
            raise TypeError(f"ui.peers needs a Node, not {type(node).__name__}")
        super().__init__(node, kind="peers")
        self._rows: list[dict[str, Any]] = []
        self._off: list[Any] = []
        self._timer: Any = None
        try:
            self._off.append(node.on("peer_joined", self._changed))
            self._off.append(node.on("peer_left", self._changed))
        except RuntimeError:  # no network: the list stays empty
            pass

    def _snapshot(self) -> dict[str, Any]:
        self._rows = peer_rows(self._node.peers)
        if self._timer is None:
            self._tick()
        return {"peers": self._rows}

    def _changed(self, *_: Any) -> None:
        if not self._ready or self._closed:
            return
        rows = peer_rows(self._node.peers)
        if rows != self._rows:
            self._rows = rows
            self._push({"peers": rows})

    def _tick(self) -> None:
        if self._closed:
            return
        self._changed()
        try:
            self._timer = asyncio.get_running_loop().call_later(REFRESH, self._tick)
        except RuntimeError:
            self._timer = None

    def _detach(self) -> None:
        for off in getattr(self, "_off", []):
            off()
        self._off = []
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
