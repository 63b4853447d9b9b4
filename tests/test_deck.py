"""Presentations (issue #12 §4), Python level: the deck doc (ordered slide ids,
moves, removes, concurrent inserts) and the presenter lease over presence
between two real nodes on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from waiting import until

from ownkernel import Node
from ownkernel.apps import Deck


def _sync(src: Node, dst: Node, doc_id: bytes) -> None:
    have = {a: h.seq for a, h in dst.replica.open(doc_id).heads.items()}
    dst.replica.ingest(doc_id, src.replica.outgoing(doc_id, have), src.id)


def test_slides_add_move_remove_and_concurrent_inserts(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", "ann", network=False)
    b = Node(tmp_path / "b", "ben", network=False)
    try:
        doc = a.new_doc("talk")
        deck = Deck(doc)
        s0 = deck.add("# One", notes="hello")
        s1 = deck.add("# Two")
        s2 = deck.add("# Three")
        assert deck.ids == [s0, s1, s2] and deck.slides[0].notes == "hello"
        deck.move(0, 2)
        assert deck.ids == [s1, s2, s0]
        deck.move(2, 0)
        assert deck.ids == [s0, s1, s2]
        deck.move(0, 1)
        assert deck.ids == [s1, s0, s2]
        mine = b.join(a.invite(doc, write=True))
        _sync(a, b, doc.id)
        other = Deck(mine)
        # concurrent: both insert at the front and move the same slide (s1 after s0)
        x = deck.add("# ann's", at=0)
        deck.move(1, 2)
        y = other.add("# ben's", at=0)
        other.move(1, 2)
        _sync(a, b, doc.id)
        _sync(b, a, doc.id)
        assert deck.ids == other.ids  # converged
        assert sorted(deck.ids) == sorted([x, y, s0, s1, s2])  # each slide once
        assert deck.ids[2:] == [s0, s1, s2] and set(deck.ids[:2]) == {x, y}
        assert len(doc.list("deck")) == 6  # both moves inserted s1: the first one counts
        deck.edit(0, markdown="# edited", notes="n")
        assert deck.slides[0].markdown == "# edited"
        deck.remove(0)
        assert len(deck) == 4
        with pytest.raises(IndexError, match="no slide"):
            deck.move(9, 0)
        with pytest.raises(TypeError, match="DocHandle"):
            Deck(doc.crdt)
        with pytest.raises(RuntimeError, match="not presenting"):
            deck.goto(0)
    finally:
        a.close()
        b.close()


def test_one_presenter_with_handover_following_slide_ids(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", "ann", listen="tcp://127.0.0.1:0")
    b = Node(tmp_path / "b", "ben", listen="tcp://127.0.0.1:0")
    try:
        doc = a.new_doc("talk")
        deck = Deck(doc)
        ids = [deck.add(f"# {i}") for i in range(3)]
        mine = b.join(a.invite(doc, write=True), timeout=30)
        other = Deck(mine)
        until(lambda: other.ids == ids, what="the deck reached ben")
        deck.present()
        assert deck.presenting and deck.presenter.slide == ids[0]
        until(lambda: other.presenter is not None and other.presenter.node == a.id,
              what="ben sees ann presenting")
        deck.goto(2)
        until(lambda: other.presenter.slide == ids[2], what="ben sees slide 3")
        other.move(2, 0)  # reordered mid-talk: the claim names the slide, not an index
        until(lambda: deck.ids[0] == ids[2], what="the move reached ann")
        assert deck.presenter.slide == ids[2] and deck.index_of(ids[2]) == 0
        other.present(1)  # handover
        until(lambda: deck.presenter is not None and deck.presenter.node == b.id,
              what="ann sees ben take over")
        assert not deck.presenting and other.presenting
        other.stop()
        until(lambda: deck.presenter is not None and deck.presenter.node == a.id,
              what="ann's own (older) claim counts again once ben stops")
        deck.stop()
        until(lambda: other.presenter is None, what="nobody presents")
    finally:
        a.close()
        b.close()


def test_the_deck_widget_follows_stops_following_and_resumes(tmp_path: Path) -> None:
    from ui_front import Front

    from ownkernel import ui

    a = Node(tmp_path / "a", "ann", listen="tcp://127.0.0.1:0")
    b = Node(tmp_path / "b", "ben", listen="tcp://127.0.0.1:0")
    try:
        doc = a.new_doc("talk")
        deck = Deck(doc)
        for i in range(3):
            deck.add(f"# Slide {i}", notes=f"notes {i}")
        deck.present()
        mine = b.join(a.invite(doc, write=True), timeout=30)
        other = Deck(mine)
        until(lambda: len(other) == 3 and other.presenter is not None, what="deck and claim")
        wa, wb = ui.deck(deck), ui.deck(other)
        fa, fb = Front(wa), Front(wb)
        fa.deliver({"t": "ready"})
        fb.deliver({"t": "ready"})

        def state(f: Front) -> dict:
            with f.lock:
                msgs = [m for _, m in f.sent if m.get("t") in ("snapshot", "deltas")]
            last = msgs[-1] if msgs else None
            if last is None:
                return {}
            return last["state"] if last["t"] == "snapshot" else last["ops"][-1]["state"]

        until(lambda: state(fb).get("index") == 0, what="ben lands on the current slide")
        assert state(fb)["following"] and state(fb)["notes"] == ""  # no speaker notes
        until(lambda: state(fa).get("notes") == "notes 0", what="ann's speaker view")
        fa.deliver({"t": "go", "i": 1})
        until(lambda: state(fb).get("index") == 1, what="ben follows to slide 2")
        fb.deliver({"t": "go", "i": 2})  # ben looks ahead: stops following
        until(lambda: state(fb).get("index") == 2 and not state(fb)["following"],
              what="ben stopped following")
        fa.deliver({"t": "go", "i": 0})
        until(lambda: state(fa).get("index") == 0, what="ann back on slide 1")
        until(lambda: state(fb).get("presenter", {}).get("index") == 0, what="ben sees it")
        assert state(fb)["index"] == 2  # but stays where he looked
        fb.deliver({"t": "follow"})
        until(lambda: state(fb).get("index") == 0 and state(fb)["following"], what="resumed")
        fb.deliver({"t": "go", "i": 7})
        until(lambda: fb.of_type("error"), what="an error for a bad slide")
        wa.close()
        wb.close()
    finally:
        a.close()
        b.close()


def test_images_are_stored_once_by_content_hash_and_shown_as_data_urls(
        tmp_path: Path) -> None:
    from ui_front import Front

    from ownkernel import ui
    from ownkernel.apps.deck import MAX_IMAGE

    a = Node(tmp_path / "a", "ann", network=False)
    try:
        doc = a.new_doc("talk")
        deck = Deck(doc)
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
        ref = deck.add_image(png)
        assert ref.startswith("image:") and deck.add_image(png) == ref  # stored once
        assert len(doc.map("deck/images")) == 1
        deck.add(f"# Chart\n\n![the chart]({ref})")
        [(h, (mime, data))] = deck.images(deck.slides[0].markdown).items()
        assert (f"image:{h}", mime, data) == (ref, "image/png", png)
        for args, match in [((b"<svg/>", "image/svg+xml"), "not one of"),
                            ((b"not a png",), "not a image/png"),
                            ((b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE),), "at most")]:
            with pytest.raises(ValueError, match=match):
                deck.add_image(*args)
        w = ui.deck(deck)
        f = Front(w)
        f.deliver({"t": "ready"})
        st = f.of_type("snapshot")[-1]["state"]
        assert st["images"] == {h: "data:image/png;base64," + __import__("base64").b64encode(
            png).decode()}
        w.close()
    finally:
        a.close()
