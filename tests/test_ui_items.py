"""ui.items against real nodes (no browser): snapshot, add/check/edit/move/
delete from a page reaching the other node's widget, bad input refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ui_front import Front, two_nodes, until

from ownkernel import ui
from ownkernel.node import Node


class ItemsFront(Front):
    def shown(self) -> list[dict[str, Any]] | None:
        """The items the page shows: the last snapshot or delta."""
        with self.lock:
            msgs = [m for _, m in self.sent if m["t"] in ("snapshot", "deltas")]
        if not msgs:
            return None
        last = msgs[-1]
        return last["items"] if last["t"] == "snapshot" else last["ops"][-1]["items"]

    def texts(self) -> list[tuple[str, bool]]:
        return [(i["text"], i["done"]) for i in self.shown() or []]


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[Node, Node, Any, Any]]:
    # a plain value: shown as an item
    with two_nodes(tmp_path, lambda d: d.list("todo").append("from before")) as p:
        yield p


def test_items_both_ways(pair) -> None:
    a, b, da, db = pair
    wa, wb = ui.items(da.list("todo")), ui.items(db.list("todo"))
    fa, fb = ItemsFront(wa), ItemsFront(wb)
    for f in (fa, fb):
        f.deliver({"t": "ready"})
    until(lambda: fb.texts() == [("from before", False)], what="snapshot in B")
    fa.deliver({"t": "add", "text": "milk"})
    fa.deliver({"t": "add", "text": "eggs", "at": 0})
    until(lambda: fb.texts() == [("eggs", False), ("from before", False), ("milk", False)],
          what="adds reached B")
    milk = fb.shown()[2]
    assert milk["by"] == "ann" and isinstance(milk["when"], float)
    fb.deliver({"t": "set", "id": milk["id"], "field": "done", "value": True})
    until(lambda: ("milk", True) in fa.texts(), what="check reached A")
    fb.deliver({"t": "move", "id": milk["id"], "to": 0})
    until(lambda: fa.texts()[0] == ("milk", True), what="move reached A")
    old = fa.shown()[2]
    assert old["text"] == "from before" and old["id"].startswith("~")
    fa.deliver({"t": "set", "id": old["id"], "field": "text", "value": "edited\r\nline"})
    until(lambda: ("edited\nline", False) in fb.texts(), what="legacy item edited")
    eggs = fb.shown()[1]
    fb.deliver({"t": "delete", "id": eggs["id"]})
    until(lambda: fa.texts() == [("milk", True), ("edited\nline", False)], what="delete")
    assert wa.items == wb.items
    wa.close()
    wb.close()


def test_bad_messages_are_refused_and_lose_nothing(tmp_path) -> None:
    n = Node(tmp_path / "n", name="ann", network=False)
    try:
        doc = n.new_doc("d")
        w = ui.items(doc.list("todo"))
        f = ItemsFront(w)
        f.deliver({"t": "ready"})
        w.add("one")
        bad = [{"t": "add", "text": 5}, {"t": "set", "id": "zz", "field": "done", "value": True},
               {"t": "set", "id": w.items[0]["id"], "field": "done", "value": "yes"},
               {"t": "set", "id": w.items[0]["id"], "field": "gone", "value": True},
               {"t": "move", "id": w.items[0]["id"], "to": -1}, {"t": "delete"},
               {"t": "add", "text": "x" * 10_001}]
        for msg in bad:
            f.deliver(msg)
        errors = [e["error"] for e in f.of_type("error")]
        assert len(errors) == len(bad)
        assert "must be a string" in errors[0] and "no item 'zz'" in errors[1]
        assert "true or false" in errors[2] and "field must be" in errors[3]
        assert "bad position" in errors[4] and "needs the item's id" in errors[5]
        assert "at most" in errors[6]
        assert [i["text"] for i in w.items] == ["one"]
        w.close()
        with pytest.raises(TypeError, match="needs a list root"):
            ui.items(doc.text("body"))
    finally:
        n.close()
