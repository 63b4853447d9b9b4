"""`Store`: the node's durable state in one SQLite file (stdlib ``sqlite3``, WAL).

Durability promise: a method that writes returns only after SQLite has
committed with ``synchronous=FULL``, i.e. after the WAL has been fsynced. In
WAL mode NORMAL would only fsync at checkpoints, so a power cut could lose the
last commits even though the caller was told they were stored; the node
acknowledges and *sends* changes right after storing them, so we pay the fsync.

Schema (version 1; see ``MIGRATIONS`` for how later versions are added):

- ``schema_version``: the single row ``version``;
- ``documents``: one row per doc (id, title, created, owner, capability we hold,
  encryption key if any, snapshot of the access list, inviter and addresses);
- ``actors``: interned 32-byte actor ids, so ``changes`` rows stay small;
- ``changes``: primary key (doc, actor, seq) → the change body as it travels
  (ciphertext for encrypted docs) and ``auth`` (the capability token an author
  presented with that change, if any). Bodies are stored deflated with a preset
  dictionary holding the author's id (which every change repeats), about half
  the size for typing; the first byte says how (0 raw, 1 deflate);
- ``heads``: per (doc, actor) the newest seq, its chain hash and the newest
  signature (see docs/auth.md: one signature covers the whole chain before it);
- ``snapshots``: the newest compacted state of each doc + its version vector;
- ``compacted``: optional history compaction (``Node.compact``): change rows that
  the snapshot regenerates byte for byte are dropped; we keep the chain hash at
  the cut so regenerated changes are verified before they are served;
- ``peers``: address book; ``settings``: small key/value pairs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from ownkernel.store.errors import DatabaseError

__all__ = ["DB_FILE", "SCHEMA_VERSION", "ChangeRow", "DocRow", "Head", "Store"]

DB_FILE = "ownkernel.sqlite3"
APPLICATION_ID = 0x6F776E6B  # "ownk": lets us tell our file from any other SQLite file

_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
CREATE TABLE documents (
    n          INTEGER PRIMARY KEY,
    id         BLOB NOT NULL UNIQUE,
    title      TEXT NOT NULL DEFAULT '',
    created    REAL NOT NULL,
    owner      BLOB NOT NULL,
    capability TEXT NOT NULL,          -- what this node may do: owner | admin | write | read
    encrypted  INTEGER NOT NULL DEFAULT 0,
    key        BLOB,                   -- SecretBox key of an encrypted doc (NULL: we lack it)
    access     BLOB,                   -- CBOR snapshot of the access list, for listing only
    inviter    BLOB,
    addresses  BLOB,                   -- CBOR list of where the inviter said it listens
    token      BLOB                    -- capability token we joined with (presented once)
);
CREATE TABLE actors (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
CREATE TABLE changes (
    doc   INTEGER NOT NULL,
    actor INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    blob  BLOB NOT NULL,
    auth  BLOB,
    PRIMARY KEY (doc, actor, seq)
) WITHOUT ROWID;
-- capabilities presented with changes are rare: a partial index finds them fast
CREATE INDEX changes_auth ON changes (doc) WHERE auth IS NOT NULL;
CREATE TABLE heads (
    doc     INTEGER NOT NULL,
    actor   INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    sig     BLOB,
    sig_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (doc, actor)
) WITHOUT ROWID;
-- per (doc, actor): changes up to seq are compacted into the snapshot (regenerated from
-- it byte for byte when needed), hash is the chain hash at that seq to verify them
CREATE TABLE compacted (
    doc   INTEGER NOT NULL,
    actor INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (doc, actor)
) WITHOUT ROWID;
CREATE TABLE snapshots (
    doc      INTEGER PRIMARY KEY,
    version  BLOB NOT NULL,
    data     BLOB NOT NULL,
    nchanges INTEGER NOT NULL,
    created  REAL NOT NULL
);
CREATE TABLE peers (
    id        BLOB PRIMARY KEY,
    name      TEXT,
    addresses BLOB,
    last_seen REAL
) WITHOUT ROWID;
"""

# MIGRATIONS[v] upgrades a database from version v-1 to v. Version 1 is the first
# release; a later release appends e.g. ``2: "ALTER TABLE peers ADD COLUMN ..."``.
MIGRATIONS: dict[int, str] = {1: _V1}
SCHEMA_VERSION = max(MIGRATIONS)


