"""Store damage, refusal and disk full (issue #8 hole 9): real SQLite files, no mocks.

- a 0-byte or foreign database is refused *untouched* (bytes and mtime compared);
- a damaged change row or snapshot raises CorruptRowError naming file, doc, author,
  seq, and affects only what depends on it;
- a full disk raises StoreFullError and loses nothing acknowledged (SQLite's
  max_page_count, and a real tmpfs when the test may mount one);
- reopen skips the integrity check after a clean close and runs it otherwise.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ownkernel import Node
from ownkernel.cli import body_decoders
from ownkernel.store import (
    DB_FILE,
    ChangeRow,
    CorruptRowError,
    DatabaseError,
    Head,
    Store,
    StoreFullError,
)
from ownkernel.store.doctor import Report, audit_store, quarantine
from ownkernel.store.identity import KEY_FILE

ROOT = Path(__file__).resolve().parents[1]
DOC = b"D" * 16
A, B = b"a" * 32, b"b" * 32


def fingerprint(path: Path) -> tuple[bytes, int, list[str]]:
    """Bytes, mtime and the sibling files: all must be unchanged by a refusal."""
    return (path.read_bytes(), path.stat().st_mtime_ns,
            sorted(p.name for p in path.parent.iterdir()))


def filled(path: Path, n: int = 3) -> Store:
    st = Store(path)
    st.add_document(DOC, title="t", owner=A, capability="owner")
    for actor in (A, B):
        st.append(DOC, [ChangeRow(actor, i, f"{actor[:1].decode()}{i}".encode() * 20)
                        for i in range(1, n + 1)], {actor: Head(n, b"h" * 32)})
    return st


def spoil_change(path: Path, actor: bytes, seq: int, stored: bytes) -> None:
    db = sqlite3.connect(path)
    db.execute("UPDATE changes SET blob = ? WHERE seq = ? AND actor = "
               "(SELECT n FROM actors WHERE id = ?)", (stored, seq, actor))
    db.commit()
    db.close()


# --- refused untouched ---------------------------------------------------------------

def test_empty_database_beside_a_valid_key_is_refused_untouched(tmp_path: Path):
    p = tmp_path / "p"
    with Node(profile=p, network=False) as node:
        node.new_doc("mine")
    (p / DB_FILE).write_bytes(b"")
    before = fingerprint(p / DB_FILE)
    assert (p / KEY_FILE).exists()
    with pytest.raises(DatabaseError, match=r"empty \(0 bytes\).*untouched.*backup") as e:
        Node(profile=p, network=False)
    assert str(p / DB_FILE) in str(e.value)
    assert fingerprint(p / DB_FILE) == before


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_foreign_sqlite_database_is_refused_byte_for_byte(tmp_path: Path, journal: str):
    path = tmp_path / DB_FILE
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute("CREATE TABLE notes (x)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()
    before = fingerprint(path)
    with pytest.raises(DatabaseError, match="without an ownkernel schema.*untouched") as e:
        Store(path)
    assert str(path) in str(e.value)
    assert fingerprint(path) == before


def test_other_applications_database_is_refused_byte_for_byte(tmp_path: Path):
    path = tmp_path / DB_FILE
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id = 1234")
    db.execute("CREATE TABLE schema_version (version INTEGER)")  # even with our table name
    db.commit()
    db.close()
    before = fingerprint(path)
    with pytest.raises(DatabaseError, match="another application.*0x4d2"):
        Store(path)
    assert fingerprint(path) == before


def test_truncated_after_clean_close_is_refused_though_the_check_is_skipped(tmp_path: Path):
    path = tmp_path / DB_FILE
    st = filled(path, 200)
    st.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4096])
    with pytest.raises(DatabaseError, match="truncated"):
        Store(path)


def test_new_database_is_created_whole(tmp_path: Path):
    path = tmp_path / DB_FILE
    Store(path).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_FILE, DB_FILE + "-clean"]
    assert path.read_bytes()[68:72] == b"ownk"  # application_id in the file itself


# --- clean marker: integrity check only after an unclean shutdown -------------------

def test_integrity_check_runs_only_after_unclean_shutdown(tmp_path: Path):
    path = tmp_path / DB_FILE
    filled(path).close()
    st = Store(path)
    assert not st.checked  # clean close: no full read
    st.close()
    # A process that dies without close() (as after SIGKILL: the WAL stays).
    code = textwrap.dedent(f"""
        import os
        from ownkernel.store import Store, ChangeRow, Head
        st = Store({str(path)!r})
        st.append({DOC!r}, [ChangeRow({A!r}, 4, b"four")], {{{A!r}: Head(4, b"h" * 32)}})
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    st = Store(path)
    assert st.checked
    assert [c.seq for c in st.changes(DOC, A)] == [1, 2, 3, 4]
    st.close()
    # Changed behind our back after a clean close (another tool wrote it): check again.
    db = sqlite3.connect(path)
    db.execute("INSERT INTO settings VALUES ('x', x'00')")
    db.commit()
    db.close()
    st = Store(path)
    assert st.checked
    st.close()
    with Store(path, check=True) as st:
        assert st.checked


