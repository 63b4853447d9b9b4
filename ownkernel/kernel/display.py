"""Small display objects the `%own` magics return.

Each object renders twice: `_repr_html_` for notebooks (a compact table that
reads at a glance) and `__repr__` for terminals (`jupyter console`, plain
text logs). The Node owner provides reprs for `Node` and document handles;
these cover what the kernel itself assembles (status, tables of docs, peers,
cells, events).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ownkernel.node.reprs import fields_html, table_html

__all__ = ["Fields", "Message", "Table", "ago", "fmt", "install_widget_formatters"]


def fmt(value: Any) -> str:
    """A short human string for a value shown in a table cell."""
    if value is None:
        return "-"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(fmt(v) for v in value) or "-"
    return str(value)


def ago(timestamp: float | None, now: float | None = None) -> str:
    """'12 s ago' style age of a unix timestamp (None → '-')."""
    if timestamp is None:
        return "-"
    delta = max(0.0, (time.time() if now is None else now) - float(timestamp))
    if delta < 60:
        return f"{delta:.0f} s ago"
    if delta < 3600:
        return f"{delta / 60:.0f} min ago"
    if delta < 86400:
        return f"{delta / 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(timestamp)))


class Table:
    """Rows under named columns, with an optional title and footnote."""

    def __init__(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        title: str = "",
        empty: str = "(none)",
    ) -> None:
        self.columns = list(columns)
        self.rows = [[fmt(c) for c in row] for row in rows]
        self.title = title
        self.empty = empty

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        lines = [self.title] if self.title else []
        if not self.rows:
            lines.append(self.empty)
            return "\n".join(lines)
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip())
        for row in self.rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return table_html(self.title, self.columns, self.rows, self.empty)


class Fields:
    """Key/value pairs (a status panel): one per line in text, a 2-column table in HTML."""

    def __init__(self, pairs: Iterable[tuple[str, Any]], title: str = "") -> None:
        self.pairs = [(k, fmt(v)) for k, v in pairs]
        self.title = title

    def __getitem__(self, key: str) -> str:
        for k, v in self.pairs:
            if k == key:
                return v
        raise KeyError(key)

    def __repr__(self) -> str:
        width = max((len(k) for k, _ in self.pairs), default=0)
        lines = [self.title] if self.title else []
        lines += [f"{k.ljust(width)}  {v}" for k, v in self.pairs]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return fields_html(self.title, self.pairs)


class Message:
    """One line of text worth copying (an invite token, an id)."""

    def __init__(self, text: str, label: str = "") -> None:
        self.text = text
        self.label = label

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"{self.label}{self.text}"

    def _repr_html_(self) -> str:
        label = html.escape(self.label)
        # user-select:all so one click selects the whole token for copying.
        return f'{label}<code style="user-select:all">{html.escape(self.text)}</code>'


# -- live widgets as a cell's last expression -----------------------------------------
def install_widget_formatters(shell: Any, get_node: Callable[[], Any]) -> None:
    """A text root shows as its editor, a log root as its chat, a DocHandle as the
    doc view, ``node.peers`` as the live peer list. Registered here, in the
    kernel layer: the node layer must not import the widgets. The bundle keeps a
    text/plain form, which is what a terminal (``ownkernel console``) prints."""
    from ownkernel.node.handle import DocHandle, RootProxy
    from ownkernel.node.reprs import PeerList

    mimebundle = shell.display_formatter.mimebundle_formatter
    mimebundle.for_type(RootProxy, _root_bundle)
    mimebundle.for_type(DocHandle, _doc_bundle)
    mimebundle.for_type(PeerList, lambda peers: _peers_bundle(peers, get_node()))
    # the pretty-printer's list rule would beat the bundle's text form
    shell.display_formatter.formatters["text/plain"].for_type(
        PeerList, lambda peers, p, _cycle: p.text(_peers_text(peers)))


def _peers_text(peers: Any) -> str:
    return "\n".join(repr(p) for p in peers) or "(no peers known yet)"


def _widget_bundle(widget: Any, text: str) -> dict[str, Any] | None:
    data = widget._repr_mimebundle_()
    if isinstance(data, tuple):
        data = data[0]
    if not data:
        return None
    return {**data, "text/plain": text}


def _root_bundle(obj: Any) -> dict[str, Any] | None:
    from ownkernel import ui

    try:
        widget = ui.widget_for(obj)
    except Exception:  # a closed doc or node: the plain reprs still work
        return None
    return None if widget is None else _widget_bundle(widget, repr(obj))


def _doc_bundle(handle: Any) -> dict[str, Any] | None:
    from ownkernel import ui

    try:
        widget = ui.doc(handle)
    except Exception:  # a closed doc or node: the plain reprs still work
        return None
    return _widget_bundle(widget, repr(handle))


def _peers_bundle(peers: Any, node: Any) -> dict[str, Any] | None:
    if node is None or getattr(node, "network", None) is None:
        return None
    from ownkernel import ui

    return _widget_bundle(ui.peers(node), _peers_text(peers))
