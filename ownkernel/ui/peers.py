"""``ui.peers(node)``: one row per known peer, updated on join and leave.

A row shows the name and colour the peer gave itself (its signed address-book
entry and presence claims, else its hello), how it is reached, the last ping's round trip and the
docs we share with it (the ones it may read here)."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlparse

from ownkernel.ui.base import STATIC, LiveWidget, colour_of, in_call

__all__ = ["Peers", "peer_rows"]

REFRESH = 1.0  # seconds: round trips and address-book names change without an event


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


def shared_docs(node: Any, peer: bytes) -> list[str]:
    """Titles (else short ids) of our docs that ``peer`` may read."""
    out = []
    gate = getattr(node, "gate", None)
    if gate is None:
        return out
    for d in node.docs():
        with node.lock:
            ok = gate.may_read(peer, d.id)
        if ok:
            out.append(d.title or d.short_id)
    return sorted(out)


def calls_by_peer(node: Any) -> dict[bytes, list[str]]:
    """``{peer id: titles of the docs whose call it is in}``, from presence."""
    out: dict[bytes, list[str]] = {}
    try:
        for d in node.docs():
            for pid, st in node.presence(d).items():
                if in_call([st]):
                    out.setdefault(pid, []).append(d.title or d.short_id)
    except RuntimeError:  # network closing, or none
        return {}
    return out


def peer_rows(peers: Any, node: Any = None) -> list[dict[str, Any]]:
    peers = list(peers)
    calls = calls_by_peer(node) if node is not None and hasattr(node, "presence") else {}
    profiles = {}
    if node is not None and hasattr(node, "peer_profiles"):
        try:
            profiles = node.peer_profiles([p.id for p in peers])
        except RuntimeError:  # network closing
            profiles = {}
    rows = []
    for p in peers:
        name, colour = profiles.get(p.id, (p.name, ""))
        docs = shared_docs(node, p.id) if node is not None else []
        rows.append({"id": p.id.hex(), "short_id": p.id.hex()[:8], "name": name or p.name,
                     "color": colour or colour_of(p.id), "online": bool(p.online),
                     "via": _via(p),
                     "rtt_ms": None if p.latency is None else round(p.latency * 1000, 2),
                     "docs": ", ".join(docs) or "-",
                     "call": ", ".join(sorted(calls.get(p.id, []))) or "-"})
    return rows


class Peers(LiveWidget):
    """The node's peers, online and offline; round trips refresh every REFRESH s."""

    POLL = REFRESH
    _esm = STATIC / "peers.js"

    def __init__(self, node: Any) -> None:
        if not hasattr(node, "peers") or not hasattr(node, "on"):
            raise TypeError(f"ui.peers needs a Node, not {type(node).__name__}")
        super().__init__(node, kind="peers")
        self._rows: list[dict[str, Any]] = []
        self._off: list[Any] = []
        try:
            self._off.append(node.on("peer_joined", self._changed))
            self._off.append(node.on("peer_left", self._changed))
            self._off.append(node.on("presence", self._changed))  # names, colours
        except RuntimeError:  # no network: the list stays empty
            pass

    def _snapshot(self) -> dict[str, Any]:
        self._rows = peer_rows(self._node.peers, self._node)
        if self._poll_timer is None:
            self._poll()
        return {"peers": self._rows}

    def _changed(self, *_: Any) -> None:
        if not self._ready or self._closed:
            return
        rows = peer_rows(self._node.peers, self._node)
        if rows != self._rows:
            self._rows = rows
            self._push({"peers": rows})