@dataclass(frozen=True)
class DocRow:
    id: bytes
    title: str
    created: float
    owner: bytes
    capability: str
    encrypted: bool
    key: bytes | None
    access: Any
    inviter: bytes | None
    addresses: list[str]
    token: bytes | None


@dataclass
class Head:
    """Newest link of one author's chain in one doc, and its newest signature."""

    seq: int
    hash: bytes
    sig: bytes | None = None
    sig_seq: int = 0


@dataclass(frozen=True)
class ChangeRow:
    actor: bytes
    seq: int
    blob: bytes
    auth: bytes | None = None


_RAW, _DEFLATE = b"\x00", b"\x01"
_ZDICT_COMMON = b"t:bodym:_accessm:_metatitleownerrole:revoked:token:g:chatl:m:n:s:r:c:"


def _zdict(actor: bytes) -> bytes:
    return _ZDICT_COMMON + actor


def pack_body(actor: bytes, body: bytes) -> bytes:
    """Stored form of a change body: deflated with the author as dictionary, if smaller."""
    co = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _zdict(actor))
    z = co.compress(body) + co.flush()
    return _DEFLATE + z if len(z) < len(body) else _RAW + body


def unpack_body(actor: bytes, stored: bytes) -> bytes:
    kind, data = stored[:1], stored[1:]
    if kind == _RAW:
        return data
    if kind == _DEFLATE:
        try:
            do = zlib.decompressobj(-15, _zdict(actor))
            return do.decompress(data) + do.flush()
        except zlib.error as e:
            raise DatabaseError(f"a stored change is damaged ({e})") from e
    raise DatabaseError("a stored change has an unknown encoding")


_DOC_COLS = (
    "id, title, created, owner, capability, encrypted, key, access, inviter, addresses, token"
)


def _doc_row(r: Sequence[Any]) -> DocRow:
    return DocRow(
        id=bytes(r[0]), title=r[1], created=r[2], owner=bytes(r[3]), capability=r[4],
        encrypted=bool(r[5]), key=bytes(r[6]) if r[6] is not None else None,
        access=cbor2.loads(r[7]) if r[7] else None,
        inviter=bytes(r[8]) if r[8] is not None else None,
        addresses=cbor2.loads(r[9]) if r[9] else [],
        token=bytes(r[10]) if r[10] is not None else None,
    )


