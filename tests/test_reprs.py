"""Rich and plain reprs of a node, a document and the peer list."""

from __future__ import annotations

from ownkernel import Node


def test_node_doc_and_peers_render_in_html_and_text() -> None:
    with Node(profile=None, name="alice") as a, Node(profile=None, name="bob") as b:
        doc = a.new_doc(title="notes <draft>")
        doc.text("body").insert(0, "hello & welcome")
        doc.sheet("budget")["A1"] = "=2*21"
        doc.counter("votes").increment(3)
        b.join(a.invite(doc), timeout=10)

        html = a._repr_html_()
        assert "alice" in html and a.short_id in html and "1 online" in html
        assert a.address is not None and a.address.split("#")[0] in html
        assert "\n" not in repr(a) and a.short_id in repr(a)

        dh = doc._repr_html_()
        # every root with its value, and the title escaped
        assert "hello &amp; welcome" in dh and "[[42]]" in dh and ">3<" in dh
        assert "notes &lt;draft&gt;" in dh
        assert "\n" not in repr(doc)

        peers = a.peers
        assert [p.name for p in peers] == ["bob"]
        ph = peers._repr_html_()
        assert "bob" in ph and b.short_id in ph and "yes" in ph
    assert "closed" in a._repr_html_()
