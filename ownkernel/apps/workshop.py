"""Workshop rooms: one shared doc with a chat, notes and a sheet, joined by one token.

Teacher::

    room = workshop(node, "Friday workshop")   # created, or reopened when it exists
    room                                       # token, QR code, the room's widgets

Student::

    room = join_room(node, TOKEN)              # %own join TOKEN does the same

A room is an ordinary document (so it syncs, stores and merges like any other)
with ``notes`` (text), ``chat`` (log), ``sheet`` and the slides of a ``Deck``
(``room.deck``, the list root ``deck``; ``room.present()`` makes this node the
presenter and every member's deck widget follows it); its owner marks
it as a room in the doc's reserved ``_meta`` map, which every member receives,
so a student's ``%own join`` knows to show the room rather than a bare doc.

The token grants **write** access to whoever holds it (that is the point of a
room); it is shown to the class, so revoke it after the workshop
(``node.revoke(room.token)``) and members already in keep their grant.
The QR code is made here, without network, as a small PNG (qrcode computes the
matrix; the PNG is written with zlib), so a phone can carry the token too.
"""

from __future__ import annotations

import base64
import html
import struct
import time
import weakref
import zlib
from typing import Any

from ownkernel.node.access import ACCESS_ROOT, META_ROOT, revoked_key

__all__ = ["Room", "is_room", "join_room", "qr_png", "workshop"]

KIND = "workshop"
NOTES, CHAT, SHEET, DECK = "notes", "chat", "sheet", "deck"
SHEET_HEAD = ("item", "price", "who")
_TOKEN_SETTING = "workshop-token:"  # + doc hex: the room's token, kept in the owner's profile
JOIN_TIMEOUT = 15.0
_TITLE_NOTES = "Welcome everyone; the token is on the screen."


def is_room(doc: Any) -> bool:
    """True if ``doc`` (a DocHandle) is a workshop room."""
    try:
        return doc.map(META_ROOT).get("app") == KIND
    except Exception:  # a doc we cannot read (yet): not a room we can show
        return False


def workshop(node: Any, title: str = "workshop") -> Room:
    """The room titled ``title`` that this node owns, created on first use.

    Re-running a notebook reopens the same room (and shows the same token).
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError("workshop: the room needs a non-empty title")
    # rows first: opening every doc of a big profile to read its title would be slow
    for row in node.store.documents():
        if row.title == title and row.owner == node.id:
            doc = node.open(row.id)
            if is_room(doc):
                room = Room(node, doc)
                if DECK not in doc.roots():  # a room made before rooms had slides
                    room.deck.add(_title_slide(title), notes=_TITLE_NOTES)
                return room
    doc = node.new_doc(title=title)
    with doc.transaction():
        doc.map(META_ROOT)["app"] = KIND
        doc.text(NOTES).insert(0, f"# {title}\n")
        doc.log(CHAT)
        # the columns exist before anyone writes: cells set concurrently in a sheet
        # without columns would each grow columns of their own
        sheet = doc.sheet(SHEET)
        for col, head in enumerate(SHEET_HEAD):
            sheet[(0, col)] = head
    room = Room(node, doc)
    room.deck.add(_title_slide(title), notes=_TITLE_NOTES)
    return room


def _title_slide(title: str) -> str:
    """The first slide of a new room: the teacher edits it or adds more."""
    return (f"# {title}\n\nJoin with `%own join TOKEN`: the notes, chat, sheet and these "
            f"slides come with it.")


def join_room(node: Any, token: str, timeout: float = JOIN_TIMEOUT) -> Room:
    """Join the room an invite token grants; waits (bounded) for its content."""
    doc = node.join(token, timeout=timeout)
    if not is_room(doc):
        raise ValueError(f"document {doc.short_id} ({doc.title!r}) is not a workshop room; "
                         f"open it with node.join(token)")
    return Room(node, doc)


class Room:
    """A workshop room: ``notes``, ``chat``, ``sheet`` of one doc, and its widgets."""

    def __init__(self, node: Any, doc: Any) -> None:
        self.node = node
        self.doc = doc
        self.classmates: Any = None

    @property
    def title(self) -> str:
        return str(self.doc.title)

    @property
    def notes(self) -> Any:
        return self.doc.text(NOTES)

    @property
    def chat(self) -> Any:
        return self.doc.log(CHAT)

    @property
    def sheet(self) -> Any:
        return self.doc.sheet(SHEET)

    @property
    def deck(self) -> Any:
        """The room's slides (an ``ownkernel.apps.Deck`` on the root ``deck``)."""
        from ownkernel.apps.deck import Deck

        return Deck(self.doc, name=DECK)

    def present(self, slide: int = 0) -> None:
        """Present the room's slides from ``slide`` on: every member's deck follows
        (``room.deck.goto(i)`` moves them, ``room.deck.stop()`` ends it)."""
        self.deck.present(slide)

    @property
    def is_host(self) -> bool:
        """True on the teacher's node (the owner, or an admin): it hands out the token."""
        return self.doc.role in ("owner", "admin")

    @property
    def token(self) -> str | None:
        """The room's write invite (the same one each time); None for a plain member."""
        if not self.is_host:
            return None
        key = _TOKEN_SETTING + self.doc.hex
        token = self.node.store.get_setting(key)
        if not isinstance(token, str) or self._revoked(token):
            token = self.node.invite(self.doc, write=True)
            self.node.store.set_setting(key, token)
        return token

    def _revoked(self, token: str) -> bool:
        from ownkernel.node.grants import Invite

        try:
            return bool(self.doc.map(ACCESS_ROOT).get(revoked_key(Invite.parse(token).token_id)))
        except Exception:  # unreadable: make a fresh one
            return True

    def say(self, text: str) -> None:
        """Post ``text`` in the room's chat as this node."""
        from ownkernel.ui.base import colour_of

        self.chat.append({"author": self.node.name, "from": self.node.id.hex(), "text": text,
                          "color": colour_of(self.node.id), "time": time.time()})

    def add_classmates(self, n: int = 3, seed: Any = None, **kw: Any) -> Any:
        """Simulated classmates in this room (they type into its notes); see classmates()."""
        from ownkernel.apps.classmates import classmates

        if self.classmates is not None:
            self.classmates.stop()
        self.classmates = classmates(self.node, self.doc, n=n, seed=seed, text=NOTES,
                                     chat=CHAT, sheet=SHEET, **kw)
        return self.classmates

    # -- showing ---------------------------------------------------------------------
    def header_html(self) -> str:
        title = html.escape(self.title)
        if not self.is_host:
            return (f"<div><b>Workshop room “{title}”</b> ({html.escape(str(self.doc.role))}"
                    f"; id <code>{self.doc.short_id}</code>)</div>")
        token = self.token or ""
        m = _qr_matrix(token)
        img = ("" if m is None else
               f"<img alt='QR code of the join token' src='data:image/png;base64,"
               f"{base64.b64encode(_png(m)).decode()}' style='width:{max(200, 3 * len(m))}px;"
               f"image-rendering:pixelated;float:right;margin-left:12px'/>")
        return (f"<div style='overflow:auto'>{img}<b>Workshop room “{title}”</b><br/>"
                f"Students run, in their notebook: <code>%own join TOKEN</code> with this "
                f"token (click to select it):<br/><code style='user-select:all;"
                f"word-break:break-all'>{html.escape(token)}</code><br/><small>Anyone "
                f"with the token may write in the room; after the workshop: "
                f"<code>node.revoke(room.token)</code>.</small></div>")

    def widgets(self) -> Any:
        """The room's live widgets in one box: slides, notes editor, chat, sheet, people."""
        import ipywidgets

        from ownkernel import ui

        grid = getattr(ui, "grid", None)  # the sheet widget, when this version has it
        deck = getattr(ui, "deck", None)  # the slides widget (issue #12), likewise
        parts = [ui.editor(self.notes, language="markdown"), ui.chat(self.chat),
                 grid(self.sheet) if callable(grid) else _SheetView(self).widget,
                 ui.peers(self.node)]
        if callable(deck):
            # first: while the teacher presents, the shown slide is what the class looks at
            parts.insert(0, deck(self.deck))
        return ipywidgets.VBox(parts)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display({"text/html": self.header_html(), "text/plain": repr(self)}, raw=True)
        display(self.widgets())

    def __repr__(self) -> str:
        token = self.token
        lines = [f"<Room {self.doc.short_id} {self.title!r} ({self.doc.role})>"]
        if token:
            lines.append(f"join with: %own join {token}")
        return "\n".join(lines)


