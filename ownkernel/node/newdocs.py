"""Taking in a newly shared doc without building it (issue #15 target 1).

A node that joined thousands of docs offline receives, for each, its owner's
first few changes. The full path (``Replica._ingest``) loads an ``OpenDoc``,
materialises every root of the CRDT (text, lists, maps...) and drops it again
soon (``KEEP_INGESTED``): nobody has opened it. Here the same changes get the
same checks and are stored as they are, and the doc is built from the store
the first time something opens it (``Replica.open`` -> ``_load``).

Only the common case takes this path; anything else returns None *before any
side effect* and the caller runs the full path, which then counts the reasons:

- the doc is not loaded and holds nothing (``Replica.version`` is ``{}``), it
  is readable (not encrypted, or its key is held), and it is
  not this node's own;
- every envelope decodes, is of this doc and by its owner device, shows no
  capability, and the batch is small (< ``SNAPSHOT_AT_CLOSE`` changes: larger
  ones stay loaded on the full path, to be snapshotted);
- the owner device is not revoked (no seq cut);
- the chain check accepts all of them as one signed run (no fork, no bad
  signature, no gap or unsigned tail to hold);
- each body decrypts and decodes to a change whose author and seq match the
  envelope's;
- the CRDT's own checks (``Doc.check_new``: decoding to ops, duplicate check,
  causal order, every reference known and seen by its author) accept all of
  them at once, with nothing left waiting for a dependency.

What is skipped is only what cannot change the verdict: the owner device may
write anything, including the access list, whatever the list says, so its
changes need no role check (``admit.py`` lets them through likewise), and the
text/list/sheet roots are not built. The access list the changes leave is
derived from the checked ops with the map's own rule (last writer by
``(lamport, author)``) and stored in the same transaction, as the full path does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2

from ownkernel.crdt import Doc
from ownkernel.crdt.codec import DELKEY, SET, Change
from ownkernel.crdt.codec import decode as decode_change
from ownkernel.node.access import ACCESS_KEY
from ownkernel.node.docstate import SNAPSHOT_AT_CLOSE
from ownkernel.store import ChangeRow, DocRow, Envelope, EnvelopeError, SealError
from ownkernel.store.auth import check_chains, decode_envelope, encode_envelope

__all__ = ["ingest_new"]


def _no_stored(_actor: bytes, _seq: int) -> None:
    return None  # a doc known to hold nothing


def ingest_new(rep: Any, doc_id: bytes, blobs: list[bytes], encode: bool) -> list[Any] | None:
    """Check and store the first changes of a doc nobody loaded; the accepted
    envelopes as ``Replica.ingest`` returns them, or None: not this path's case,
    nothing done (the caller takes the full path). Under ``rep.lock``."""
    if doc_id in rep.docs or not blobs or len(blobs) >= SNAPSHOT_AT_CLOSE:
        return None
    row: DocRow | None = rep.store.document_for_write(doc_id)
    if row is None or rep.version(doc_id):  # (version(): cached, or read once)
        return None
    if (row.encrypted and row.key is None) or row.owner == rep.id:
        return None
    owner = row.owner
    envs: list[Envelope] = []
    for b in blobs:
        try:
            env = decode_envelope(b)
        except EnvelopeError:
            return None
        if env.doc != doc_id or env.actor != owner or env.cap is not None:
            return None
        envs.append(env)
    if rep.gate.users.cut(owner, doc_id) is not None:
        return None
    cc = check_chains(doc_id, envs, {}, _no_stored)
    if cc.rejected or cc.waiting or cc.duplicates or len(cc.runs) != 1:
        return None
    run = cc.runs[0]
    if len(run.envelopes) != len(envs):
        return None
    changes = _decode_all(run.envelopes, row, rep.open_body)
    if changes is None:
        return None
    try:
        units = Doc(actor=rep.id).check_new(changes)
    except ValueError:
        return None
    if units is None:
        return None
    access = _access_after(units, owner)
    rows = [ChangeRow(e.actor, e.seq, e.body, None) for e in run.envelopes]
    stored = rep.store.append(doc_id, rows, {owner: run.head}, remote=True, access=access)
    # the version, as version() would read it back (the doc stays unloaded)
    rep._versions[doc_id] = {owner: run.envelopes[-1].seq}
    rep.stats["accepted"] += len(rows)
    rep.stats["ingested_unbuilt"] += 1
    if stored is not None:
        # the row as the store would now read it back, without reading it
        rep.gate.refresh(doc_id, row._replace(access=cbor2.loads(stored)))
    return [encode_envelope(e) for e in run.envelopes] if encode else list(run.envelopes)


def _decode_all(envs: list[Envelope], row: DocRow,
                open_body: Callable[[DocRow, bytes], bytes]) -> list[Change] | None:
    out: list[Change] = []
    for env in envs:
        try:
            c = decode_change(open_body(row, env.body))
        except (SealError, ValueError):
            return None
        if not isinstance(c, Change) or c.actors[0] != env.actor or c.seq != env.seq:
            return None
        out.append(c)
    return out


def _access_after(units: list[Any], owner: bytes) -> dict[str, Any] | None:
    """The access list as the full path stores it (``AccessView.snapshot`` of the
    ``_access`` map after these changes), or None when they do not touch it."""
    entries: dict[str, tuple[int, Any, bool]] = {}
    for u in units:  # one author (the owner): LWW order is the lamport alone
        for op in u.ops:
            if op[1] != ACCESS_KEY:
                continue
            k, lam = op[3], op[2]
            cur = entries.get(k)
            if cur is not None and cur[0] >= lam:
                continue
            if op[0] == SET:
                entries[k] = (lam, op[4], True)
            elif op[0] == DELKEY:
                entries[k] = (lam, None, False)
    if not entries:
        return None
    items = sorted((k, v) for k, (_lam, v, present) in entries.items() if present)
    return {"owner": owner, **{k: v for k, v in items if k != "owner"}}
