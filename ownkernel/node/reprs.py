"""How a node, a document and the peer list look in a notebook and a terminal.

`_repr_html_` gives a compact table for notebooks; `__repr__` stays one line
for terminals and logs. Inline styles only: some front-ends strip <style>.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ownkernel.node.config import Peer
    from ownkernel.node.handle import DocHandle
    from ownkernel.node.node import Node

_TABLE = "border-collapse:collapse;font-size:90%;margin:2px 0"
_TH = "text-align:left;padding:2px 10px 2px 0;border-bottom:1px solid #ccc"
_TD = "text-align:left;padding:2px 10px 2px 0;vertical-align:top;font-family:monospace"
_CAPTION = "text-align:left;font-weight:bold;padding:2px 0"


def _ago(t: float | None) -> str:
    if t is None:
        return "-"
    d = max(0.0, time.time() - t)
    if d < 60:
        return f"{d:.0f} s ago"
    if d < 3600:
        return f"{d / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _caption(title: str) -> str:
    return f'<caption style="{_CAPTION}">{html.escape(title)}</caption>' if title else ""


def fields_html(title: str, pairs: list[tuple[str, Any]]) -> str:
    """Key/value pairs as a two-column table (a status panel)."""
    esc = html.escape
    rows = "".join(
        f'<tr><th style="{_TH};border:none">{esc(str(k))}</th>'
        f'<td style="{_TD}">{esc(str(v))}</td></tr>'
        for k, v in pairs
    )
    return f'<table style="{_TABLE}">{_caption(title)}{rows}</table>'


def table_html(title: str, columns: list[str], rows: list[list[Any]], empty: str) -> str:
    """Rows under named columns; ``empty`` shows when there are none."""
    esc = html.escape
    head = "".join(f'<th style="{_TH}">{esc(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_TD}">{esc(str(c))}</td>' for c in r) + "</tr>" for r in rows
    ) or f'<tr><td style="{_TD}" colspan="{len(columns)}">{esc(empty)}</td></tr>'
    return f'<table style="{_TABLE}">{_caption(title)}<tr>{head}</tr>{body}</table>'


def node_html(node: Node) -> str:
    if node._closed:
        return fields_html(f"ownkernel node {node.short_id} (closed)", [("name", node.name)])
    peers = node.peers
    online = sum(1 for p in peers if p.online)
    pairs: list[tuple[str, Any]] = [
        ("id", node.short_id),
        ("name", node.name),
        ("profile", node.profile),
        ("listening", ", ".join(node.addresses) or "no (network off)"),
        ("peers", f"{online} online, {len(peers)} known"),
        ("documents", len(node.docs())),
    ]
    return fields_html(f"ownkernel node {node.short_id}", pairs)


def _preview(value: Any, limit: int = 60) -> str:
    s = str(value)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def doc_html(doc: DocHandle) -> str:
    rows = []
    for name, kind in sorted(doc.roots().items()):
        root = getattr(doc, kind)(name)
        if kind == "text":
            value: Any = str(root)
        elif kind == "sheet":
            value = root.values()
        elif kind == "counter":
            value = root.value
        elif kind == "map":
            value = root.to_dict()
        elif kind == "log":
            value = f"{len(root)} messages"
        else:
            value = root.to_list()
        rows.append([name, kind, _preview(value)])
    title = f"{doc.title!r} ({doc.short_id})"
    return table_html(title, ["root", "kind", "value"], rows, "(empty document)")


class PeerList(list):
    """``node.peers``: a list of :class:`Peer` that shows as a table."""

    def _repr_html_(self) -> str:
        return table_html(
            "peers",
            ["id", "name", "online", "latency", "last seen", "addresses"],
            [_peer_row(p) for p in self],
            "(no peers known yet)",
        )


def _peer_row(p: Peer) -> list[Any]:
    lat = "-" if p.latency is None else f"{p.latency * 1000:.1f} ms"
    return [
        p.short_id,
        p.name or "-",
        "yes" if p.online else "no",
        lat,
        _ago(p.last_seen),
        ", ".join(p.addresses) or "-",
    ]
