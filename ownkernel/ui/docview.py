"""The doc view: what displaying a DocHandle shows (``ui.doc(handle)``).

A header widget (``[data-own-widget="doc"]``) with the doc's title, its roots
(a click opens the root's own widget below the header: the editor for a text,
the chat for a log), the peers present in it right now (their signed presence:
name and colour) and its access list (owner, roles, invites). The header and
the opened widget sit in one ``ipywidgets.VBox``, so the opened widget is a
full widget of its own, with its own comm and protocol.

Every change of the header's state is sent whole (it is small), numbered like
any delta of the protocol in base.py.
"""

from __future__ import annotations

from typing import Any

import ipywidgets
import traitlets

from ownkernel.ui.base import STATIC, LiveWidget, colour_of, node_colour

__all__ = ["DocHeader", "DocView", "doc_state"]

REFRESH = 5.0  # seconds: the access list and roots also change without an event
OPENABLE = {"text", "log"}  # kinds with a widget in this package


def _names(node: Any) -> dict[bytes, tuple[str, str]]:
    """What we call each node we know: peers' own words first, then their hello."""
    out: dict[bytes, tuple[str, str]] = {}
    try:
        for p in node.peers:
            out[p.id] = (p.name, colour_of(p.id))
        for pid, (name, colour) in node.peer_profiles().items():
            out[pid] = (name, colour or colour_of(pid))
    except (AttributeError, RuntimeError):
        pass
    out[node.id] = (node.name, node_colour(node))
    return out


def doc_state(handle: Any) -> dict[str, Any]:
    """Everything the header shows, as plain JSON."""
    node = handle.node
    names = _names(node)

    def who(pid: bytes) -> dict[str, Any]:
        name, colour = names.get(pid, (pid.hex()[:8], colour_of(pid)))
        return {"id": pid.hex(), "short_id": pid.hex()[:8], "name": name, "color": colour,
                "me": pid == node.id}

    roots = [{"name": n, "kind": k, "openable": k in OPENABLE}
             for n, k in sorted(handle.roots().items())]
    try:
        present = sorted(node.presence(handle))
    except RuntimeError:  # no network
        present = []
    people = [who(node.id)] + [who(p) for p in present if p != node.id]
    acc = handle.access
    access = [{**who(acc["owner"]), "role": "owner"}] if isinstance(acc.get("owner"), bytes) \
        else []
    invites = revoked = 0
    for k, v in sorted(acc.items()):
        if k.startswith("role:") and isinstance(v, str):
            try:
                access.append({**who(bytes.fromhex(k[5:])), "role": v})
            except ValueError:
                continue
        elif k.startswith("token:"):
            invites += 1
        elif k.startswith("revoked:"):
            revoked += 1
    return {"title": handle.title or "(untitled)", "id": handle.id.hex(),
            "short_id": handle.short_id, "role": handle.role or "-", "roots": roots,
            "present": people, "access": access, "invites": invites, "revoked": revoked}


class DocHeader(LiveWidget):
    """Title, roots, peers present and access list of one doc; live."""

    POLL = REFRESH

    _esm = STATIC / "docview.js"
    doc_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, handle: Any, on_open: Any = None) -> None:
        super().__init__(handle.node, kind="doc", doc_id=handle.id.hex())
        self._watch_first_sync(handle)
        self._handle = handle
        self._on_open = on_open
        self._state: dict[str, Any] | None = None
        self._off: list[Any] = []
        node = handle.node
        try:
            for event in ("presence", "doc_changed", "peer_joined", "peer_left"):
                self._off.append(node.on(event, self._changed))
        except RuntimeError:  # no network: only what this node knows
            pass
        if hasattr(node, "on_profile"):
            self._off.append(node.on_profile(self._changed))

    def _snapshot(self) -> dict[str, Any]:
        self._state = doc_state(self._handle)
        if self._poll_timer is None:
            self._poll()
        return {"doc": self._state}

    def _changed(self, *_: Any) -> None:
        if not self._ready or self._closed:
            return
        state = doc_state(self._handle)
        if state != self._state:
            self._state = state
            self._push({"doc": state})

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        if t != "open":
            super()._on_message(t, content)
            return
        name = content.get("root")
        roots = self._handle.roots()
        if not isinstance(name, str) or name not in roots:
            raise ValueError(f"no root named {name!r:.60} in doc {self._handle.short_id}")
        if roots[name] not in OPENABLE:
            raise ValueError(f"root {name!r} is a {roots[name]}: no widget shows it yet")
        if self._on_open is not None:
            self._on_open(name, roots[name])


class DocView(ipywidgets.VBox):
    """The header and, below it, the widget of the root last opened."""

    def __init__(self, handle: Any) -> None:
        if not hasattr(handle, "roots") or not hasattr(handle, "access"):
            raise TypeError(f"ui.doc needs a DocHandle, not {type(handle).__name__}")
        self.handle = handle
        self.header = DocHeader(handle, on_open=self.show_root)
        self.opened: Any = None
        self.opened_root: str | None = None
        super().__init__([self.header])

    def show_root(self, name: str, kind: str | None = None) -> Any:
        """Show root ``name``'s widget below the header (the one before closes)."""
        from ownkernel.ui import chat, editor

        kind = kind or self.handle.roots().get(name)
        if kind == "text":
            widget = editor(self.handle.text(name))
        elif kind == "log":
            widget = chat(self.handle.log(name))
        else:
            raise ValueError(f"root {name!r} ({kind}) has no widget")
        old, self.opened, self.opened_root = self.opened, widget, name
        self.children = (self.header, widget)
        if old is not None:
            old.close()
        return widget

    def close(self) -> None:
        for w in (getattr(self, "opened", None), getattr(self, "header", None)):
            if w is not None:
                w.close()
        super().close()
