"""In-memory state of a loaded document (`OpenDoc`), and which docs loaded only to
take in remote changes may be dropped again (`IngestedDocs`). Used by replica.py."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ownkernel.crdt import Doc
from ownkernel.node.access import ACCESS_ROOT, AccessView
from ownkernel.node.grants import Grant
from ownkernel.store import DocRow, Envelope, Head

__all__ = ["KEEP_INGESTED", "SNAPSHOT_AT_CLOSE", "IngestedDocs", "OpenDoc"]

# Snapshots at close: only of docs with at least this many changes since their last
# one. Replaying a few changes at the next open costs less than a snapshot now
# (closing a node that caught up with 2,000 small docs spent 0.7 s saving a
# snapshot of each).
SNAPSHOT_AT_CLOSE = 32
# Docs loaded only to take in remote changes, and never handed out by ``open``,
# stay in memory up to this many (most recent first); older ones are dropped
# and load again from the store when opened. A catch-up of 10,000 newly shared
# docs then holds ~this many, not 10,000, and a doc peers keep editing stays
# loaded while it is among the most recent.
KEEP_INGESTED = 256


class OpenDoc:
    """In-memory state of one loaded document."""

    def __init__(self, row: DocRow, crdt: Doc | None, heads: dict[bytes, Head],
                 grants: dict[bytes, Grant]) -> None:
        self.row = row
        self.crdt = crdt
        self.heads = heads
        self.grants = grants
        self.users: Any = None  # the gate's device -> user registry (set by Replica)
        # envelopes that cannot be verified yet (gap, unsigned tail), per author:
        # actor -> seq -> (envelope, the peer it came from, its size in bytes)
        self.waiting: dict[bytes, dict[int, tuple[Envelope, Any, int]]] = {}
        # signatures of live changes taken from their authors' own sessions, not yet
        # verified: actor -> (seq, chain hash at seq, signature) (see direct.py)
        self.unchecked: dict[bytes, tuple[int, bytes, bytes]] = {}
        self.since_snapshot = 0
        self.txn = 0
        # given out by Replica.open (a handle or the node may hold it): never dropped
        self.handed = True
        self.compacted: dict[bytes, tuple[int, bytes]] = {}  # actor -> (seq, chain hash)
        self.verified: set[bytes] = set()  # actors whose compacted history re-verified
        self.damaged: dict[bytes, int] = {}  # author -> first seq that could not be read
        # The access map as of the last stored change. Local ops show up in the CRDT
        # at once, so a local edit must be judged against this, not the live map
        # (or a writer's own "make me admin" would authorise itself).
        self.access_before: dict[str, Any] = (
            dict(crdt.map(ACCESS_ROOT).items()) if crdt is not None else {})

    def require_crdt(self) -> Doc:
        if self.crdt is None:
            raise PermissionError(
                f"document {self.row.id.hex()[:8]} is encrypted and this node has no key for "
                f"it (it only stores and forwards ciphertext); join with a token that "
                f"carries the key")
        return self.crdt

    def access(self) -> AccessView:
        amap: Any = self.crdt.map(ACCESS_ROOT) if self.crdt is not None else {}
        return AccessView(self.row.owner, amap, self.grants, self.users)


class IngestedDocs:
    """Docs loaded by ``Replica.ingest`` alone (``OpenDoc.handed`` False), oldest first."""

    def __init__(self) -> None:
        self._order: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._order)

    def touch(self, doc_id: bytes) -> None:
        self._order[doc_id] = None
        self._order.move_to_end(doc_id)

    def forget(self, doc_id: bytes) -> None:
        self._order.pop(doc_id, None)

    def excess(self, docs: dict[bytes, OpenDoc]) -> Iterator[tuple[bytes, OpenDoc]]:
        """The oldest beyond KEEP_INGESTED that may go (under the node's lock). Only a
        doc with nothing in memory that the store lacks: no held envelopes, no open
        transaction or pending ops, no damage noted, and few changes since its
        snapshot (a reload replays those; with more it stays loaded)."""
        while len(self._order) > KEEP_INGESTED:
            doc_id, _ = self._order.popitem(last=False)
            od = docs.get(doc_id)
            if od is None or od.handed:
                continue
            if (od.waiting or od.txn or od.damaged or od.since_snapshot >= SNAPSHOT_AT_CLOSE
                    or (od.crdt is not None and od.crdt.pending_ops)):
                od.handed = True  # keep it, and stop considering it
                continue
            yield doc_id, od
