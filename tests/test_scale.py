"""Sync at scale (issue #15): more documents per peer than any fixed cap.

Two real nodes on 127.0.0.1. B joins every document while offline, then starts
with A as its bootstrap: every document must arrive, each change once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ownkernel.node import Node
from ownkernel.node.config import NetConfig

FAST = dict(ping_interval=0.5, peer_timeout=5.0, anti_entropy=2.0, backoff_min=0.05,
            backoff_max=0.5, connect_timeout=1.0)


def _sync_many(tmp_path: Path, n_docs: int, timeout: float) -> None:
    a = Node(tmp_path / "a", name="a", network=NetConfig(**FAST))
    try:
        tokens = []
        with a.lock, a.store.batch():  # setup: one fsync, not 10,000
            for i in range(n_docs):
                d = a.new_doc(f"doc {i}")
                d.text().insert(0, f"content of doc {i}")
                tokens.append(a.invite(d, write=False, addresses=[]))
        # B joins while offline (one transaction for the setup)
        with Node(tmp_path / "b", name="b", network=False) as b, b.lock, b.store.batch():
            for t in tokens:
                b.join(t)
        b = Node(tmp_path / "b", name="b", bootstrap=[a.address], network=NetConfig(**FAST))
        try:
            ids = [d.id for d in b.docs()]
            assert len(ids) == n_docs

            def done() -> int:
                return sum(1 for d in ids if b.replica.open(d).heads.get(a.id) is not None)
            end = time.monotonic() + timeout
            while done() < n_docs and time.monotonic() < end:
                time.sleep(0.05)
            assert done() == n_docs, f"only {done()} of {n_docs} docs synced"
            for d in ids[:5] + ids[-5:]:
                assert str(b.open(d).text()).startswith("content of doc ")
            st = b.stats()
            # each document's history arrived about once
            assert st["duplicates"] <= n_docs, st
            assert st["rejected_total"] == 0, st["rejected"]
        finally:
            b.close()
    finally:
        a.close()


def test_more_docs_than_the_old_cap_of_256_sync(tmp_path: Path) -> None:
    _sync_many(tmp_path, 300, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ten_thousand_docs_sync(tmp_path: Path) -> None:
    _sync_many(tmp_path, 10_000, timeout=600)