class Store:
    """One profile's SQLite database. Thread-safe (one internal lock)."""

    def __init__(self, path: str | os.PathLike[str], *, check: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._batch = False  # inside batch(): writes are savepoints of one transaction
        self._doc_n: dict[bytes, int] = {}
        self._actor_n: dict[bytes, int] = {}
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed and not os.access(self.path, os.R_OK | os.W_OK):
            raise DatabaseError(
                f"database {self.path} is not readable and writable by this user; "
                f"fix its permissions (chmod u+rw)."
            )
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so that "returned"
            # means "committed". check_same_thread=False: the node's network thread
            # uses the store too, serialised by self._lock.
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as e:
            raise DatabaseError(f"cannot open database {self.path}: {e}") from e
        if not existed:
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass
        try:
            self._setup(existed, check)
        except DatabaseError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise DatabaseError(
                f"database {self.path} is corrupt or not an ownkernel database ({e}). "
                f"It was left untouched: restore it from a backup, or move the profile "
                f"directory away to start afresh."
            ) from e

    # -- opening -------------------------------------------------------------
    def _setup(self, existed: bool, check: bool) -> None:
        db = self._db
        if existed:
            app = db.execute("PRAGMA application_id").fetchone()[0]
            if app not in (0, APPLICATION_ID):
                raise DatabaseError(
                    f"{self.path} is a SQLite database of another application "
                    f"(application_id {app:#x}); refusing to touch it."
                )
            if check:
                # quick_check reads every page: finds truncation and torn pages now,
                # with a clear message, rather than as a random failure later.
                res = [r[0] for r in db.execute("PRAGMA quick_check")]
                if res != ["ok"]:
                    raise DatabaseError(
                        f"database {self.path} is damaged ({'; '.join(res[:3])}). It was "
                        f"left untouched: restore it from a backup, or move the profile "
                        f"directory away to start afresh."
                    )
        if not existed:
            # Lets Node.compact() give dropped rows' pages back to the file system.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DatabaseError(f"cannot put {self.path} in WAL mode (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_version" not in tables:
            if tables:
                raise DatabaseError(
                    f"{self.path} is a SQLite database without an ownkernel schema "
                    f"(tables: {', '.join(sorted(tables))}); refusing to touch it."
                )
            version = 0
        else:
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                raise DatabaseError(f"database {self.path} has an empty schema_version table")
            version = int(row[0])
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"database {self.path} has schema version {version}, but this ownkernel "
                f"only knows up to {SCHEMA_VERSION}. Upgrade ownkernel (pip install -U "
                f"ownkernel) to open it; it was left untouched."
            )
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for v in range(version + 1, SCHEMA_VERSION + 1):
                sql = "\n".join(ln.split("--")[0] for ln in MIGRATIONS[v].splitlines())
                for stmt in sql.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                if v == 1:
                    db.execute("INSERT INTO schema_version (version) VALUES (1)")
                else:
                    db.execute("UPDATE schema_version SET version = ?", (v,))
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            db.execute("ROLLBACK")
            raise DatabaseError(
                f"cannot bring database {self.path} from schema version {version} to "
                f"{SCHEMA_VERSION}: {e}. Nothing was changed.") from e
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    # Fold the WAL back so the profile is one self-contained file at rest.
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
                self._db.close()
                self._db = None  # type: ignore[assignment]

    # -- transactions --------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes made inside into one transaction: one fsync for all.

        Each write still succeeds or fails on its own (a SAVEPOINT each); what was
        written becomes durable at the end of the block, so nothing written inside
        may be acknowledged or sent before the block ends (the network layer
        ingests a burst of frames inside one batch and sends after it).
        """
        with self._lock:
            if self._batch:
                yield
                return
            db = self._db
            if db is None:
                raise DatabaseError(f"database {self.path} is closed")
            db.execute("BEGIN IMMEDIATE")
            self._batch = True
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._doc_n.clear()
                self._actor_n.clear()
                raise
            finally:
                self._batch = False

    def _write(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(db, *args)`` in one IMMEDIATE transaction; returns after COMMIT
        (inside ``batch()``: in a savepoint, durable when the batch ends)."""
        with self._lock:
            db = self._db
            if db is None:
                raise DatabaseError(f"database {self.path} is closed")
            if self._batch:
                db.execute("SAVEPOINT w")
                try:
                    out = fn(db, *args)
                    db.execute("RELEASE w")
                except BaseException:
                    db.execute("ROLLBACK TO w")
                    db.execute("RELEASE w")
                    self._doc_n.clear()
                    self._actor_n.clear()
                    raise
                return out
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db, *args)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                # Interned ids may refer to rolled-back rows.
                self._doc_n.clear()
                self._actor_n.clear()
                raise
            return out

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            if self._db is None:
                raise DatabaseError(f"database {self.path} is closed")
            return self._db.execute(sql, args).fetchall()

    # -- interning -----------------------------------------------------------
    def _doc(self, doc_id: bytes) -> int:
        n = self._doc_n.get(doc_id)
        if n is None:
            row = self._db.execute("SELECT n FROM documents WHERE id = ?", (doc_id,)).fetchone()
            if row is None:
                raise KeyError(f"unknown document {doc_id.hex()}")
            n = self._doc_n[doc_id] = row[0]
        return n

    def _actor(self, db: sqlite3.Connection, actor: bytes, create: bool = True) -> int | None:
        n = self._actor_n.get(actor)
        if n is None:
            row = db.execute("SELECT n FROM actors WHERE id = ?", (actor,)).fetchone()
            if row is None:
                if not create:
                    return None
                n = db.execute("INSERT INTO actors (id) VALUES (?)", (actor,)).lastrowid
            else:
                n = row[0]
            self._actor_n[actor] = n
        return n

    # -- documents -----------------------------------------------------------
    def add_document(
        self, doc_id: bytes, *, title: str, owner: bytes, capability: str,
        encrypted: bool = False, key: bytes | None = None, access: Any = None,
        inviter: bytes | None = None, addresses: Iterable[str] = (),
        token: bytes | None = None, created: float | None = None,
    ) -> None:
        def tx(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO documents ({_DOC_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (doc_id, title, time.time() if created is None else created, owner, capability,
                 int(encrypted), key, cbor2.dumps(access) if access is not None else None,
                 inviter, cbor2.dumps(list(addresses)), token),
            )
        self._write(tx)

    def update_document(self, doc_id: bytes, **fields: Any) -> None:
        allowed = {"title", "capability", "key", "access", "inviter", "addresses", "token",
                   "encrypted"}
        if not fields:
            return
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update document fields {sorted(bad)}")
        vals = []
        for k, v in fields.items():
            if k in ("access", "addresses") and v is not None:
                v = cbor2.dumps(list(v) if k == "addresses" else v)
            vals.append(v)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(lambda db: db.execute(
            f"UPDATE documents SET {sets} WHERE id = ?", (*vals, doc_id)))

    def document(self, doc_id: bytes) -> DocRow | None:
        rows = self._read(f"SELECT {_DOC_COLS} FROM documents WHERE id = ?", (doc_id,))
        return _doc_row(rows[0]) if rows else None

    def documents(self) -> list[DocRow]:
        return [_doc_row(r) for r in
                self._read(f"SELECT {_DOC_COLS} FROM documents ORDER BY created, n")]

    # -- changes -------------------------------------------------------------
    def append(self, doc_id: bytes, rows: Sequence[ChangeRow], heads: dict[bytes, Head]) -> None:
        """Store changes and the new chain heads atomically; returns after the fsync.

        The caller has verified the rows (see auth.py). A row that is already stored
        makes the whole call fail (IntegrityError) and nothing is written.
        """
        def tx(db: sqlite3.Connection) -> None:
            d = self._doc(doc_id)
            db.executemany(
                "INSERT INTO changes (doc, actor, seq, blob, auth) VALUES (?,?,?,?,?)",
                [(d, self._actor(db, r.actor), r.seq, pack_body(r.actor, r.blob), r.auth)
                 for r in rows],
            )
            for actor, h in heads.items():
                db.execute(
                    "INSERT OR REPLACE INTO heads (doc, actor, seq, hash, sig, sig_seq) "
                    "VALUES (?,?,?,?,?,?)",
                    (d, self._actor(db, actor), h.seq, h.hash, h.sig, h.sig_seq),
                )
        self._write(tx)

    def set_signature(self, doc_id: bytes, actor: bytes, sig_seq: int, sig: bytes) -> None:
        def tx(db: sqlite3.Connection) -> None:
            a = self._actor(db, actor, create=False)
            db.execute("UPDATE heads SET sig = ?, sig_seq = ? WHERE doc = ? AND actor = ?",
                       (sig, sig_seq, self._doc(doc_id), a))
        self._write(tx)

    def heads(self, doc_id: bytes) -> dict[bytes, Head]:
        with self._lock:
            rows = self._read(
                "SELECT a.id, h.seq, h.hash, h.sig, h.sig_seq FROM heads h "
                "JOIN actors a ON a.n = h.actor WHERE h.doc = ?", (self._doc(doc_id),))
        return {bytes(r[0]): Head(r[1], bytes(r[2]), bytes(r[3]) if r[3] else None, r[4])
                for r in rows}

    def changes(self, doc_id: bytes, actor: bytes, after: int = 0,
                upto: int | None = None) -> list[ChangeRow]:
        """One author's changes with ``after < seq <= upto``, in seq order."""
        with self._lock:
            a = self._actor(self._db, actor, create=False)
            if a is None:
                return []
            rows = self._read(
                "SELECT seq, blob, auth FROM changes WHERE doc = ? AND actor = ? AND seq > ? "
                "AND seq <= ? ORDER BY seq",
                (self._doc(doc_id), a, after, upto if upto is not None else 2**62))
        return [ChangeRow(actor, r[0], unpack_body(actor, bytes(r[1])),
                          bytes(r[2]) if r[2] else None) for r in rows]

    def caps(self, doc_id: bytes) -> list[tuple[bytes, bytes]]:
        """``(actor, auth)`` of every stored change that carries authentication data."""
        with self._lock:
            rows = self._read(
                "SELECT a.id, c.auth FROM changes c JOIN actors a ON a.n = c.actor "
                "WHERE c.doc = ? AND c.auth IS NOT NULL ORDER BY c.actor, c.seq",
                (self._doc(doc_id),))
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    def change(self, doc_id: bytes, actor: bytes, seq: int) -> ChangeRow | None:
        got = self.changes(doc_id, actor, seq - 1, seq)
        return got[0] if got else None

    def change_count(self, doc_id: bytes | None = None) -> int:
        with self._lock:
            if doc_id is None:
                return self._read("SELECT count(*) FROM changes")[0][0]
            return self._read("SELECT count(*) FROM changes WHERE doc = ?",
                              (self._doc(doc_id),))[0][0]

    def iter_all_changes(self, doc_id: bytes) -> Iterator[ChangeRow]:
        for actor in self.heads(doc_id):
            yield from self.changes(doc_id, actor)

    # -- compaction ------------------------------------------------------------
    def compact(self, doc_id: bytes, cuts: dict[bytes, tuple[int, bytes]]) -> int:
        """Drop change rows up to each actor's cut (keeping rows with auth data);
        returns the number of rows dropped. The caller has verified regeneration."""
        def tx(db: sqlite3.Connection) -> int:
            d = self._doc(doc_id)
            n = 0
            for actor, (seq, h) in cuts.items():
                a = self._actor(db, actor)
                n += db.execute("DELETE FROM changes WHERE doc = ? AND actor = ? AND seq <= ? "
                                "AND auth IS NULL", (d, a, seq)).rowcount
                db.execute("INSERT OR REPLACE INTO compacted (doc, actor, seq, hash) "
                           "VALUES (?,?,?,?)", (d, a, seq, h))
            return n
        return self._write(tx)

    def reclaim(self) -> None:
        """Return free pages to the file system (after compaction) and fold the WAL."""
        with self._lock:
            # executescript runs to completion (sqlite3_exec); execute() would free
            # only one page, as the pragma frees a page per step and yields no rows.
            self._db.executescript("PRAGMA incremental_vacuum;")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def compacted(self, doc_id: bytes) -> dict[bytes, tuple[int, bytes]]:
        with self._lock:
            rows = self._read(
                "SELECT a.id, c.seq, c.hash FROM compacted c JOIN actors a ON a.n = c.actor "
                "WHERE c.doc = ?", (self._doc(doc_id),))
        return {bytes(r[0]): (r[1], bytes(r[2])) for r in rows}

    # -- snapshots -----------------------------------------------------------
    def put_snapshot(self, doc_id: bytes, version: dict[bytes, int], data: bytes,
                     nchanges: int) -> None:
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO snapshots (doc, version, data, nchanges, created) "
            "VALUES (?,?,?,?,?)",
            (self._doc(doc_id), cbor2.dumps(version), data, nchanges, time.time())))

    def snapshot(self, doc_id: bytes) -> tuple[dict[bytes, int], bytes, int] | None:
        with self._lock:
            rows = self._read("SELECT version, data, nchanges FROM snapshots WHERE doc = ?",
                              (self._doc(doc_id),))
        if not rows:
            return None
        return cbor2.loads(rows[0][0]), bytes(rows[0][1]), rows[0][2]

    # -- peers ---------------------------------------------------------------
    def put_peer(self, peer_id: bytes, *, name: str | None = None,
                 addresses: Iterable[str] = (), last_seen: float | None = None) -> None:
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO peers (id, name, addresses, last_seen) VALUES (?,?,?,?)",
            (peer_id, name, cbor2.dumps(list(addresses)),
             time.time() if last_seen is None else last_seen)))

    def peers(self) -> list[dict[str, Any]]:
        return [{"id": bytes(r[0]), "name": r[1], "addresses": cbor2.loads(r[2]) if r[2] else [],
                 "last_seen": r[3]}
                for r in self._read("SELECT id, name, addresses, last_seen FROM peers "
                                    "ORDER BY last_seen DESC")]

    # -- settings ------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM settings WHERE key = ?", (key,))
        return cbor2.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
            (key, cbor2.dumps(value))))

    # -- diagnostics ---------------------------------------------------------
    def size_bytes(self) -> int:
        """Bytes of the database file plus its WAL (what the profile costs on disk)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(str(self.path) + suffix)
            except OSError:
                pass
        return total

    def table_bytes(self) -> dict[str, int]:
        """Bytes per table/index (uses the dbstat virtual table when SQLite has it)."""
        try:
            rows = self._read("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
        except sqlite3.OperationalError:
            return {}
        return {r[0]: r[1] for r in rows}

    def checkpoint(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
