"""ownkernel.store: profiles, the profile lock, identity, the SQLite store, auth, crypto.

Real files in tmp_path, real SQLite, real child processes; no mocks.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import cbor2
import pytest

from ownkernel.store import (
    DB_FILE,
    SCHEMA_VERSION,
    ChangeRow,
    DatabaseError,
    Envelope,
    EnvelopeError,
    Head,
    Identity,
    IdentityError,
    ProfileLock,
    ProfileLockedError,
    SealError,
    Store,
    audit,
    chain_hash,
    check_chains,
    decode_envelope,
    encode_envelope,
    new_key,
    open_sealed,
    resolve_profile,
    seal,
    z85_decode,
    z85_encode,
)
from ownkernel.store.auth import ZERO_HASH, head_message
from ownkernel.store.identity import KEY_FILE
from ownkernel.store.sqlite import pack_body, unpack_body

ROOT = Path(__file__).resolve().parents[1]
DOC = b"D" * 16


# --- profiles ----------------------------------------------------------------------

def test_resolve_profile_names_paths_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OWNKERNEL_HOME", str(tmp_path / "home"))
    assert resolve_profile("default") == tmp_path / "home" / "default"
    assert resolve_profile("alice") == tmp_path / "home" / "alice"
    assert resolve_profile(str(tmp_path / "x")) == tmp_path / "x"
    assert resolve_profile(tmp_path / "y") == tmp_path / "y"
    assert resolve_profile("./rel").is_absolute()
    monkeypatch.delenv("OWNKERNEL_HOME")
    p = resolve_profile("default")
    assert p.parts[-2:] == ("ownkernel", "default")


def test_lock_conflicts_in_same_process_and_names_holder(tmp_path: Path):
    a = ProfileLock(tmp_path)
    a.acquire()
    try:
        with pytest.raises(ProfileLockedError) as e:
            ProfileLock(tmp_path).acquire()
        assert str(tmp_path) in str(e.value)
        assert str(os.getpid()) in str(e.value)
        assert e.value.pid == os.getpid()
    finally:
        a.release()
    b = ProfileLock(tmp_path)  # free again after release
    b.acquire()
    b.release()


def test_lock_held_by_another_process(tmp_path: Path):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from ownkernel.store import ProfileLock
        lock = ProfileLock(Path({str(tmp_path)!r}))
        lock.acquire()
        print("locked", flush=True)
        sys.stdin.readline()
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(ProfileLockedError) as e:
            ProfileLock(tmp_path).acquire()
        assert e.value.pid == child.pid
        assert f"process {child.pid}" in str(e.value)
    finally:
        child.kill()
        child.wait(timeout=10)
    # The OS released the dead holder's lock: no stale-lock cleanup needed.
    lock = ProfileLock(tmp_path)
    lock.acquire()
    lock.release()


# --- identity ------------------------------------------------------------------------

def test_identity_file_mode_roundtrip_and_curve_keys(tmp_path: Path):
    import nacl.public

    ident = Identity.generate()
    path = tmp_path / KEY_FILE
    ident.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Identity.load(path)
    assert again.node_id == ident.node_id and len(again.node_id) == 32
    assert again.short_id == ident.node_id.hex()[:8]
    assert bytes(nacl.public.PrivateKey(ident.curve_secret).public_key) == ident.curve_public
    assert z85_decode(ident.curve_public_z85) == ident.curve_public
    assert len(ident.curve_secret_z85) == 40
    with pytest.raises(FileExistsError):
        ident.save(path)  # never overwrites a key
    assert "secret" not in repr(ident) and ident.short_id in repr(ident)


def test_z85_matches_zeromq_reference():
    # RFC 32 test vector
    raw = bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B])
    assert z85_encode(raw) == b"HelloWorld"
    assert z85_decode("HelloWorld") == raw


def test_damaged_key_file_is_reported_not_replaced(tmp_path: Path):
    path = tmp_path / KEY_FILE
    path.write_text("garbage\n")
    with pytest.raises(IdentityError, match="damaged"):
        Identity.load(path)
    assert path.read_text() == "garbage\n"


# --- the SQLite store -----------------------------------------------------------------

def _store(tmp_path: Path) -> Store:
    st = Store(tmp_path / DB_FILE)
    st.add_document(DOC, title="t", owner=b"o" * 32, capability="owner")
    return st


def test_store_schema_wal_and_roundtrip(tmp_path: Path):
    st = _store(tmp_path)
    assert st.schema_version == SCHEMA_VERSION == 1
    mode = st._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert st._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    a = b"a" * 32
    st.append(DOC, [ChangeRow(a, 1, b"x" * 100), ChangeRow(a, 2, b"yz", b"cap")],
              {a: Head(2, b"h" * 32, b"s" * 64, 2)})
    st.put_snapshot(DOC, {a: 2}, b"snap", 2)
    st.put_peer(b"p" * 32, name="bob", addresses=["tcp://127.0.0.1:1"])
    st.set_setting("k", {"v": [1, 2]})
    st.close()
    st = Store(tmp_path / DB_FILE)
    assert [r.blob for r in st.changes(DOC, a)] == [b"x" * 100, b"yz"]
    assert st.changes(DOC, a, after=1)[0].auth == b"cap"
    assert st.heads(DOC)[a] == Head(2, b"h" * 32, b"s" * 64, 2)
    assert st.snapshot(DOC) == ({a: 2}, b"snap", 2)
    assert st.peers()[0]["addresses"] == ["tcp://127.0.0.1:1"]
    assert st.get_setting("k") == {"v": [1, 2]}
    assert st.caps(DOC) == [(a, b"cap")]
    assert st.documents()[0].title == "t"
    assert stat.S_IMODE((tmp_path / DB_FILE).stat().st_mode) == 0o600
    st.close()


def test_duplicate_change_is_refused_atomically(tmp_path: Path):
    st = _store(tmp_path)
    a = b"a" * 32
    st.append(DOC, [ChangeRow(a, 1, b"one")], {a: Head(1, b"1" * 32)})
    with pytest.raises(sqlite3.IntegrityError):
        st.append(DOC, [ChangeRow(a, 2, b"two"), ChangeRow(a, 1, b"evil")],
                  {a: Head(2, b"2" * 32)})
    assert [r.blob for r in st.changes(DOC, a)] == [b"one"]
    assert st.heads(DOC)[a].seq == 1
    st.close()


def test_body_packing_roundtrip():
    a = os.urandom(32)
    for body in (b"", b"x", a * 3 + b"t:body hello", os.urandom(200)):
        packed = pack_body(a, body)
        assert unpack_body(a, packed) == body
        assert len(packed) <= len(body) + 1


def test_newer_schema_version_is_refused(tmp_path: Path):
    Store(tmp_path / DB_FILE).close()
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    before = (tmp_path / DB_FILE).read_bytes()
    with pytest.raises(DatabaseError, match="schema version 99.*Upgrade ownkernel"):
        Store(tmp_path / DB_FILE)
    assert (tmp_path / DB_FILE).read_bytes() == before


def test_garbage_file_is_refused_untouched(tmp_path: Path):
    path = tmp_path / DB_FILE
    path.write_bytes(b"this is not a database at all" * 200)
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match=str(path)):
        Store(path)
    assert path.read_bytes() == before


def test_truncated_database_is_refused_untouched(tmp_path: Path):
    st = _store(tmp_path)
    a = b"a" * 32
    for i in range(1, 300):
        st.append(DOC, [ChangeRow(a, i, os.urandom(300))], {a: Head(i, b"h" * 32)})
    st.close()
    path = tmp_path / DB_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatabaseError, match="damaged|corrupt"):
        Store(path)
    assert path.stat().st_size == len(data) // 2


def test_foreign_sqlite_database_is_refused(tmp_path: Path):
    path = tmp_path / DB_FILE
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    with pytest.raises(DatabaseError, match="without an ownkernel schema"):
        Store(path)


def test_migration_from_empty_file_is_transactional(tmp_path: Path):
    path = tmp_path / DB_FILE
    st = Store(path)
    names = {r[0] for r in st._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"documents", "changes", "snapshots", "peers", "settings", "schema_version",
            "heads", "actors"} <= names
    st.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_database_is_reported(tmp_path: Path):
    Store(tmp_path / DB_FILE).close()
    os.chmod(tmp_path / DB_FILE, 0)
    try:
        with pytest.raises(DatabaseError, match="not readable"):
            Store(tmp_path / DB_FILE)
    finally:
        os.chmod(tmp_path / DB_FILE, 0o600)


# --- authentication on opaque blobs ----------------------------------------------------

def _chain(ident: Identity, bodies: list[bytes], start: int = 1, prev: bytes = ZERO_HASH,
           sign_last: bool = True) -> tuple[list[Envelope], bytes]:
    envs = []
    h = prev
    for i, body in enumerate(bodies):
        seq = start + i
        h = chain_hash(h, DOC, ident.node_id, seq, body)
        sig = ident.sign(head_message(h)) if sign_last and i == len(bodies) - 1 else None
        envs.append(Envelope(DOC, ident.node_id, seq, body, sig))
    return envs, h


def _no_store(actor: bytes, seq: int) -> None:
    return None


def test_envelope_roundtrip_and_garbage():
    env = Envelope(DOC, b"a" * 32, 7, b"body", b"s" * 64, b"cap")
    assert decode_envelope(encode_envelope(env)) == env
    for bad in (b"", b"\xff\xff", cbor2.dumps([1, DOC]), cbor2.dumps([2, DOC, b"a" * 32, 1,
                b"b", None, None]), cbor2.dumps([1, DOC, b"short", 1, b"b", None, None]),
                cbor2.dumps([1, DOC, b"a" * 32, 0, b"b", None, None]),
                cbor2.dumps([1, DOC, b"a" * 32, 1, b"b", b"x", None])):
        with pytest.raises(EnvelopeError):
            decode_envelope(bad)


def test_batch_with_one_signature_verifies():
    ident = Identity.generate()
    envs, h = _chain(ident, [b"c%d" % i for i in range(50)])
    cc = check_chains(DOC, envs, {}, _no_store)
    assert not cc.rejected and not cc.waiting
    (run,) = cc.runs
    assert [e.seq for e in run.envelopes] == list(range(1, 51))
    assert run.head.hash == h and run.head.sig == envs[-1].sig


def test_altered_forged_and_reattributed_changes_are_rejected():
    alice, mallory = Identity.generate(), Identity.generate()
    envs, _ = _chain(alice, [b"one", b"two", b"three"])
    altered = [envs[0], envs[1]._replace(body=b"TWO"), envs[2]]
    cc = check_chains(DOC, altered, {}, _no_store)
    assert not cc.runs and [r for r, _ in cc.rejected] == ["bad_signature"] * 3
    # mallory signs alice's chain with her own key: does not verify as alice
    forged = envs[:2] + [envs[2]._replace(sig=mallory.sign(b"whatever"))]
    assert not check_chains(DOC, forged, {}, _no_store).runs
    # re-attribution: alice's bodies presented as mallory's
    moved = [e._replace(actor=mallory.node_id) for e in envs]
    assert not check_chains(DOC, moved, {}, _no_store).runs
    # moved to another doc
    other = [e._replace(doc=b"E" * 16) for e in envs]
    assert not check_chains(b"E" * 16, other, {}, _no_store).runs


def test_replay_is_a_duplicate_and_rewrite_is_a_fork():
    ident = Identity.generate()
    envs, h = _chain(ident, [b"a", b"b"])
    heads = {ident.node_id: Head(2, h, envs[-1].sig, 2)}
    stored = {1: (b"a", None), 2: (b"b", None)}
    cc = check_chains(DOC, envs, heads, lambda a, s: stored.get(s))
    assert cc.duplicates == 2 and not cc.runs and not cc.rejected
    evil, _ = _chain(ident, [b"a", b"B"])  # even validly signed by the author
    cc = check_chains(DOC, evil, heads, lambda a, s: stored.get(s))
    assert [r for r, _ in cc.rejected] == ["fork"]


def test_unsigned_tail_and_gaps_wait():
    ident = Identity.generate()
    envs, h = _chain(ident, [b"a", b"b", b"c", b"d"], sign_last=False)
    signed3 = envs[2]._replace(sig=ident.sign(head_message(
        chain_hash(chain_hash(chain_hash(ZERO_HASH, DOC, ident.node_id, 1, b"a"),
                              DOC, ident.node_id, 2, b"b"), DOC, ident.node_id, 3, b"c"))))
    cc = check_chains(DOC, [envs[0], envs[1], signed3, envs[3]], {}, _no_store)
    assert [e.seq for e in cc.runs[0].envelopes] == [1, 2, 3]
    assert [e.seq for e in cc.waiting] == [4]
    cc = check_chains(DOC, envs[2:], {}, _no_store)  # seq 1-2 missing: a gap
    assert not cc.runs and [e.seq for e in cc.waiting] == [3, 4]


def test_audit_finds_tampering(tmp_path: Path):
    st = _store(tmp_path)
    ident = Identity.generate()
    envs, h = _chain(ident, [b"a", b"b", b"c"])
    st.append(DOC, [ChangeRow(e.actor, e.seq, e.body) for e in envs],
              {ident.node_id: Head(3, h, envs[-1].sig, 3)})
    assert audit(st, DOC) == []
    st._db.execute("UPDATE changes SET blob = ? WHERE seq = 2", (b"\x00evil",))
    assert audit(st, DOC)
    st.close()


# --- encryption -----------------------------------------------------------------------

def test_seal_open_and_tamper():
    key = new_key()
    box = seal(key, b"secret text")
    assert b"secret" not in box and open_sealed(key, box) == b"secret text"
    with pytest.raises(SealError):
        open_sealed(new_key(), box)
    with pytest.raises(SealError):
        open_sealed(key, box[:-1] + bytes([box[-1] ^ 1]))


def test_batch_groups_writes_and_a_failing_write_undoes_only_itself(tmp_path: Path) -> None:
    """store.batch(): one transaction (one fsync) for many writes; each write still
    succeeds or fails on its own; what was written is there after the batch."""
    from ownkernel.store import Store as _S

    st = _S(tmp_path / "b.sqlite3")
    try:
        with st.batch():
            st.set_setting("a", 1)
            with pytest.raises(sqlite3.IntegrityError):
                st.transact(lambda db: db.execute(
                    "INSERT INTO settings (key, value) VALUES ('a', x'00')"))
            st.set_setting("b", 2)
            with st.batch():  # nested: part of the same transaction
                st.set_setting("c", 3)
        assert (st.get_setting("a"), st.get_setting("b"), st.get_setting("c")) == (1, 2, 3)
        with pytest.raises(RuntimeError), st.batch():  # an error in the block undoes it all
            st.set_setting("d", 4)
            raise RuntimeError("boom")
        assert st.get_setting("d") is None
    finally:
        st.close()