# --- damaged rows are scoped -----------------------------------------------------------

def test_damaged_change_names_file_doc_actor_seq_and_spares_the_rest(tmp_path: Path):
    path = tmp_path / DB_FILE
    filled(path).close()
    spoil_change(path, A, 2, b"\x01not deflate at all")
    st = Store(path)
    with pytest.raises(CorruptRowError) as e:
        st.changes(DOC, A)
    err = e.value
    assert isinstance(err, DatabaseError)
    assert (err.path, err.doc, err.actor, err.seq, err.what) == (str(path), DOC, A, 2, "change")
    for part in (str(path), DOC.hex(), A.hex(), "seq 2", "ownkernel doctor"):
        assert part in str(err)
    seen: list[CorruptRowError] = []
    assert [c.seq for c in st.changes(DOC, A, on_damaged=seen.append)] == [1]
    assert [(x.actor, x.seq) for x in seen] == [(A, 2)]
    assert [c.seq for c in st.changes(DOC, B)] == [1, 2, 3]  # the other author is fine
    assert st.changes(DOC, A, after=2)[0].seq == 3  # rows after it still readable
    spoil_change(path, A, 3, b"\x07unknown encoding")
    with pytest.raises(CorruptRowError, match="seq 3.*unknown encoding"):
        st.changes(DOC, A, after=2)
    st.close()


def test_damaged_snapshot_version_is_reported_not_raised_raw(tmp_path: Path):
    path = tmp_path / DB_FILE
    st = filled(path)
    st.put_snapshot(DOC, {A: 3, B: 3}, b"snap", 6)
    st.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE snapshots SET version = x'ff00ff'")
    db.commit()
    db.close()
    st = Store(path)
    with pytest.raises(CorruptRowError, match=f"damaged snapshot.*{DOC.hex()}"):
        st.snapshot(DOC)
    seen: list[CorruptRowError] = []
    assert st.snapshot(DOC, on_damaged=seen.append) is None
    assert seen[0].what == "snapshot" and seen[0].seq is None
    assert len(st.changes(DOC, A)) == 3
    st.close()


# --- disk full -------------------------------------------------------------------------

def fill_until_full(st: Store, start: int) -> int:
    """Append 8 KiB changes until the store refuses; returns the last acknowledged seq."""
    seq = start
    with pytest.raises(StoreFullError) as e:
        for seq in range(start + 1, start + 100_000):
            st.append(DOC, [ChangeRow(A, seq, os.urandom(8192))],
                      {A: Head(seq, seq.to_bytes(32, "big"))})
    assert "disk full" in str(e.value) and str(st.path) in str(e.value)
    assert "nothing acknowledged was lost" in str(e.value)
    return seq - 1


