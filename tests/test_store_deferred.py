"""Other authors' live changes held a moment before they are written
(ownkernel/store/deferred.py), on real SQLite files: no reader can tell held rows
from stored ones, every write lands after them, a held row is written within the
hold time, and only a killed process (or a full disk, named in ``lost``) loses them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_store_durability import DOC, REPO, A, _store

from ownkernel.store import Store, StoreFullError
from ownkernel.store.deferred import HOLD_BYTES, HOLD_ROWS, HOLD_SECONDS, Deferred
from ownkernel.store.sqlite import ChangeRow, Head

B = b"b" * 32


def _hold(st: Store, seq: int, blob: bytes = b"k") -> None:
    st.append(DOC, [ChangeRow(A, seq, blob)], {A: Head(seq, seq.to_bytes(32, "big"))},
              remote=True, defer=True)


def _statements(st: Store) -> list[str]:
    seen: list[str] = []
    st._db.set_trace_callback(seen.append)
    return seen


def test_held_rows_cost_no_statement_and_every_read_sees_them(tmp_path: Path) -> None:
    st = _store(tmp_path / "s.sqlite3")
    try:
        seen = _statements(st)
        with st.batch(durable=False):  # a received burst that only held rows
            _hold(st, 1)
            _hold(st, 2)
        assert seen == [] and st.deferring
        # any read writes them first: nobody can tell them from stored rows
        assert [c.seq for c in st.changes(DOC, A)] == [1, 2] and not st.deferring
        _hold(st, 3)
        assert st.heads(DOC)[A].seq == 3
        _hold(st, 4)
        assert st.versions()[DOC] == {A: 4}
    finally:
        st.close()


def test_a_write_lands_after_the_held_rows(tmp_path: Path) -> None:
    st = _store(tmp_path / "s.sqlite3")
    try:
        _hold(st, 1)
        seen = _statements(st)
        st.append(DOC, [ChangeRow(B, 1, b"mine")], {B: Head(1, b"m" * 32)})  # own: fsynced
        inserts = [s for s in seen if s.startswith("INSERT INTO changes")]
        assert len(inserts) == 2  # the held row, then ours
        assert not st.deferring
        assert st.heads(DOC)[A].seq == 1 and st.heads(DOC)[B].seq == 1
    finally:
        st.close()


def test_held_rows_are_written_once_due_or_many(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    st = _store(tmp_path / "s.sqlite3")
    try:
        now = [1000.0]
        monkeypatch.setattr(time, "monotonic", lambda: now[0])
        _hold(st, 1)
        now[0] += HOLD_SECONDS / 2
        _hold(st, 2)
        st.write_deferred(due_only=True)  # (the timer round) not due yet
        assert st.deferring
        now[0] += HOLD_SECONDS / 2
        st.write_deferred(due_only=True)
        assert not st.deferring
        _hold(st, 3)
        now[0] += HOLD_SECONDS
        _hold(st, 4)  # a row arriving after the hold time writes all, itself included
        assert not st.deferring
        for seq in range(5, 5 + HOLD_ROWS):  # typing fast: at most HOLD_ROWS held
            _hold(st, seq)
            assert st._t.deferred.rows < HOLD_ROWS
        assert st._t.deferred.rows == 0  # the HOLD_ROWS-th wrote them
        st.write_deferred()
        seen = _statements(st)
        assert [c.seq for c in st.changes(DOC, A)] == list(range(1, 5 + HOLD_ROWS))
        assert not any(s.startswith("INSERT") for s in seen)  # nothing was left held
    finally:
        st.close()


def test_the_buffer_keeps_the_newest_head_per_author() -> None:
    d = Deferred()
    assert not d
    assert d.add(DOC, [ChangeRow(A, 1, b"x")], {A: Head(1, b"1" * 32)}, 5.0) is False
    assert d.add(DOC, [ChangeRow(A, 2, b"y")], {A: Head(2, b"2" * 32)}, 5.5) is False
    assert d.due(5.9) is False and d.due(6.0) is True
    held = d.take()
    assert not d and d.docs == {}
    rows, heads = held[DOC]
    assert [r.seq for r in rows] == [1, 2] and heads[A].seq == 2
    # a writer sending big changes fast: no more than HOLD_BYTES held
    assert d.add(DOC, [ChangeRow(A, 3, bytes(HOLD_BYTES // 2))], {}, 7.0) is False
    assert d.add(DOC, [ChangeRow(A, 4, bytes(HOLD_BYTES // 2))], {}, 7.0) is True
    d.take()
    assert d.bytes == 0 and d.rows == 0


def test_close_writes_what_is_held(tmp_path: Path) -> None:
    st = _store(tmp_path / "s.sqlite3")
    _hold(st, 1)
    st.close()
    st = Store(tmp_path / "s.sqlite3")
    try:
        assert [c.seq for c in st.changes(DOC, A)] == [1]
    finally:
        st.close()


CHILD = textwrap.dedent("""
    import sys, time
    from ownkernel.store import Store
    from ownkernel.store.sqlite import ChangeRow, Head
    DOC, A = b"d" * 16, b"a" * 32
    st = Store(sys.argv[1])
    for seq in (1, 2):
        st.append(DOC, [ChangeRow(A, seq, b"k")], {A: Head(seq, bytes(32))}, remote=True)
    for seq in (3, 4):
        st.append(DOC, [ChangeRow(A, seq, b"k")], {A: Head(seq, bytes(32))}, remote=True,
                  defer=True)
    if sys.argv[2] == "write":
        st.write_deferred()
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("written", [False, True])
def test_a_killed_process_loses_only_what_was_still_held(tmp_path: Path,
                                                          written: bool) -> None:
    path = tmp_path / "s.sqlite3"
    _store(path).close()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "write" if written else "-"],
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    st = Store(path)
    try:
        want = [1, 2, 3, 4] if written else [1, 2]
        assert [c.seq for c in st.changes(DOC, A)] == want
        assert st.heads(DOC)[A].seq == want[-1]  # chain and head agree
        assert st.integrity_check() == ["ok"]
    finally:
        st.close()


