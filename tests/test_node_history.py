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


def test_changes_carry_the_authors_wall_time_and_undo_survives_a_restart(
        tmp_path: Path) -> None:
    import time

    t0 = time.time()
    a = Node(tmp_path / "a", "ann", network=False)
    try:
        doc = a.new_doc("h")
        doc.text("body").insert(0, "one")
        doc.text("body").insert(3, " two")
        doc.map("meta").set("k", 1)
        assert doc.undo() and doc.undo()  # the set, then " two"
        assert str(doc.text("body")) == "one" and doc.map("meta").to_dict() == {}
        doc_id = doc.id
        times = [e.time for e in doc.history()]
    finally:
        a.close()
    t1 = time.time()
    assert all(t is not None and int(t0) <= t <= t1 for t in times)
    a = Node(tmp_path / "a", "ann", network=False)  # the kernel restarted
    try:
        doc = a.open(doc_id)
        assert doc.can_redo() and doc.redo()  # " two" comes back, not the set
        assert str(doc.text("body")) == "one two" and doc.map("meta").to_dict() == {}
        assert doc.undo()  # undoes that redo, not the undo changes before it
        assert doc.undo()  # then "one": the undone changes are skipped
        assert str(doc.text("body")) == "" and doc.map("meta").to_dict() == {}
        assert "_time" not in doc.roots() and "_undo" not in doc.roots()
    finally:
        a.close()


def test_restore_on_a_handle_is_one_synced_change_and_leaves_the_access_list(
        tmp_path: Path) -> None:
    a = Node(tmp_path / "a", "ann", network=False)
    b = Node(tmp_path / "b", "ben", network=False)
    try:
        doc = a.new_doc("h")
        doc.text("body").insert(0, "first draft")
        v = doc.history()[-1].version
        mine = b.join(a.invite(doc, write=True))
        _sync(a, b, doc.id)
        mine.text("body").replace(0, 5, "second")
        _sync(b, a, doc.id)
        access = doc.access
        n = a.store.change_count(doc.id)
        assert doc.restore(v)
        assert str(doc.text("body")) == "first draft" and doc.access == access
        assert a.store.change_count(doc.id) == n + 1
        assert not doc.restore(v)
        _sync(a, b, doc.id)
        assert str(mine.text("body")) == "first draft"
        with pytest.raises(KeyError, match="does not know"):
            doc.restore({b"\x09" * 32: 1})
        assert not doc.crdt.pending_ops
    finally:
        a.close()
        b.close()
