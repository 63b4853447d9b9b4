"""A store's SQLite connection and its transactions: how writes are grouped and
made durable (docs/store.md).

``Transactions`` owns the one connection of a :class:`~ownkernel.store.sqlite.Store`,
its lock, the batch in progress, the interned row numbers (which a rollback can
invalidate) and the other authors' live changes held back a moment (deferred.py).
The Store says *what* to read and write; this says *how* it reaches the disk:

- ``write(fn)``: one IMMEDIATE transaction, committed with ``synchronous=FULL``
  (fsynced) before it returns; inside a ``batch()``, a savepoint of the batch's
  transaction instead (its first write begins that transaction, needing no
  savepoint: undoing it is a ROLLBACK);
- ``batch(durable=False)``: other authors' changes (``remote=True``) commit at
  ``synchronous=NORMAL``; any other write inside makes the batch fsync the WAL;
- ``hold(...)``: other authors' live changes kept in memory and written by the
  lock before anything else runs under it (deferred.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ownkernel.store.deferred import Deferred, WritesFirst
from ownkernel.store.errors import DatabaseError, StoreFullError
from ownkernel.store.rows import ChangeRow, Head, is_corrupt, is_full

__all__ = ["Transactions"]

# insert_held(db, doc_id, rows, heads): the Store's own INSERTs for changes and heads
InsertHeld = Callable[[sqlite3.Connection, bytes, Sequence[ChangeRow], dict[bytes, Head]], None]


class Transactions:
    """One SQLite connection's transactions (see the module docstring). Thread-safe:
    everything runs under ``lock``."""

    def __init__(self, db: sqlite3.Connection, path: Path, insert_held: InsertHeld) -> None:
        self.db: sqlite3.Connection | None = db
        self.path = path
        self.insert_held = insert_held
        # Other authors' live changes held back a moment (deferred.py): the lock writes
        # them before anything else runs under it.
        self.deferred = Deferred()
        self.lock = WritesFirst(self.deferred, self.write_held)
        self.lost: set[bytes] = set()  # docs whose held changes could not be written
        self._batch = False  # inside batch(): writes are savepoints of one transaction
        self._relaxed = False  # the open batch is batch(durable=False)
        self._normal = False  # the connection is at synchronous=NORMAL (batch(durable=False))
        self._must_sync = False  # a write inside such a batch that needs an fsync was made
        self._begun = False  # the open batch's transaction began (at its first write)
        self._held_in_batch: set[bytes] = set()  # docs whose held rows the batch wrote
        # interned row numbers of documents and actors (a rollback clears them)
        self.doc_n: dict[bytes, int] = {}
        self.actor_n: dict[bytes, int] = {}

    def close(self) -> bool:
        """Write what is held, fold the WAL back, close; False if already closed."""
        with self.lock.mutex:
            db = self.db
            if db is None:
                return False
            try:
                self.write_held()
            except (DatabaseError, sqlite3.Error):
                pass  # lost like a killed process's: peers hold them
            try:
                # Fold the WAL back so the profile is one self-contained file at rest.
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            db.close()
            self.db = None
            return True

    def hold(self, doc_id: bytes, rows: Sequence[ChangeRow], heads: dict[bytes, Head]) -> None:
        """Keep other authors' live changes to write later (deferred.py)."""
        with self.lock.mutex:
            if self.db is None:
                raise DatabaseError(f"database {self.path} is closed")
            if self.deferred.add(doc_id, rows, heads, time.monotonic()):
                self.write_held()

    @contextlib.contextmanager
    def batch(self, durable: bool = True) -> Iterator[None]:
        """Group the writes made inside into one transaction: one fsync for all.

        Each write still succeeds or fails on its own (a SAVEPOINT each); what was
        written becomes durable at the end of the block, so nothing written inside
        may be acknowledged or sent before the block ends (the network layer
        ingests a burst of frames inside one batch and sends after it).

        ``durable=False``: other authors' changes stored inside are not fsynced
        (see sqlite.py's docstring); any other write still is, at the end.
        """
        # (the bare lock: the transaction begins at the batch's first write, so a
        # burst that writes nothing, e.g. live changes held back, costs no statement)
        with self.lock.mutex:
            if self._batch:
                yield
                return
            db = self.db
            if db is None:
                raise DatabaseError(f"database {self.path} is closed")
            self._batch, self._relaxed, self._must_sync, self._begun = (
                True, not durable, False, False)
            try:
                yield
                if self._begun and db.in_transaction:  # (SQLite ends it itself after
                    db.execute("COMMIT")                # e.g. SQLITE_FULL)
                if self._must_sync:
                    self.fsync_wal()
            except BaseException as e:
                # held rows it wrote are undone with it: their docs must be reloaded
                self.lost.update(self._held_in_batch)
                err = self.rolled_back(db, e)
                if err is e:
                    raise
                raise err from e
            finally:
                self._batch = self._relaxed = self._must_sync = self._begun = False
                self._held_in_batch.clear()

    def set_normal(self, db: sqlite3.Connection, normal: bool) -> None:
        """synchronous=NORMAL or back to FULL, outside any transaction (SQLite
        refuses it inside one). Every write path calls this first (a batch leaves
        NORMAL set when it ends), so no write is relaxed that should not be."""
        if normal != self._normal:
            db.execute(f"PRAGMA synchronous={'NORMAL' if normal else 'FULL'}")
            self._normal = normal

    def fsync_wal(self) -> None:
        """What ``synchronous=FULL`` does at a commit: fsync the WAL (and the file,
        in case a checkpoint just moved the frames there)."""
        for path in (self.path.with_name(self.path.name + "-wal"), self.path):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def rolled_back(self, db: sqlite3.Connection, e: BaseException) -> BaseException:
        """Undo the open transaction after ``e``; returns the error to raise (a store
        error that names the file for disk full or damage, else ``e`` itself)."""
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after SQLITE_FULL)
        # Interned ids may refer to rolled-back rows.
        self.doc_n.clear()
        self.actor_n.clear()
        if isinstance(e, sqlite3.OperationalError) and is_full(e):
            return StoreFullError(self.path, str(e))
        if isinstance(e, sqlite3.DatabaseError) and is_corrupt(e):
            return self.damaged(e)
        return e

    def write(self, fn: Any, *args: Any, remote: bool = False, relaxed: bool = False) -> Any:
        """Run ``fn(db, *args)`` in one IMMEDIATE transaction; returns after COMMIT
        (inside ``batch()``: in a savepoint, durable when the batch ends).
        ``remote``: only other authors' changes (see ``batch(durable=False)``);
        ``relaxed`` too, and not fsynced even outside a batch (held rows, deferred.py:
        the durable write that often triggers them fsyncs them)."""
        with self.lock:
            db = self.db
            if db is None:
                raise DatabaseError(f"database {self.path} is closed")
            if self._batch and not self._begun:
                if not remote:
                    self._must_sync = True
                return self._first_in_batch(db, fn, args)
            if self._batch and db.in_transaction:
                if not remote:
                    self._must_sync = True
                db.execute("SAVEPOINT w")
                try:
                    out = fn(db, *args)
                    db.execute("RELEASE w")
                except BaseException as e:
                    if not db.in_transaction:  # SQLite rolled the whole batch back
                        err = self.rolled_back(db, e)
                        if err is e:
                            raise
                        raise err from e
                    db.execute("ROLLBACK TO w")
                    db.execute("RELEASE w")
                    self.doc_n.clear()
                    self.actor_n.clear()
                    raise
                return out
            self.set_normal(db, relaxed)  # a write of its own is fsynced
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db, *args)
                db.execute("COMMIT")
            except BaseException as e:
                err = self.rolled_back(db, e)
                if err is e:
                    raise
                raise err from e
            return out

    def _first_in_batch(self, db: sqlite3.Connection, fn: Any, args: tuple[Any, ...]) -> Any:
        """The batch's first write begins its transaction, and needs no savepoint:
        nothing is written before it, so undoing it is undoing the transaction (the
        next write begins it again). (A live keystroke received was one write per
        batch: the savepoint was two of its ~8 statements.)"""
        # (NORMAL stays set after the batch: every write path sets the level it
        # needs first, and a node receiving others' changes would otherwise flip
        # it twice per received burst, two statements of ~8 per keystroke)
        self.set_normal(db, self._relaxed)
        db.execute("BEGIN IMMEDIATE")
        try:
            out = fn(db, *args)
        except BaseException as e:
            err = self.rolled_back(db, e)
            if err is e:
                raise
            raise err from e
        self._begun = True
        return out

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self.lock:
            if self.db is None:
                raise DatabaseError(f"database {self.path} is closed")
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as e:
                if is_corrupt(e):
                    raise self.damaged(e) from e
                raise

    def one(self, db: sqlite3.Connection, sql: str, args: Sequence[Any]) -> Any:
        try:
            return db.execute(sql, args).fetchone()
        except sqlite3.DatabaseError as e:
            if is_corrupt(e):
                raise self.damaged(e) from e
            raise

    def damaged(self, e: sqlite3.Error) -> DatabaseError:
        # Pages damaged while the file was closed (the open-time check runs only
        # after an unclean shutdown): say which file and what to do.
        return DatabaseError(
            f"database {self.path} is damaged ({e}). Stop the node and run `ownkernel "
            f"doctor` on the profile to see what is affected; restore it from a backup "
            f"or move the profile directory away to start afresh.")

    def doc(self, doc_id: bytes) -> int:
        n = self.doc_n.get(doc_id)
        if n is None:
            row = self.one(self.db, "SELECT n FROM documents WHERE id = ?", (doc_id,))
            if row is None:
                raise KeyError(f"unknown document {doc_id.hex()}")
            n = self.doc_n[doc_id] = row[0]
        return n

    def actor(self, db: sqlite3.Connection, actor: bytes, create: bool = True) -> int | None:
        n = self.actor_n.get(actor)
        if n is None:
            row = self.one(db, "SELECT n FROM actors WHERE id = ?", (actor,))
            if row is None:
                if not create:
                    return None
                n = db.execute("INSERT INTO actors (id) VALUES (?)", (actor,)).lastrowid
            else:
                n = row[0]
            self.actor_n[actor] = n
        return n


    def write_deferred(self, *, due_only: bool = False) -> None:
        """Write what is held (all, or only once it is due)."""
        with self.lock.mutex:
            if self.deferred and (not due_only or self.deferred.due(time.monotonic())):
                self.write_held()

    def write_held(self) -> None:
        """Write what is held, in one transaction (inside a batch: in it). On failure
        it is dropped and its docs named in ``lost`` (see deferred.py)."""
        held = self.deferred.take()  # (first: the lock, re-entered below, finds none)
        if not held:
            return

        def tx(db: sqlite3.Connection) -> None:
            for doc_id, (rows, heads) in held.items():
                self.insert_held(db, doc_id, rows, heads)
        try:
            self.write(tx, remote=True, relaxed=True)
        except BaseException:
            self.lost.update(held)
            raise
        if self._batch:  # (stored only if the batch commits)
            self._held_in_batch.update(held)
