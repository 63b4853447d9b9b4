"""Presentations (issue #12 §4): a deck is a doc, presenting is presence.

    from ownkernel.apps import Deck
    deck = Deck(doc)                      # doc: a node's DocHandle
    deck.add("# Hello\\n\\nfirst slide", notes="say hi")
    deck.move(0, 1); deck.remove(1); deck.slides
    deck.present()                        # this node presents (a lease, visible to all)
    deck.goto(2); deck.presenter          # Presenter(node id, slide id, since) or None
    ref = deck.add_image(png_bytes)       # "image:<hash>", for ![a chart](image:<hash>)

The doc holds the list ``<name>`` of slide ids (an RGA: concurrent inserts
are safe; a move is a delete and an insert, and when two people move the
same slide at once both copies stay in the list: the first one counts) and,
per slide, the texts ``<name>/<id>`` (Markdown) and ``<name>/<id>/notes``.
Images live in the map ``<name>/images`` under their content hash (the
same picture on ten slides, or added by two people, is stored once).

Who presents, and which slide, is NOT document state: it is this node's
presence in the doc (signed, expiring after the network's presence TTL
unless renewed, which the node does while it runs). The claim names the
slide by id, so reordering slides never moves followers off it. With two
claims the later one wins (handover: ``present()`` on another node takes
over); ties go to the greater node id, so every node agrees.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, NamedTuple

from ownkernel.ui.base import PresenceBoard

__all__ = ["Deck", "Presenter", "Slide"]

PART = "deck"  # our part of the merged presence state (ui/base.py PresenceBoard)
# raster formats only: an SVG can carry script, and the page shows images inline
IMAGE_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff",
               "image/gif": b"GIF8", "image/webp": b"RIFF"}
MAX_IMAGE = 2 * 1024 * 1024  # bytes: every peer stores and syncs it


class Slide(NamedTuple):
    id: str
    markdown: str
    notes: str


class Presenter(NamedTuple):
    node: bytes
    slide: str
    since: float


class Deck:
    """Slides in a doc, and presenting them to the doc's peers."""

    def __init__(self, doc: Any, name: str = "deck") -> None:
        if not hasattr(doc, "list") or not hasattr(doc, "node"):
            raise TypeError(f"Deck needs a node's DocHandle, not {type(doc).__name__}")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("_"):
            raise ValueError(f"a deck name is a non-empty root name without '/': {name!r}")
        self.doc = doc
        self.name = name

    # ------------------------------------------------------------- the slides
    def _raw(self) -> list[Any]:
        return list(self.doc.list(self.name))

    def _order(self) -> list[tuple[int, str]]:
        """(raw index, id) of each slide, first occurrence only (see module docs)."""
        seen: set[str] = set()
        out = []
        for i, sid in enumerate(self._raw()):
            if isinstance(sid, str) and sid not in seen:
                seen.add(sid)
                out.append((i, sid))
        return out

    @property
    def ids(self) -> list[str]:
        return [sid for _, sid in self._order()]

    @property
    def slides(self) -> list[Slide]:
        doc = self.doc
        return [Slide(sid, str(doc.text(f"{self.name}/{sid}")),
                      str(doc.text(f"{self.name}/{sid}/notes"))) for sid in self.ids]

    def __len__(self) -> int:
        return len(self._order())

    def index_of(self, slide_id: str) -> int | None:
        ids = self.ids
        return ids.index(slide_id) if slide_id in ids else None

    def _check_index(self, i: Any, n: int, what: str) -> int:
        if type(i) is not int or not -n <= i < n:
            raise IndexError(f"{what}: no slide {i!r:.20} in a deck of {n}")
        return i % n

    def add(self, markdown: str, notes: str = "", at: int | None = None) -> str:
        """A new slide (at the end, or before slide ``at``); returns its id."""
        if not isinstance(markdown, str) or not isinstance(notes, str):
            raise TypeError("a slide's markdown and notes are str")
        order = self._order()
        if at is None:
            pos = len(self._raw())
        else:
            if type(at) is not int or not 0 <= at <= len(order):
                raise IndexError(f"add(at={at!r:.20}): a deck of {len(order)} has 0..{len(order)}")
            pos = order[at][0] if at < len(order) else len(self._raw())
        sid = os.urandom(6).hex()
        with self.doc.transaction():
            self.doc.list(self.name).insert(pos, sid)
            if markdown:
                self.doc.text(f"{self.name}/{sid}").insert(0, markdown)
            if notes:
                self.doc.text(f"{self.name}/{sid}/notes").insert(0, notes)
        return sid

    def edit(self, i: int, markdown: str | None = None, notes: str | None = None) -> None:
        """Replace slide ``i``'s markdown and/or notes (a minimal diff: concurrent
        edits elsewhere in the slide stay)."""
        order = self._order()
        sid = order[self._check_index(i, len(order), "edit")][1]
        with self.doc.transaction():
            if markdown is not None:
                self.doc.text(f"{self.name}/{sid}").set(markdown)
            if notes is not None:
                self.doc.text(f"{self.name}/{sid}/notes").set(notes)

    def move(self, i: int, j: int) -> None:
        """Move slide ``i`` so that it becomes slide ``j``."""
        order = self._order()
        n = len(order)
        i = self._check_index(i, n, "move")
        j = self._check_index(j, n, "move")
        if i == j:
            return
        raw, sid = order[i]
        rest = [x for k, x in enumerate(order) if k != i]
        with self.doc.transaction():
            lst = self.doc.list(self.name)
            lst.delete(raw, 1)
            # where slide j (of the list without i) is now; the end if j is last
            target = len(lst)
            if j < len(rest):
                target = rest[j][0] - (1 if rest[j][0] > raw else 0)
            lst.insert(target, sid)

    def remove(self, i: int) -> None:
        """Take slide ``i`` out of the deck (its texts stay in the history)."""
        order = self._order()
        raw, _sid = order[self._check_index(i, len(order), "remove")]
        self.doc.list(self.name).delete(raw, 1)

    def add_image(self, data: bytes, mime: str = "image/png") -> str:
        """Store an image in the doc by its content hash; returns ``"image:<hash>"``
        to use as ``![alt](image:<hash>)`` in a slide's Markdown."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("add_image(data): bytes of a PNG, JPEG, GIF or WebP image")
        magic = IMAGE_TYPES.get(mime)
        if magic is None:
            raise ValueError(f"add_image: {mime!r} is not one of {sorted(IMAGE_TYPES)}")
        if not bytes(data).startswith(magic):
            raise ValueError(f"add_image: the bytes are not a {mime} image")
        if len(data) > MAX_IMAGE:
            raise ValueError(f"add_image: {len(data)} bytes; at most {MAX_IMAGE} in a deck")
        h = hashlib.sha256(bytes(data)).hexdigest()[:32]
        images = self.doc.map(f"{self.name}/images")
        if h not in images:
            images.set(h, {"mime": mime, "data": bytes(data)})
        return f"image:{h}"

    def images(self, markdown: str) -> dict[str, tuple[str, bytes]]:
        """``{hash: (mime, bytes)}`` of the stored images ``markdown`` refers to."""
        import re

        images = self.doc.map(f"{self.name}/images")
        out = {}
        for h in set(re.findall(r"\(image:([0-9a-f]{32})\)", markdown)):
            v = images.get(h)
            if (isinstance(v, dict) and v.get("mime") in IMAGE_TYPES
                    and isinstance(v.get("data"), bytes)):
                out[h] = (v["mime"], v["data"])
        return out

    # ------------------------------------------------------------- presenting
    def _claims(self) -> dict[bytes, Any]:
        node = self.doc.node
        out: dict[bytes, Any] = {}
        try:
            for pid, state in node.presence(self.doc).items():
                if isinstance(state, dict):
                    out[pid] = state
        except RuntimeError:  # no network: only our own claim
            pass
        own = PresenceBoard._states.get((id(node), self.doc.id))
        if own is not None:
            out[node.id] = own
        return out

    @property
    def presenter(self) -> Presenter | None:
        """Who presents this deck now, and which slide (None: nobody)."""
        best: Presenter | None = None
        for pid, state in self._claims().items():
            c = state.get(PART, {}).get(self.name) if isinstance(state.get(PART), dict) else None
            if not (isinstance(c, dict) and isinstance(c.get("slide"), str)
                    and isinstance(c.get("since"), (int, float))):
                continue  # a peer's presence is input: only well-formed claims count
            p = Presenter(pid, c["slide"], float(c["since"]))
            if best is None or (p.since, p.node) > (best.since, best.node):
                best = p
        return best

    @property
    def presenting(self) -> bool:
        p = self.presenter
        return p is not None and p.node == self.doc.node.id

    def present(self, slide: int = 0) -> None:
        """Make this node the presenter (taking over from anyone presenting), on
        slide ``slide``."""
        ids = self.ids
        if not ids:
            raise ValueError("present(): the deck has no slides")
        sid = ids[self._check_index(slide, len(ids), "present")]
        self._claim(sid, time.time())

    def goto(self, slide: int) -> None:
        """Show slide ``slide`` to everyone following (presenter only)."""
        p = self.presenter
        if p is None or p.node != self.doc.node.id:
            raise RuntimeError("goto(): this node is not presenting (present() first)")
        ids = self.ids
        self._claim(ids[self._check_index(slide, len(ids), "goto")], p.since)

    def stop(self) -> None:
        """Stop presenting (followers keep the slide they are on)."""
        PresenceBoard.update(self.doc.node, self.doc.id, PART, self.name, None)

    def _claim(self, sid: str, since: float) -> None:
        PresenceBoard.update(self.doc.node, self.doc.id, PART, self.name,
                             {"slide": sid, "since": since})