class _SheetView:
    """The sheet as a table that follows the doc (until ui.grid is there to edit it)."""

    def __init__(self, room: Room) -> None:
        import ipywidgets

        self.room = room
        self.widget = ipywidgets.HTML(self.render())
        self.widget._own_view = self  # type: ignore[attr-defined]  # lives as the widget does
        # The node holds only a weak reference: a closed, dropped widget stops the updates
        # and unsubscribes (callbacks run on a copy of the list, so that is safe).
        ref = weakref.ref(self)
        off: list[Any] = []

        def changed(doc_id: bytes, _source: Any) -> None:
            view = ref()
            if view is None:
                for f in off:
                    f()
                off.clear()
            elif doc_id == view.room.doc.id:
                # from the node thread: ipywidgets allows it (one writer per widget)
                view.widget.value = view.render()

        try:
            off.append(room.node.on("doc_changed", changed))
        except RuntimeError:  # no network: nothing changes behind our back
            pass

    def render(self) -> str:
        rows = self.room.sheet.values()
        if not rows:
            return "<i>the sheet is empty: room.sheet['A1'] = ...</i>"
        body = "".join("<tr>" + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>"
                                        for c in r) + "</tr>" for r in rows)
        return f"<table><caption>sheet</caption>{body}</table>"


# -- QR code, without network ----------------------------------------------------------
def _qr_matrix(data: str) -> list[list[bool]] | None:
    try:
        import qrcode
    except ImportError:  # an optional extra: the token alone still works
        return None
    q = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=4)
    q.add_data(data)
    q.make(fit=True)
    return [list(map(bool, row)) for row in q.get_matrix()]


def qr_png(data: str) -> bytes | None:
    """A QR code of ``data`` as PNG bytes, one pixel per module (scale it in CSS);
    None when the ``qrcode`` package is missing."""
    m = _qr_matrix(data)
    return None if m is None else _png(m)


def _png(m: list[list[bool]]) -> bytes:
    """A grey-scale PNG, one pixel per module: a few hundred bytes, unlike an SVG."""
    size = len(m)
    raw = b"".join(b"\x00" + bytes(0 if dark else 255 for dark in row) for row in m)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
