"""The node's shared-docs digest (``Sharing.shared_digest``, issue #15) equals the
protocol's definition (``wire.shared_digest``) byte for byte, also after docs
change, and for the address book's str id: both sides of a session must agree,
or every anti-entropy round would list all docs."""

from __future__ import annotations

from pathlib import Path

from ownkernel.net.wire import shared_digest
from ownkernel.node import Node
from ownkernel.node.config import NetConfig


def _reference(sharing: object, peer: bytes) -> bytes:
    docs = sharing.shared_docs(peer)  # type: ignore[attr-defined]
    return shared_digest((d, sharing.version_digest(d)) for d in docs)  # type: ignore[attr-defined]


def test_shared_digest_matches_the_wire_definition(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", name="a", network=NetConfig(listen=["tcp://127.0.0.1:0"]))
    try:
        net = a.network
        assert net is not None
        sh = net.sharing
        docs = []
        with a.lock, a.store.batch():
            for i in range(40):
                d = a.new_doc(f"doc {i}")
                if i % 2:
                    d.text().insert(0, f"text {i}")
                docs.append(d)
        me = a.id  # the owner may read all of them: the widest shared set
        shared = sh.shared_docs(me)
        assert len(shared) >= 40 and any(isinstance(d, str) for d in shared)  # book doc
        first = sh.shared_digest(me)
        assert first == _reference(sh, me)
        assert sh.shared_digest(me) == first  # from the kept parts: same bytes
        # a doc changes: its part must follow its new version digest
        docs[3].text().insert(0, "more")
        sh.digests.pop(docs[3].id, None)  # as the network does when it pushes the change
        second = sh.shared_digest(me)
        assert second != first
        assert second == _reference(sh, me)
        # a peer that may read nothing but the book gets the digest of that alone
        stranger = bytes(32)
        assert sh.shared_digest(stranger) == _reference(sh, stranger)
    finally:
        a.close()
