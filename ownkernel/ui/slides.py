"""The deck widget (``ui.deck(deck)``, issue #12 §4): slides that follow the presenter.

``[data-own-widget="deck"]`` shows one slide (Markdown with code and images,
rendered in the page), marked ``data-own-slide="<index>"``. While someone
presents, the page follows the presenter's slide — by slide id, so a reorder
never moves anyone — until its user navigates away: then it stops following
and offers "follow the presenter". Late joiners land on the current slide
(following is where a widget starts). The presenter gets the speaker view:
the notes and a timer since the talk started. Anyone who may write can edit
the shown slide.

Presence events refresh the widget at once (the follow latency is the
presence round trip); document changes are coalesced (``REFRESH_DELAY``).

Browser -> Python: ``{"t": "go", "i": n}``, ``{"t": "follow"}``,
``{"t": "present"}``, ``{"t": "stop"}``, ``{"t": "edit", "i": n, "markdown": s,
"notes": s}``.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import traitlets

from ownkernel.ui.base import STATIC, LiveWidget, colour_of
from ownkernel.ui.docview import _names

__all__ = ["DeckView"]

REFRESH_DELAY = 0.1  # seconds: a burst of edits costs one refresh


class DeckView(LiveWidget):
    """One slide of a deck at a time, following the presenter; live."""

    _esm = STATIC / "deck.js"
    doc_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, deck: Any) -> None:
        if not hasattr(deck, "presenter") or not hasattr(deck, "slides"):
            raise TypeError(f"ui.deck needs an ownkernel.apps.Deck, not {type(deck).__name__}")
        self.deck = deck
        super().__init__(deck.doc.node, kind="deck", doc_id=deck.doc.id.hex())
        self._following = True
        self._shown: str | None = None  # slide id on screen
        self._due = False
        self._off: list[Any] = []
        node = deck.doc.node
        try:
            self._off.append(node.on("presence", self._on_presence))
            self._off.append(node.on("doc_changed", self._on_doc_changed))
        except RuntimeError:  # no network: nobody to follow; refreshed after our own moves
            pass

    # -- state ------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        deck, node = self.deck, self.deck.doc.node
        slides = deck.slides
        ids = [s.id for s in slides]
        p = deck.presenter
        me = p is not None and p.node == node.id
        if p is not None and (self._following or me) and p.slide in ids:
            self._shown = p.slide
        if self._shown not in ids:
            self._shown = ids[0] if ids else None
        i = ids.index(self._shown) if self._shown is not None else -1
        presenter = None
        if p is not None:
            name, colour = _names(node).get(p.node, (p.node.hex()[:8], colour_of(p.node)))
            presenter = {"name": name, "color": colour, "me": me, "since": p.since,
                         "index": ids.index(p.slide) if p.slide in ids else -1}
        shown = slides[i] if i >= 0 else None
        # the shown slide's stored images, as data: URLs (the page fetches nothing)
        images = {h: f"data:{mime};base64,{base64.b64encode(data).decode()}"
                  for h, (mime, data) in deck.images(shown.markdown if shown else "").items()}
        return {"n": len(ids), "index": i, "id": self._shown, "images": images,
                "markdown": shown.markdown if shown else "",
                "notes": shown.notes if shown and me else "",  # speaker view only
                "presenter": presenter, "following": self._following and not me,
                "can_write": deck.doc.role in ("owner", "admin", "writer")}

    def _snapshot(self) -> dict[str, Any]:
        return {"state": self._state()}

    def _refresh(self) -> None:
        self._due = False
        if self._ready and not self._closed:
            self._push({"state": self._state()})

    def _on_presence(self, doc: Any, *_: Any) -> None:
        if doc == self.deck.doc.id:
            self._refresh()  # at once: following is about latency

    def _on_doc_changed(self, doc_id: bytes, *_: Any) -> None:
        if doc_id != self.deck.doc.id or self._due:
            return
        self._due = True
        try:
            asyncio.get_running_loop().call_later(REFRESH_DELAY, self._refresh)
        except RuntimeError:
            self._refresh()

    # -- browser -> Python ----------------------------------------------------------
    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        deck = self.deck
        n = len(deck)
        if t == "go":
            i = content.get("i")
            if type(i) is not int or not 0 <= i < n:
                raise ValueError(f"no slide {i!r:.20} in a deck of {n}")
            if deck.presenting:
                deck.goto(i)  # everyone following moves with us
            elif deck.presenter is not None:
                self._following = False  # we looked away: stop following
            self._shown = deck.ids[i]
        elif t == "follow":
            self._following = True
        elif t == "present":
            cur = deck.index_of(self._shown) if self._shown else None
            deck.present(cur or 0)
        elif t == "stop":
            if deck.presenting:
                deck.stop()
        elif t == "edit":
            i = content.get("i")
            if type(i) is not int or not 0 <= i < n:
                raise ValueError(f"no slide {i!r:.20} in a deck of {n}")
            md, notes = content.get("markdown"), content.get("notes")
            deck.edit(i, markdown=md if isinstance(md, str) else None,
                      notes=notes if isinstance(notes, str) else None)
        else:
            raise ValueError(f"unknown message type {t!r}")
        self._refresh()

