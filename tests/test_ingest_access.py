"""A newly shared doc's access list is stored with its first changes (issue #15).

The receiver writes the access list those changes leave in the same savepoint as
the changes (``Store.append(access=...)``): one write per doc instead of two,
and the stored list can never be ahead of or behind the stored changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ownkernel import Node
from ownkernel.store import ChangeRow, Head


def _share(a: Node, b: Node, n: int) -> list[tuple[bytes, list[bytes]]]:
    """``n`` docs of ``a`` that ``b`` joined offline, with what ``a`` sends for each."""
    ids = []
    for i in range(n):
        d = a.new_doc(f"doc {i}")
        d.text().insert(0, f"text {i}")
        b.join(a.invite(d, write=True, addresses=[]))
        ids.append(d.id)
    return [(d, a.replica.outgoing(d, {})) for d in ids]


def test_access_list_is_stored_with_the_changes_and_survives_reopen(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", name="a", network=False)
    b = Node(tmp_path / "b", name="b", network=False)
    try:
        outs = _share(a, b, 5)
        b.replica.prefetch_versions()  # as the network layer does on connect
        joined = {d: b.store.document(d).access for d, _ in outs}
        statements: list[str] = []
        b.store._db.set_trace_callback(statements.append)
        with b.lock, b.store.batch(durable=False):
            for d, envs in outs:
                assert b.replica.ingest(d, envs, a.id), "nothing accepted"
        b.store._db.set_trace_callback(None)
        for d, _ in outs:
            want = b.replica.open(d).access().snapshot()
            assert b.store.document(d).access == want
            assert want != joined[d]
            assert any(k.startswith("token:") and v["c"] == "write" for k, v in want.items()
                       if k != "owner"), want  # the invite's entry, from a's changes
        # one write per doc (changes + heads + access list), no separate lookups: a
        # savepoint each but the batch's first (Store._first_in_batch)
        assert sum(s.startswith("SAVEPOINT") for s in statements) == len(outs) - 1
        assert not [s for s in statements if s.startswith("SELECT n FROM documents")]
        before = {d: b.replica.open(d).access().snapshot() for d, _ in outs}
    finally:
        b.close()
        a.close()
    b2 = Node(tmp_path / "b", name="b", network=False)
    try:
        for d, access in before.items():
            assert b2.store.document(d).access == access
            assert b2.replica.open(d).access().snapshot() == access
    finally:
        b2.close()


def test_refused_append_leaves_the_access_list_as_it_was(tmp_path: Path) -> None:
    a = Node(tmp_path / "a", name="a", network=False)
    b = Node(tmp_path / "b", name="b", network=False)
    try:
        (d, envs), = _share(a, b, 1)
        b.replica.ingest(d, envs, a.id)
        stored = b.store.document(d).access
        row = b.store.changes(d, a.id, 0)[0]
        head = b.replica.open(d).heads[a.id]
        # the same change again: the store refuses the whole call, access list included
        with pytest.raises(Exception, match="UNIQUE"):
            b.store.append(d, [ChangeRow(a.id, row.seq, b"x", None)],
                           {a.id: Head(head.seq, head.hash, head.sig, head.sig_seq)},
                           remote=True, access={"owner": a.id, "tampered": True})
        assert b.store.document(d).access == stored
    finally:
        b.close()
        a.close()