def test_max_page_count_full_loses_nothing_acknowledged(tmp_path: Path):
    path = tmp_path / DB_FILE
    st = filled(path)
    pages = st._db.execute("PRAGMA page_count").fetchone()[0]
    st._db.execute(f"PRAGMA max_page_count = {pages + 40}")
    last = fill_until_full(st, 3)
    assert last > 3
    assert [c.seq for c in st.changes(DOC, A)] == list(range(1, last + 1))
    assert st.heads(DOC)[A].seq == last
    # Space freed (here: limit raised): writing works again without reopening.
    st._db.execute("PRAGMA max_page_count = 1000000")
    st.append(DOC, [ChangeRow(A, last + 1, b"after")], {A: Head(last + 1, b"x" * 32)})
    st.close()
    st = Store(path)
    assert [c.seq for c in st.changes(DOC, A)] == list(range(1, last + 2))
    st.close()


def test_real_full_file_system_loses_nothing_acknowledged(tmp_path: Path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        path = mnt / DB_FILE
        st = filled(path)
        last = fill_until_full(st, 3)
        assert last > 3
        st.close()  # may fail to fold the WAL back: nothing is lost either way
        st = Store(path)
        assert [c.seq for c in st.changes(DOC, A)] == list(range(1, last + 1))
        assert st.heads(DOC)[A].seq == last
        st.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30)


# --- doctor: the store-level audit and quarantine ------------------------------------

def node_profile(tmp_path: Path, words: str = "abc") -> tuple[Path, bytes, bytes]:
    """A closed profile: doc "hurt" (creation + one change per word, then a snapshot)
    and doc "fine" (with a snapshot too)."""
    p = tmp_path / "p"
    with Node(profile=p, network=False) as node:
        hurt, fine = node.new_doc("hurt"), node.new_doc("fine")
        for w in words:
            hurt.text("body").insert(len(hurt.text("body")), w)
        fine.text("body").insert(0, "fine")
        with node.lock:  # (a close snapshots only docs with many changes since)
            for h in (hurt, fine):
                node.replica.snapshot(node.replica.open(h.id))
        return p, hurt.id, fine.id


def doctor(p: Path, fix: bool = False) -> Report:
    with Store(p / DB_FILE, check=False) as st:
        dc, ds = body_decoders()
        report = audit_store(st, decode_change=dc, decode_snapshot=ds)
        if fix:
            quarantine(st, report)
    return report


def problems(report: Report) -> dict[bytes, list[tuple[str, int | None, bool]]]:
    return {d.doc: [(x.what, x.seq, x.quarantined) for x in d.problems]
            for d in report.docs if d.problems}


def test_damaged_snapshot_is_quarantined_and_the_doc_loads_from_its_changes(tmp_path: Path):
    p, hurt, fine = node_profile(tmp_path)
    assert doctor(p).ok
    spoil_sql(p, "UPDATE snapshots SET data = x'a1a2a3' WHERE doc = "
              "(SELECT n FROM documents WHERE id = ?)", hurt)
    report = doctor(p, fix=True)
    assert problems(report) == {hurt: [("snapshot", None, True)]}
    assert report.quarantined == 1 and "[quarantined]" in "\n".join(report.lines())
    assert doctor(p).ok
    with Node(profile=p, network=False) as node:
        assert str(node.open(hurt).text("body")) == "abc"
        assert str(node.open(fine).text("body")) == "fine"


def test_damage_inside_a_sound_snapshot_is_reported_but_left_in_place(tmp_path: Path):
    p, hurt, _ = node_profile(tmp_path)
    spoil_sql(p, "UPDATE changes SET blob = x'00ff' WHERE seq = 2 AND doc = "
              "(SELECT n FROM documents WHERE id = ?)", hurt)
    report = doctor(p, fix=True)
    assert problems(report) == {hurt: [("change", 2, False)]}
    assert not report.ok and report.quarantined == 0
    assert "inside the snapshot" in "\n".join(report.lines())
    with Node(profile=p, network=False) as node:  # loads: the snapshot holds it
        assert str(node.open(hurt).text("body")) == "abc"


def test_chain_mismatch_is_reported_not_guessed_at(tmp_path: Path):
    p, hurt, _ = node_profile(tmp_path)
    spoil_sql(p, "UPDATE heads SET hash = zeroblob(32) WHERE doc = "
              "(SELECT n FROM documents WHERE id = ?)", hurt)
    report = doctor(p, fix=True)
    assert problems(report) == {hurt: [("chain", None, False)]}
    assert "chain hash does not match" in report.docs[0].problems[0].reason
    assert report.quarantined == 0


