"""Comment threads (issue #12 §3): anchored to text ranges and sheet cells by
CRDT ids, so they stay on their characters / cells while the document
changes; replies, resolve; stored in the doc and synced; on a node's doc."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownkernel import Node
from ownkernel.crdt import Doc

A, B = b"\x01alice", b"\x02bob"


def sync(*docs: Doc) -> None:
    for x in docs:
        for y in docs:
            if x is not y:
                y.apply(x.changes(since=y.version))


def test_a_comment_stays_on_its_characters_while_the_text_changes() -> None:
    d, e = Doc(A), Doc(B)
    t = d.text("body")
    t.insert(0, "the quick brown fox")
    tid = t.comment(4, 9, "quick? really?")
    d.commit()
    sync(d, e)
    [th] = e.text("body").comments().threads()
    assert (th.id, th.start, th.end, th.quote, th.author) == (tid, 4, 9, "quick", A)
    e.text("body").insert(0, "see: ")  # before it: the range moves
    t.insert(len(t), " jumps")  # after it: nothing changes
    t.insert(7, "-")  # inside it: the range grows ("qui-ck")
    d.commit()
    e.commit()
    sync(d, e)
    for doc in (d, e):
        [th] = doc.text("body").comments().threads()
        assert th.quote == "qui-ck" and str(doc.text("body"))[th.start:th.end] == "qui-ck"
    # its characters deleted: it shrinks to where they were, and is kept
    body = d.text("body")
    s = str(body).index("qui-ck")
    body.delete(s, 6)
    [th] = body.comments().threads()
    assert (th.start, th.end, th.quote) == (s, s, "")
    d.commit()
    # undo brings them back as copies (new ids): the thread follows the copies,
    # on every replica (the copies are named in the undo change)
    assert d.undo()
    sync(d, e)
    for doc in (d, e):
        [th] = doc.text("body").comments().threads()
        assert th.quote == "qui-ck" and str(doc.text("body"))[th.start:th.end] == "qui-ck"


def test_replies_resolve_and_authors_come_from_who_wrote_them() -> None:
    d, e = Doc(A), Doc(B)
    d.text("body").insert(0, "abc")
    tid = d.text("body").comment(0, 3, "first")
    sync(d, e)
    rid = e.text("body").comments().reply(tid, "agreed")
    sync(d, e)
    [th] = d.text("body").comments().threads()
    assert [(r.id, r.author, r.text) for r in th.replies] == [(rid, B, "agreed")]
    assert not th.resolved
    d.text("body").comments().resolve(tid)
    sync(d, e)
    assert e.text("body").comments().threads()[0].resolved
    assert e.text("body").comments().threads(include_resolved=False) == []
    e.text("body").comments().resolve(tid, False)
    sync(d, e)
    assert not d.text("body").comments().threads()[0].resolved
    # saved with the doc
    f = Doc.load(d.save())
    assert f.text("body").comments().threads()[0].replies[0].text == "agreed"
    assert "m:_comments" in d.roots()  # a reserved root: no user root is added


def test_comments_on_cells_follow_rows_and_columns() -> None:
    d = Doc(A)
    from ownkernel.crdt.comments import Comments

    s = d.sheet("grid")
    s.set("B2", 7)
    c = Comments(d)
    tid = c.add_cell("grid", "B2", "why 7?")
    s.insert_rows(0)  # a row above: the comment moves down with its cell
    s.insert_cols(0)
    [th] = c.threads()
    assert (th.id, th.cell, th.quote, th.on) == (tid, (2, 2), "7", "s:grid")
    s.delete_rows(2)
    assert c.threads()[0].cell is None  # its row is gone; the thread is kept


def test_bad_comments_are_refused_clearly_and_write_nothing() -> None:
    d = Doc(A)
    t = d.text("body")
    t.insert(0, "abc")
    d.commit()
    for args, err, match in [((2, 2, "x"), IndexError, "not within"),
                             ((0, 9, "x"), IndexError, "length 3"),
                             ((0, 1, "  "), ValueError, "some text"),
                             ((0, 1, "x" * 10_001), ValueError, "at most")]:
        with pytest.raises(err, match=match):
            t.comment(*args)
    with pytest.raises(KeyError, match="no comment thread"):
        t.comments().reply("nope", "x")
    with pytest.raises(IndexError, match="outside sheet"):
        from ownkernel.crdt.comments import Comments
        Comments(d).add_cell("grid", "C9", "x")
    assert d.pending_ops == 0  # nothing of the refused calls was written
    # a malformed thread someone wrote into the map is skipped, not fatal
    d.map("_comments").set("junk", {"on": "t:body", "a": "x"})
    d.map("_comments").set("junk2", 5)
    assert t.comments().threads() == []


def test_comments_on_a_node_doc_sync_and_commit_like_edits(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", "ann", network=False)
    b = Node(tmp_path / "b", "ben", network=False)
    try:
        doc = a.new_doc("c")
        doc.text("body").insert(0, "hello world")
        n = a.store.change_count(doc.id)
        tid = doc.text("body").comment(6, 11, "which world?")
        assert a.store.change_count(doc.id) == n + 1  # committed at once
        mine = b.join(a.invite(doc, write=True))
        have = {x: h.seq for x, h in b.replica.open(doc.id).heads.items()}
        b.replica.ingest(doc.id, a.replica.outgoing(doc.id, have), a.id)
        mine.comments().reply(tid, "this one")
        [th] = mine.comments().threads()
        assert th.quote == "world" and th.author == a.id and th.replies[0].author == b.id
        assert "_comments" not in doc.roots()
    finally:
        a.close()
        b.close()


def test_the_comments_widget_adds_replies_resolves_and_refuses_bad_input(
        tmp_path: Path) -> None:
    from ui_front import Front

    from ownkernel import ui

    a = Node(tmp_path / "a", "ann", network=False)
    try:
        doc = a.new_doc("c")
        doc.text("body").insert(0, "héllo 😀 world")
        w = ui.comments(doc.text("body"))
        f = Front(w)
        f.deliver({"t": "ready"})
        assert f.of_type("snapshot")[-1]["state"]["threads"] == []
        f.deliver({"t": "add", "start": 6, "end": 7, "text": "an emoji?"})  # code points

        def state() -> dict:
            return ([m["state"] for m in f.of_type("snapshot")]
                    + [o["state"] for d in f.of_type("deltas") for o in d["ops"]])[-1]

        [th] = state()["threads"]
        assert th["quote"] == "😀" and th["start"] == 6 and th["end"] == 7
        assert state()["authors"][th["author"]]["name"] == "ann"
        f.deliver({"t": "reply", "id": th["id"], "text": "yes"})
        f.deliver({"t": "resolve", "id": th["id"], "on": True})
        [th] = state()["threads"]
        assert [r["text"] for r in th["replies"]] == ["yes"] and th["resolved"]
        f.deliver({"t": "reply", "id": "nope", "text": "x"})
        assert "no comment thread" in f.of_type("error")[-1]["error"]
        f.deliver({"t": "add", "start": 5, "end": 99, "text": "x"})
        assert "not within" in f.of_type("error")[-1]["error"]
        assert len(doc.text("body").comments().threads()) == 1
        w.close()
        with pytest.raises(TypeError, match="text root"):
            ui.comments(doc)
    finally:
        a.close()
