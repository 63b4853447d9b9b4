"""The widgets of a doc joined a moment ago say "syncing…" until its first sync lands
(issue #11 §1): two real nodes over 127.0.0.1, the inviter offline at first."""

from __future__ import annotations

from ui_front import FAST, fast_node, until

from ownkernel import ui
from ownkernel.node import Node
from ownkernel.node.config import NetConfig


def test_widgets_say_syncing_until_the_inviters_content_arrives(tmp_path) -> None:
    a = fast_node(tmp_path / "a", "ann")
    doc = a.new_doc("notes")
    doc.text("body").insert(0, "from ann")
    doc.log("chat").append({"author": "ann", "text": "hi"})
    token = a.invite(doc, write=True)
    address = a.address
    a.close()  # the inviter goes offline before anyone joined
    b = Node(tmp_path / "b", name="ben", network=NetConfig(**FAST))
    try:
        bdoc = b.join(token, timeout=0)
        assert not bdoc.received
        widgets = [ui.editor(bdoc.text("body")), ui.chat(bdoc.log("chat")), ui.doc(bdoc).header]
        assert all(w.syncing for w in widgets)
        mine = ui.editor(b.new_doc("own").text("body"))
        assert not mine.syncing  # a doc we own has nothing to wait for
        # the inviter comes back on the same address (its port is sticky)
        a = Node(tmp_path / "a", network=NetConfig(**FAST))
        assert a.address == address
        until(lambda: str(bdoc.text("body")) == "from ann", timeout=20)
        until(lambda: not any(w.syncing for w in widgets), timeout=10)
        assert bdoc.received
    finally:
        b.close()
        a.close()
