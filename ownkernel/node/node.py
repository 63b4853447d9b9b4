"""`Node`: identity + durable store + documents (+ peers, once the network attaches).

Write path of a local edit (``doc.text("body").insert(0, "hi")``)::

    CRDT op -> Doc.commit() -> access check -> (seal) -> chain hash
            -> SQLite COMMIT (fsync) -> return to caller -> listeners (network)

Read path of remote input (``node._ingest``, called by the network layer)::

    decode envelope -> chain + signature (auth.py) -> decrypt -> author/seq match
            -> access check -> Doc.apply (validates) -> SQLite COMMIT -> accepted

Everything is guarded by one ``RLock`` (the network layer calls from its own
thread). See docs/auth.md for the authentication scheme.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ownkernel.crdt import Doc
from ownkernel.crdt import codec as crdt_codec
from ownkernel.node.access import (
    ACCESS_KEY,
    ACCESS_ROOT,
    META_ROOT,
    AccessView,
    revoked_key,
    role_key,
    token_key,
)
from ownkernel.node.addressbook import NetConfig
from ownkernel.node.gate import Credentials, Gate
from ownkernel.node.grants import Descriptor, Grant, Invite, make_descriptor, make_invite
from ownkernel.node.handle import DocHandle
from ownkernel.node.ingest import SNAPSHOT_EVERY, IngestMixin
from ownkernel.node.netapi import _UNSET, NetworkMixin
from ownkernel.store import (
    DB_FILE,
    ChangeRow,
    DatabaseError,
    DocRow,
    Envelope,
    Head,
    Identity,
    IdentityError,
    ProfileLock,
    SealError,
    Store,
    chain_hash,
    encode_envelope,
    make_temp_profile,
    new_key,
    open_sealed,
    resolve_profile,
    seal,
)
from ownkernel.store.auth import ZERO_HASH, head_message
from ownkernel.store.identity import KEY_FILE, short_id
from ownkernel.store.profile import ensure_dir

__all__ = ["Node"]

log = logging.getLogger(__name__)

Listener = Callable[[bytes, bytes], None]


class _OpenDoc:
    """In-memory state of one loaded document."""

    def __init__(self, row: DocRow, crdt: Doc | None, heads: dict[bytes, Head],
                 grants: dict[bytes, Grant]) -> None:
        self.row = row
        self.crdt = crdt
        self.heads = heads
        self.grants = grants
        # envelopes that cannot be verified yet (gap, unsigned tail), per author:
        # actor -> seq -> (envelope, the peer it came from, its size in bytes)
        self.waiting: dict[bytes, dict[int, tuple[Envelope, Any, int]]] = {}
        self.since_snapshot = 0
        self.txn = 0
        self.compacted: dict[bytes, tuple[int, bytes]] = {}  # actor -> (seq, chain hash)
        self.verified: set[bytes] = set()  # actors whose compacted history re-verified
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
        return AccessView(self.row.owner, amap, self.grants)


class Node(IngestMixin, NetworkMixin):
    """A node you own. ``Node(profile=None)`` uses a temporary profile, deleted on close.

    ``profile`` is a directory path or a bare profile name (``"default"``) under
    ``$OWNKERNEL_HOME`` or the user data dir. One process per profile: a second
    one gets ``ProfileLockedError`` naming the profile and the holder's pid.

    For the network layer (see ingest.py and docs/auth.md): ``_ingest``,
    ``_outgoing``, ``_change_listeners``, ``_sign_live``, ``_listen_addresses``,
    ``_check_capability``, ``_role``, ``_track_doc``, ``identity`` (transport keys)
    and ``_lock`` (one RLock guards all node state).

    Networking (network.py) runs in the node's own thread: ``listen`` (an
    endpoint or a list; None: do not listen), ``bootstrap`` (addresses or invite
    tokens to dial, plus ``$OWNKERNEL_BOOTSTRAP``), ``relay`` (carry docs for
    peers that cannot reach each other), ``discovery`` (LAN beacons, off unless
    given, e.g. ``{"interface": "127.0.0.1"}``), ``network`` (a ``NetConfig``
    for timers and limits, or False for a purely local node).
    """

    def __init__(self, profile: str | os.PathLike[str] | None = None,
                 name: str | None = None, *, listen: str | list[str] | None = _UNSET,
                 bootstrap: str | list[str] | None = None, relay: bool = False,
                 discovery: dict[str, Any] | None = None,
                 network: NetConfig | bool | None = None) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._temp = profile is None
        self.profile: Path = make_temp_profile() if profile is None else resolve_profile(profile)
        self._docs: dict[bytes, _OpenDoc] = {}
        self._handles: dict[bytes, DocHandle] = {}
        self._change_listeners: list[Listener] = []
        self._sign_live = True  # sign each announced commit (network may coalesce instead)
        self._listen_addresses: list[str] = []  # set by the network layer; put in invites
        self._stats: Tally[str] = Tally()
        self._rejected: Tally[str] = Tally()
        self._plock = ProfileLock(self.profile)
        try:
            ensure_dir(self.profile)
            self._plock.acquire()
            self._identity = self._load_identity()
            self.store = Store(self.profile / DB_FILE)
            try:
                self._check_store_identity(name)
            except BaseException:
                self.store.close()
                raise
            self.gate = Gate(self.id, self.store.documents, self.store.document,
                             self.store.caps)
        except BaseException:
            self._plock.release()
            if self._temp:
                shutil.rmtree(self.profile, ignore_errors=True)
            raise
        try:
            self._start_network(listen, bootstrap, relay, discovery, network)
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------
    def _load_identity(self) -> Identity:
        key_path = self.profile / KEY_FILE
        db_path = self.profile / DB_FILE
        if key_path.exists():
            return Identity.load(key_path)
        if db_path.exists() and db_path.stat().st_size > 0:
            raise IdentityError(
                f"identity key {key_path} is missing but the profile's database {db_path} "
                f"exists: its documents belong to that key. Restore the key file from a "
                f"backup; to start a new identity, move the whole profile directory away.")
        ident = Identity.generate()
        try:
            ident.save(key_path)
        except FileExistsError:  # lost a race with another first start: use theirs
            return Identity.load(key_path)
        except OSError as e:
            raise IdentityError(f"cannot write identity key {key_path}: {e}") from e
        return ident

    def _check_store_identity(self, name: str | None) -> None:
        stored = self.store.get_setting("node_id")
        if stored is None:
            self.store.set_setting("node_id", self.id)
        elif stored != self.id:
            raise IdentityError(
                f"identity key {self.profile / KEY_FILE} (node {short_id(self.id)}) does not "
                f"belong to database {self.store.path} (node {short_id(stored)}); restore the "
                f"matching key file. Nothing was changed.")
        if name is not None:
            if self.store.get_setting("name") != name:  # no fsync'd write when unchanged
                self.store.set_setting("name", name)
            self.name = name
        else:
            self.name = self.store.get_setting("name") or f"node-{self.short_id}"

    # -- identity --------------------------------------------------------------
    @property
    def id(self) -> bytes:
        return self._identity.node_id

    @property
    def short_id(self) -> str:
        return self._identity.short_id

    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def lock(self) -> threading.RLock:
        """The one lock over all node state (documents, store, gate)."""
        return self._lock

    def __repr__(self) -> str:
        state = "closed" if self._closed else str(self.profile)
        return f"<Node {self.short_id} {self.name!r} {state}>"

    def _repr_html_(self) -> str:
        from ownkernel.node.reprs import node_html

        return node_html(self)

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"node {self.short_id} is closed")

    def close(self) -> None:
        """Stop the network, snapshot changed docs, close the database, release the profile."""
        self._stop_network()  # first, and outside the lock: its thread may be waiting on it
        with self._lock:
            if self._closed:
                return
            try:
                for od in list(self._docs.values()):
                    if od.crdt is not None and od.crdt.pending_ops:
                        self._commit(od)
                    if od.since_snapshot:
                        self._snapshot(od)
                self._sign_heads()
            finally:
                self._closed = True
                self.store.close()
                self._plock.release()
                if self._temp:
                    shutil.rmtree(self.profile, ignore_errors=True)

    # -- documents -------------------------------------------------------------
    def _row(self, doc_id: bytes) -> DocRow:
        od = self._docs.get(doc_id)
        if od is not None:
            return od.row
        row = self.store.document(doc_id)
        if row is None:
            raise KeyError(f"no document {doc_id.hex()} on this node")
        return row

    def _handle(self, doc_id: bytes) -> DocHandle:
        h = self._handles.get(doc_id)
        if h is None:
            h = self._handles[doc_id] = DocHandle(self, doc_id)
        return h

    def new_doc(self, title: str = "", encrypted: bool = False) -> DocHandle:
        """A new document owned by this node (``encrypted``: end-to-end, see crypto.py)."""
        with self._lock:
            self._check_open()
            desc = make_descriptor(self._identity, encrypted)
            doc_id = desc.doc
            key = new_key() if encrypted else None
            self.store.add_document(doc_id, title=title, owner=self.id, capability="owner",
                                    encrypted=encrypted, key=key, access={"owner": self.id},
                                    token=Credentials(None, desc.to_bytes()).to_bytes())
            self.gate.refresh(doc_id)
            od = self._open_doc(doc_id)
            crdt = od.require_crdt()
            # The first change states owner and title inside the doc, for joiners.
            od.txn += 1
            try:
                crdt.map(ACCESS_ROOT).set("owner", self.id)
                crdt.map(META_ROOT).set("title", title)
            finally:
                od.txn -= 1
            self._commit(od)
            return self._handle(doc_id)

    def docs(self) -> list[DocHandle]:
        """Handles of every document in this profile (loaded lazily)."""
        with self._lock:
            self._check_open()
            return [self._handle(r.id) for r in self.store.documents()]

    def open(self, doc: bytes | str | DocHandle) -> DocHandle:
        """A document by id (bytes), hex id, unique hex prefix (like git), or unique title."""
        with self._lock:
            self._check_open()
            if isinstance(doc, DocHandle):
                doc = doc.id
            if isinstance(doc, bytes):
                self._row(doc)
                return self._handle(doc)
            prefix = doc.strip().lower()
            if prefix.startswith("own:"):
                raise ValueError("that is an invite token: use node.join(token)")
            rows = self.store.documents()
            matches = [r for r in rows if r.id.hex().startswith(prefix)] if prefix else []
            if not matches:
                matches = [r for r in rows if r.title == doc]
            if not prefix or not matches:
                raise KeyError(f"no document matching {doc!r} on this node")
            if len(matches) > 1:
                ids = ", ".join(f"{r.id.hex()[:12]} ({r.title!r})" for r in matches[:5])
                raise KeyError(f"{doc!r} is ambiguous: {ids}; give more digits or the id")
            return self._handle(matches[0].id)

    def _open_doc(self, doc_id: bytes) -> _OpenDoc:
        """Load a document: newest snapshot + the changes stored after it."""
        od = self._docs.get(doc_id)
        if od is not None:
            return od
        # Under the lock, even for callers that forgot it: two threads loading
        # the same doc at once would leave two in-memory copies, one of them
        # stale (its next commit would reuse a stored seq).
        with self._lock:
            od = self._docs.get(doc_id)
            if od is not None:
                return od
            return self._load_doc(doc_id)

    def _load_doc(self, doc_id: bytes) -> _OpenDoc:
        self._check_open()
        row = self._row(doc_id)
        heads = self.store.heads(doc_id)
        crdt: Doc | None = None
        grants: dict[bytes, Invite] = {}
        if not row.encrypted or row.key is not None:
            snap = self.store.snapshot(doc_id)
            version: dict[bytes, int] = {}
            if snap is not None:
                version, data, _ = snap
                crdt = Doc.load(self._open_body(row, data), actor=self.id)
            elif self.store.compacted(doc_id):
                raise DatabaseError(
                    f"document {doc_id.hex()[:8]} in {self.store.path} has compacted history "
                    f"but no snapshot; restore the database from a backup")
            else:
                crdt = Doc(actor=self.id)
            blobs = []
            for actor in heads:
                for ch in self.store.changes(doc_id, actor, version.get(actor, 0)):
                    blobs.append(self._open_body(row, ch.blob))
            if blobs:
                crdt.apply(blobs)
        grants = self.gate.doc_grants(doc_id)
        od = self._docs[doc_id] = _OpenDoc(row, crdt, heads, grants)
        od.compacted = self.store.compacted(doc_id)
        return od

    def _reload(self, od: _OpenDoc) -> None:
        """Drop the in-memory doc and load it again from the store (after a failure)."""
        txn = od.txn
        self._docs.pop(od.row.id, None)
        new = self._open_doc(od.row.id)
        new.txn = txn
        new.waiting = od.waiting  # still unverified, still budgeted: keep holding them

    @staticmethod
    def _open_body(row: DocRow, body: bytes) -> bytes:
        if row.encrypted:
            if row.key is None:
                raise SealError("no key")
            return open_sealed(row.key, body)
        return body

    def _seal_body(self, row: DocRow, blob: bytes) -> bytes:
        return seal(row.key, blob) if row.encrypted and row.key is not None else blob

    def _doc_title(self, doc_id: bytes) -> str:
        with self._lock:
            od = self._open_doc(doc_id)
            if od.crdt is not None:
                t = od.crdt.map(META_ROOT).get("title")
                if isinstance(t, str):
                    return t
            return od.row.title

    def _set_title(self, doc_id: bytes, title: str) -> None:
        with self._lock:
            h = self._handle(doc_id)
            h.map(META_ROOT)["title"] = title
            self.store.update_document(doc_id, title=title)
            self._refresh_row(self._docs[doc_id])

    def _refresh_row(self, od: _OpenDoc) -> None:
        row = self.store.document(od.row.id)
        if row is not None:
            od.row = row

    # -- committing local changes -------------------------------------------------
    def _commit(self, od: _OpenDoc) -> bytes | None:
        """Commit pending local ops as one change: check, store (fsync), then announce."""
        with self._lock:
            self._check_open()
            crdt = od.require_crdt()
            blob = crdt.commit()
            if blob is None:
                return None
            doc_id = od.row.id
            problem = self._local_problem(od, blob)
            if problem is not None:
                self._reload(od)  # forget the refused ops: memory must equal disk
                raise PermissionError(problem)
            info = crdt_codec.change_info(blob)
            head = od.heads.get(self.id) or Head(0, ZERO_HASH)
            if info.actor != self.id or info.seq != head.seq + 1:
                self._reload(od)
                raise RuntimeError(
                    f"internal error: change seq {info.seq} does not follow stored head "
                    f"{head.seq} in doc {doc_id.hex()[:8]}; the document was reloaded")
            cap = None
            mine = Credentials.from_bytes(od.row.token).grant
            if mine is not None and not self._cap_presented(od):
                cap = mine  # first write after joining: show our grant, once, in the chain
            body = self._seal_body(od.row, blob)
            h = chain_hash(head.hash, doc_id, self.id, info.seq, body, cap)
            sig = None
            if self._change_listeners and self._sign_live:
                sig = self._identity.sign(head_message(h))
                self._stats["signatures"] += 1
            new_head = Head(info.seq, h, sig, info.seq) if sig else Head(
                info.seq, h, head.sig, head.sig_seq)
            try:
                self.store.append(doc_id, [ChangeRow(self.id, info.seq, body, cap)],
                                  {self.id: new_head})
            except BaseException:
                self._reload(od)
                raise
            od.heads[self.id] = new_head
            if cap is not None:
                self._stats["caps_presented"] += 1
                od.cap_presented = True  # type: ignore[attr-defined]
            self._stats["commits"] += 1
            od.since_snapshot += 1
            if ACCESS_KEY in self._roots_of(blob):
                self._save_access(od)
            env = encode_envelope(Envelope(doc_id, self.id, info.seq, body, sig, cap))
            if od.since_snapshot >= SNAPSHOT_EVERY and od.txn == 0:
                self._snapshot(od)
        for listener in list(self._change_listeners):
            try:
                listener(doc_id, env)
            except Exception:  # the change is stored; a broken listener must not undo that
                self._stats["listener_errors"] += 1
                log.exception("change listener %r failed", listener)
        return env

    def _cap_presented(self, od: _OpenDoc) -> bool:
        if getattr(od, "cap_presented", False):
            return True
        presented = any(a == self.id for a, _ in self.store.caps(od.row.id))
        od.cap_presented = presented  # type: ignore[attr-defined]
        return presented

    @staticmethod
    def _roots_of(blob: bytes) -> set[str]:
        c = crdt_codec.decode(blob)
        return {op[1] for op in c.ops}

    def _local_problem(self, od: _OpenDoc, blob: bytes) -> str | None:
        acc = AccessView(od.row.owner, od.access_before, od.grants)
        doc = od.row.id
        if acc.can_admin(self.id, doc):
            return None
        if not acc.can_write(self.id, doc):
            return (f"this node may only read document {doc.hex()[:8]} "
                    f"(role: {acc.role(self.id, doc)}); the edit was discarded")
        if ACCESS_KEY in self._roots_of(blob):
            return "only the owner and admins may change the access list; edit discarded"
        return None

    def _snapshot(self, od: _OpenDoc) -> None:
        if od.crdt is None or od.txn or od.crdt.pending_ops:
            return
        data = self._seal_body(od.row, od.crdt.save())
        self.store.put_snapshot(od.row.id, dict(od.crdt.version), data,
                                self.store.change_count(od.row.id))
        od.since_snapshot = 0
        self._stats["snapshots"] += 1

    def _save_access(self, od: _OpenDoc) -> None:
        if od.crdt is not None:
            od.access_before = dict(od.crdt.map(ACCESS_ROOT).items())
        self.store.update_document(od.row.id, access=od.access().snapshot())
        self._refresh_row(od)
        self.gate.refresh(od.row.id)

    # -- access, invites ----------------------------------------------------------
    def _role(self, doc_id: bytes, actor: bytes) -> str | None:
        with self._lock:
            od = self._open_doc(doc_id)
            return od.access().role(actor, doc_id)

    def _access_snapshot(self, doc_id: bytes) -> dict[str, Any]:
        with self._lock:
            return self._open_doc(doc_id).access().snapshot()

    def _require_admin(self, od: _OpenDoc, what: str) -> None:
        if od.crdt is None or not od.access().can_admin(self.id, od.row.id):
            raise PermissionError(
                f"only the owner or an admin of document {od.row.id.hex()[:8]} may {what}")

    def invite(self, doc: DocHandle | bytes | str, write: bool = True,
               addresses: Iterable[str] | None = None) -> str:
        """A copy-pasteable ``own:`` token granting write (or read) access to ``doc``."""
        with self._lock:
            h = self.open(doc)
            od = self._open_doc(h.id)
            self._require_admin(od, "invite")
            desc = Credentials.from_bytes(od.row.token).descriptor
            if desc is None:
                raise RuntimeError(
                    f"document {h.short_id} has no owner-signed descriptor (made by an older "
                    f"version?): it cannot be shared; copy its content into a new document")
            inv = make_invite(
                self._identity, descriptor=desc,
                capability="write" if write else "read",
                addresses=tuple(self._listen_addresses if addresses is None else addresses),
                title=h.title, key=od.row.key if od.row.encrypted else None)
            h.map(ACCESS_ROOT)[token_key(inv.token_id)] = {"c": inv.capability,
                                                           "n": self.id}
            return inv.to_token()

    def revoke(self, token: str | bytes) -> None:
        """Revoke an invite token (or its 32-byte id): no grant made from it counts any more."""
        with self._lock:
            self._check_open()
            if isinstance(token, bytes):
                tid = token
                docs = [r.id for r in self.store.documents()]
                found = [d for d in docs
                         if self._open_doc(d).crdt is not None
                         and token_key(tid) in self._open_doc(d).crdt.map(ACCESS_ROOT)]
                if not found:
                    raise KeyError(f"no document here issued token {tid.hex()}")
                doc_id = found[0]
            else:
                inv = Invite.parse(token)
                tid, doc_id = inv.token_id, inv.doc
            od = self._open_doc(doc_id)
            self._require_admin(od, "revoke invites")
            self._handle(doc_id).map(ACCESS_ROOT)[revoked_key(tid)] = True

    def grant(self, doc: DocHandle | bytes | str, actor: bytes, role: str | None) -> None:
        """Set ``actor``'s role (admin/writer/reader, None to remove); owner/admins only."""
        with self._lock:
            h = self.open(doc)
            od = self._open_doc(h.id)
            self._require_admin(od, "change roles")
            if role == "admin" and od.row.owner != self.id:
                raise PermissionError("only the owner names admins")
            m = h.map(ACCESS_ROOT)
            if role is None:
                if role_key(actor) in m:
                    del m[role_key(actor)]
            elif role in ("admin", "writer", "reader"):
                m[role_key(actor)] = role
            else:
                raise ValueError("role must be 'admin', 'writer', 'reader' or None")

    def _join_local(self, token: str) -> DocHandle:
        """Record the doc, capability and key of an invite (``join`` also fetches it)."""
        inv = Invite.parse(token)
        with self._lock:
            self._check_open()
            row = self.store.document(inv.doc)
            if row is not None:
                od = self._open_doc(inv.doc)
                if od.crdt is not None and od.access().amap.get(revoked_key(inv.token_id)):
                    raise PermissionError("this invite token has been revoked")
                fields: dict[str, Any] = {}
                if row.encrypted and row.key is None and inv.key is not None:
                    fields["key"] = inv.key
                if Credentials.from_bytes(row.token).grant is None and inv.owner != self.id:
                    fields["token"] = Credentials(inv.redeem(self.id).to_bytes(),
                                                  inv.descriptor).to_bytes()
                    fields["capability"] = inv.capability
                if fields:
                    self.store.update_document(inv.doc, **fields)
                    self._docs.pop(inv.doc, None)
                    self.gate.refresh(inv.doc)
                return self._handle(inv.doc)
            cap = "owner" if inv.owner == self.id else inv.capability
            # Redeem the token for our own key: the grant is useless to anyone else.
            creds = Credentials(inv.redeem(self.id).to_bytes(), inv.descriptor)
            self.store.add_document(
                inv.doc, title=inv.title, owner=inv.owner, capability=cap,
                encrypted=inv.key is not None, key=inv.key, access={"owner": inv.owner},
                inviter=inv.inviter, addresses=inv.addresses, token=creds.to_bytes())
            self.gate.refresh(inv.doc)
            self.store.put_peer(inv.inviter, addresses=inv.addresses)
            return self._handle(inv.doc)

    def carry_doc(self, desc: Descriptor) -> None:
        """Hold a doc for others (relay role): verify authorship, store and forward.
        What it is (owner, encrypted) comes only from the owner-signed descriptor; for
        an encrypted doc this node never sees the content."""
        with self._lock:
            self._check_open()
            if self.store.document(desc.doc) is None:
                self.store.add_document(
                    desc.doc, title="", owner=desc.owner, capability="relay",
                    encrypted=desc.encrypted, key=None, access={"owner": desc.owner},
                    token=Credentials(None, desc.to_bytes()).to_bytes())
                self.gate.refresh(desc.doc)

    # -- stats ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters: commits, accepted, duplicates, signatures, rejected per reason, ..."""
        with self._lock:
            out: dict[str, Any] = {k: self._stats.get(k, 0) for k in (
                "commits", "accepted", "duplicates", "signatures", "snapshots",
                "caps_presented", "listener_errors")}
            out["rejected"] = dict(self._rejected + self.gate.rejected)
            out["rejected_total"] = sum(out["rejected"].values())
            out["waiting"] = sum(len(w) for od in self._docs.values() for w in od.waiting.values())
            out["held_bytes"] = self.gate.held.total
            out["docs"] = len(self.store.documents()) if not self._closed else 0
            out["docs_loaded"] = len(self._docs)
        net = getattr(self, "_net", None)
        if net is not None:  # outside the lock: the network thread may need it to answer
            out["net"] = net.stats()
        return out

    def _reject(self, reason: str, n: int = 1) -> None:
        self._rejected[reason] += n

