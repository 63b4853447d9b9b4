"""node.open finds a document by id, hex prefix or title, and says why it cannot."""

from __future__ import annotations

import pytest

from ownkernel import Node


def test_open_by_id_prefix_and_title() -> None:
    with Node(profile=None, network=False) as n:
        d = n.new_doc(title="notes")
        assert n.open(d.id).id == d.id
        assert n.open(d.hex[:6]).id == d.id
        assert n.open("notes").id == d.id
        n.new_doc(title="notes")
        with pytest.raises(KeyError, match="ambiguous"):
            n.open("notes")
        with pytest.raises(KeyError, match="no document matching"):
            n.open("nothing like it")
        with pytest.raises(ValueError, match="invite token"):
            n.open("own:abc")
