"""Store.batch(durable=False): other authors' changes are committed without an
fsync (peers hold them); our own writes inside such a batch still are fsynced,
and a killed process loses nothing committed either way."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ownkernel.store import Store
from ownkernel.store.sqlite import ChangeRow, Head

DOC = b"d" * 16
A = b"a" * 32
REPO = Path(__file__).resolve().parents[1]


def _store(path: Path) -> Store:
    st = Store(path)
    if st.document(DOC) is None:
        st.add_document(DOC, title="t", owner=A, capability="owner")
    return st


def _synchronous(st: Store) -> int:
    return int(st._db.execute("PRAGMA synchronous").fetchone()[0])


def _spy_fsync(st: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = st._t.fsync_wal
    monkeypatch.setattr(st._t, "fsync_wal", lambda: (calls.append(1), real())[1])
    return calls


def test_remote_changes_in_a_relaxed_batch_skip_the_fsync(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    st = _store(tmp_path / "s.sqlite3")
    try:
        calls = _spy_fsync(st, monkeypatch)
        with st.batch(durable=False):
            st.append(DOC, [ChangeRow(A, 1, b"x")], {A: Head(1, b"h" * 32)}, remote=True)
            assert _synchronous(st) == 1  # NORMAL while the batch runs (from its first write)
        assert calls == []
        assert _synchronous(st) == 1  # left at NORMAL: the next write sets what it needs
        st.set_setting("k", 1)  # a write of its own: FULL first
        assert _synchronous(st) == 2
        with st.batch(durable=False):
            pass
        with st.batch():  # a durable batch: SQLite's own fsync, not ours
            st.append(DOC, [ChangeRow(A, 2, b"y")], {A: Head(2, b"h" * 32)}, remote=True)
            assert _synchronous(st) == 2
        assert calls == []
    finally:
        st.close()
    st = Store(tmp_path / "s.sqlite3")
    try:
        assert [r.blob for r in st.changes(DOC, A)] == [b"x", b"y"]
    finally:
        st.close()


def test_any_other_write_in_a_relaxed_batch_is_fsynced(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    st = _store(tmp_path / "s.sqlite3")
    try:
        calls = _spy_fsync(st, monkeypatch)
        with st.batch(durable=False):
            st.append(DOC, [ChangeRow(A, 1, b"x")], {A: Head(1, b"h" * 32)}, remote=True)
            st.append(DOC, [ChangeRow(b"b" * 32, 1, b"own")], {b"b" * 32: Head(1, b"g" * 32)})
        assert calls == [1]
        calls.clear()
        with st.batch(durable=False):
            st.set_setting("k", 1)
        assert calls == [1]
        calls.clear()
        with pytest.raises(RuntimeError), st.batch(durable=False):  # undone: nothing to sync
            st.set_setting("k", 2)
            raise RuntimeError("boom")
        assert calls == [] and st.get_setting("k") == 1
        st.set_setting("k", 3)
        assert _synchronous(st) == 2
    finally:
        st.close()


def test_a_killed_process_keeps_what_a_relaxed_batch_committed(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    _store(path).close()
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from ownkernel.store import Store
        from ownkernel.store.sqlite import ChangeRow, Head
        st = Store({str(path)!r})
        A = {A!r}
        for seq in range(1, 51):
            with st.batch(durable=False):
                st.append({DOC!r}, [ChangeRow(A, seq, b"c%d" % seq)],
                          {{A: Head(seq, b"h" * 32)}}, remote=True)
            print(seq, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        acked = [int(proc.stdout.readline()) for _ in range(50)]  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert acked[-1] == 50
    st = Store(path)
    try:
        assert [r.seq for r in st.changes(DOC, A)] == list(range(1, 51))
    finally:
        st.close()


def test_a_write_after_a_relaxed_batch_that_could_not_reset_is_still_fsynced(tmp_path: Path):
    st = _store(tmp_path / "s.sqlite3")
    try:
        with st.batch(durable=False):
            pass
        st._t.set_normal(st._db, True)  # as if a batch had ended inside a transaction
        st.set_setting("k", 1)  # a write of its own: FULL again first
        assert _synchronous(st) == 2
    finally:
        st.close()


def test_a_refused_first_write_of_a_batch_leaves_the_batch_usable(tmp_path: Path):
    """The batch's first write runs without a savepoint: when it fails, it alone is
    undone and the writes after it in the same batch are kept and committed."""
    st = _store(tmp_path / "s.sqlite3")
    try:
        st.append(DOC, [ChangeRow(A, 1, b"x")], {A: Head(1, b"h" * 32)})
        with st.batch(durable=False):
            with pytest.raises(sqlite3.IntegrityError):  # seq 1 is stored already
                st.append(DOC, [ChangeRow(A, 1, b"dup")], {A: Head(1, b"d" * 32)}, remote=True)
            st.append(DOC, [ChangeRow(A, 2, b"y")], {A: Head(2, b"i" * 32)}, remote=True)
            with pytest.raises(sqlite3.IntegrityError):  # a later one: its savepoint
                st.append(DOC, [ChangeRow(A, 2, b"dup")], {A: Head(2, b"e" * 32)},
                          remote=True)
            st.set_setting("k", 1)
        assert [(r.seq, r.blob) for r in st.changes(DOC, A)] == [(1, b"x"), (2, b"y")]
        assert st.heads(DOC)[A].hash == b"i" * 32 and st.get_setting("k") == 1
    finally:
        st.close()
    st = Store(tmp_path / "s.sqlite3")
    try:
        assert [r.seq for r in st.changes(DOC, A)] == [1, 2] and st.get_setting("k") == 1
    finally:
        st.close()