def test_held_rows_that_cannot_be_written_are_dropped_and_named(tmp_path: Path) -> None:
    st = _store(tmp_path / "s.sqlite3")
    try:
        st.append(DOC, [ChangeRow(A, 1, b"k")], {A: Head(1, bytes(32))}, remote=True)
        pages = st._db.execute("PRAGMA page_count").fetchone()[0]
        st._db.execute(f"PRAGMA max_page_count = {pages}")
        _hold(st, 2, os.urandom(64 * 1024))  # needs new pages: cannot be written
        with pytest.raises(StoreFullError):
            st.set_setting("k", 1)  # the write that would have landed after them
        assert st.lost == {DOC} and not st.deferring
        # the store is consistent and usable: reads work, and writes once there is room
        assert [c.seq for c in st.changes(DOC, A)] == [1] and st.heads(DOC)[A].seq == 1
        st._db.execute("PRAGMA max_page_count = 1000000")
        st.set_setting("k", 1)
        assert st.get_setting("k") == 1
    finally:
        st.close()


def test_held_rows_written_in_a_batch_that_fails_are_named(tmp_path: Path) -> None:
    """Written inside a batch, held rows are undone with it: their docs are named in
    ``lost`` (the replica reloads them), exactly as when writing them failed."""
    st = _store(tmp_path / "s.sqlite3")
    try:
        _hold(st, 1)
        with pytest.raises(RuntimeError), st.batch(durable=False):
            assert st.heads(DOC)[A].seq == 1  # a read: writes the held row, in the batch
            raise RuntimeError("the burst failed")
        assert st.lost == {DOC} and A not in st.heads(DOC)
        assert st.changes(DOC, A) == []
        st.lost.clear()
        with st.batch(durable=False):  # a batch that commits names nothing
            _hold(st, 1)
            st.heads(DOC)
        assert not st.lost and [c.seq for c in st.changes(DOC, A)] == [1]
    finally:
        st.close()
