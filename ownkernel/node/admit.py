"""Admission of one verified run of an author's changes into an open doc.

The chain and signatures are already checked (``store.auth.check_chains``);
what remains is per change: decrypt, decode, match the author and sequence
number the envelope claims, ask the gate whether the author may make it, and
integrate it. Each envelope is decoded exactly once.

Changes go into the CRDT in as few ``apply`` calls as is safe, because an
apply call has a fixed cost that dominates for the small changes of a
catch-up over thousands of docs:

- a stretch of plain edits (no capability shown, not touching the access
  list) by an author who may write is applied at once: nothing inside the
  stretch can change the author's role;
- the doc's owner keeps its role whatever the access list says (the doc id
  commits to the owner), so an owner's changes without capability go in one
  stretch even when they edit the access list;
- everything else (a change showing a grant, a non-owner touching the access
  list) is judged by the gate against the access list *as of that change* and
  applied alone, since its verdict can depend on the change before it.

A stretch the CRDT refuses (apply is atomic) is retried change by change to
find the first bad one; what precedes it is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ownkernel.crdt.codec import DELKEY, SET, Change
from ownkernel.crdt.codec import decode as decode_change
from ownkernel.node.access import ACCESS_KEY
from ownkernel.node.gate import Gate
from ownkernel.store import SealError
from ownkernel.store.auth import Envelope, Run

# (accepted prefix length, reason the next one was refused or None, access list touched?)
Verdict = tuple[int, "str | None", bool]


def admit_run(od: Any, run: Run, gate: Gate, open_body: Callable[[Any, bytes], bytes]) -> Verdict:
    """Check and apply ``run`` to ``od`` (an ``OpenDoc`` with a CRDT)."""
    doc_id = od.row.id
    crdt = od.crdt
    envs = run.envelopes
    # the owner device, or another device of the owner's user (users.py)
    is_owner = run.actor == od.row.owner or od.access().explicit_role(run.actor) == "owner"
    stretch: list[Change] = []
    plains: list[bytes] = []  # the stretch's encoded bodies (for the one-change fast path)
    stretch_from = 0
    may_write: bool | None = None  # of the author, for the current stretch
    touched = False
    stretch_touches = False

    def flush() -> tuple[int, str | None]:
        """Apply the pending stretch; (changes kept, reason of the first refused)."""
        nonlocal stretch, plains, touched, stretch_touches
        if not stretch:
            return 0, None
        batch, stretch = stretch, []
        one, plains = plains, []
        try:
            if len(batch) == 1:
                crdt.apply(one)  # a live keystroke: the CRDT's fast path takes the bytes
            else:
                crdt.apply_decoded(batch)
        except ValueError:
            for k, c in enumerate(batch):  # atomic refusal: find the first bad one
                try:
                    crdt.apply_decoded([c])
                except ValueError:
                    return k, "bad_change"
        touched |= stretch_touches
        stretch_touches = False
        return len(batch), None

    i = 0
    while i < len(envs):
        env = envs[i]
        c, plain, reason = _decode(env, od.row, open_body)
        if c is None:
            kept, bad = flush()
            if bad:
                return stretch_from + kept, bad, touched
            return i, reason, touched
        touches = any(op[1] == ACCESS_KEY for op in c.ops)
        if env.cap is None and (is_owner or not touches):
            if not stretch:
                stretch_from = i
                may_write = is_owner or od.access().can_write(run.actor, doc_id)
            if may_write:
                stretch.append(c)
                plains.append(plain)
                stretch_touches |= touches
                i += 1
                continue
            kept, bad = flush()
            if bad:
                return stretch_from + kept, bad, touched
            return i, "not_writer", touched
        kept, bad = flush()
        if bad:
            return stretch_from + kept, bad, touched
        acc = od.access()
        problem, grant = gate.change_problem(
            doc_id, acc, env.actor, env.cap, touches, touches and names_admin(c, acc.amap))
        if problem:
            return i, problem, touched
        try:
            crdt.apply_decoded([c])
        except ValueError:
            return i, "bad_change", touched
        if grant is not None:
            od.grants[env.actor] = grant  # the gate's own dict: it sees it too
            gate.grant_seen(doc_id, grant)
        touched |= touches
        i += 1
    kept, bad = flush()
    if bad:
        return stretch_from + kept, bad, touched
    return len(envs), None, touched


def _decode(env: Envelope, row: Any,
            open_body: Callable[[Any, bytes], bytes]
            ) -> tuple[Change | None, bytes, str | None]:
    try:
        plain = open_body(row, env.body)
    except SealError:
        return None, b"", "bad_ciphertext"
    try:
        c = decode_change(plain)
    except ValueError:
        return None, plain, "bad_change"
    if not isinstance(c, Change) or c.actors[0] != env.actor or c.seq != env.seq:
        return None, plain, "actor_mismatch"  # re-attributed or repackaged
    return c, plain, None


def names_admin(c: Change, amap: Any) -> bool:
    """Does the change grant, or take away, an admin role?"""
    for op in c.ops:
        if op[1] != ACCESS_KEY:
            continue
        if (op[0] == SET and str(op[2]).startswith("role:")
                and (op[3] == "admin" or amap.get(op[2]) == "admin")):
            return True
        if op[0] == DELKEY and str(op[2]).startswith("role:") and amap.get(op[2]) == "admin":
            return True
    return False
