"""History, undo/redo and blame on the node's DocHandle (issue #12 §1): the undo is
a new change, checked, stored and synced like any edit; others' edits stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownkernel import Node


def _sync(src: Node, dst: Node, doc_id: bytes) -> None:
    have = {a: h.seq for a, h in dst.replica.open(doc_id).heads.items()}
    dst.replica.ingest(doc_id, src.replica.outgoing(doc_id, have), src.id)


def test_undo_on_a_handle_is_a_synced_change_that_leaves_others_edits(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", "ann", network=False)
    b = Node(tmp_path / "b", "ben", network=False)
    try:
        doc = a.new_doc("h")
        doc.text("body").insert(0, "hello")
        mine = b.join(a.invite(doc, write=True))
        _sync(a, b, doc.id)
        mine.text("body").insert(5, " ben")
        _sync(b, a, doc.id)
        doc.text("body").insert(0, ">> ")
        assert str(doc.text("body")) == ">> hello ben"
        n = a.store.change_count(doc.id)
        assert doc.can_undo() and doc.undo()
        assert str(doc.text("body")) == "hello ben"  # only ann's latest edit went
        assert a.store.change_count(doc.id) == n + 1  # stored as a change of its own
        _sync(a, b, doc.id)
        assert str(mine.text("body")) == "hello ben"
        assert doc.can_redo() and doc.redo()
        _sync(a, b, doc.id)
        assert str(doc.text("body")) == str(mine.text("body")) == ">> hello ben"
        spans = doc.text("body").blame()
        assert [(s, e) for s, e, _ in spans][0][0] == 0 and spans[-1][1] == len(">> hello ben")
        assert {actor for _, _, actor in spans} == {a.id, b.id}
        h = doc.history()
        assert [e.actor for e in h].count(b.id) == 1 and h[-1].actor == a.id
        old = doc.at(h[1].version)
        assert old.text("body") in ("hello", "hello ben")
    finally:
        a.close()
        b.close()


def test_a_reader_cannot_undo_and_nothing_is_left_pending(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", "ann", network=False)
    b = Node(tmp_path / "b", "ben", network=False)
    try:
        doc = a.new_doc("h")
        doc.text("body").insert(0, "x")
        mine = b.join(a.invite(doc, write=False))
        _sync(a, b, doc.id)
        assert not mine.undo()  # a reader made no change of its own: nothing to undo
        assert not mine.crdt.pending_ops
        fresh = a.new_doc("fresh")  # its only changes are its creation
        with pytest.raises(PermissionError, match="access list"):
            while fresh.undo():  # (the title may go first; the access list never)
                pass
        assert fresh.role == "owner" and not fresh.crdt.pending_ops
        with pytest.raises(RuntimeError, match="transaction"), doc.transaction():
            doc.undo()
    finally:
        a.close()
        b.close()
