"""Live changes taken straight from their authors: signature checked later, once.

Every change a node accepts normally ends a run whose Ed25519 signature it
verifies at once (``store.auth.check_chains``). For a live keystroke that came
over the author's own session that check proves nothing new: the transport's
Curve handshake, bound to the author's key when its hello was accepted, already
shows who sent the frame and that it was not altered. The signature is still
needed, but only to pass the change on (a third node trusts the signature, not
us). So a change that

- is the only one in its frame, extends its author's chain by exactly one, shows
  no capability, is signed, and
- came from the peer the transport authenticated *as that author*, on a node
  that passes nothing on at once (not a relay forwarding the bytes),

is admitted like any other (same decrypt, author and role checks, same CRDT
apply, stored with its chain hash), but its signature waits in
``OpenDoc.unchecked``: the stored head keeps the last *verified* signature, so
nothing unverified ever reaches the disk or a peer. :func:`settle` verifies the
newest waiting signature per author (one covers the whole chain before it)
before the doc serves history, in the network's timer round (about once a
second), before an ingest-only doc is dropped, and at close. One verification a
second per typing author instead of one per keystroke: in a mesh of eight
with one typist at 20 keys/s, ~80 us less for each reader and keystroke.

A signature that fails is dropped and counted (``bad_signature``); the changes
stay (their author sent them over its own session) but are not served until the
author signs a later one, exactly as an unsigned tail. What a forger gains is
nothing: a change not from the authenticated peer's own key takes the usual
path and is verified at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ownkernel.store import Envelope, Head, chain_hash
from ownkernel.store.auth import ZERO_HASH, Run, verify_head

if TYPE_CHECKING:
    from ownkernel.node.docstate import OpenDoc

__all__ = ["direct_run", "settle", "stored_head"]


def direct_run(od: OpenDoc, env: Envelope, source: Any) -> Run | None:
    """``env`` as a one-change run to admit without verifying its signature now, or
    None when it must take the usual path (see the module docstring). Admission
    still applies a revoked device's cut (``Replica._admit_run``)."""
    actor = env.actor
    if (actor != source or env.sig is None or env.cap is not None or od.crdt is None
            or actor in od.waiting):
        return None
    head = od.heads.get(actor)
    if env.seq != (head.seq if head is not None else 0) + 1:
        return None
    h = chain_hash(head.hash if head is not None else ZERO_HASH, env.doc, actor, env.seq,
                   env.body, None)
    return Run(actor, [env], [h])


def stored_head(od: OpenDoc, run: Run) -> Head:
    """The head to store for an admitted direct run: its seq and chain hash, with the
    last verified signature (the run's own goes to ``od.unchecked`` once stored)."""
    old = od.heads.get(run.actor)
    return Head(run.envelopes[-1].seq, run.hashes[-1], old.sig if old else None,
                old.sig_seq if old else 0)


def settle(od: OpenDoc, store: Any, rejected: Any) -> int:
    """Verify ``od``'s waiting signatures; store the good ones as their authors'
    signed heads, drop and count the bad. Returns how many were verified."""
    pending, od.unchecked = od.unchecked, {}
    for actor, (seq, h, sig) in pending.items():
        head = od.heads.get(actor)
        if head is None or head.sig_seq >= seq or head.seq < seq:
            continue  # a verified one as new came meanwhile, or the doc was reloaded
        if not verify_head(actor, h, sig):
            rejected["bad_signature"] += 1
            continue
        store.set_signature(od.row.id, actor, seq, sig, remote=True)
        od.heads[actor] = Head(head.seq, head.hash, sig, seq)
    return len(pending)
