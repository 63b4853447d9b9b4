"""Store audit and quarantine: what ``ownkernel doctor`` runs.

``audit_store`` checks, for a profile no node is using: SQLite's full
``integrity_check``; per doc, that every stored change can be read back (and, with
``decode_change``, decoded), the snapshot likewise (``decode_snapshot``), and the
hash chains and head signatures (``auth.audit``). Damage is *pinpointed* to
(doc, author, seq) wherever possible, because that is what scopes it: an author's
later changes build on the damaged one, nothing else does.

``quarantine`` moves pinpointed damage into the ``quarantine`` table (kept, never
deleted; a later tool or a person can look at it) so the rest of the doc loads:

- a damaged change: it and the same author's later changes move; that author's
  head is set back to the last sound change, so the node's version says what it
  really has and peers send the rest again;
- a damaged snapshot: it moves; the doc loads from its changes (if its history
  was compacted, the doc needs a peer or a backup, and the report says so);
- a damaged document row (its access/addresses cache): the cache is cleared.

A chain-hash mismatch that no row decode pinpoints is reported, not quarantined:
we cannot tell which row is wrong, and guessing would discard good data.

The store imports no CRDT code: decoding bodies is the caller's (cli.py) callback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cbor2

from ownkernel.store.auth import ZERO_HASH, audit, chain_hash
from ownkernel.store.errors import CorruptRowError, DatabaseError
from ownkernel.store.rows import DocRow, unpack_body
from ownkernel.store.sqlite import Store

__all__ = ["Damage", "DocReport", "Report", "audit_store", "quarantine"]

# Created on first use, not by a schema migration: older ownkernels ignore unknown
# tables, so a quarantined profile still opens everywhere.
_QUARANTINE = """CREATE TABLE IF NOT EXISTS quarantine (
    n      INTEGER PRIMARY KEY,
    doc    BLOB NOT NULL,
    what   TEXT NOT NULL,      -- change | snapshot | document
    actor  BLOB,
    seq    INTEGER,
    data   BLOB,               -- the row as stored (change blob, snapshot CBOR, ...)
    extra  BLOB,               -- CBOR: the rest of the row (auth, version, ...)
    reason TEXT NOT NULL,
    moved  REAL NOT NULL
)"""

DecodeFn = Callable[[DocRow, bytes], object]


@dataclass
class Damage:
    what: str  # change | snapshot | document | chain | read
    actor: bytes | None
    seq: int | None
    reason: str
    # For a change: the chain hash just before it, so quarantine can set the head back.
    prev_hash: bytes | None = None
    # A change inside the (sound) snapshot: the doc loads without it, and moving it
    # would leave the head behind the snapshot, so it stays where it is.
    covered: bool = False
    quarantined: bool = False

    def line(self) -> str:
        who = f" by {self.actor.hex()[:8]}" if self.actor else ""
        at = f" seq {self.seq}" if self.seq is not None else ""
        done = "  [quarantined]" if self.quarantined else ""
        if self.covered:
            done = ("  (inside the snapshot: the doc loads; peers cannot fetch this change "
                    "from here; left in place)")
        return f"{self.what}{who}{at}: {self.reason}{done}"

    @property
    def pinpointed(self) -> bool:
        return self.what in ("change", "snapshot", "document") and not self.covered


@dataclass
class DocReport:
    doc: bytes
    title: str
    changes: int = 0
    authors: int = 0
    compacted: bool = False
    problems: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    path: str
    integrity: list[str]
    docs: list[DocReport] = field(default_factory=list)
    quarantined: int = 0

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"] and all(d.ok for d in self.docs)

    def lines(self) -> list[str]:
        out = [f"database {self.path}: integrity "
               + ("ok" if self.integrity == ["ok"] else "; ".join(self.integrity[:5]))]
        for d in self.docs:
            head = (f"doc {d.doc.hex()[:12]} {d.title or '(untitled)'!r}: {d.changes} "
                    f"changes by {d.authors} authors")
            out.append(f"{head}: ok" if d.ok else f"{head}: {len(d.problems)} problem(s)")
            out.extend(f"    {p.line()}" for p in d.problems)
            if any(p.what == "snapshot" and p.quarantined for p in d.problems) and d.compacted:
                out.append("    its history was compacted into that snapshot: it loads again "
                           "once a peer sends the doc, or from a backup")
        bad = sum(not d.ok for d in self.docs)
        out.append(f"summary: {len(self.docs)} docs, {bad} with problems"
                   + (f"; {self.quarantined} rows quarantined (kept in table quarantine)"
                      if self.quarantined else ""))
        return out


def audit_store(store: Store, *, decode_change: DecodeFn | None = None,
                decode_snapshot: DecodeFn | None = None) -> Report:
    """Check the whole database; reads everything, so run it on demand only."""
    try:
        integrity = store.integrity_check()
    except (sqlite3.DatabaseError, DatabaseError) as e:
        integrity = [f"integrity_check failed: {e}"]
    report = Report(str(store.path), integrity)
    try:
        ids = store.doc_ids()
    except (sqlite3.DatabaseError, DatabaseError) as e:
        report.integrity.append(f"cannot list documents: {e}")
        return report
    for doc_id, title in ids:
        d = DocReport(doc_id, title)
        try:
            _audit_doc(store, d, decode_change, decode_snapshot)
        except Exception as e:  # noqa: BLE001 - damaged pages surface as many errors
            d.problems.append(Damage("read", None, None, f"cannot read its rows: {_why(e)}"))
        report.docs.append(d)
    return report


def _audit_doc(store: Store, d: DocReport, decode_change: DecodeFn | None,
               decode_snapshot: DecodeFn | None) -> None:
    doc = d.doc
    try:
        row: DocRow | None = store.document(doc)
    except CorruptRowError as e:
        d.problems.append(Damage("document", None, None, e.reason))
        row = None
    heads = store.heads(doc)
    cuts = store.compacted(doc)
    d.authors, d.compacted = len(heads), bool(cuts)
    d.changes = store.change_count(doc)
    can_decode = row is not None and (not row.encrypted or row.key is not None)
    # The snapshot first: changes it covers do not block loading (see Damage.covered).
    snap_damage: list[CorruptRowError] = []
    snap = store.snapshot(doc, on_damaged=snap_damage.append)
    for e in snap_damage:
        d.problems.append(Damage("snapshot", None, None, e.reason))
    if snap is not None and decode_snapshot is not None and can_decode:
        assert row is not None
        try:
            decode_snapshot(row, snap[1])
        except Exception as e:  # noqa: BLE001 - any failure to read back is damage
            d.problems.append(Damage("snapshot", None, None, _why(e)))
            snap = None
    covers = snap[0] if snap is not None else {}
    pinned = False
    for actor in heads:
        base, h = cuts.get(actor, (0, ZERO_HASH))
        for seq, stored, auth in store.raw_changes(doc, actor, after=base):
            try:
                body = unpack_body(actor, stored)
                if decode_change is not None and can_decode:
                    assert row is not None
                    decode_change(row, body)
            except Exception as e:  # noqa: BLE001
                d.problems.append(Damage("change", actor, seq, _why(e), prev_hash=h,
                                         covered=seq <= covers.get(actor, 0)))
                pinned = True
                break
            h = chain_hash(h, doc, actor, seq, body, auth)
    if not pinned:
        # Gap-free chains, heads and signatures, exactly as the node verifies them.
        d.problems.extend(Damage("chain", None, None, p) for p in audit(store, doc))


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text


def quarantine(store: Store, report: Report) -> int:
    """Move every pinpointed damage of ``report`` into the quarantine table; returns
    the number of rows moved. One transaction per doc: all of its repair or none."""
    moved = 0
    for d in report.docs:
        todo = [p for p in d.problems if p.pinpointed and not p.quarantined]
        if not todo:
            continue

        def tx(db: sqlite3.Connection, d: DocReport = d, todo: list[Damage] = todo) -> int:
            db.execute(_QUARANTINE)
            return sum(_move(store, db, d.doc, p) for p in todo)

        moved += store.transact(tx)
        for p in todo:
            p.quarantined = True
    report.quarantined += moved
    return moved


def _move(store: Store, db: sqlite3.Connection, doc: bytes, p: Damage) -> int:
    n, a = store.row_keys(doc, p.actor)
    now = time.time()
    if p.what == "change":
        assert p.actor is not None and p.seq is not None and p.prev_hash is not None
        rows = db.execute("SELECT seq, blob, auth FROM changes WHERE doc = ? AND actor = ? "
                          "AND seq >= ? ORDER BY seq", (n, a, p.seq)).fetchall()
        db.executemany(
            "INSERT INTO quarantine (doc, what, actor, seq, data, extra, reason, moved) "
            "VALUES (?, 'change', ?, ?, ?, ?, ?, ?)",
            [(doc, p.actor, r[0], r[1], cbor2.dumps({"auth": r[2]}),
              p.reason if r[0] == p.seq else f"follows damaged seq {p.seq}", now)
             for r in rows])
        db.execute("DELETE FROM changes WHERE doc = ? AND actor = ? AND seq >= ?",
                   (n, a, p.seq))
        keep = p.seq - 1
        head = db.execute("SELECT sig, sig_seq FROM heads WHERE doc = ? AND actor = ?",
                          (n, a)).fetchone()
        if keep == 0:
            db.execute("DELETE FROM heads WHERE doc = ? AND actor = ?", (n, a))
        else:
            # The signature covers a later head: drop it (the author re-signs on sync).
            sig, sig_seq = (head[0], head[1]) if head and head[1] <= keep else (None, 0)
            db.execute("INSERT OR REPLACE INTO heads (doc, actor, seq, hash, sig, sig_seq) "
                       "VALUES (?,?,?,?,?,?)", (n, a, keep, p.prev_hash, sig, sig_seq))
        return len(rows)
    if p.what == "snapshot":
        rows = db.execute("SELECT version, data, nchanges, created FROM snapshots "
                          "WHERE doc = ?", (n,)).fetchall()
        for r in rows:
            db.execute("INSERT INTO quarantine (doc, what, data, extra, reason, moved) "
                       "VALUES (?, 'snapshot', ?, ?, ?, ?)",
                       (doc, r[1], cbor2.dumps({"version": r[0], "nchanges": r[2],
                                                "created": r[3]}), p.reason, now))
        db.execute("DELETE FROM snapshots WHERE doc = ?", (n,))
        return len(rows)
    if p.what == "document":
        r = db.execute("SELECT access, addresses FROM documents WHERE n = ?", (n,)).fetchone()
        db.execute("INSERT INTO quarantine (doc, what, extra, reason, moved) "
                   "VALUES (?, 'document', ?, ?, ?)",
                   (doc, cbor2.dumps({"access": r[0], "addresses": r[1]}), p.reason, now))
        # Both are caches (the access list lives in the doc itself): safe to clear.
        db.execute("UPDATE documents SET access = NULL, addresses = NULL WHERE n = ?", (n,))
        return 1
    return 0