def test_damaged_document_row_names_the_doc_and_is_repaired(tmp_path: Path):
    p, hurt, fine = node_profile(tmp_path)
    spoil_sql(p, "UPDATE documents SET access = x'ff' WHERE id = ?", fine)
    with Store(p / DB_FILE) as st, pytest.raises(CorruptRowError, match=fine.hex()):
        st.documents()
    report = doctor(p, fix=True)
    assert problems(report) == {fine: [("document", None, True)]}
    with Node(profile=p, network=False) as node:
        assert {d.id for d in node.docs()} == {hurt, fine}
        assert str(node.open(fine).text("body")) == "fine"
    assert doctor(p).ok


def test_damaged_pages_fail_the_integrity_check(tmp_path: Path):
    path = tmp_path / DB_FILE
    st = filled(path, 300)
    st.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(3 * page, 6 * page, 7):  # scribble over a few interior pages
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with Store(path, check=False) as st:
        report = audit_store(st)
    assert not report.ok and report.integrity != ["ok"]
    assert "integrity ok" not in report.lines()[0]


def test_pages_damaged_while_closed_give_a_store_error_not_a_bare_sqlite_one(tmp_path: Path):
    path = tmp_path / DB_FILE
    st = filled(path, 300)
    st.close()
    mtime = path.stat().st_mtime_ns
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(3 * page, len(data), 5):  # bit rot: same size, same mtime
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    os.utime(path, ns=(mtime, mtime))
    try:
        st = Store(path)  # the clean marker matches: no check at open
    except DatabaseError as e:
        assert "damaged" in str(e) or "corrupt" in str(e)
        return
    with st, pytest.raises(DatabaseError, match="damaged.*ownkernel doctor") as e:
        for actor in (A, B):
            st.changes(DOC, actor)
    assert str(path) in str(e.value) and not isinstance(e.value, sqlite3.Error)


def spoil_sql(p: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(p / DB_FILE)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_doc_ids_and_count_list_without_decoding(tmp_path: Path):
    with Store(tmp_path / DB_FILE) as st:
        assert st.doc_count() == 0 and st.doc_ids() == []
        st.add_document(DOC, title="one", owner=A, capability="owner")
        st.add_document(b"E" * 16, title="two", owner=A, capability="read")
        assert st.doc_count() == 2
        assert st.doc_ids() == [(DOC, "one"), (b"E" * 16, "two")]


# --- the node: damage is scoped without running doctor ---------------------------------

def test_node_loads_around_a_damaged_snapshot_and_a_damaged_change(tmp_path: Path):
    p, hurt, fine = node_profile(tmp_path, words="abcd")
    # the snapshot no longer decodes: the doc loads from its changes instead
    spoil_sql(p, "UPDATE snapshots SET data = x'a1a2a3' WHERE doc = "
              "(SELECT n FROM documents WHERE id = ?)", hurt)
    with Node(profile=p, network=False) as node:
        assert str(node.open(hurt).text("body")) == "abcd"
        assert node.stats()["damaged_rows"] == 1
        # and the third word's change does not decode either: the author's chain stops
        # just before it; the other doc is untouched
    spoil_sql(p, "DELETE FROM snapshots WHERE doc = (SELECT n FROM documents WHERE id = ?)",
              hurt)
    spoil_sql(p, "UPDATE changes SET blob = x'00ff' WHERE seq = 4 AND doc = "
              "(SELECT n FROM documents WHERE id = ?)", hurt)
    with Node(profile=p, network=False) as node:
        assert str(node.open(hurt).text("body")) == "ab"
        assert node.stats()["damaged_rows"] == 1
        assert str(node.open(fine).text("body")) == "fine"
        node.open(fine).text("body").insert(0, "still ")  # the node keeps working
        with pytest.raises(DatabaseError, match="doctor"):  # its own chain is damaged here
            node.open(hurt).text("body").insert(0, "x")
