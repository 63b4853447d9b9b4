"""`Node`: a node you own, composed of named parts.

    Node ─┬─ identity   Ed25519 key (store/identity.py): node id = actor id = Curve key
          ├─ store      SQLite file of changes, snapshots, documents (store/sqlite.py)
          ├─ gate       the one admission gate: who may read / write / carry (gate.py)
          ├─ replica    documents: load, commit, ingest, outgoing (replica.py)
          └─ network    its own thread: transport, sessions, relay, presence (network.py)

The Node itself is the public API over those parts: documents (``new_doc``,
``doc``, ``open``, ``docs``), sharing (``invite``, ``join``, ``revoke``, ``grant``), the
network (``connect``, ``peers``, ``on``, ``presence``, ``sync``, ``call_soon``)
and upkeep (``stats``, ``compact``, ``close``). One ``RLock`` (``node.lock``)
guards the node's state; the network thread takes it too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ownkernel.node import compaction, contact
from ownkernel.node.access import ACCESS_ROOT, META_ROOT, revoked_key, role_key, token_key
from ownkernel.node.config import NetConfig, Peer, env_bootstrap
from ownkernel.node.contact import JOIN_WAIT, AmbiguousDoc, JoinWarning
from ownkernel.node.gate import Credentials, Gate
from ownkernel.node.grants import (
    TOKEN_PREFIX,
    Descriptor,
    Invite,
    make_descriptor,
    make_invite,
)
from ownkernel.node.handle import DocHandle
from ownkernel.node.network import NodeNetwork
from ownkernel.node.pairing import Device, Devices, UserInfo
from ownkernel.node.replica import OpenDoc, Replica
from ownkernel.node.reprs import PeerList
from ownkernel.store import (
    DB_FILE,
    Identity,
    IdentityError,
    ProfileLock,
    Store,
    make_temp_profile,
    new_key,
    resolve_profile,
)
from ownkernel.store.identity import KEY_FILE, short_id
from ownkernel.store.profile import ensure_dir

__all__ = ["AmbiguousDoc", "JOIN_WAIT", "JoinWarning", "Node"]  # (the first three: contact.py)

log = logging.getLogger(__name__)

_UNSET: Any = object()


# -- names and colours (see Node.name / Node.color) ------------------------------------
MAX_NAME = 64
# readable on white, distinct from each other (a first-start colour is one of these)
PALETTE = ("#d1495b", "#e07a1f", "#c9a227", "#5a9e2f", "#2a9d8f", "#1f77b4",
           "#4a56c4", "#8e44ad", "#c2418f", "#7f5539", "#3d7068", "#6c757d")


def _is_colour(value: str) -> bool:
    return (len(value) == 7 and value[0] == "#"
            and all(c in "0123456789abcdefABCDEF" for c in value[1:]))


class Node:
    """A node you own. ``Node(profile=None)`` uses a temporary profile, deleted on close.

    ``profile`` is a directory path or a bare profile name (``"default"``) under
    ``$OWNKERNEL_HOME`` or the user data dir. One process per profile: a second
    one gets ``ProfileLockedError`` naming the profile and the holder's pid.

    Networking (network.py) runs in the node's own thread: ``listen`` (an
    endpoint or a list; None: do not listen), ``bootstrap`` (addresses or invite
    tokens to dial, plus ``$OWNKERNEL_BOOTSTRAP``), ``relay`` (carry docs for
    peers that cannot reach each other), ``discovery`` (LAN beacons, off unless
    given, e.g. ``{"interface": "127.0.0.1"}``), ``network`` (a ``NetConfig``
    for timers and limits, or False for a purely local node), ``advertise``
    (``HOST[:PORT]`` or addresses to announce instead of the bound ones, plus
    ``$OWNKERNEL_ADVERTISE``; see docs/network.md). ``control``: serve the
    profile's control socket for the CLI (default: when networked on a
    persistent profile; control.py).
    """

    def __init__(self, profile: str | os.PathLike[str] | None = None,
                 name: str | None = None, *, listen: str | list[str] | None = _UNSET,
                 bootstrap: str | list[str] | None = None, relay: bool = False,
                 discovery: dict[str, Any] | None = None,
                 network: NetConfig | bool | None = None,
                 advertise: str | list[str] | None = None,
                 control: bool | None = None) -> None:
        self._lock = threading.RLock()
        self._profile_listeners: list[Callable[[], None]] = []
        self._closed = False
        self._temp = profile is None
        self.profile: Path = make_temp_profile() if profile is None else resolve_profile(profile)
        self._handles: dict[bytes, DocHandle] = {}
        self._net: NodeNetwork | None = None
        self._control: Any = None
        self._left: dict[bytes, float] = {}  # peer id -> monotonic time it left (this run)
        self._plock = ProfileLock(self.profile)
        try:
            ensure_dir(self.profile)
            self._plock.acquire()
            self._identity = self._load_identity()
            self.store = Store(self.profile / DB_FILE)
            try:
                self._check_store_identity(name)
                self._devices = Devices(self)  # the user key, certificates (pairing.py)
            except BaseException:
                self.store.close()
                raise
            self.gate = Gate(self.id, self.store.documents, self.store.document,
                             self.store.caps, users=self._devices.users,
                             cap_docs=self.store.cap_docs)
            self.replica = Replica(self.store, self._identity, self.gate, self._lock)
        except BaseException:
            self._plock.release()
            if self._temp:
                shutil.rmtree(self.profile, ignore_errors=True)
            raise
        try:
            self._start_network(listen, bootstrap, relay, discovery, network, advertise)
            contact.remember_addresses(self)
            if control or (control is None and self._net is not None and not self._temp):
                contact.start_control(self)
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
            self._name = name
        else:
            self._name = self.store.get_setting("name") or f"node-{self.short_id}"
        self._color = self._first_colour()

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

    # -- display name and colour (what peers and widgets show) ---------------------
    @property
    def name(self) -> str:
        """The display name peers see (stored in the profile). Setting it tells
        the peers present in a doc with us at once (in the signed presence
        claim, so it only ever means "this key calls itself X"), every connected
        peer in a `profile` message, and the others at the next hello."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
            raise ValueError(f"a node name is 1 to {MAX_NAME} characters of text, "
                             f"not {value!r:.80}")
        self._set_profile("name", value.strip())

    @property
    def color(self) -> str:
        """The colour peers and widgets show for this node (``#rrggbb``),
        chosen at random at first start and kept in the profile."""
        return self._color

    @color.setter
    def color(self, value: str) -> None:
        if not (isinstance(value, str) and _is_colour(value)):
            raise ValueError(f"a colour is '#rrggbb' (hex), not {value!r:.40}")
        self._set_profile("color", value.lower())

    def _first_colour(self) -> str:
        stored = self.store.get_setting("color")
        if isinstance(stored, str) and _is_colour(stored):
            return stored
        import secrets
        colour = secrets.choice(PALETTE)
        self.store.set_setting("color", colour)
        return colour

    def _set_profile(self, key: str, value: str) -> None:
        with self._lock:
            self._check_open()
            if self.store.get_setting(key) != value:
                self.store.set_setting(key, value)
            setattr(self, "_" + key, value)
        net = self._net
        if net is None:
            return

        def restamp() -> None:  # node thread: every presence claim we make, re-signed
            for doc, st in list(net.presence.local_state.items()):
                if isinstance(st, dict):
                    net.set_presence(doc, {**st, "name": self._name, "color": self._color})
            net.send_profile(self._name, self._color)  # and every connected peer
            self._devices.profile_changed()  # and our user's other devices (pairing.py)
            for cb in list(self._profile_listeners):
                cb()
        try:
            net.call_soon(restamp)
        except RuntimeError:  # network closing: nobody to tell
            pass

    def on_profile(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on the node thread after our name or colour changed."""
        self._profile_listeners.append(callback)
        return lambda: self._profile_listeners.remove(callback) \
            if callback in self._profile_listeners else None

    def peer_profiles(self, ids: Iterable[bytes] | None = None) -> dict[bytes, tuple[str, str]]:
        """``{peer id: (name, colour)}`` as the peers last said: from their
        signed presence claims (re-signed at once on a change), else the name
        of their signed address-book entry (re-announced within a second) and
        colour "". ``ids``: the peers wanted (default: those present in a doc with
        us or connected now). For display only."""
        net = self._net
        if net is None:
            return {}
        wanted = None if ids is None else list(ids)

        def read() -> dict[bytes, tuple[str, str]]:
            out = dict(net.presence.profiles())
            for pid, prof in net.profiles.items():  # what connected peers said since
                out.setdefault(pid, prof)
            pids = set(out) | set(net.by_peer) if wanted is None else wanted
            if net.book is not None:
                for pid in pids:
                    if pid in out or pid == self.id:
                        continue  # presence is re-signed at once on a change: fresher
                    e = net.book.get(pid)
                    if e is not None and e.name:
                        out[pid] = (e.name, "")
            return out
        return net._call(read)

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
        contact.stop_control(self)
        self._stop_network()  # first, and outside the lock: its thread may be waiting on it
        with self._lock:
            if self._closed:
                return
            try:
                self.replica.close()
            finally:
                self._closed = True
                self.store.close()
                self._plock.release()
                if self._temp:
                    shutil.rmtree(self.profile, ignore_errors=True)

    # -- documents -------------------------------------------------------------
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
            od = self.replica.open(doc_id)
            crdt = od.require_crdt()
            # The first change states owner and title inside the doc, for joiners.
            od.txn += 1
            try:
                crdt.map(ACCESS_ROOT).set("owner", self.id)
                crdt.map(META_ROOT).set("title", title)
            finally:
                od.txn -= 1
            self.replica.commit(od)
            return self._handle(doc_id)

    def docs(self) -> list[DocHandle]:
        """Handles of every document in this profile (loaded lazily)."""
        with self._lock:
            self._check_open()
            return [self._handle(d) for d, _ in self.store.doc_ids()]

    def open(self, doc: bytes | str | DocHandle) -> DocHandle:
        """A document by id (bytes), hex id, unique hex prefix (like git), or unique title."""
        with self._lock:
            self._check_open()
            if isinstance(doc, DocHandle):
                doc = doc.id
            if isinstance(doc, bytes):
                self.replica.row(doc)
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
                raise AmbiguousDoc(contact.ambiguous(self, doc, matches))
            return self._handle(matches[0].id)

    def _doc_title(self, doc_id: bytes) -> str:
        with self._lock:
            od = self.replica.open(doc_id)
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
            self.replica.refresh_row(self.replica.docs[doc_id])

    # -- committing local changes -------------------------------------------------
    # -- access, invites ----------------------------------------------------------
    def _role(self, doc_id: bytes, actor: bytes) -> str | None:
        with self._lock:
            od = self.replica.open(doc_id)
            return od.access().role(actor, doc_id)

    def _access_snapshot(self, doc_id: bytes) -> dict[str, Any]:
        with self._lock:
            return self.replica.open(doc_id).access().snapshot()

    def _require_admin(self, od: OpenDoc, what: str) -> None:
        if od.crdt is None or not od.access().can_admin(self.id, od.row.id):
            raise PermissionError(
                f"only the owner or an admin of document {od.row.id.hex()[:8]} may {what}")

    def invite(self, doc: DocHandle | bytes | str, write: bool = True,
               addresses: Iterable[str] | None = None) -> str:
        """A copy-pasteable ``own:`` token granting write (or read) access to ``doc``."""
        with self._lock:
            h = self.open(doc)
            od = self.replica.open(h.id)
            self._require_admin(od, "invite")
            desc = Credentials.from_bytes(od.row.token).descriptor
            if desc is None:
                raise RuntimeError(
                    f"document {h.short_id} has no owner-signed descriptor (made by an older "
                    f"version?): it cannot be shared; copy its content into a new document")
            inv = make_invite(
                self._identity, descriptor=desc,
                capability="write" if write else "read",
                addresses=tuple(self.addresses if addresses is None else addresses),
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
                docs = [d for d, _ in self.store.doc_ids()]
                found = [d for d in docs
                         if self.replica.open(d).crdt is not None
                         and token_key(tid) in self.replica.open(d).crdt.map(ACCESS_ROOT)]
                if not found:
                    raise KeyError(f"no document here issued token {tid.hex()}")
                doc_id = found[0]
            else:
                inv = Invite.parse(token)
                tid, doc_id = inv.token_id, inv.doc
            od = self.replica.open(doc_id)
            self._require_admin(od, "revoke invites")
            self._handle(doc_id).map(ACCESS_ROOT)[revoked_key(tid)] = True

    def grant(self, doc: DocHandle | bytes | str, actor: bytes, role: str | None) -> None:
        """Set ``actor``'s role (admin/writer/reader, None to remove); owner/admins only."""
        with self._lock:
            h = self.open(doc)
            od = self.replica.open(h.id)
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

    # -- users and devices (node/pairing.py, docs/auth.md) ------------------------
    @property
    def user(self) -> UserInfo:
        """The user this node is a device of: ``.id``, ``.name``, ``.colour``."""
        return self._devices.user

    def pair(self, ttl: float = 600.0) -> str:
        """A one-time ``own-pair:`` token (valid ``ttl`` s) that makes another node a
        device of our user (``other.pair_with(token)``). Needs the user key here."""
        self._check_open()
        return self._devices.pair(ttl)

    def pair_with(self, token: str, timeout: float = 15.0) -> UserInfo:
        """Become a device of the user that made ``token``; our user's docs follow."""
        self._check_open()
        return self._devices.pair_with(token, timeout)

    def devices(self) -> list[Device]:
        """``[(device id, name, last seen, revoked?)]`` of our user."""
        return self._devices.devices()

    def unpair(self, device_id: bytes) -> None:
        """Revoke a device of our user: its later changes are rejected everywhere and it
        receives nothing new (its earlier changes stay valid)."""
        self._check_open()
        self._devices.unpair(device_id)

    # -- first contact (node/contact.py) ---------------------------------------
    def join(self, token: str, timeout: float | None = JOIN_WAIT, *,
             strict: bool = False) -> DocHandle:
        """Join the doc an invite token grants and wait (bounded) for its content;
        see :func:`ownkernel.node.contact.join` (``JoinWarning``, ``strict``)."""
        return contact.join(self, token, timeout, strict=strict)

    def doc(self, title: str, *, encrypted: bool = False) -> DocHandle:
        """The doc titled ``title``, opened or created (re-running a notebook reuses it);
        ``AmbiguousDoc`` lists several with that title."""
        return contact.doc(self, title, encrypted=encrypted)

    def describe_docs(self, ids: Iterable[bytes], ref: str) -> str:
        """The listing ``AmbiguousDoc`` shows, for other callers (the %own magics)."""
        return contact.describe_docs(self, ids, ref)

    def _join_local(self, token: str) -> DocHandle:
        """Record the doc, capability and key of an invite (``join`` also fetches it)."""
        inv = Invite.parse(token)
        with self._lock:
            self._check_open()
            row = self.store.document(inv.doc)
            if row is not None:
                od = self.replica.open(inv.doc)
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
                    self.replica.docs.pop(inv.doc, None)
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
            out: dict[str, Any] = {k: self.replica.stats.get(k, 0) for k in (
                "commits", "accepted", "duplicates", "signatures", "snapshots",
                "caps_presented", "listener_errors", "damaged_rows")}
            out["rejected"] = dict(self.replica.rejected + self.gate.rejected)
            out["rejected_total"] = sum(out["rejected"].values())
            out["waiting"] = sum(len(w) for od in self.replica.docs.values()
                                 for w in od.waiting.values())
            out["held_bytes"] = self.gate.held.total
            out["docs"] = self.store.doc_count() if not self._closed else 0
            out["docs_loaded"] = len(self.replica.docs)
        net = self._net
        if net is not None:  # outside the lock: the network thread may need it to answer
            out["net"] = net.stats()
        return out

    def compact(self, doc: DocHandle | bytes | str | None = None) -> dict[str, int]:
        """Drop change rows the snapshot regenerates byte for byte (opt-in; saves disk).

        Only for docs this node can read and that are not encrypted (ciphertext
        cannot be regenerated). Every dropped row is first regenerated and compared,
        and the chain hash at the cut is kept, so served history stays verifiable.
        """
        with self._lock:
            self._check_open()
            ids = [self.open(doc).id] if doc is not None else [
                d for d, _ in self.store.doc_ids()]
            return compaction.compact(self.replica, ids)

    # -- network ----------------------------------------------------------------
    def _start_network(self, listen: Any, bootstrap: Any, relay: bool,
                       discovery: dict[str, Any] | None, network: Any,
                       advertise: Any = None) -> None:
        if network is False:
            return
        base = network if isinstance(network, NetConfig) else NetConfig()
        cfg = dataclasses.replace(base)
        if listen is not _UNSET:
            cfg.listen = ([] if listen is None else [listen] if isinstance(listen, str)
                          else list(listen))
        if bootstrap is not None:
            cfg.bootstrap = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
        cfg.bootstrap = list(dict.fromkeys([*cfg.bootstrap, *env_bootstrap()]))
        cfg.relay = cfg.relay or relay
        if discovery is not None:
            cfg.discovery = discovery
        contact.configure(self, cfg, advertise)
        self._net = NodeNetwork(self, cfg).start()
        self._net.on("peer_left", lambda p: self._left.__setitem__(p.id, time.monotonic()))

    def _stop_network(self) -> None:
        net, self._net = self._net, None
        if net is not None:
            net.close()

    def _network(self) -> NodeNetwork:
        if self._net is None:
            raise RuntimeError(
                "this node has no network (it was made with network=False or is closed)")
        return self._net

    @property
    def network(self) -> NodeNetwork | None:
        return self._net

    @property
    def address(self) -> str | None:
        """Where peers reach this node: ``tcp://host:port#<node id hex>`` (None: not listening)."""
        return self._net.addresses[0] if self._net and self._net.addresses else None

    @property
    def addresses(self) -> list[str]:
        return list(self._net.addresses) if self._net else []

    @property
    def peers(self) -> list[Peer]:
        """Known peers (id, name, addresses, online, latency, last_seen, route), online first.

        ``route`` says how we reach the peer: ``direct <address>`` (we dialed it),
        ``direct (inbound)`` (it dialed us), ``via relay <name>`` (no session,
        but a relay we are connected to carries our shared docs) or ``""``.
        """
        if self._net is None:
            return PeerList([])
        return PeerList(self._net._call(lambda: contact.peers_with_routes(self)))

    def connect(self, target: str, timeout: float | None = 5.0) -> Peer | None:
        """Connect to an address (``node.address`` of a peer) or an invite token.

        A token is joined first (its doc gets fetched). Waits up to ``timeout``
        seconds for the session (``None``/0: do not wait); keeps trying in the
        background after a ``TimeoutError``.
        """
        if target.strip().startswith(TOKEN_PREFIX):
            self._join_local(target)
        return self._network().connect(target, timeout)

    def _has_content(self, doc_id: bytes) -> bool:
        with self._lock:
            return any(a != self.id for a in self.replica.open(doc_id).heads)

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` on ``event`` (see ``NodeNetwork.on``); returns an unsubscriber."""
        return self._network().on(event, callback)

    def set_presence(self, doc: Any, state: Any) -> None:
        """Announce our presence in ``doc`` (a DocHandle or id) to its peers; None: left."""
        self._network().set_presence(getattr(doc, "id", doc), state)

    def presence(self, doc: Any) -> dict[bytes, Any]:
        """``{peer id: state}`` of the peers present in ``doc`` right now."""
        return self._network().get_presence(getattr(doc, "id", doc)) if self._net else {}

    def sync(self) -> None:
        """Run anti-entropy with every peer now (it also runs periodically)."""
        self._network().sync_now()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the node thread (its network loop) soon; returns at once.

        The one way for other threads (a kernel's comm handlers, widgets) to hand
        work to the node thread. Without a network (``network=False``) ``fn`` runs
        right away in the calling thread.
        """
        if self._net is None:
            fn(*args)
        else:
            self._net.call_soon(fn, *args)
