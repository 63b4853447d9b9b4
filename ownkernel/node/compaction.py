"""History compaction (``Node.compact``): drop change rows the snapshot regenerates
byte for byte, and check regenerated history before it is served. Opt-in; the
chain hash at each cut is kept so served history stays verifiable (docs/auth.md).
Split out of replica.py, which calls ``verify_compacted`` when it serves history."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ownkernel.store import chain_hash
from ownkernel.store.auth import ZERO_HASH

if TYPE_CHECKING:
    from ownkernel.node.docstate import OpenDoc
    from ownkernel.node.replica import Replica

__all__ = ["compact", "verify_compacted"]


def verify_compacted(replica: Replica, od: OpenDoc, actor: bytes) -> None:
    """Regenerate ``actor``'s compacted changes from the CRDT and check them against the
    chain hash kept at the cut, once per actor and load, before serving them."""
    seq, want = od.compacted[actor]
    crdt = od.require_crdt()
    caps = {r.seq: r.auth for r in replica.store.changes(od.row.id, actor, 0, seq)}
    h = ZERO_HASH
    for s in range(1, seq + 1):
        h = chain_hash(h, od.row.id, actor, s, crdt.change(actor, s), caps.get(s))
    if h != want:
        raise RuntimeError(
            f"compacted history of {actor.hex()[:8]} in doc {od.row.id.hex()[:8]} no longer "
            f"regenerates identically (was the CRDT encoding changed?); not serving it")
    od.verified.add(actor)


def compact(replica: Replica, ids: list[bytes]) -> dict[str, int]:
    """Drop change rows the snapshot regenerates byte for byte (opt-in; saves disk).

    Only for docs this node can read and that are not encrypted (ciphertext
    cannot be regenerated). Every dropped row is first regenerated and compared,
    and the chain hash at the cut is kept, so served history stays verifiable.
    """
    with replica.lock:
        replica.check_open()
        total = {"docs": 0, "rows": 0}
        for doc_id in ids:
            od = replica.open(doc_id)
            if od.crdt is None or od.row.encrypted or od.txn:
                continue
            replica.snapshot(od)
            snap = replica.store.snapshot(doc_id)
            if snap is None:
                continue
            version = snap[0]
            cuts: dict[bytes, tuple[int, bytes]] = {}
            for actor, head in od.heads.items():
                base, h = od.compacted.get(actor, (0, ZERO_HASH))
                upto = min(version.get(actor, 0), head.seq)
                last = base
                for r in replica.store.changes(doc_id, actor, base, upto):
                    if r.seq != last + 1 or od.crdt.change(actor, r.seq) != r.blob:
                        break
                    h = chain_hash(h, doc_id, actor, r.seq, r.blob, r.auth)
                    last = r.seq
                if last > base:
                    cuts[actor] = (last, h)
            if cuts:
                total["rows"] += replica.store.compact(doc_id, cuts)
                od.compacted.update(cuts)
                total["docs"] += 1
        if total["rows"]:
            replica.store.reclaim()
        return total
