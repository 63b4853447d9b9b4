"""Rebuilding a document's CRDT from the store: newest snapshot, then the changes after it.

Split out of replica.py (which calls :func:`load_crdt` when it opens a doc). Damage
stays local: a snapshot that does not decode falls back to the full history (unless
that was compacted away), and a change that does not decrypt or decode stops its
author's chain just before it. Each damaged row is reported through ``damaged`` and
what does not depend on it still loads.
"""

from __future__ import annotations

from ownkernel.crdt import Doc
from ownkernel.store import (
    CorruptRowError,
    DatabaseError,
    DocRow,
    Head,
    SealError,
    Store,
    open_sealed,
    seal,
)

__all__ = ["load_crdt", "open_body", "seal_body"]


def open_body(row: DocRow, body: bytes) -> bytes:
    """A stored or received change body as plain CRDT bytes (opened if the doc is sealed)."""
    if row.encrypted:
        if row.key is None:
            raise SealError("no key")
        return open_sealed(row.key, body)
    return body


def seal_body(row: DocRow, blob: bytes) -> bytes:
    """Plain CRDT bytes as stored and sent (sealed if the doc is encrypted and keyed)."""
    return seal(row.key, blob) if row.encrypted and row.key is not None else blob


def load_crdt(store: Store, row: DocRow, heads: dict[bytes, Head], actor: bytes,
              damaged: list[CorruptRowError]) -> Doc:
    """``row``'s CRDT as ``actor`` edits it: newest snapshot + the changes after it,
    for the authors in ``heads``; damaged rows appended to ``damaged``."""
    doc_id = row.id
    snap = store.snapshot(doc_id, on_damaged=damaged.append)
    version: dict[bytes, int] = {}
    crdt: Doc | None = None
    if snap is not None:
        try:
            crdt = Doc.load(open_body(row, snap[1]), actor=actor)
            version = snap[0]
        except (ValueError, SealError) as e:
            damaged.append(CorruptRowError(store.path, doc_id, None, None,
                                           "snapshot", f"does not decode: {e}"))
    if crdt is None:
        if store.compacted(doc_id):
            raise DatabaseError(
                f"document {doc_id.hex()[:8]} in {store.path} has compacted "
                f"history but no readable snapshot; run `ownkernel doctor` and restore "
                f"the database from a backup")
        crdt = Doc(actor=actor)
    blobs: list[tuple[bytes, int, bytes]] = []
    for author in heads:
        for ch in store.changes(doc_id, author, version.get(author, 0),
                                on_damaged=damaged.append):
            try:
                blobs.append((author, ch.seq, open_body(row, ch.blob)))
            except SealError as e:
                damaged.append(CorruptRowError(store.path, doc_id, author, ch.seq,
                                               "change", f"does not decrypt: {e}"))
                break
    try:
        crdt.apply([b for _a, _s, b in blobs])
    except ValueError:  # one by one: a bad change stops its author there
        stopped: set[bytes] = set()
        for author, seq, b in blobs:
            if author in stopped:
                continue
            try:
                crdt.apply([b])
            except ValueError as e:
                stopped.add(author)
                damaged.append(CorruptRowError(store.path, doc_id, author, seq,
                                               "change", f"does not decode: {e}"))
    return crdt
