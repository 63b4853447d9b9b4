"""Docs loaded only to take in remote changes are not all kept in memory (issue #15):
beyond ``KEEP_INGESTED`` the oldest are dropped and load again, identical, when
opened; a doc handed out by ``open`` is never dropped; changes arriving for a
dropped doc still go through every check."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownkernel import Node
from ownkernel.node import docstate as replica_mod
from ownkernel.node import replica as replica_py
from ownkernel.store import decode_envelope, encode_envelope


@pytest.fixture(autouse=True)
def _full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about docs *loaded* by ingest: newly shared docs otherwise
    skip the load (newdocs.py, tested in test_ingest_new.py)."""
    monkeypatch.setattr(replica_py, "ingest_new", lambda *_a: None)


def _pair(tmp_path: Path, n: int) -> tuple[Node, Node, list[bytes]]:
    a = Node(tmp_path / "a", name="a", network=False)
    b = Node(tmp_path / "b", name="b", network=False)
    ids, tokens = [], []
    with a.lock, a.store.batch():
        for i in range(n):
            d = a.new_doc(f"doc {i}")
            d.text().insert(0, f"content of doc {i}")
            ids.append(d.id)
            tokens.append(a.invite(d, write=True, addresses=[]))
    with b.lock, b.store.batch():
        for t in tokens:
            b.join(t)
    return a, b, ids


def test_ingested_docs_beyond_the_limit_are_dropped_and_reload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_mod, "KEEP_INGESTED", 4)
    a, b, ids = _pair(tmp_path, 12)
    try:
        held = b.open(ids[0])
        text = held.text()  # handed out before anything arrived: must stay
        for d in ids:
            assert b.replica.ingest(d, a.replica.outgoing(d, {}), a.id)
        loaded = set(b.replica.docs)
        assert ids[0] in loaded
        assert len(loaded & set(ids[1:])) == 4  # the 4 most recent of the others
        assert set(ids[-4:]) <= loaded
        assert b.replica.stats["dropped_ingested"] == 7
        # a dropped doc: its version is known without loading it, and it reopens whole
        assert b.replica.version(ids[1]) == {a.id: 3}
        assert ids[1] not in b.replica.docs
        assert str(b.open(ids[1]).text()) == "content of doc 1"
        assert str(text) == "content of doc 0"  # the live object saw the changes
        text.insert(0, "B: ")  # and edits through it still commit
        assert str(b.open(ids[0]).text()).startswith("B: content")
        # a doc ingested first, then handed out, is no longer dropped
        last = b.open(ids[-1]).text()
        for d in ids[1:9]:  # (duplicates: they load, and push the others out)
            b.replica.ingest(d, a.replica.outgoing(d, {}), a.id)
        assert ids[-1] in b.replica.docs and b.replica.docs[ids[-1]].crdt is not None
        last.insert(0, "!")
        assert str(b.open(ids[-1]).text()) == "!content of doc 11"
        # a later change to a dropped doc is checked and applied on a fresh load
        a.open(ids[2]).text().insert(0, "more ")
        out = a.replica.outgoing(ids[2], {a.id: 3})
        assert ids[2] not in b.replica.docs
        assert b.replica.ingest(ids[2], out, a.id)
        assert str(b.open(ids[2]).text()).startswith("more content")
    finally:
        a.close()
        b.close()


def test_a_dropped_doc_still_refuses_forged_and_foreign_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_mod, "KEEP_INGESTED", 1)
    a, b, ids = _pair(tmp_path, 3)
    try:
        for d in ids:
            b.replica.ingest(d, a.replica.outgoing(d, {}), a.id)
        assert ids[0] not in b.replica.docs  # dropped
        a.open(ids[0]).text().insert(0, "x")
        good = a.replica.outgoing(ids[0], {a.id: 3})
        env = decode_envelope(good[-1])
        forged = encode_envelope(env._replace(body=env.body + b"\x00"))
        assert b.replica.ingest(ids[0], [forged], a.id) == []
        assert b.replica.rejected["bad_signature"] == 1
        wrong = encode_envelope(env._replace(doc=ids[1]))
        assert b.replica.ingest(ids[0], [wrong], a.id) == []
        assert b.replica.rejected["wrong_doc"] == 1
        assert b.replica.version(ids[0]) == {a.id: 3}  # nothing stored
        assert str(b.open(ids[0]).text()) == "content of doc 0"
    finally:
        a.close()
        b.close()


def test_grants_stored_in_changes_survive_a_restart(tmp_path: Path) -> None:
    """The gate reads stored grants only for docs that have any (one query at its
    index build): a writer's grant, shown in its first change, still counts after
    the owner restarts, and a doc without any still gives no one a role."""
    a, b, ids = _pair(tmp_path, 3)
    try:
        b.open(ids[1]).text().insert(0, "by b ")  # b's first change shows its grant
        assert a.replica.ingest(ids[1], b.replica.outgoing(ids[1], {a.id: 3}), b.id)
        assert a.gate.role(ids[1], b.id) == "writer"
    finally:
        a.close()
        b.close()
    a = Node(tmp_path / "a", name="a", network=False)
    try:
        assert a.store.cap_docs() == {ids[1]}
        assert a.gate.role(ids[1], b.id) == "writer"  # from the stored change's grant
        assert a.gate.role(ids[0], b.id) is None  # b never showed its grant there
        assert a.gate.role(ids[0], a.id) == "owner"
    finally:
        a.close()
