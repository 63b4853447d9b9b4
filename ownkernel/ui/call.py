"""``ui.call(doc)``: a WebRTC call among the people of a doc (issue #14).

The browser does the media (``RTCPeerConnection``, a mesh of up to 4); this
widget only relays the set-up between the page and the node: offers and
answers with their full SDP (no trickle) go out as ``signal`` messages over
the node's authenticated sessions (node/calls.py), never into the doc.

Python → browser, besides snapshot/deltas of ``{"joined", "participants",
"status"}``: ``{"t": "offer-to", "peer"}`` (make an offer), ``{"t": "signal",
"from", "kind", "data"}``, ``{"t": "hangup", "peer", "reason"}``, ``{"t": "full"}``.
Browser → Python: ``join``, ``leave``, ``{"t": "signal", "to", "kind", "data"}``.
Who is in the call also goes into presence (``"call": {"joined": true}``), so
other widgets (peer list, chat) can show it.
"""

from __future__ import annotations

import json
from typing import Any

import traitlets

from ownkernel.node.calls import (
    MAX_MESH,
    Action,
    Deliver,
    Full,
    Hangup,
    MakeOffer,
    Roster,
    calls_of,
    ice_servers,
)
from ownkernel.ui.base import STATIC, LiveWidget, PresenceBoard, colour_of, node_colour

__all__ = ["Call"]


class Call(LiveWidget):
    _esm = STATIC / "call.js"
    # RTCIceServer list as JSON (OWNKERNEL_ICE_SERVERS; default none: LAN host candidates)
    ice_servers = traitlets.Unicode("[]").tag(sync=True)
    max_size = traitlets.Int(MAX_MESH).tag(sync=True)

    def __init__(self, doc: Any) -> None:
        node = getattr(doc, "node", None)
        if node is None or not isinstance(getattr(doc, "id", None), bytes):
            raise TypeError(f"ui.call needs a doc (node.new_doc / node.join), "
                            f"not {type(doc).__name__}")
        super().__init__(node, kind="call", ice_servers=json.dumps(ice_servers()))
        self._doc = doc
        self._joined = False
        self._members: tuple[bytes, ...] = ()
        self._status = ""
        self.signals_relayed = 0  # for tests and benchmarks

    # -- state ---------------------------------------------------------------------------
    def _participants(self) -> list[dict[str, Any]]:
        try:
            profiles = self._node.peer_profiles(list(self._members))
        except RuntimeError:  # network closing
            profiles = {}
        out = []
        for m in self._members:
            name, colour = profiles.get(m, ("", ""))
            out.append({"id": m.hex(), "name": name or m.hex()[:8],
                        "color": colour or colour_of(m)})
        return out

    def _state(self) -> dict[str, Any]:
        node = self._node
        return {"joined": self._joined, "status": self._status,
                "me": {"id": node.id.hex(), "name": node.name, "color": node_colour(node)},
                "participants": self._participants()}

    def _snapshot(self) -> dict[str, Any]:
        return self._state()

    def _changed(self) -> None:
        if self._ready and not self._closed:
            self._push(self._state())

    # -- browser -> node (node thread) ---------------------------------------------------
    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        calls = calls_of(self._node)
        if t == "join":
            if not self._joined:
                self._joined, self._status = True, ""
                self._members = calls.join(self._doc.id, self._on_action)
                PresenceBoard.update(self._node, self._doc.id, "call", "joined", True)
                self._changed()
        elif t == "leave":
            self._leave()
            self._changed()
        elif t == "signal":
            to, kind, data = content.get("to"), content.get("kind"), content.get("data")
            if not isinstance(to, str) or not isinstance(kind, str) or not isinstance(data, str):
                raise ValueError("signal needs to (hex), kind and data (str)")
            try:
                peer = bytes.fromhex(to)
            except ValueError:
                raise ValueError(f"signal to {to[:20]!r}: not a hex node id") from None
            calls.signal(self._doc.id, peer, kind, data)  # ValueError: too large, not a member
            self.signals_relayed += 1
        else:
            raise ValueError(f"unknown message type {t!r}")

    def _leave(self) -> None:
        if not self._joined:
            return
        self._joined, self._members = False, ()
        try:
            calls_of(self._node).leave(self._doc.id)
            PresenceBoard.update(self._node, self._doc.id, "call", "joined", None)
        except RuntimeError:  # the node's network is closing: nobody left to tell
            pass

    # -- node -> browser (network thread) ------------------------------------------------
    def _on_action(self, a: Action) -> None:
        if self._closed:
            return
        if isinstance(a, Roster):
            self._members = a.members
            self._changed()
        elif isinstance(a, MakeOffer):
            self._post({"t": "offer-to", "peer": a.peer.hex()})
        elif isinstance(a, Deliver):
            self.signals_relayed += 1
            self._post({"t": "signal", "from": a.peer.hex(), "kind": a.kind, "data": a.data})
        elif isinstance(a, Hangup):
            self._post({"t": "hangup", "peer": a.peer.hex(), "reason": a.reason})
        elif isinstance(a, Full):
            self._status = f"this call is full: a mesh of at most {MAX_MESH} participants"
            self._leave()
            self._post({"t": "full", "max": MAX_MESH})
            self._changed()

    def _detach(self) -> None:
        if getattr(self, "_joined", False):
            try:
                self._node.call_soon(self._leave)
            except RuntimeError:
                pass
