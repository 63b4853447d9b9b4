"""The widget protocol against real nodes (no browser): snapshot on ready,
numbered batched deltas, gaps and resync, UTF-16 positions, CRLF, bad input.

Two nodes on 127.0.0.1 share a doc; a Python stand-in for the browser
(tests/ui_front.py) speaks to the widget exactly as the JS front-ends do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from ui_front import EditorFront, Front, two_nodes, until

from ownkernel import ui
from ownkernel.node import Node
from ownkernel.ui.base import MAX_RATE
from ownkernel.ui.editor import parse_changes
from ownkernel.ui.utf16 import AstralIndex, units


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[Node, Node, Any, Any]]:
    with two_nodes(tmp_path, lambda d: d.text("body").insert(0, "héllo 😀 wörld")) as p:
        yield p


# -- pure pieces ---------------------------------------------------------------
def test_astral_index_matches_reencoding() -> None:
    rnd = random.Random(7)
    alphabet = ["a", "é", "中", "😀", "\U0001f469\u200d\U0001f4bb", "\n", "e\u0301"]
    text = ""
    idx = AstralIndex(text)
    for _ in range(400):
        if text and rnd.random() < 0.35:
            p = rnd.randrange(len(text))
            n = rnd.randint(1, min(4, len(text) - p))
            assert idx.delete(p, n) == units(text[p:p + n])
            text = text[:p] + text[p + n:]
        else:
            p = rnd.randint(0, len(text))
            s = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 4)))
            idx.insert(p, s)
            text = text[:p] + s + text[p:]
        assert idx.length == len(text) and idx.length16 == units(text)
        for cp in range(len(text) + 1):
            u = units(text[:cp])
            assert idx.to16(cp) == u and idx.to_cp(u) == cp
    # inside a surrogate pair: snapped to the character's start, never split
    idx = AstralIndex("a😀b")
    assert idx.to_cp(2) == 1 and idx.to16(2) == 3
    with pytest.raises(IndexError, match="outside"):
        idx.to_cp(5)


def test_parse_changes_checks_what_it_reads() -> None:
    assert parse_changes([2, [1, "x", "y"], 3], 6) == [(2, 3, "x\ny")]
    assert parse_changes([[0, "a"], 4, [2]], 6) == [(0, 0, "a"), (4, 6, "")]
    with pytest.raises(ValueError, match="cover 5 UTF-16 units, the text has 6"):
        parse_changes([5], 6)
    with pytest.raises(ValueError, match="bad section"):
        parse_changes([1, {"x": 1}], 1)
    with pytest.raises(ValueError, match="must be a list"):
        parse_changes("abc", 3)


# -- editor --------------------------------------------------------------------
def test_nothing_before_ready_then_snapshot_with_version(pair) -> None:
    a, b, da, db = pair
    w = ui.editor(da.text("body"))
    front = EditorFront(w)
    da.text("body").insert(0, ">")  # before the front-end is there
    until(lambda: w._version == 1, what="delta numbered")
    assert front.sent == []  # custom messages before render would be lost
    front.deliver({"t": "ready"})
    until(lambda: front.of_type("snapshot"), what="snapshot")
    snap = front.of_type("snapshot")[0]
    assert snap["text"] == ">héllo 😀 wörld" and snap["v"] == 1
    assert snap["name"] == "ann" and snap["color"].startswith("#")
    w.close()


def test_edits_both_ways_with_astral_characters(pair) -> None:
    a, b, da, db = pair
    wa, wb = ui.editor(da.text("body")), ui.editor(db.text("body"))
    fa, fb = EditorFront(wa, "pageA"), EditorFront(wb, "pageB")
    for f in (fa, fb):
        f.deliver({"t": "ready"})
        f.settle()
    assert fa.text == fb.text == "héllo 😀 wörld"
    # page A types right after the emoji: UTF-16 offset 8 is code point 7
    fa.edit(8, 0, "é😀")
    fa.settle()
    assert str(da.text("body")) == "héllo 😀é😀 wörld"
    until(lambda: (fb.pump(), fb.text)[1] == "héllo 😀é😀 wörld", what="edit reached page B")
    # page B deletes the first emoji (two UTF-16 units = one character)
    fb.settle()
    fb.edit(6, 2, "")
    fb.settle()
    until(lambda: str(da.text("body")) == "héllo é😀 wörld", what="delete reached node A")
    until(lambda: (fa.pump(), fa.text)[1] == "héllo é😀 wörld", what="delete reached page A")
    # a multi-change update (pre-change offsets, as CodeMirror sends them)
    fa.settle()
    fa.change([[0, "<"], len(fa.doc), [0, ">"]])
    fa.settle()
    until(lambda: str(db.text("body")) == "<héllo é😀 wörld>", what="multi-change at B")
    wa.close()
    wb.close()


def test_stale_push_is_mapped_over_a_peers_edit(pair) -> None:
    a, b, da, db = pair
    w = ui.editor(da.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()
    v = f.version
    db.text("body").insert(0, "B:")  # a peer's edit the page has not seen
    until(lambda: w._version == v + 1, what="remote edit numbered")
    # the page inserts at 0 on its old version: mapped after the peer's insert
    # there, as CodeMirror maps it in the page (ChangeSet.map, ours after theirs)
    f.edit(0, 0, "X")
    until(lambda: w._version == v + 2, what="stale push mapped and applied")
    assert str(da.text("body")) == "B:Xhéllo 😀 wörld"
    until(lambda: str(db.text("body")) == "B:Xhéllo 😀 wörld", what="push reached B")
    f.settle()
    assert f.text == "B:Xhéllo 😀 wörld"
    assert len(f.of_type("snapshot")) == 1 and f.of_type("error") == []
    w.close()


def test_pipelined_pushes_build_on_each_other_across_a_peers_edit(pair) -> None:
    """Page pushes u1 and, pipelined, u2 (built on u1) on version v. A peer's
    edit lands first: both are mapped through the page's bridge and applied
    where the page typed them, without a refusal or a round trip."""
    a, b, da, db = pair
    w = ui.editor(da.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()
    v = f.version
    db.text("body").insert(0, "R")
    until(lambda: w._version == v + 1, what="peer's edit numbered")
    f.edit(len(f.doc), 0, "1")
    f.edit(len(f.doc), 0, "2")
    f.edit(0, 1, "H")  # replaces the "h" the page sees first (the peer's R is before it)
    until(lambda: w._version == v + 4, what="three pushes applied")
    assert str(da.text("body")) == "RHéllo 😀 wörld12"
    f.settle()
    assert f.text == "RHéllo 😀 wörld12"
    assert len(f.of_type("snapshot")) == 1 and f.of_type("error") == []
    w.close()


def _random_edit(rnd: random.Random, n16: int, doc: list[int]) -> tuple[int, int, str]:
    """A random edit at character boundaries of a UTF-16 document."""
    def boundary(x: int) -> int:  # never between the halves of a surrogate pair
        return x - 1 if 0 < x < len(doc) and 0xDC00 <= doc[x] <= 0xDFFF else x
    pos = boundary(rnd.randint(0, n16))
    dele = 0
    if n16 > pos and rnd.random() < 0.35:
        dele = boundary(min(n16, pos + rnd.randint(1, 3))) - pos
    return pos, dele, rnd.choice(["a", "é", "😀", "\n", "中", "xy", ""]) if dele else \
        rnd.choice(["a", "é", "😀", "\n", "中", "xy"])


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_interleavings_of_two_views_and_remote_edits_converge(pair, seed) -> None:
    """Two views of node A's editor and one of node B's type, each pushing at
    once and reading the kernel's messages only now and then (so every push may
    be stale by several updates); cell code edits the text on both nodes. At the
    end every view, both widgets and both CRDTs hold the same text, with no
    snapshot (no view ever started over) and no error."""
    a, b, da, db = pair
    rnd = random.Random(seed)
    wa, wb = ui.editor(da.text("body")), ui.editor(db.text("body"))
    f1 = EditorFront(wa, "view1")
    f2 = EditorFront(wa, "view2", share=f1)
    f3 = EditorFront(wb, "view3")
    f1.deliver({"t": "ready"})
    f3.deliver({"t": "ready"})
    fronts = [f1, f2, f3]
    for f in fronts:
        until(lambda f=f: (f.pump(), f.version >= 0)[1], what="snapshot")
    for _ in range(300):
        r = rnd.random()
        f = rnd.choice(fronts)
        if r < 0.55:
            pos, dele, ins = _random_edit(rnd, len(f.doc), f.doc)
            f.edit(pos, dele, ins, push=rnd.random() < 0.8)
        elif r < 0.8:
            f.pump(limit=rnd.randint(0, 3))
            if rnd.random() < 0.5:
                f.push()
        else:
            h = rnd.choice([da, db])
            # read and edit in one transaction: the other node's changes arrive on
            # the network thread and may shorten the text between two separate calls
            with h.transaction():
                t = h.text("body")
                s = str(t)
                p = rnd.randint(0, len(s))
                if s and rnd.random() < 0.3:
                    t.delete(min(p, len(s) - 1), 1)
                else:
                    t.insert(p, rnd.choice(["R", "ü", "🎉"]))
    for f in fronts:
        f.push()

    def converged() -> bool:
        for f in fronts:
            f.pump()
            f.push()
        want = str(da.text("body"))
        return (str(db.text("body")) == want and wa.value == want
                and all(not f.unconfirmed and f.version == f.w._version and f.text == want
                        for f in fronts))
    until(converged, timeout=30, what="all views and nodes equal")
    assert len(f1.of_type("snapshot")) == 1 and len(f3.of_type("snapshot")) == 1
    assert f1.of_type("error") == [] and f3.of_type("error") == []
    assert f1.length_errors == f2.length_errors == f3.length_errors == 0
    wa.close()
    wb.close()


def test_gap_asks_for_resync_and_gets_the_missing_deltas(pair) -> None:
    a, b, da, db = pair
    w = ui.editor(da.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()
    da.text("body").insert(0, "1")
    until(lambda: w._version == 1, what="one delta")
    da.text("body").insert(0, "2")  # (edits drained together become one update)
    until(lambda: w._version == 2, what="two deltas")
    until(lambda: len(f.of_type("deltas")) >= 1, what="deltas sent")
    with f.lock:  # lose the first delta message on the way
        i = next(i for i, (_, m) in enumerate(f.sent) if m["t"] == "deltas")
        lost = f.sent.pop(i)[1]
    da.text("body").insert(0, "3")
    f.settle()
    assert f.resyncs >= 1 and f.text == "321héllo 😀 wörld" == str(da.text("body"))
    assert lost["from"] == 1
    # a resync from before what is kept gets a snapshot instead
    n = len(f.of_type("snapshot"))
    f.deliver({"t": "resync", "v": -1})
    until(lambda: len(f.of_type("snapshot")) == n + 1, what="snapshot on old resync")
    w.close()


def test_deltas_are_batched_and_rate_limited(pair) -> None:
    a, b, da, db = pair
    w = ui.editor(da.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()
    t = db.text("body")
    for i in range(300):  # 300 separate remote commits
        t.insert(0, "x😀"[i % 2])
    until(lambda: str(da.text("body")) == str(t), what="edits reached A")

    def caught_up() -> bool:  # the widget may still hold a batch that A already has
        f.pump()
        return f.text == str(t)
    until(caught_up, what="front caught up")
    f.settle()
    times = [ts for ts, m in f.sent if m["t"] == "deltas"]
    assert len(times) < 300  # batched, not one message per change
    gaps = [y - x for x, y in zip(times, times[1:])]
    assert all(g >= 1 / MAX_RATE - 0.002 for g in gaps), min(gaps)
    w.close()


def test_a_remote_key_goes_to_the_page_before_our_store_commits(pair) -> None:
    """The leading edge of a peer's change is sent while node B is still storing
    the frame it came in (its store batch open), so the page does not wait for
    B's fsync; later changes in the batching window still arrive composed."""
    a, b, da, db = pair
    w = ui.editor(db.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()
    in_batch: list[bool] = []
    record = f._record

    def spy(msg: dict[str, Any], buffers: Any = None) -> None:
        if msg.get("t") == "deltas":
            in_batch.append(b.store._t._batch)  # (private: no public "inside a batch")
        record(msg, buffers)
    w.send = spy
    da.text("body").insert(0, "k")
    until(lambda: in_batch, what="B sent the key")
    assert in_batch[0] is True
    t = da.text("body")
    for i in range(50):  # a burst: batched as before
        t.insert(0, "x😀"[i % 2])

    def caught_up() -> bool:
        f.pump()
        return f.text == str(t)
    until(caught_up, what="front caught up")
    assert len(in_batch) < 50
    w.close()


def test_a_widget_failing_to_send_does_not_fail_the_nodes_ingest(pair) -> None:
    """The leading edge is sent from inside the node's ingest of a frame: a page
    whose send fails must not make the node drop or half-handle that frame."""
    a, b, da, db = pair
    w = ui.editor(db.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()

    def broken(msg: dict[str, Any], buffers: Any = None) -> None:
        raise RuntimeError("the comm is gone")
    w.send = broken
    da.text("body").insert(0, "k")
    until(lambda: str(db.text("body")) == str(da.text("body")), what="B has the key")
    assert b.network.errors["handler-error"] == 0
    assert b.network.errors["batch-error"] == 0
    w.close()


def test_crlf_from_cell_code_becomes_lf_on_both_sides(pair) -> None:
    a, b, da, db = pair
    w = ui.editor(da.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()
    da.text("body").insert(0, "one\r\ntwo\rthree\n")
    want = "one\ntwo\nthree\nhéllo 😀 wörld"
    until(lambda: str(da.text("body")) == want, what="CRLF normalised")
    until(lambda: (f.pump(), f.text)[1] == want, what="normalised text on the page")
    until(lambda: str(db.text("body")) == want, what="normalised text at B")
    w.close()


def test_bad_messages_lose_nothing_and_resend_a_snapshot(pair) -> None:
    a, b, da, db = pair
    w = ui.editor(da.text("body"))
    f = EditorFront(w)
    f.deliver({"t": "ready"})
    f.settle()
    before = str(da.text("body"))
    n = len(f.of_type("snapshot"))
    f.deliver({"t": "push", "v": f.version, "c": "x", "g": f.gen, "n": 0,
               "updates": [{"c": "x", "ch": [999]}]})
    f.deliver({"no": "type"})
    until(lambda: len(f.of_type("error")) == 2, what="errors reported")
    errors = [m["error"] for m in f.of_type("error")]
    assert "changes cover 999 UTF-16 units, the text has" in errors[0]
    assert "without a type" in errors[1]
    until(lambda: len(f.of_type("snapshot")) == n + 2, what="fresh snapshots")
    assert str(da.text("body")) == before
    with pytest.raises(TypeError, match=r"text root of a document \(doc.text"):
        ui.editor("just a string")
    w.close()


def test_remote_cursor_arrives_through_presence(pair) -> None:
    a, b, da, db = pair
    wa, wb = ui.editor(da.text("body")), ui.editor(db.text("body"))
    fa, fb = EditorFront(wa, "pA"), EditorFront(wb, "pB")
    for fr in (fa, fb):
        fr.deliver({"t": "ready"})
        fr.settle()
    # page B's caret after the emoji: UTF-16 8 = code point 7
    fb.deliver({"t": "sel", "v": fb.version, "anchor": 8, "head": 8})

    def cursor() -> Any:
        for m in fa.of_type("cursors"):
            for c in m["cursors"]:
                if c["name"] == "ben":
                    return c
        return None
    c = until(cursor, what="B's cursor on page A")
    assert (c["anchor"], c["head"]) == (8, 8) and c["color"].startswith("#")
    wa.close()
    wb.close()


# -- chat and peers ------------------------------------------------------------
def test_chat_messages_both_ways(pair) -> None:
    a, b, da, db = pair
    wa, wb = ui.chat(da.log("chat")), ui.chat(db.log("chat"))
    fa, fb = Front(wa), Front(wb)
    da.log("chat").append({"from": "script", "text": "before"})
    for fr in (fa, fb):
        fr.deliver({"t": "ready"})
    until(lambda: fa.of_type("snapshot"), what="snapshot A")
    assert [m["text"] for m in fa.of_type("snapshot")[0]["messages"]] == ["before"]
    fa.deliver({"t": "send", "text": "hi ben 😀\r\nline two"})

    def texts(fr: Front) -> list[str]:
        snap = [m["text"] for s in fr.of_type("snapshot")[-1:] for m in s["messages"]]
        return snap + [m["text"] for d in fr.of_type("deltas") for m in d["ops"]]
    until(lambda: "hi ben 😀\nline two" in texts(fb), what="message at page B")
    msg = db.log("chat").messages()[-1]
    assert msg["author"] == "ann" and msg["text"] == "hi ben 😀\nline two"
    fa.deliver({"t": "send", "text": "   "})
    until(lambda: fa.of_type("error"), what="empty message refused")
    with pytest.raises(TypeError, match="log root"):
        ui.chat(da.text("body"))
    wa.close()
    wb.close()


def test_peers_go_offline_when_a_peer_shuts_down(pair) -> None:
    a, b, da, db = pair
    w = ui.peers(a)
    f = Front(w)
    f.deliver({"t": "ready"})

    def rows() -> list[dict[str, Any]]:
        snaps = [m["peers"] for m in f.of_type("snapshot")]
        deltas = [op["peers"] for m in f.of_type("deltas") for op in m["ops"]]
        return (snaps + deltas)[-1] if snaps else []
    until(lambda: any(r["name"] == "ben" and r["online"] for r in rows()), what="ben online")
    b.close()
    until(lambda: any(r["name"] == "ben" and not r["online"] for r in rows()), what="ben offline")
    w.close()


def test_blame_colours_the_text_by_author_on_request(pair) -> None:
    """Issue #12 §2: on request the editor gets who wrote each character, as UTF-16
    ranges at the version the page holds, refreshed as the text changes; off again
    clears them. Bad input is a clear error."""
    a, b, da, db = pair
    wa = ui.editor(da.text("body"))
    fa = EditorFront(wa, "pA")
    fa.deliver({"t": "ready"})
    fa.settle()
    db.text("body").insert(len(db.text("body")), "!!")  # ben writes at the end
    until(lambda: (fa.pump(), fa.text)[1] == "héllo 😀 wörld!!", what="ben's edit on page A")
    fa.deliver({"t": "blame", "on": True})

    def latest() -> Any:
        msgs = fa.of_type("blame")
        return msgs[-1] if msgs else None
    m = until(lambda: (latest() or {}).get("ranges") and latest(), what="blame ranges")
    assert wa.blame is True
    spans = [(r[0], r[1], r[3]) for r in m["ranges"]]
    # "héllo 😀 wörld" is 14 UTF-16 units (the emoji is two), ann's; "!!" is ben's
    assert spans == [(0, 14, "ann"), (14, 16, "ben")]
    assert all(r[2].startswith("#") and len(r[2]) == 7 for r in m["ranges"])
    assert m["v"] == fa.version
    # an edit while blame is on brings fresh ranges
    fa.edit(0, 0, "»")
    fa.settle()
    until(lambda: (latest() or {}).get("ranges", [[0]])[0][1] == 15, what="ranges after the edit")
    wa.blame = False  # from Python: the page is told to clear it
    until(lambda: latest()["ranges"] is None, what="blame off")
    fa.deliver({"t": "blame", "on": "yes"})
    until(lambda: any("blame needs on" in e["error"] for e in fa.of_type("error")),
          what="a clear error")
    wa.close()


def test_the_editor_shows_comment_anchors_and_threads(pair) -> None:
    """Issue #12 §3: a comment made on another node shows in this editor: its anchor
    (UTF-16, at the version the page holds) and its thread with replies; resolving
    it is shown too."""
    a, b, da, db = pair
    wa = ui.editor(da.text("body"))
    fa = EditorFront(wa, "pA")
    fa.deliver({"t": "ready"})
    fa.settle()
    tid = db.text("body").comment(8, 13, "which world?")  # code points: "wörld"

    def latest() -> Any:
        msgs = fa.of_type("comments")
        return msgs[-1] if msgs else None
    m = until(lambda: (latest() or {}).get("threads") and latest(), what="the thread on page A")
    [t] = m["threads"]
    # "héllo 😀 " is 9 code points, 10 UTF-16 units: the anchor is 9..14 in UTF-16
    assert (t["id"], t["from"], t["to"], t["quote"]) == (tid, 9, 14, "wörld")
    assert (t["name"], t["text"], t["resolved"]) == ("ben", "which world?", False)
    da.text("body").comments().reply(tid, "this one")
    until(lambda: [(r["name"], r["text"]) for r in latest()["threads"][0]["replies"]]
          == [("ann", "this one")], what="the reply")
    db.text("body").comments().resolve(tid)
    until(lambda: latest()["threads"][0]["resolved"] is True, what="resolved")
    wa.close()
