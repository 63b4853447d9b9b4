"""`Replica`: the documents of one node — loading, local commits, remote changes in,
history out.

Write path of a local edit (``doc.text("body").insert(0, "hi")``)::

    CRDT op -> Doc.commit() -> access check -> (seal) -> chain hash
            -> SQLite COMMIT (fsync) -> return to caller -> listeners (network)

Read path of remote input (``replica.ingest``, called by the network layer)::

    decode envelope -> chain + signature (auth.py) -> decrypt -> author/seq match
            -> gate.change_problem (roles, holder-bound grants) -> Doc.apply (validates)
            -> SQLite COMMIT -> accepted envelopes (for forwarding)

Out: ``replica.outgoing(doc, since)`` — what a peer at version ``since`` lacks,
each author's run ending in a signed envelope (one signature per run).
``replica.listeners``: ``fn(doc_id, envelope)`` after each local commit is
durably stored. Rejections are counted per reason in ``replica.rejected``;
nothing rejected is ever stored. The node's one ``RLock`` (``lock``) guards all
of it: the network layer calls from its own thread. See docs/auth.md.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Any

import cbor2

from ownkernel.crdt import Doc
from ownkernel.crdt import codec as crdt_codec
from ownkernel.crdt.history import stamp as stamp_time
from ownkernel.node.access import ACCESS_KEY, ACCESS_ROOT, AccessView
from ownkernel.node.admit import admit_run
from ownkernel.node.compaction import verify_compacted
from ownkernel.node.direct import direct_run, settle, stored_head
from ownkernel.node.docstate import SNAPSHOT_AT_CLOSE, IngestedDocs, OpenDoc
from ownkernel.node.gate import Credentials, Gate
from ownkernel.node.newdocs import ingest_new
from ownkernel.store import (
    ChangeRow,
    CorruptRowError,
    DatabaseError,
    DocRow,
    Envelope,
    EnvelopeError,
    Head,
    Identity,
    SealError,
    Store,
    chain_hash,
    check_chains,
    decode_envelope,
    encode_envelope,
    open_sealed,
    seal,
)
from ownkernel.store.auth import ZERO_HASH, Run, head_message

__all__ = ["OpenDoc", "Replica", "SNAPSHOT_EVERY"]  # OpenDoc: from docstate.py

log = logging.getLogger(__name__)

Listener = Callable[[bytes, bytes], None]
# Rejections that another run in the same batch may cure (e.g. the owner's grant
# arrives in the same batch as the new writer's first change): retried once more.
_RETRYABLE = frozenset({"not_writer", "not_admin", "bad_capability", "revoked"})
SNAPSHOT_EVERY = 1000  # changes since the last snapshot that trigger a new one
class Replica:
    """The documents of one node (see the module docstring)."""

    def __init__(self, store: Store, identity: Identity, gate: Gate, lock: Any) -> None:
        self.store = store
        self.identity = identity
        self.id = identity.node_id
        self.gate = gate
        self.lock = lock
        self.docs: dict[bytes, OpenDoc] = {}
        self.listeners: list[Listener] = []
        self.sign_live = True  # sign each announced commit (network may coalesce instead)
        self.stats: Tally[str] = Tally()
        self.rejected: Tally[str] = Tally()
        self.closed = False
        self._versions: dict[bytes, dict[bytes, int]] = {}  # of docs not loaded
        # loaded by ingest only (OpenDoc.handed False), oldest first (docstate.py)
        self._ingested = IngestedDocs()
        self._unchecked: set[bytes] = set()  # docs with signatures to verify (direct.py)

    def version(self, doc_id: bytes) -> dict[bytes, int]:
        """``{author: newest seq}`` of a doc, without loading it when it is not loaded
        (heads only ever move through a loaded doc, so the stored ones are current)."""
        od = self.docs.get(doc_id)
        if od is not None:
            return {a: h.seq for a, h in od.heads.items()}
        v = self._versions.get(doc_id)
        if v is None:
            v = {a: h.seq for a, h in self.store.heads(doc_id).items()}
            if len(self._versions) > 100_000:
                self._versions.clear()
            self._versions[doc_id] = v
        return dict(v)

    def prefetch_versions(self) -> None:
        """Read the version of every doc not loaded, at once (see ``version``)."""
        if len(self._versions) > 100_000:
            return
        for doc, v in self.store.versions().items():
            if doc not in self.docs:
                self._versions.setdefault(doc, v)

    def check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"node {self.id.hex()[:8]} is closed")

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] += n

    def close(self) -> None:
        """Commit what is pending, snapshot changed docs, sign heads; then refuse work."""
        with self.lock:
            if self.closed:
                return
            try:
                for od in list(self.docs.values()):
                    if od.crdt is not None and od.crdt.pending_ops:
                        self.commit(od)
                    if od.since_snapshot >= SNAPSHOT_AT_CLOSE:
                        self.snapshot(od)
                self.settle()
                self.sign_heads()
            finally:
                self.closed = True

    def row(self, doc_id: bytes) -> DocRow:
        od = self.docs.get(doc_id)
        if od is not None:
            return od.row
        row = self.store.document(doc_id)
        if row is None:
            raise KeyError(f"no document {doc_id.hex()} on this node")
        return row

    def open(self, doc_id: bytes) -> OpenDoc:
        """Load a document: newest snapshot + the changes stored after it."""
        if self.store.lost:
            self.reload_lost()
        od = self.docs.get(doc_id)
        if od is not None and od.handed:  # (a handed-out doc is never dropped)
            return od
        # Under the lock, even for callers that forgot it: two threads loading
        # the same doc at once would leave two in-memory copies, one of them
        # stale (its next commit would reuse a stored seq). A doc loaded by
        # ingest alone is marked handed here, under the lock that drops such docs.
        with self.lock:
            od = self.docs.get(doc_id)
            if od is None:
                od = self._load(doc_id)
            if not od.handed:
                od.handed = True
                self._ingested.forget(doc_id)
            return od

    def _drop_ingested(self) -> None:
        """Drop the oldest docs loaded by ingest alone beyond ``KEEP_INGESTED``."""
        for doc_id, od in self._ingested.excess(self.docs):
            self.settle(od)  # (its waiting signatures would be lost with it)
            del self.docs[doc_id]
            # its version, as version() would read it back from the store
            self._versions[doc_id] = {a: h.seq for a, h in od.heads.items()}
            self.stats["dropped_ingested"] += 1

    def _load(self, doc_id: bytes, row: DocRow | None = None) -> OpenDoc:
        self.check_open()
        known = self._versions.pop(doc_id, None)
        row = row or self.row(doc_id)
        # a doc known to hold nothing (joined, never synced) has no heads to read
        heads = {} if known == {} else self.store.heads(doc_id)
        crdt: Doc | None = None
        damaged: list[CorruptRowError] = []
        if not row.encrypted or row.key is not None:
            # no heads, no history: nothing stored to read (a doc joined offline,
            # then caught up with thousands of others, costs 3 queries less)
            crdt = self._load_crdt(row, heads, damaged) if heads else Doc(actor=self.id)
        grants = self.gate.doc_grants(doc_id, stored=bool(heads))
        od = self.docs[doc_id] = OpenDoc(row, crdt, heads, grants)
        od.users = self.gate.users
        od.compacted = self.store.compacted(doc_id) if heads else {}
        for e in damaged:  # loaded what does not depend on it; counted and named
            log.error("%s", e)
            self.stats["damaged_rows"] += 1
            if e.actor is not None:
                od.damaged[e.actor] = min(od.damaged.get(e.actor, e.seq or 0), e.seq or 0)
        return od

    def _load_crdt(self, row: DocRow, heads: dict[bytes, Head],
                   damaged: list[CorruptRowError]) -> Doc:
        """Newest snapshot + the changes after it. A damaged row or snapshot affects only
        what depends on it: a bad snapshot falls back to the full history (unless it was
        compacted away), a bad change stops its author's chain just before it."""
        doc_id = row.id
        snap = self.store.snapshot(doc_id, on_damaged=damaged.append)
        version: dict[bytes, int] = {}
        crdt: Doc | None = None
        if snap is not None:
            try:
                crdt = Doc.load(self.open_body(row, snap[1]), actor=self.id)
                version = snap[0]
            except (ValueError, SealError) as e:
                damaged.append(CorruptRowError(self.store.path, doc_id, None, None,
                                               "snapshot", f"does not decode: {e}"))
        if crdt is None:
            if self.store.compacted(doc_id):
                raise DatabaseError(
                    f"document {doc_id.hex()[:8]} in {self.store.path} has compacted "
                    f"history but no readable snapshot; run `ownkernel doctor` and restore "
                    f"the database from a backup")
            crdt = Doc(actor=self.id)
        blobs: list[tuple[bytes, int, bytes]] = []
        for actor in heads:
            for ch in self.store.changes(doc_id, actor, version.get(actor, 0),
                                         on_damaged=damaged.append):
                try:
                    blobs.append((actor, ch.seq, self.open_body(row, ch.blob)))
                except SealError as e:
                    damaged.append(CorruptRowError(self.store.path, doc_id, actor, ch.seq,
                                                   "change", f"does not decrypt: {e}"))
                    break
        try:
            crdt.apply([b for _a, _s, b in blobs])
        except ValueError:  # one by one: a bad change stops its author there
            stopped: set[bytes] = set()
            for actor, seq, b in blobs:
                if actor in stopped:
                    continue
                try:
                    crdt.apply([b])
                except ValueError as e:
                    stopped.add(actor)
                    damaged.append(CorruptRowError(self.store.path, doc_id, actor, seq,
                                                   "change", f"does not decode: {e}"))
        return crdt

    def reload_lost(self) -> None:
        """Reload the docs whose held changes the store could not write (disk full,
        store/deferred.py): memory must equal disk; anti-entropy fetches them again."""
        with self.lock:
            lost = set(self.store.lost)  # (taken at once: reload reads, and may add more)
            self.store.lost.clear()
            for doc_id in lost:
                self._versions.pop(doc_id, None)
                od = self.docs.get(doc_id)
                if od is None:
                    continue
                if od.handed:
                    self.reload(od)
                else:  # loaded by ingest alone: loaded again when needed
                    del self.docs[doc_id]
                    self._ingested.forget(doc_id)
                self.stats["reloaded_lost"] += 1

    def reload(self, od: OpenDoc) -> None:
        """Drop the in-memory doc and load it again from the store (after a failure)."""
        txn = od.txn
        self.docs.pop(od.row.id, None)
        new = self.open(od.row.id)
        new.txn = txn
        new.waiting = od.waiting  # still unverified, still budgeted: keep holding them
        new.unchecked = od.unchecked  # their changes are stored: verify them later still

    @staticmethod
    def open_body(row: DocRow, body: bytes) -> bytes:
        if row.encrypted:
            if row.key is None:
                raise SealError("no key")
            return open_sealed(row.key, body)
        return body

    def seal_body(self, row: DocRow, blob: bytes) -> bytes:
        return seal(row.key, blob) if row.encrypted and row.key is not None else blob

    def refresh_row(self, od: OpenDoc) -> None:
        row = self.store.document(od.row.id)
        if row is not None:
            od.row = row

    def commit(self, od: OpenDoc) -> bytes | None:
        """Commit pending local ops as one change: check, store (fsync), then announce."""
        with self.lock:
            self.check_open()
            crdt = od.require_crdt()
            stamp_time(crdt, time.time())  # the author's wall clock, for history()
            blob = crdt.commit()
            if blob is None:
                return None
            doc_id = od.row.id
            if self.id in od.damaged:
                self.reload(od)
                raise DatabaseError(
                    f"this node's own history of document {doc_id.hex()[:8]} is damaged on "
                    f"disk (from seq {od.damaged[self.id]}) in {self.store.path}; run "
                    f"`ownkernel doctor --quarantine` with the node stopped, then edit again")
            problem = self._local_problem(od, blob)
            if problem is not None:
                self.reload(od)  # forget the refused ops: memory must equal disk
                raise PermissionError(problem)
            # decoded once: header here, roots for the access check below (a
            # keystroke decoded twice was ~5 % of the typist's Python time)
            change = crdt_codec.decode(blob)
            actor, seq = change.actors[0], change.seq
            head = od.heads.get(self.id) or Head(0, ZERO_HASH)
            if actor != self.id or seq != head.seq + 1:
                self.reload(od)
                raise RuntimeError(
                    f"internal error: change seq {seq} does not follow stored head "
                    f"{head.seq} in doc {doc_id.hex()[:8]}; the document was reloaded")
            cap = None
            mine = Credentials.from_bytes(od.row.token).grant
            if mine is not None and not self._cap_presented(od):
                cap = mine  # first write after joining: show our grant, once, in the chain
            body = self.seal_body(od.row, blob)
            h = chain_hash(head.hash, doc_id, self.id, seq, body, cap)
            sig = None
            if self.listeners and self.sign_live:
                sig = self.identity.sign(head_message(h))
                self.stats["signatures"] += 1
            new_head = Head(seq, h, sig, seq) if sig else Head(
                seq, h, head.sig, head.sig_seq)
            try:
                self.store.append(doc_id, [ChangeRow(self.id, seq, body, cap)],
                                  {self.id: new_head})
            except BaseException:
                self.reload(od)
                raise
            od.heads[self.id] = new_head
            if cap is not None:
                self.stats["caps_presented"] += 1
                od.cap_presented = True  # type: ignore[attr-defined]
            self.stats["commits"] += 1
            od.since_snapshot += 1
            if any(op[1] == ACCESS_KEY for op in change.ops):
                self.save_access(od)
            env = encode_envelope(Envelope(doc_id, self.id, seq, body, sig, cap))
            if od.since_snapshot >= SNAPSHOT_EVERY and od.txn == 0:
                self.snapshot(od)
        for listener in list(self.listeners):
            try:
                listener(doc_id, env)
            except Exception:  # the change is stored; a broken listener must not undo that
                self.stats["listener_errors"] += 1
                log.exception("change listener %r failed", listener)
        return env

    def _cap_presented(self, od: OpenDoc) -> bool:
        if getattr(od, "cap_presented", False):
            return True
        presented = any(a == self.id for a, _ in self.store.caps(od.row.id))
        od.cap_presented = presented  # type: ignore[attr-defined]
        return presented

    @staticmethod
    def _roots_of(blob: bytes) -> set[str]:
        c = crdt_codec.decode(blob)
        return {op[1] for op in c.ops}

    def _local_problem(self, od: OpenDoc, blob: bytes) -> str | None:
        acc = AccessView(od.row.owner, od.access_before, od.grants, od.users)
        doc = od.row.id
        if acc.can_admin(self.id, doc):
            return None
        if not acc.can_write(self.id, doc):
            return (f"this node may only read document {doc.hex()[:8]} "
                    f"(role: {acc.role(self.id, doc)}); the edit was discarded")
        if ACCESS_KEY in self._roots_of(blob):
            return "only the owner and admins may change the access list; edit discarded"
        return None

    def snapshot(self, od: OpenDoc) -> None:
        if od.crdt is None or od.txn or od.crdt.pending_ops:
            return
        data = self.seal_body(od.row, od.crdt.save())
        self.store.put_snapshot(od.row.id, dict(od.crdt.version), data,
                                self.store.change_count(od.row.id))
        od.since_snapshot = 0
        self.stats["snapshots"] += 1

    def save_access(self, od: OpenDoc, stored: bytes | None = None) -> None:
        """Write ``od``'s access list to its documents row; ``stored``: it was just
        written in the same transaction as the changes (``Store.append(access=)``),
        as these CBOR bytes: only the in-memory row and the gate follow."""
        if od.crdt is not None:
            od.access_before = dict(od.crdt.map(ACCESS_ROOT).items())
        if stored is None:
            access = od.access().snapshot()
            self.store.update_document(od.row.id, access=access)
            stored = cbor2.dumps(access)
        # the row as the store would now read it back, without reading it (an
        # access change arrives with nearly every newly shared doc)
        od.row = od.row._replace(access=cbor2.loads(stored))
        self.gate.refresh(od.row.id, od.row)

    def ingest(self, doc_id: bytes, blobs: Iterable[bytes],
                source: Any = None, encode: bool = True, direct: bool = False) -> list[Any]:
        """Verify, check and store remote envelopes of one doc; returns the accepted ones.

        ``source`` (peer id or None) is informational. Accepted envelopes are
        returned re-encoded as stored, ready to forward to other peers;
        ``encode=False``: as ``Envelope`` tuples (nobody to forward them to).
        ``direct``: ``source`` is the node id the transport authenticated the
        sender as, and nothing accepted is passed on at once: a live change from
        its own author may then wait for its signature check (direct.py).
        """
        with self.lock:
            self.check_open()
            if self.store.lost:
                self.reload_lost()
            blobs = list(blobs)
            od = self.docs.get(doc_id)
            if od is None:
                # a newly shared doc nobody loaded: checked and stored, not built
                done = ingest_new(self, doc_id, blobs, encode)
                if done is not None:
                    return done
                row = self.store.document_for_write(doc_id)
                if row is None:
                    self.reject("unknown_doc", len(blobs))
                    return []
                od = self._load(doc_id, row)
                od.handed = False
            if not od.handed:
                self._ingested.touch(doc_id)
                try:
                    return self._ingest(od, blobs, source, encode, direct)
                finally:
                    self._drop_ingested()
            return self._ingest(od, blobs, source, encode, direct)

    def _ingest(self, od: OpenDoc, blobs: list[bytes], source: Any,
                encode: bool, direct: bool = False) -> list[Any]:
        doc_id = od.row.id
        envs: list[Envelope] = []
        for b in blobs:
            try:
                env = decode_envelope(b)
            except EnvelopeError:
                self.reject("bad_envelope")
                continue
            if env.doc != doc_id:
                self.reject("wrong_doc")
                continue
            envs.append(env)
        if not envs:
            return []
        if direct and len(envs) == 1:  # a live change from its own author
            run = direct_run(od, envs[0], source)
            if run is not None:
                self.stats["direct"] += 1
                return self._admit_runs(od, [run], encode, direct=True)
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
            rows = self.bodies(od, actor, seq - 1, seq, verify=False)
            return (rows[0].blob, rows[0].auth) if rows else None

        cc = check_chains(doc_id, pool, od.heads, stored)
        for reason, _env in cc.rejected:
            self.reject(reason)
        self.stats["duplicates"] += cc.duplicates
        for env in cc.waiting:
            src, size = sources.get((env.actor, env.seq), (source, len(env.body) + 200))
            # Bounded memory: bytes held are budgeted per peer, per doc and in all.
            # What does not fit is dropped (anti-entropy asks for it again later).
            if not self.gate.hold(src, doc_id, size):
                self.reject("held_budget")
                continue
            od.waiting.setdefault(env.actor, {})[env.seq] = (env, src, size)
        return self._admit_runs(od, cc.runs, encode)

    def _admit_runs(self, od: OpenDoc, runs: list[Run], encode: bool = True,
                    direct: bool = False) -> list[Any]:
        doc_id = od.row.id
        accepted: list[Any] = []
        last_reason: dict[int, str] = {}
        access_changed = False
        stored_access: bytes | None = None  # written with the last append, as CBOR
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
                        heads[run.actor] = stored_head(od, run) if direct else run.head
                    else:  # partial: the old signature still covers what we can forward
                        old = od.heads.get(run.actor)
                        heads[run.actor] = Head(ok[-1].seq, run.hashes[n_ok - 1],
                                                old.sig if old else None,
                                                old.sig_seq if old else 0)
                    envs += ok[:-1] + [ok[-1]._replace(
                        sig=run.envelopes[-1].sig if n_ok == len(run.envelopes) else None)]
                if reason:
                    self.reject(reason, len(run.envelopes) - n_ok)
            if rows:
                try:
                    # other authors' changes: see Store.batch(durable=False). The access
                    # list they leave goes into the same savepoint: it is derived from
                    # them, so stored together it can never be ahead of or behind them.
                    # (a live change from its author is held a moment and written
                    # with the next ones: store/deferred.py)
                    stored_access = self.store.append(
                        doc_id, rows, heads, remote=True,
                        access=od.access().snapshot() if access_changed else None,
                        defer=direct)
                except BaseException:
                    self.reload(od)  # the Doc already holds them: make memory equal disk
                    raise
                od.heads.update(heads)
                if direct:
                    for a, h in heads.items():
                        if h.sig_seq != h.seq:  # its signature waits (direct.py)
                            od.unchecked[a] = (h.seq, h.hash, runs[0].envelopes[-1].sig)
                            self._unchecked.add(doc_id)
                od.since_snapshot += len(rows)
                self.stats["accepted"] += len(rows)
                accepted += [encode_envelope(e) for e in envs] if encode else envs
            if not rows or not deferred:
                for run in deferred:
                    self.reject(last_reason[id(run)], len(run.envelopes))
                break
            runs = deferred
        if access_changed:
            # every run that touched the list was appended (it kept changes), so the
            # last append wrote the list as it is now
            self.save_access(od, stored_access)
        if od.since_snapshot >= SNAPSHOT_EVERY and od.txn == 0:
            self.snapshot(od)
        return accepted

    def _admit_run(self, od: OpenDoc, run: Run) -> tuple[int, str | None, bool]:
        """Check and apply a verified run; returns (accepted prefix length, reason, access?)."""
        cut = self.gate.users.cut(run.actor, od.row.id)
        if cut is not None and run.envelopes[-1].seq > cut:
            # A revoked device: only its changes up to the revocation's cut stay valid
            # (users.py) — the same verdict on every node that knows the revocation.
            keep = sum(1 for e in run.envelopes if e.seq <= cut)
            if keep == 0:
                return 0, "revoked_device", False
            n, reason, touched = self._admit_run(
                od, Run(run.actor, run.envelopes[:keep], run.hashes[:keep]))
            return n, reason or "revoked_device", touched
        if od.crdt is None:
            # No key: authorship is verified, content and access cannot be; we only
            # store and forward ciphertext (relay / bootstrap role).
            return len(run.envelopes), None, False
        return admit_run(od, run, self.gate, self.open_body)

    @property
    def unsettled(self) -> bool:
        """Are signatures waiting to be verified (direct.py)?"""
        return bool(self._unchecked)

    def settle(self, od: OpenDoc | None = None) -> None:
        """Verify the signatures live changes left waiting (direct.py), of ``od`` or of
        every doc; inside the caller's batch, if any."""
        if od is not None:
            if od.unchecked:
                self.stats["settled"] += settle(od, self.store, self.rejected)
            return
        with self.lock:
            docs, self._unchecked = self._unchecked, set()
            for doc_id in docs:
                o = self.docs.get(doc_id)
                if o is not None and o.unchecked:
                    self.stats["settled"] += settle(o, self.store, self.rejected)

    def sign_head(self, od: OpenDoc) -> Head:
        """Sign this node's newest change in ``od`` (if not yet signed) and keep the sig."""
        head = od.heads[self.id]
        if head.sig is not None and head.sig_seq == head.seq:
            return head
        sig = self.identity.sign(head_message(head.hash))
        self.store.set_signature(od.row.id, self.id, head.seq, sig)
        self.stats["signatures"] += 1
        new = od.heads[self.id] = Head(head.seq, head.hash, sig, head.seq)
        return new

    def sign_heads(self) -> None:
        """Sign every loaded doc's unsigned own head (at close: at rest, all is signed)."""
        for od in list(self.docs.values()):
            head = od.heads.get(self.id)
            if head is not None and head.sig_seq != head.seq:
                self.sign_head(od)

    def outgoing(self, doc_id: bytes,
                  since: dict[bytes, int] | None = None) -> list[bytes]:
        """Envelopes a peer at version ``since`` lacks; each author's run ends signed."""
        with self.lock:
            self.check_open()
            od = self.open(doc_id)
            self.settle(od)  # serve only verified signatures
            since = since or {}
            out: list[bytes] = []
            for actor, head in list(od.heads.items()):
                after = since.get(actor, 0)
                if actor == self.id:
                    upto = head.seq
                    if upto > after:
                        head = self.sign_head(od)
                else:
                    upto = head.sig_seq  # never forward past the last signature we hold
                if upto <= after:
                    continue
                for r in self.bodies(od, actor, after, upto):
                    sig = head.sig if r.seq == upto else None
                    out.append(encode_envelope(Envelope(doc_id, actor, r.seq, r.blob, sig,
                                                        r.auth)))
            return out

    def bodies(self, od: OpenDoc, actor: bytes, after: int, upto: int,
                verify: bool = True) -> list[ChangeRow]:
        """Stored changes ``after < seq <= upto`` of one author, regenerating compacted ones
        from the CRDT (verified against the chain hash kept at the cut)."""
        rows = self.store.changes(od.row.id, actor, after, upto)
        cut = od.compacted.get(actor)
        if cut is None or after >= cut[0]:
            return rows
        crdt = od.require_crdt()
        if verify and actor not in od.verified:
            verify_compacted(self, od, actor)
        kept = {r.seq: r for r in rows}
        regen = [kept.get(s) or ChangeRow(actor, s, crdt.change(actor, s))
                 for s in range(after + 1, min(cut[0], upto) + 1)]
        return regen + [r for r in rows if r.seq > cut[0]]
