"""The node's side of replication: taking remote changes in, handing changes out.

Kept apart from node.py to keep files small; `Node` inherits `IngestMixin`.
The network layer (ownkernel.net) calls:

- ``node._ingest(doc_id, envelopes, source) -> accepted envelopes`` for what a
  peer sent (verify, check access, apply, store; rejects counted per reason in
  ``node.stats()["rejected"]``; nothing rejected is ever stored);
- ``node._outgoing(doc_id, since) -> envelopes`` for what a peer at version
  ``since`` lacks, each author's run ending in a signed envelope (one
  signature per run: this is how catch-up and coalesced pushes share one);
- ``node._change_listeners.append(fn)``: ``fn(doc_id, envelope)`` after each
  local commit is durably stored (signed when ``node._sign_live``, the
  default, so a push of just that envelope verifies on arrival).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ownkernel.crdt import codec as crdt_codec
from ownkernel.crdt.codec import DELKEY, SET, Change
from ownkernel.node.access import ACCESS_KEY
from ownkernel.store import (
    ChangeRow,
    Envelope,
    EnvelopeError,
    Head,
    SealError,
    check_chains,
    decode_envelope,
    encode_envelope,
)
from ownkernel.store.auth import ZERO_HASH, Run, chain_hash, head_message

if TYPE_CHECKING:
    from ownkernel.node.node import Node, _OpenDoc

__all__ = ["IngestMixin"]

# Rejections that another run in the same batch may cure (e.g. the owner's grant
# arrives in the same batch as the new writer's first change): retried once more.
_RETRYABLE = frozenset({"not_writer", "not_admin", "bad_capability", "revoked"})
SNAPSHOT_EVERY = 1000  # changes since the last snapshot that trigger a new one


class IngestMixin:
    def _ingest(self: Node, doc_id: bytes, blobs: Iterable[bytes],
                source: Any = None) -> list[bytes]:
        """Verify, check and store remote envelopes of one doc; returns the accepted ones.

        ``source`` (peer id or None) is informational. Accepted envelopes are
        returned re-encoded as stored, ready to forward to other peers.
        """
        with self._lock:
            self._check_open()
            blobs = list(blobs)
            if self.store.document(doc_id) is None:
                self._reject("unknown_doc", len(blobs))
                return []
            od = self._open_doc(doc_id)
            envs: list[Envelope] = []
            for b in blobs:
                try:
                    env = decode_envelope(b)
                except EnvelopeError:
                    self._reject("bad_envelope")
                    continue
                if env.doc != doc_id:
                    self._reject("wrong_doc")
                    continue
                envs.append(env)
            if not envs:
                return []
            # Only the authors this batch touches are re-examined, together with what
            # is held for them: a full pool costs nothing for unrelated frames.
            pool: list[Envelope] = list(envs)
            sources: dict[tuple[bytes, int], tuple[Any, int]] = {}
            for actor in {e.actor for e in envs}:
                for seq, (env, src, size) in od.waiting.pop(actor, {}).items():
                    self.gate.release(src, doc_id, size)
                    pool.append(env)
                    sources[(actor, seq)] = (src, size)

            def stored(actor: bytes, seq: int) -> tuple[bytes, bytes | None] | None:
                rows = self._bodies(od, actor, seq - 1, seq, verify=False)
                return (rows[0].blob, rows[0].auth) if rows else None

            cc = check_chains(doc_id, pool, od.heads, stored)
            for reason, _env in cc.rejected:
                self._reject(reason)
            self._stats["duplicates"] += cc.duplicates
            for env in cc.waiting:
                src, size = sources.get((env.actor, env.seq), (source, len(env.body) + 200))
                # Bounded memory: bytes held are budgeted per peer, per doc and in all.
                # What does not fit is dropped (anti-entropy asks for it again later).
                if not self.gate.hold(src, doc_id, size):
                    self._reject("held_budget")
                    continue
                od.waiting.setdefault(env.actor, {})[env.seq] = (env, src, size)
            return self._admit_runs(od, cc.runs)

    def _admit_runs(self: Node, od: _OpenDoc, runs: list[Run]) -> list[bytes]:
        doc_id = od.row.id
        accepted: list[bytes] = []
        last_reason: dict[int, str] = {}
        access_changed = False
        while runs:
            deferred: list[Run] = []
            rows: list[ChangeRow] = []
            heads: dict[bytes, Head] = {}
            envs: list[Envelope] = []
            for run in runs:
                n_ok, reason, touched = self._admit_run(od, run)
                access_changed |= touched
                if n_ok == 0 and reason in _RETRYABLE:
                    deferred.append(run)
                    last_reason[id(run)] = reason
                    continue
                if n_ok:
                    ok = run.envelopes[:n_ok]
                    rows += [ChangeRow(e.actor, e.seq, e.body, e.cap) for e in ok]
                    if n_ok == len(run.envelopes):
                        heads[run.actor] = run.head
                    else:  # partial: the old signature still covers what we can forward
                        old = od.heads.get(run.actor)
                        heads[run.actor] = Head(ok[-1].seq, run.hashes[n_ok - 1],
                                                old.sig if old else None,
                                                old.sig_seq if old else 0)
                    envs += ok[:-1] + [ok[-1]._replace(
                        sig=run.envelopes[-1].sig if n_ok == len(run.envelopes) else None)]
                if reason:
                    self._reject(reason, len(run.envelopes) - n_ok)
            if rows:
                try:
                    self.store.append(doc_id, rows, heads)
                except BaseException:
                    self._reload(od)  # the Doc already holds them: make memory equal disk
                    raise
                od.heads.update(heads)
                od.since_snapshot += len(rows)
                self._stats["accepted"] += len(rows)
                accepted += [encode_envelope(e) for e in envs]
            if not rows or not deferred:
                for run in deferred:
                    self._reject(last_reason[id(run)], len(run.envelopes))
                break
            runs = deferred
        if access_changed:
            self._save_access(od)
        if od.since_snapshot >= SNAPSHOT_EVERY and od.txn == 0:
            self._snapshot(od)
        return accepted

    def _admit_run(self: Node, od: _OpenDoc, run: Run) -> tuple[int, str | None, bool]:
        """Check and apply a verified run; returns (accepted prefix length, reason, access?)."""
        if od.crdt is None:
            # No key: authorship is verified, content and access cannot be; we only
            # store and forward ciphertext (relay / bootstrap role).
            return len(run.envelopes), None, False
        # Catch-up of a long history: stretches of plain edits are decoded once
        # and integrated in one apply; changes that touch the access list or
        # carry a capability (their checks depend on what precedes them), and
        # any stretch that is refused, go change by change.
        envs = run.envelopes
        i, touched = 0, False
        while i < len(envs):
            j = self._admit_stretch(od, run, i) if len(envs) - i > 1 else i
            if j > i:
                i = j
                continue
            _n_ok, reason, t = self._admit_run_each(od, run, i, i + 1)
            touched |= t
            if reason is not None:
                return i, reason, touched
            i += 1
        return len(envs), None, touched

    def _admit_stretch(self: Node, od: _OpenDoc, run: Run, start: int) -> int:
        """Apply envelopes ``start..j`` of ``run`` at once when they are plain
        edits of a writer; returns ``j`` (``start`` when none could go)."""
        doc_id = od.row.id
        if not od.access().can_write(run.actor, doc_id):
            return start
        decoded = []
        for env in run.envelopes[start:]:
            if env.cap is not None:
                break
            try:
                c = crdt_codec.decode(self._open_body(od.row, env.body))
            except (SealError, ValueError):
                break
            if not isinstance(c, Change) or c.actors[0] != env.actor or c.seq != env.seq:
                break
            if any(op[1] == ACCESS_KEY for op in c.ops):
                break
            decoded.append(c)
        if len(decoded) < 2:
            return start
        try:
            od.crdt.apply_decoded(decoded)
        except ValueError:
            return start  # nothing was applied (apply is atomic): go one by one
        return start + len(decoded)

    def _admit_run_each(
        self: Node, od: _OpenDoc, run: Run, start: int, stop: int
    ) -> tuple[int, str | None, bool]:
        """Envelopes ``start..stop`` one by one; returns (accepted count, reason, access?)."""
        doc_id = od.row.id
        touched = False
        for i in range(start, stop):
            env = run.envelopes[i]
            try:
                plain = self._open_body(od.row, env.body)
            except SealError:
                return i, "bad_ciphertext", touched
            try:
                c = crdt_codec.decode(plain)
            except ValueError:
                return i, "bad_change", touched
            if not isinstance(c, Change) or c.actors[0] != env.actor or c.seq != env.seq:
                return i, "actor_mismatch", touched  # re-attributed or repackaged
            roots = {op[1] for op in c.ops}
            touches = ACCESS_KEY in roots
            acc = od.access()
            problem, grant = self.gate.change_problem(
                doc_id, acc, env.actor, env.cap, touches,
                touches and _names_admin(c, acc.amap))
            if problem:
                return i, problem, touched
            try:
                od.crdt.apply([plain])
            except ValueError:
                return i, "bad_change", touched
            if grant is not None:
                od.grants[env.actor] = grant  # the gate's own dict: it sees it too
                self.gate.grant_seen(doc_id, grant)
            touched |= touches
        return stop, None, touched

    def _sign_head(self: Node, od: _OpenDoc) -> Head:
        """Sign this node's newest change in ``od`` (if not yet signed) and keep the sig."""
        head = od.heads[self.id]
        if head.sig is not None and head.sig_seq == head.seq:
            return head
        sig = self._identity.sign(head_message(head.hash))
        self.store.set_signature(od.row.id, self.id, head.seq, sig)
        self._stats["signatures"] += 1
        new = od.heads[self.id] = Head(head.seq, head.hash, sig, head.seq)
        return new

    def _outgoing(self: Node, doc_id: bytes,
                  since: dict[bytes, int] | None = None) -> list[bytes]:
        """Envelopes a peer at version ``since`` lacks; each author's run ends signed."""
        with self._lock:
            self._check_open()
            od = self._open_doc(doc_id)
            since = since or {}
            out: list[bytes] = []
            for actor, head in list(od.heads.items()):
                after = since.get(actor, 0)
                if actor == self.id:
                    upto = head.seq
                    if upto > after:
                        head = self._sign_head(od)
                else:
                    upto = head.sig_seq  # never forward past the last signature we hold
                if upto <= after:
                    continue
                for r in self._bodies(od, actor, after, upto):
                    sig = head.sig if r.seq == upto else None
                    out.append(encode_envelope(Envelope(doc_id, actor, r.seq, r.blob, sig,
                                                        r.auth)))
            return out

    def _bodies(self: Node, od: _OpenDoc, actor: bytes, after: int, upto: int,
                verify: bool = True) -> list[ChangeRow]:
        """Stored changes ``after < seq <= upto`` of one author, regenerating compacted ones
        from the CRDT (verified against the chain hash kept at the cut)."""
        rows = self.store.changes(od.row.id, actor, after, upto)
        cut = od.compacted.get(actor)
        if cut is None or after >= cut[0]:
            return rows
        crdt = od.require_crdt()
        if verify and actor not in od.verified:
            self._verify_compacted(od, actor)
        kept = {r.seq: r for r in rows}
        regen = [kept.get(s) or ChangeRow(actor, s, crdt.change(actor, s))
                 for s in range(after + 1, min(cut[0], upto) + 1)]
        return regen + [r for r in rows if r.seq > cut[0]]

    def _verify_compacted(self: Node, od: _OpenDoc, actor: bytes) -> None:
        seq, want = od.compacted[actor]
        crdt = od.require_crdt()
        caps = {r.seq: r.auth for r in self.store.changes(od.row.id, actor, 0, seq)}
        h = ZERO_HASH
        for s in range(1, seq + 1):
            h = chain_hash(h, od.row.id, actor, s, crdt.change(actor, s), caps.get(s))
        if h != want:
            raise RuntimeError(
                f"compacted history of {actor.hex()[:8]} in doc {od.row.id.hex()[:8]} no longer "
                f"regenerates identically (was the CRDT encoding changed?); not serving it")
        od.verified.add(actor)

    def compact(self: Node, doc: Any = None) -> dict[str, int]:
        """Drop change rows the snapshot regenerates byte for byte (opt-in; saves disk).

        Only for docs this node can read and that are not encrypted (ciphertext
        cannot be regenerated). Every dropped row is first regenerated and compared,
        and the chain hash at the cut is kept, so served history stays verifiable.
        """
        with self._lock:
            self._check_open()
            ids = [self.open(doc).id] if doc is not None else [
                r.id for r in self.store.documents()]
            total = {"docs": 0, "rows": 0}
            for doc_id in ids:
                od = self._open_doc(doc_id)
                if od.crdt is None or od.row.encrypted or od.txn:
                    continue
                self._snapshot(od)
                snap = self.store.snapshot(doc_id)
                if snap is None:
                    continue
                version = snap[0]
                cuts: dict[bytes, tuple[int, bytes]] = {}
                for actor, head in od.heads.items():
                    base, h = od.compacted.get(actor, (0, ZERO_HASH))
                    upto = min(version.get(actor, 0), head.seq)
                    last = base
                    for r in self.store.changes(doc_id, actor, base, upto):
                        if r.seq != last + 1 or od.crdt.change(actor, r.seq) != r.blob:
                            break
                        h = chain_hash(h, doc_id, actor, r.seq, r.blob, r.auth)
                        last = r.seq
                    if last > base:
                        cuts[actor] = (last, h)
                if cuts:
                    total["rows"] += self.store.compact(doc_id, cuts)
                    od.compacted.update(cuts)
                    total["docs"] += 1
            if total["rows"]:
                self.store.reclaim()
            return total

    def _sign_heads(self: Node) -> None:
        """Sign every loaded doc's unsigned own head (at close: at rest, all is signed)."""
        for od in list(self._docs.values()):
            head = od.heads.get(self.id)
            if head is not None and head.sig_seq != head.seq:
                self._sign_head(od)


def _names_admin(c: Change, amap: Any) -> bool:
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

