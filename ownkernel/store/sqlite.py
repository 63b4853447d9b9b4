"""`Store`: the node's durable state in one SQLite file (stdlib ``sqlite3``, WAL).

This module says what is stored and read, as SQL; txn.py how it reaches the disk
(the connection, its lock, batches and fsyncs), deferred.py what waits a moment.

Durability promise: a method that writes returns only after SQLite has
committed with ``synchronous=FULL``, i.e. after the WAL has been fsynced. In
WAL mode NORMAL would only fsync at checkpoints, so a power cut could lose the
last commits even though the caller was told they were stored; the node
acknowledges and *sends* changes right after storing them, so we pay the fsync.

One exception, ``batch(durable=False)``: other authors' changes (``append(...,
remote=True)``) are committed at once (a killed process loses nothing) but
fsynced only at the next checkpoint or durable write. A power cut can lose the
last of them; their authors and our peers still hold them, and anti-entropy
fetches them again. Measured on this project's machines, the fsync is ~4 ms a
commit (p99 14 ms) against 0.03 ms without: paid on every hop of a keystroke, it
was most of the fan-out latency. Our own changes never take this path (a lost own
change that peers hold would fork our chain), and any other write inside such a
batch makes the batch fsync the WAL before it ends. Such changes taken live from
their authors may even be held a moment before they are written
(``append(defer=True)``, see deferred.py); nothing can read the store without
them being written first.

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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cbor2

from ownkernel.store import dbfile
from ownkernel.store.dbfile import APPLICATION_ID
from ownkernel.store.errors import CorruptRowError, DatabaseError, StoreFullError
from ownkernel.store.rows import (
    DOC_COLS,
    ChangeRow,
    DocRow,
    Head,
    decode_version,
    doc_row,
    is_full,
    pack_body,
    unpack_body,
)
from ownkernel.store.schema import MIGRATIONS, SCHEMA_VERSION
from ownkernel.store.txn import Transactions

__all__ = ["DB_FILE", "SCHEMA_VERSION", "ChangeRow", "DocRow", "Head", "Store", "pack_body",
           "unpack_body"]  # the row types live in rows.py; kept importable from here

DB_FILE = "ownkernel.sqlite3"




class Store:
    """One profile's SQLite database. Thread-safe (one internal lock).

    ``check``: run ``PRAGMA quick_check`` (reads every page) at open. ``None`` (the
    default): only if the last close was not clean (see dbfile.py); True: always;
    False: never. ``self.checked`` says whether it ran.
    """

    def __init__(self, path: str | os.PathLike[str], *, check: bool | None = None) -> None:
        self.path = Path(path)
        self.checked = False
        if self.path.exists():
            if not os.access(self.path, os.R_OK | os.W_OK):
                raise DatabaseError(
                    f"database {self.path} is not readable and writable by this user; "
                    f"fix its permissions (chmod u+rw)."
                )
            # Decide "ours?" before any statement that could write the file.
            dbfile.identify(self.path)
            clean = dbfile.read_clean_marker(self.path)
        else:
            dbfile.create(self.path, lambda db: self._migrate(0, db))
            clean = True
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so that "returned"
            # means "committed". check_same_thread=False: the node's network thread
            # uses the store too, serialised by the lock of txn.py.
            db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as e:
            raise DatabaseError(f"cannot open database {self.path}: {e}") from e
        self._t = Transactions(db, self.path, self._insert)
        try:
            self._setup(not clean if check is None else check)
        except DatabaseError:
            self._t.db.close()
            raise
        except sqlite3.DatabaseError as e:
            self._t.db.close()
            raise DatabaseError(
                f"database {self.path} is corrupt or not an ownkernel database ({e}). "
                f"It was left untouched: restore it from a backup, or move the profile "
                f"directory away to start afresh."
            ) from e

    # -- opening -------------------------------------------------------------
    def _setup(self, check: bool) -> None:
        db = self._t.db
        if check:
            # After an unclean shutdown (or when asked): quick_check reads every page,
            # finds truncation and torn pages now, with a clear message, rather than
            # as a random failure later. Read-only, so a damaged file stays untouched.
            self.checked = True
            res = [r[0] for r in db.execute("PRAGMA quick_check")]
            if res != ["ok"]:
                raise DatabaseError(
                    f"database {self.path} is damaged ({'; '.join(res[:3])}). It was "
                    f"left untouched: run `ownkernel doctor` on the profile to see what is "
                    f"affected, restore it from a backup, or move the profile directory "
                    f"away to start afresh."
                )
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DatabaseError(f"cannot put {self.path} in WAL mode (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_version" not in tables:
            version = 0  # identify() let only an empty SQLite file through
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
            self._migrate(version, db)

    def _migrate(self, version: int, db: sqlite3.Connection) -> None:
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
        return int(self._t.db.execute("SELECT version FROM schema_version").fetchone()[0])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._t.close():
            dbfile.write_clean_marker(self.path)

    @property
    def _db(self) -> sqlite3.Connection:
        """The SQLite connection (None once closed); for tests and doctor's repairs."""
        return self._t.db

    # -- transactions (txn.py) -----------------------------------------------
    def batch(self, durable: bool = True) -> contextlib.AbstractContextManager[None]:
        """Group the writes made inside into one transaction (see
        :meth:`~ownkernel.store.txn.Transactions.batch`); ``durable=False``: other
        authors' changes stored inside are not fsynced (the module's docstring)."""
        return self._t.batch(durable)

    @property
    def lost(self) -> set[bytes]:
        """Docs whose held live changes could not be written (deferred.py)."""
        return self._t.lost

    @property
    def deferring(self) -> bool:
        """Are changes held to be written later (deferred.py)?"""
        return bool(self._t.deferred)

    def write_deferred(self, *, due_only: bool = False) -> None:
        """Write the changes ``append(defer=True)`` holds (all, or only once they are
        due): the network's timer round calls this."""
        self._t.write_deferred(due_only=due_only)

    def transact(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(connection)`` in one durable transaction (for doctor.py's repairs)."""
        return self._t.write(fn)

    def row_keys(self, doc_id: bytes, actor: bytes | None = None) -> tuple[int, int | None]:
        """The interned row numbers of a doc and an author, as the tables store them."""
        with self._t.lock:
            return self._t.doc(doc_id), (None if actor is None else
                                       self._t.actor(self._t.db, actor, create=False))

    # -- documents -----------------------------------------------------------
    def add_document(
        self, doc_id: bytes, *, title: str, owner: bytes, capability: str,
        encrypted: bool = False, key: bytes | None = None, access: Any = None,
        inviter: bytes | None = None, addresses: Iterable[str] = (),
        token: bytes | None = None, created: float | None = None,
    ) -> None:
        def tx(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO documents ({DOC_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (doc_id, title, time.time() if created is None else created, owner, capability,
                 int(encrypted), key, cbor2.dumps(access) if access is not None else None,
                 inviter, cbor2.dumps(list(addresses)), token),
            )
        self._t.write(tx)

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
        self._t.write(lambda db: db.execute(
            f"UPDATE documents SET {sets} WHERE id = ?", (*vals, doc_id)))

    def document(self, doc_id: bytes) -> DocRow | None:
        rows = self._t.read(f"SELECT {DOC_COLS} FROM documents WHERE id = ?", (doc_id,))
        return doc_row(rows[0], self.path) if rows else None

    def document_for_write(self, doc_id: bytes) -> DocRow | None:
        """``document()`` that also interns the doc's row number, so the writes that
        usually follow (a newly shared doc's first changes) need no second lookup."""
        with self._t.lock:
            rows = self._t.read(f"SELECT n, {DOC_COLS} FROM documents WHERE id = ?", (doc_id,))
            if not rows:
                return None
            self._t.doc_n[doc_id] = rows[0][0]
            return doc_row(rows[0][1:], self.path)

    def documents(self) -> list[DocRow]:
        return [doc_row(r, self.path) for r in
                self._t.read(f"SELECT {DOC_COLS} FROM documents ORDER BY created, n")]

    def doc_count(self) -> int:
        return int(self._t.read("SELECT count(*) FROM documents")[0][0])

    def doc_ids(self) -> list[tuple[bytes, str]]:
        """``(id, title)`` of every doc without decoding the rest: for ``doctor`` and for
        callers that need only ids (cheaper than ``documents()`` with 1,000s of docs)."""
        return [(bytes(r[0]), r[1]) for r in
                self._t.read("SELECT id, title FROM documents ORDER BY created, n")]

    # -- changes -------------------------------------------------------------
    def append(self, doc_id: bytes, rows: Sequence[ChangeRow], heads: dict[bytes, Head],
               *, remote: bool = False, access: Any = None, defer: bool = False
               ) -> bytes | None:
        """Store changes and the new chain heads atomically; returns after the fsync.

        The caller has verified the rows (see auth.py). A row that is already stored
        makes the whole call fail (IntegrityError) and nothing is written.
        ``remote``: other authors' changes only; inside ``batch(durable=False)`` they
        are not fsynced (see the module's docstring).
        ``access``: the doc's access list as these changes leave it, written in the
        same transaction (a newly shared doc's first changes nearly always set it:
        one savepoint instead of two); returns it as stored (CBOR), else None.
        ``defer`` (with ``remote``, without ``access``): other authors' live changes,
        held a moment and written with the next ones (deferred.py).
        """
        if defer and remote and access is None:
            self._t.hold(doc_id, rows, heads)
            return None
        packed = None if access is None else cbor2.dumps(access)

        def tx(db: sqlite3.Connection) -> None:
            if packed is not None:
                db.execute("UPDATE documents SET access = ? WHERE id = ?", (packed, doc_id))
            self._insert(db, doc_id, rows, heads)
        self._t.write(tx, remote=remote)
        return packed

    def _insert(self, db: sqlite3.Connection, doc_id: bytes, rows: Sequence[ChangeRow],
                heads: dict[bytes, Head]) -> None:
        d = self._t.doc(doc_id)
        db.executemany(
            "INSERT INTO changes (doc, actor, seq, blob, auth) VALUES (?,?,?,?,?)",
            [(d, self._t.actor(db, r.actor), r.seq, pack_body(r.actor, r.blob), r.auth)
             for r in rows],
        )
        for actor, h in heads.items():
            db.execute(
                "INSERT OR REPLACE INTO heads (doc, actor, seq, hash, sig, sig_seq) "
                "VALUES (?,?,?,?,?,?)",
                (d, self._t.actor(db, actor), h.seq, h.hash, h.sig, h.sig_seq),
            )

    def set_signature(self, doc_id: bytes, actor: bytes, sig_seq: int, sig: bytes, *,
                      remote: bool = False) -> None:
        """``remote``: another author's signature (see ``batch(durable=False)``)."""
        def tx(db: sqlite3.Connection) -> None:
            a = self._t.actor(db, actor, create=False)
            db.execute("UPDATE heads SET sig = ?, sig_seq = ? WHERE doc = ? AND actor = ?",
                       (sig, sig_seq, self._t.doc(doc_id), a))
        self._t.write(tx, remote=remote)

    def heads(self, doc_id: bytes) -> dict[bytes, Head]:
        with self._t.lock:
            rows = self._t.read(
                "SELECT a.id, h.seq, h.hash, h.sig, h.sig_seq FROM heads h "
                "JOIN actors a ON a.n = h.actor WHERE h.doc = ?", (self._t.doc(doc_id),))
        return {bytes(r[0]): Head(r[1], bytes(r[2]), bytes(r[3]) if r[3] else None, r[4])
                for r in rows}

    def versions(self) -> dict[bytes, dict[bytes, int]]:
        """``{doc: {author: newest seq}}`` of every doc, in one query: a node that
        shares thousands of docs needs them all for its first digest, and a
        query per doc costs 100x more."""
        with self._t.lock:
            rows = self._t.read(
                "SELECT d.id, a.id, h.seq FROM documents d LEFT JOIN heads h ON h.doc = d.n "
                "LEFT JOIN actors a ON a.n = h.actor", ())
        out: dict[bytes, dict[bytes, int]] = {}
        for doc, actor, seq in rows:
            v = out.setdefault(bytes(doc), {})
            if actor is not None:  # (a doc with no changes yet: empty)
                v[bytes(actor)] = seq
        return out

    def changes(self, doc_id: bytes, actor: bytes, after: int = 0,
                upto: int | None = None, *,
                on_damaged: Callable[[CorruptRowError], None] | None = None,
                ) -> list[ChangeRow]:
        """One author's changes with ``after < seq <= upto``, in seq order.

        A row that cannot be read back raises CorruptRowError; with ``on_damaged``
        it is passed there instead and the result stops before it (this author's
        later changes build on it), so a caller can load everything else.
        """
        out = []
        for seq, stored, auth in self.raw_changes(doc_id, actor, after, upto):
            try:
                body = unpack_body(actor, stored)
            except DatabaseError as e:
                err = CorruptRowError(self.path, doc_id, actor, seq, "change", str(e))
                if on_damaged is None:
                    raise err from e
                on_damaged(err)
                break
            out.append(ChangeRow(actor, seq, body, auth))
        return out

    def raw_changes(self, doc_id: bytes, actor: bytes, after: int = 0,
                    upto: int | None = None) -> list[tuple[int, bytes, bytes | None]]:
        """``(seq, stored form, auth)`` rows as on disk (see ``unpack_body``)."""
        with self._t.lock:
            a = self._t.actor(self._t.db, actor, create=False)
            if a is None:
                return []
            rows = self._t.read(
                "SELECT seq, blob, auth FROM changes WHERE doc = ? AND actor = ? AND seq > ? "
                "AND seq <= ? ORDER BY seq",
                (self._t.doc(doc_id), a, after, upto if upto is not None else 2**62))
        return [(r[0], bytes(r[1]), bytes(r[2]) if r[2] else None) for r in rows]

    def caps(self, doc_id: bytes) -> list[tuple[bytes, bytes]]:
        """``(actor, auth)`` of every stored change that carries authentication data."""
        with self._t.lock:
            rows = self._t.read(
                "SELECT a.id, c.auth FROM changes c JOIN actors a ON a.n = c.actor "
                "WHERE c.doc = ? AND c.auth IS NOT NULL ORDER BY c.actor, c.seq",
                (self._t.doc(doc_id),))
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    def cap_docs(self) -> set[bytes]:
        """Ids of the docs that have any stored change carrying authentication data
        (one query over the partial index, instead of ``caps()`` per doc)."""
        return {bytes(r[0]) for r in self._t.read(
            "SELECT id FROM documents WHERE n IN "
            "(SELECT DISTINCT doc FROM changes WHERE auth IS NOT NULL)")}

    def change(self, doc_id: bytes, actor: bytes, seq: int) -> ChangeRow | None:
        got = self.changes(doc_id, actor, seq - 1, seq)
        return got[0] if got else None

    def change_count(self, doc_id: bytes | None = None) -> int:
        with self._t.lock:
            if doc_id is None:
                return self._t.read("SELECT count(*) FROM changes")[0][0]
            return self._t.read("SELECT count(*) FROM changes WHERE doc = ?",
                              (self._t.doc(doc_id),))[0][0]

    def iter_all_changes(self, doc_id: bytes) -> Iterator[ChangeRow]:
        for actor in self.heads(doc_id):
            yield from self.changes(doc_id, actor)

    # -- compaction ------------------------------------------------------------
    def compact(self, doc_id: bytes, cuts: dict[bytes, tuple[int, bytes]]) -> int:
        """Drop change rows up to each actor's cut (keeping rows with auth data);
        returns the number of rows dropped. The caller has verified regeneration."""
        def tx(db: sqlite3.Connection) -> int:
            d = self._t.doc(doc_id)
            n = 0
            for actor, (seq, h) in cuts.items():
                a = self._t.actor(db, actor)
                n += db.execute("DELETE FROM changes WHERE doc = ? AND actor = ? AND seq <= ? "
                                "AND auth IS NULL", (d, a, seq)).rowcount
                db.execute("INSERT OR REPLACE INTO compacted (doc, actor, seq, hash) "
                           "VALUES (?,?,?,?)", (d, a, seq, h))
            return n
        return self._t.write(tx)

    def reclaim(self) -> None:
        """Return free pages to the file system (after compaction) and fold the WAL."""
        with self._t.lock:
            # executescript runs to completion (sqlite3_exec); execute() would free
            # only one page, as the pragma frees a page per step and yields no rows.
            try:
                self._t.db.executescript("PRAGMA incremental_vacuum;")
                self._t.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as e:
                if is_full(e):
                    raise StoreFullError(self.path, str(e)) from e
                raise

    def compacted(self, doc_id: bytes) -> dict[bytes, tuple[int, bytes]]:
        with self._t.lock:
            rows = self._t.read(
                "SELECT a.id, c.seq, c.hash FROM compacted c JOIN actors a ON a.n = c.actor "
                "WHERE c.doc = ?", (self._t.doc(doc_id),))
        return {bytes(r[0]): (r[1], bytes(r[2])) for r in rows}

    # -- snapshots -----------------------------------------------------------
    def put_snapshot(self, doc_id: bytes, version: dict[bytes, int], data: bytes,
                     nchanges: int) -> None:
        self._t.write(lambda db: db.execute(
            "INSERT OR REPLACE INTO snapshots (doc, version, data, nchanges, created) "
            "VALUES (?,?,?,?,?)",
            (self._t.doc(doc_id), cbor2.dumps(version), data, nchanges, time.time())))

    def snapshot(self, doc_id: bytes, *,
                 on_damaged: Callable[[CorruptRowError], None] | None = None,
                 ) -> tuple[dict[bytes, int], bytes, int] | None:
        """Newest snapshot: ``(version, data, nchanges)``. A damaged one raises
        CorruptRowError, or with ``on_damaged`` is reported there and None returned."""
        with self._t.lock:
            rows = self._t.read("SELECT version, data, nchanges FROM snapshots WHERE doc = ?",
                              (self._t.doc(doc_id),))
        if not rows:
            return None
        try:
            version = decode_version(bytes(rows[0][0]))
        except ValueError as e:
            err = CorruptRowError(self.path, doc_id, None, None, "snapshot", str(e))
            if on_damaged is None:
                raise err from e
            on_damaged(err)
            return None
        return version, bytes(rows[0][1]), rows[0][2]

    # -- peers ---------------------------------------------------------------
    def put_peer(self, peer_id: bytes, *, name: str | None = None,
                 addresses: Iterable[str] = (), last_seen: float | None = None) -> None:
        self._t.write(lambda db: db.execute(
            "INSERT OR REPLACE INTO peers (id, name, addresses, last_seen) VALUES (?,?,?,?)",
            (peer_id, name, cbor2.dumps(list(addresses)),
             time.time() if last_seen is None else last_seen)))

    def peers(self) -> list[dict[str, Any]]:
        return [{"id": bytes(r[0]), "name": r[1], "addresses": cbor2.loads(r[2]) if r[2] else [],
                 "last_seen": r[3]}
                for r in self._t.read("SELECT id, name, addresses, last_seen FROM peers "
                                    "ORDER BY last_seen DESC")]

    # -- settings ------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self._t.read("SELECT value FROM settings WHERE key = ?", (key,))
        return cbor2.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        self._t.write(lambda db: db.execute(
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
            rows = self._t.read("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
        except sqlite3.OperationalError:
            return {}
        return {r[0]: r[1] for r in rows}

    def integrity_check(self) -> list[str]:
        """SQLite's full ``integrity_check`` (every page and index): ``["ok"]`` if sound."""
        return [str(r[0]) for r in self._t.read("PRAGMA integrity_check")]

    def checkpoint(self) -> None:
        with self._t.lock:
            self._t.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
