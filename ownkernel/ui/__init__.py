"""ownkernel.ui: live widgets (anywidget) over a node's documents and peers.

    from ownkernel import ui
    ui.editor(doc.text("body"))   # CodeMirror 6, character-level sync
    ui.chat(doc.log("chat"))
    ui.peers(node)

Imports only the node's public API; the node layer never imports this.
"""

from __future__ import annotations

from typing import Any

# Import the widget modules first: a submodule named like a function below
# (ui.editor, ui.chat, ui.peers) would otherwise replace that function on the
# package the first time it is imported.
from ownkernel.ui.call import Call  # issue #14
from ownkernel.ui.chat import Chat
from ownkernel.ui.comments import CommentsView  # issue #12
from ownkernel.ui.docview import DocView
from ownkernel.ui.editor import Editor
from ownkernel.ui.grid import Grid  # issue #10
from ownkernel.ui.history import History  # issue #12
from ownkernel.ui.items import Items  # issue #10
from ownkernel.ui.peers import Peers
from ownkernel.ui.slides import DeckView  # issue #12

__all__ = ["Chat", "CommentsView", "DeckView", "DocView", "Editor", "Grid", "History", "Items",
           "Peers", "chat", "comments", "deck", "doc", "editor", "grid", "history", "items",
           "peers", "widget_for"]
__all__ += ["Call", "call"]  # issue #14


def editor(text: Any, language: str | None = None) -> Any:
    """A collaborative editor of a text root (``doc.text("body")``)."""
    return Editor(text, language=language)


def chat(log: Any) -> Any:
    """A chat over a log root (``doc.log("chat")``)."""
    return Chat(log)


def peers(node: Any) -> Any:
    """The node's peers, online and offline, live."""
    return Peers(node)


def doc(handle: Any) -> Any:
    """A document: title, roots (each opens its widget), peers present, access list."""
    return DocView(handle)


def widget_for(obj: Any) -> Any | None:
    """The widget that shows ``obj`` (a text or log root, a peer list), or None."""
    kind = type(_target(obj)).__name__
    if kind == "Text":
        return editor(obj)
    if kind == "Log":
        return chat(obj)
    if kind == "Sheet":  # issue #10
        return grid(obj)
    return None


def _target(obj: Any) -> Any:
    get = getattr(obj, "_get", None)  # a root proxy: what it stands for
    return get() if callable(get) else obj


# -- grid (issue #10) -------------------------------------------------------------
def grid(sheet: Any) -> Any:
    """A live spreadsheet over a sheet root (``doc.sheet("budget")``)."""
    return Grid(sheet)


def items(lst: Any) -> Any:
    """A shared to-do list over a list root (``doc.list("todo")``): records, moves."""
    return Items(lst)


# -- history (issue #12) ----------------------------------------------------------
def history(handle: Any) -> Any:
    """A doc's history: timeline by author, slider, the doc at a step, blame, restore."""
    return History(handle)


def comments(text: Any) -> Any:
    """A text with its comment threads in the margin: start, reply, resolve."""
    return CommentsView(text)


def deck(d: Any) -> Any:
    """A presentation (``ownkernel.apps.Deck``): slides that follow the presenter."""
    return DeckView(d)


# -- call (issue #14) -------------------------------------------------------------
def call(doc: Any) -> Any:
    """A WebRTC call among the people of ``doc`` (mesh of up to 4, signalled over the node)."""
    return Call(doc)
