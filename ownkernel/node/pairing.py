"""A node's user and devices: the user key, pairing, revocation (docs/auth.md).

``Devices`` is the node's part for users (``node.user``, ``node.pair()``,
``node.pair_with()``, ``node.devices()``, ``node.unpair()``). The records
themselves (certificates, revocations, pairing tokens) are pure: users.py.

On the wire everything rides in the session's ``grants`` frames (opaque blobs a
session accepts only after a verified hello), told apart from grants by their
``k`` field (users.kind_of):

- ``ucert`` / ``urev``: certificates and revocations. Public and self-verifying:
  every node shows all it holds to every peer after hello and passes on what is
  new to it, so revocations reach every node that meets one that knows them.
- ``upair`` → ``upaired``: a new device proves it holds a pairing token's
  secret (an HMAC bound to the token, its own key and the issuer's key) and
  consents to belong to the user; the issuer answers with the certificate.
- ``udoc``: one of our user's docs (descriptor, key, title, grant), sent only to
  our user's live devices over the Curve-encrypted session.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import cbor2

from ownkernel.node.gate import BOOK_DOC, Credentials
from ownkernel.node.grants import Descriptor, Grant, InviteError
from ownkernel.node.users import (
    Cert,
    PairToken,
    UserError,
    Users,
    device_accept,
    doc_share,
    kind_of,
    make_cert,
    make_revocation,
    pair_answer,
    pair_proof,
    pair_request,
    parse_record,
)
from ownkernel.store import Identity, IdentityError
from ownkernel.store.identity import short_id
from ownkernel.store.profile import base_dir

if TYPE_CHECKING:
    from ownkernel.node.network import Link
    from ownkernel.node.node import Node

__all__ = ["Device", "Devices", "UserInfo", "user_key_path"]

log = logging.getLogger(__name__)

USER_KEY_FILE = "user.key"
LOCAL_CERTS = "devices"  # beside a shared user key: one certificate file per profile


@dataclass(frozen=True)
class UserInfo:
    """Who a node acts for: ``id`` (the user key's public key), ``name``, ``colour``."""

    id: bytes
    name: str
    colour: str

    @property
    def color(self) -> str:
        return self.colour

    @property
    def short_id(self) -> str:
        return short_id(self.id)


class Device(NamedTuple):
    id: bytes
    name: str
    last_seen: float | None  # wall seconds; None: never seen by this node
    revoked: bool


def user_key_path(profile: Path, temp: bool) -> Path:
    """Profiles under the profiles root (``default``, ``default-2``, …) share one user
    key beside them; a profile elsewhere (a path, a temporary one) has its own."""
    if not temp:
        try:
            if profile.parent == base_dir().absolute():
                return profile.parent / USER_KEY_FILE
        except Exception:  # no user data dir: fall back to the profile's own
            pass
    return profile / USER_KEY_FILE


class Devices:
    """The node's user: its key (if this device holds it), records, pairing."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.user_key: Identity | None = None
        self.pending: dict[bytes, PairToken] = {}  # token id -> token (in memory only)
        self.used: set[bytes] = set()
        self._answers: dict[bytes, tuple[bytes | None, str | None, str, str]] = {}
        self._asking: dict[bytes, PairToken] = {}  # issuer -> token we sent a request for
        # where this machine's profiles of one user leave their certificates for each
        # other (they share the user key, but meet as strangers over the network)
        self._local: Path | None = None
        prof = node.store.get_setting("user_profile")
        # the user's name and colour as last set on any of its devices (last writer wins)
        self._profile: dict[str, Any] | None = prof if isinstance(prof, dict) else None
        self._answered = threading.Condition(node.lock)
        self.users = self._setup()

    # -- start ---------------------------------------------------------------------
    def _setup(self) -> Users:
        node, store = self.node, self.node.store
        me = node.id
        paired = store.get_setting("user_paired")
        if isinstance(paired, dict) and isinstance(paired.get("c"), bytes):
            user, own = paired["u"], paired["c"]
        else:
            kpath = user_key_path(node.profile, node._temp)
            self.user_key = self._load_user_key(kpath)
            if kpath.parent != node.profile:  # shared by this OS user's profiles
                self._local = kpath.parent / LOCAL_CERTS
            user = self.user_key.node_id
            own = store.get_setting("user_cert")
            try:
                ok = own is not None and parse_record(own).user == user  # type: ignore[union-attr]
            except UserError:
                ok = False
            if not ok:
                # First start after users came in (or with a new user key): certify
                # this node's key; docs it owns are then its user's (access.py).
                own = make_cert(self.user_key, me, device_accept(node.identity, user),
                                node.name, time.time())
                store.set_setting("user_cert", own)
        users = Users(me, user)
        users.add(own)
        if self._local is not None:
            self._publish_local(own)
        self._records: list[bytes] = list(store.get_setting("user_records") or [])
        for raw in self._records:
            users.add(raw)
        return users

    def _publish_local(self, cert: bytes) -> None:
        assert self._local is not None
        path = self._local / self.node.id.hex()
        try:
            if not path.exists() or path.read_bytes() != cert:
                self._local.mkdir(mode=0o700, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(cert)
                tmp.replace(path)
        except OSError as e:  # then only pairing introduces them: say so, go on
            log.warning("cannot write device certificate %s: %s", path, e)

    def _local_cert(self, peer: bytes) -> None:
        """Node lock held: a peer we know nothing of may be a profile of ours on this
        machine: its certificate is then beside our user key."""
        if self._local is None or self.users.user_of(peer) is not None:
            return
        try:
            raw = (self._local / peer.hex()).read_bytes()
        except OSError:
            return
        self._learn([raw])

    @staticmethod
    def _load_user_key(path: Path) -> Identity:
        if path.exists():
            return Identity.load(path)
        ident = Identity.generate()
        try:
            ident.save(path)
        except FileExistsError:  # another profile's first start made it meanwhile
            return Identity.load(path)
        except OSError as e:
            raise IdentityError(f"cannot write user key {path}: {e}") from e
        return ident

    @property
    def user(self) -> UserInfo:
        return UserInfo(self.users.user, self.node.name, self.node.color)

    def _learn(self, raws: Sequence[bytes]) -> list[bytes]:
        """Node lock held: add records; returns the new ones (stored, gate told)."""
        new = []
        for raw in raws:
            problem, changed = self.users.add(raw)
            if problem:
                self.node.gate.reject(problem)
            elif changed:
                new.append(raw)
        if new:
            self._records += new
            self.node.store.set_setting("user_records", self._records)
            self.node.gate.changed()
        return new

    # -- API (any thread) ------------------------------------------------------------
    def _require_key(self, what: str) -> Identity:
        if self.user_key is None:
            raise PermissionError(
                f"this device was paired into user {short_id(self.users.user)} and does not "
                f"hold the user key; {what} from the device that paired it (docs/auth.md)")
        return self.user_key

    def pair(self, ttl: float = 600.0) -> str:
        key = self._require_key("pair new devices")
        addrs = self.node.addresses
        if not addrs:
            raise RuntimeError("pairing needs a listening node (Node(listen=...))")
        with self.node.lock:
            now = time.time()
            for tid in [t for t, tok in self.pending.items() if tok.expires < now]:
                del self.pending[tid]
            tok = PairToken.new(key.node_id, self.node.id, now, addrs, ttl)
            self.pending[tok.token_id] = tok
        return tok.to_token()

    def pair_with(self, token: str, timeout: float = 15.0) -> UserInfo:
        tok = PairToken.parse(token)
        if tok.expires < time.time():
            raise PermissionError("this pairing token has expired: make a new one with "
                                  "node.pair() on the device that holds the user key")
        if tok.user == self.users.user:
            return self.user
        if tok.node == self.node.id:
            raise ValueError("a node cannot pair with its own token")
        net = self.node._network()
        end = time.monotonic() + timeout
        net.connect(tok.addresses[0] if tok.addresses else "", timeout=timeout)

        def send() -> None:
            self._asking[tok.node] = tok
            link = net.link_of(tok.node)
            if link is not None and link.session.is_open:
                link.session.send_grants([pair_request(tok, self.node.identity)])
                net.outbox.flush(link)
        net._call(send)
        with self._answered:
            while tok.node not in self._answers:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no pairing answer from {short_id(tok.node)} after "
                                       f"{timeout:.1f} s")
                self._answered.wait(left)
            _cert, error, _name, _colour = self._answers.pop(tok.node)
            if error:
                raise PermissionError(f"pairing refused by {short_id(tok.node)}: {error}")
        def greet_all() -> None:  # what we may read and show changed: say so now
            for lk in list(net.by_peer.values()):
                self.greet(lk, again=True)
            net.outbox.flush_all()
        net._call(greet_all)
        return self.user

    def devices(self) -> list[Device]:
        net = self.node.network
        with self.node.lock:
            certs = self.users.devices()
            out = []
            for c in certs:
                seen: float | None
                if c.device == self.node.id:
                    seen = time.time()
                else:
                    seen = net.directory.last_seen.get(c.device) if net is not None else None
                    if net is not None and net.online(c.device):
                        seen = time.time()
                out.append(Device(c.device, c.name, seen, self.users.revoked(c.device)))
            return out

    def unpair(self, device: bytes) -> None:
        key = self._require_key("revoke devices")
        with self.node.lock:
            if device == self.node.id:
                raise ValueError("a device cannot revoke itself; unpair it from another one")
            if self.users.user_of(device) != self.users.user:
                raise KeyError(f"{device.hex()[:12]} is not a device of user "
                               f"{short_id(self.users.user)} (see node.devices())")
            # The cut: per doc, the last change of that device we hold. Only changes
            # up to it stay valid anywhere (users.py).
            cuts = {}
            for doc, _ in self.node.store.doc_ids():
                seq = self.node.replica.version(doc).get(device, 0)
                if seq:
                    cuts[doc] = seq
            new = self._learn(make_revocation(key, device, time.time(), cuts))
        net = self.node.network
        if net is not None and new:
            net._call(self.broadcast, new)

    # -- network (node thread) ---------------------------------------------------------
    def greet(self, link: Link, again: bool = False) -> None:
        """After a verified hello: show our records; a sibling also gets our docs."""
        peer = link.peer
        if peer is None or not link.session.is_open:
            return
        if self.users.revoked(peer):
            self._shut_out(link)
            return
        with self.node.lock:
            self._local_cert(peer)
            recs = self.users.records() if self._tells(peer) else []
            shares = self._shares() if self.users.sibling(peer) else []
            if shares and self._profile is not None:
                shares.append(cbor2.dumps(self._profile))
            grants = self.node.gate.grants_for(peer) if again else []
        if recs or shares or grants:
            link.session.send_grants(recs + shares + grants)
        if again or shares:
            self.node._network().sharing.offer_new(link)

    def share_docs(self, docs: list[bytes]) -> None:
        """Node thread: new docs of ours (made or joined here) go to our live devices
        (before their changes, so those find the doc there)."""
        net = self.node._network()
        with self.node.lock:
            sibs = [lk for p, lk in net.by_peer.items()
                    if lk.session.is_open and self.users.sibling(p)]
            if not sibs:
                return
            shares = self._shares(set(docs))
        for link in sibs:
            if shares:
                link.session.send_grants(shares)

    def _tells(self, peer: bytes) -> bool:
        """Node lock held: is ``peer`` told our records? Our user's devices and peers
        that share a doc with us are; a stranger learns nothing, not even which
        devices belong to whom."""
        if self.users.sibling(peer):
            return True
        return any(d != BOOK_DOC for d in self.node.gate.shared_with(peer))

    def _shares(self, only: set[bytes] | None = None) -> list[bytes]:
        out = []
        for r in self.node.store.documents():
            if r.capability == "relay" or (only is not None and r.id not in only):
                continue
            creds = Credentials.from_bytes(r.token)
            if creds.descriptor is None:
                continue
            out.append(doc_share(creds.descriptor, r.key, r.title or "", creds.grant))
        return out

    def broadcast(self, recs: list[bytes], skip: bytes | None = None) -> None:
        net = self.node._network()
        for peer, link in list(net.by_peer.items()):
            if peer == skip or not link.session.is_open:
                continue
            with self.node.lock:
                tells = self._tells(peer) or self.users.revoked(peer)
            if tells:
                link.session.send_grants(recs)
            if self.users.revoked(peer):
                self._shut_out(link)  # after it was told why
            elif self.users.sibling(peer):
                self.greet(link)
        for link in list(net.by_peer.values()):
            net.sharing.offer_new(link)
        net.outbox.flush_all()

    # -- the user's name and colour -------------------------------------------------
    def profile_changed(self) -> None:
        """Node thread: our name or colour changed; they are the user's: tell our devices."""
        name, colour = self.node.name, self.node.color
        cur = self._profile
        if cur is not None and cur.get("n") == name and cur.get("o") == colour:
            return  # (also: what we just took from a sibling; no echo)
        self._profile = {"k": "uprof", "n": name, "o": colour, "t": time.time(),
                         "d": self.node.id}
        self.node.store.set_setting("user_profile", self._profile)
        net = self.node._network()
        blob = cbor2.dumps(self._profile)
        for p, link in list(net.by_peer.items()):
            if link.session.is_open and self.users.sibling(p):
                link.session.send_grants([blob])
        net.outbox.flush_all()

    def _on_profile(self, peer: bytes, m: dict[str, Any]) -> None:
        n, o, t, d = m.get("n"), m.get("o"), m.get("t"), m.get("d")
        if not (self.users.sibling(peer) and isinstance(n, str) and 0 < len(n.strip()) <= 64
                and isinstance(o, str) and len(o) == 7 and o[0] == "#"
                and all(c in "0123456789abcdef" for c in o[1:]) and isinstance(t, float)
                and isinstance(d, bytes)):
            self.node.gate.reject("bad_user_profile")
            return
        cur = self._profile
        if cur is not None and (cur["t"], cur["d"]) >= (t, d):
            return
        self._profile = {"k": "uprof", "n": n.strip(), "o": o, "t": t, "d": d}
        self.node.store.set_setting("user_profile", self._profile)
        self.node.name, self.node.color = n.strip(), o

    def _shut_out(self, link: Link) -> None:
        """A revoked device gets no session with us: nothing new reaches it, and what
        it makes now can reach us only through others (and the cut rejects it)."""
        self.node.gate.reject("revoked_device_session")
        self.node._network()._close_link(link, "revoked device")

    def on_blobs(self, link: Link, blobs: Sequence[bytes]) -> list[bytes]:
        """Take the user-layer blobs of a ``grants`` frame; returns the other (grants)."""
        peer = link.peer
        assert peer is not None
        rest, new = [], []
        for raw in blobs:  # in order: a certificate may make the next blob's sender a sibling
            kind, m = kind_of(raw)
            if kind is None:
                rest.append(raw)
            elif kind in ("ucert", "urev"):
                with self.node.lock:
                    new += self._learn([raw])
            elif kind == "upair":
                self._on_pair_request(link, m)
            elif kind == "upaired":
                self._on_pair_answer(peer, m)
            elif kind == "udoc":
                self._on_doc_share(peer, m)
            elif kind == "uprof":
                self._on_profile(peer, m)
        if new:
            self.broadcast(new, skip=peer)
        return rest

    def _on_pair_request(self, link: Link, m: dict[str, Any]) -> None:
        peer, node = link.peer, self.node
        assert peer is not None
        tid, dev, mac, accept = m.get("t"), m.get("d"), m.get("m"), m.get("a")
        cert = None
        with node.lock:
            tok = self.pending.get(tid) if isinstance(tid, bytes) else None
            if not all(isinstance(x, bytes) for x in (tid, dev, mac, accept)):
                reason: str | None = "pair_bad_request"
            elif dev != peer:
                reason = "pair_not_holder"  # a request must come from the device itself
            elif tok is None:
                reason = "pair_used" if tid in self.used else "pair_unknown"
            elif tok.expires < time.time():
                reason = "pair_expired"
                del self.pending[tid]
            elif not hmac.compare_digest(pair_proof(tok.secret, tid, dev, node.id), mac):
                reason = "pair_bad_proof"  # (the token stays: this one did not hold it)
            else:
                del self.pending[tid]  # single use, whatever happens next
                self.used.add(tid)
                reason = None
                name = node.network.directory.name_of(peer) if node.network else ""
                try:
                    cert = make_cert(self._require_key("pair"), dev, accept,
                                     name or f"device-{short_id(dev)}", time.time())
                except UserError:
                    reason = "pair_bad_request"
                else:
                    self._learn([cert])
            if reason:
                node.gate.reject(reason)
                log.info("pairing request from %s refused: %s", short_id(peer), reason)
        link.session.send_grants([pair_answer(cert, reason, node.name, node.color)])
        if cert is not None:
            self.broadcast([cert])

    def _on_pair_answer(self, peer: bytes, m: dict[str, Any]) -> None:
        cert, err = m.get("c"), m.get("e")
        name, colour = m.get("n"), m.get("o")
        with self._answered:
            tok = self._asking.pop(peer, None)
            if tok is None:
                self.node.gate.reject("pair_unasked")
                return
            if err is None:
                err = self._adopt(tok, cert, name, colour)
            self._answers[peer] = (cert if isinstance(cert, bytes) else None,
                                   err if isinstance(err, str) else None,
                                   name if isinstance(name, str) else "",
                                   colour if isinstance(colour, str) else "")
            self._answered.notify_all()

    def _adopt(self, tok: PairToken, cert: Any, name: Any, colour: Any) -> str | None:
        """Node thread, lock held: become a device of ``tok.user`` by ``cert`` at once,
        so the blobs right behind the answer (our user's docs) find us a sibling."""
        try:
            c = parse_record(cert) if isinstance(cert, bytes) else None
        except UserError as e:
            return f"the answer carries a bad certificate: {e}"
        if not isinstance(c, Cert) or c.user != tok.user or c.device != self.node.id:
            return "the answer certifies someone else"
        self.node.store.set_setting("user_paired", {"u": tok.user, "c": cert})
        self.user_key = None
        if self._local is not None:  # no longer one of this machine's user: say so there
            with contextlib.suppress(OSError):
                (self._local / self.node.id.hex()).unlink()
            self._local = None
        self.users.user = tok.user
        self._learn([cert])
        # Names and colours belong to the user: take the user's, both at once here on
        # the node thread (so no half-changed profile goes out to our devices)
        if isinstance(name, str) and 0 < len(name.strip()) <= 64:
            self.node._set_profile("name", name.strip())
        if isinstance(colour, str) and len(colour) == 7 and colour[0] == "#":
            self.node._set_profile("color", colour.lower())
        self._profile = {"k": "uprof", "n": self.node.name, "o": self.node.color,
                         "t": time.time(), "d": tok.node}
        self.node.store.set_setting("user_profile", self._profile)
        return None

    def _on_doc_share(self, peer: bytes, m: dict[str, Any]) -> None:
        node = self.node
        with node.lock:
            if not self.users.sibling(peer):
                node.gate.reject("udoc_not_sibling")
                return
            try:
                desc = Descriptor.from_bytes(m.get("dd"))  # type: ignore[arg-type]
            except InviteError:
                node.gate.reject("bad_descriptor")
                return
            key, title, graw = m.get("key"), m.get("x"), m.get("g")
            key = key if isinstance(key, bytes) and len(key) == 32 else None
            grant = None
            if isinstance(graw, bytes):
                try:
                    Grant.from_bytes(graw)
                    grant = graw
                except InviteError:
                    node.gate.reject("bad_capability")
            row = node.store.document(desc.doc)
            if row is None:
                mine = self.users.user_of(desc.owner) == self.users.user
                node.store.add_document(
                    desc.doc, title=title if isinstance(title, str) else "",
                    owner=desc.owner, capability="owner" if mine else "member",
                    encrypted=desc.encrypted, key=key, access={"owner": desc.owner},
                    token=Credentials(grant, desc.to_bytes()).to_bytes())
            elif (row.encrypted and row.key is None and key is not None) or \
                    row.capability == "relay":
                node.store.update_document(desc.doc, key=key or row.key, capability="member")
                node.replica.docs.pop(desc.doc, None)
            else:
                return
            node.gate.refresh(desc.doc)
        node._network().offer_doc(desc.doc)
