"""The history widget (issue #12 §2) against real nodes, without a browser:
steps by author, the doc at a step with its marks, blame, restore."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_front import Front

from ownkernel import Node, ui
from ownkernel.ui.history import GROUP_SPAN, history_steps


def _sync(src: Node, dst: Node, doc_id: bytes) -> None:
    have = {a: h.seq for a, h in dst.replica.open(doc_id).heads.items()}
    dst.replica.ingest(doc_id, src.replica.outgoing(doc_id, have), src.id)


@pytest.fixture
def two(tmp_path: Path):  # type: ignore[no-untyped-def]
    a = Node(tmp_path / "a", "ann", network=False)
    b = Node(tmp_path / "b", "ben", network=False)
    yield a, b
    a.close()
    b.close()


def _state(front: Front) -> dict:
    msgs = front.of_type("snapshot") + [m for d in front.of_type("deltas") for m in d["ops"]]
    return msgs[-1]["state"]


def test_steps_group_one_authors_typing_and_keep_authors_apart(two) -> None:  # type: ignore[no-untyped-def]
    a, b = two
    doc = a.new_doc("h")
    body = doc.text("body")
    for ch in "hello":  # five changes within a few ms: one step
        body.insert(len(body), ch)
    mine = b.join(a.invite(doc, write=True))
    _sync(a, b, doc.id)
    mine.text("body").insert(5, " ben")
    _sync(b, a, doc.id)
    steps = history_steps(doc)
    # the creation, five keystrokes and the invite, all within a few ms: one step
    typed = [s for s in steps if "+5 −0 in body" in s["summary"]]
    assert len(typed) == 1 and typed[0]["changes"] >= 6 and typed[0]["author"] == a.id
    assert steps[-1]["author"] == b.id and steps[-1]["summary"] == "+4 −0 in body"
    assert GROUP_SPAN > 0


def test_the_widget_shows_a_step_with_marks_blames_and_restores(two) -> None:  # type: ignore[no-untyped-def]
    a, b = two
    doc = a.new_doc("h")
    doc.text("body").insert(0, "hello world")
    mine = b.join(a.invite(doc, write=True))
    _sync(a, b, doc.id)
    mine.text("body").replace(0, 5, "HOWDY")
    _sync(b, a, doc.id)
    w = ui.history(doc)
    f = Front(w)
    f.deliver({"t": "ready"})
    s = _state(f)
    # without a network ben's name is unknown here: his short id stands in
    assert s["authors"][a.id.hex()] == {"name": "ann", "color": a.color or s["authors"][
        a.id.hex()]["color"], "me": True}
    assert s["authors"][b.id.hex()]["name"] == b.id.hex()[:8]
    assert s["latest"] and s["sel"] == len(s["entries"]) - 1
    [body] = [r for r in s["view"]["roots"] if r["name"] == "body"]
    segs = [(k, t, bytes.fromhex(who)) for k, t, who in body["segs"]]
    # ben's step: "hello" deleted (ann wrote it), "HOWDY" inserted by ben, the rest kept
    assert ("-", "hello", a.id) in segs and ("+", "HOWDY", b.id) in segs
    assert ("=", " world", a.id) in segs
    assert all(r["name"][0] != "_" for r in s["view"]["roots"])
    first = next(i for i, e in enumerate(s["entries"]) if "body" in e["summary"])
    f.deliver({"t": "select", "i": first})
    s = _state(f)
    assert s["sel"] == first and not s["latest"]
    [body] = [r for r in s["view"]["roots"] if r["name"] == "body"]
    assert [k for k, *_ in body["segs"]] == ["+"] and body["segs"][0][1] == "hello world"
    f.deliver({"t": "blame", "on": True})
    assert _state(f)["blame"] is True
    f.deliver({"t": "restore", "i": first})
    assert str(doc.text("body")) == "hello world"
    s = _state(f)
    assert s["latest"] and s["entries"][-1]["author"] == a.id.hex()
    f.deliver({"t": "select", "i": 10_000})  # bad input: an error and a fresh snapshot
    assert f.of_type("error") and "no step" in f.of_type("error")[-1]["error"]
    assert str(doc.text("body")) == "hello world"
    w.close()
    with pytest.raises(TypeError, match="DocHandle"):
        ui.history(doc.text("body"))


def test_changes_without_times_are_grouped_by_count() -> None:
    from types import SimpleNamespace

    from ownkernel.crdt import Doc
    from ownkernel.ui.history import MAX_STEPS

    d = Doc(b"\x01a")
    t = d.text("body")
    for i in range(2 * MAX_STEPS + 10):
        t.insert(i, "x")
        d.commit()
    steps = history_steps(SimpleNamespace(crdt=d, history=d.history))
    assert len(steps) <= MAX_STEPS + 1 and sum(s["changes"] for s in steps) == 2 * MAX_STEPS + 10
    assert steps[-1]["version"] == d.version and all(s["time"] is None for s in steps)
