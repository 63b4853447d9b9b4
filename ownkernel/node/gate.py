"""The admission gate: *who is this, and may they do this to this document?*

Every inbound path asks here, and nowhere else (docs/security.md):

- sync (``may_read``: which docs a session offers, accepts `have`/`changes` for);
- changes (``change_problem``: may this author make this change; holder-bound grants);
- grants presented in a session (``present``), and which of ours we show (``grants_for``);
- relay requests (``carry``: only what the owner signed, as ciphertext or not);
- presence (``open_presence``: signed by its origin, who must be able to read the doc);
- the address book (``may_see_book``);
- held envelopes (``hold`` / ``release``: byte budgets per peer and per doc).
- users and devices (``users``: device -> user from verified certificates; a
  user's live devices read all its docs, revoked devices nothing; pairing.py).

A peer reaches any of these only after its hello was verified (ZAP ties the
Curve key to the signing key; the session ties the hello to both). The gate is
pure bookkeeping over the node's documents table and the signed credentials in
grants.py: no sockets, no threads, no clocks (times are passed in). The node's
lock guards it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ownkernel.node.access import RANK, AccessView
from ownkernel.node.grants import Descriptor, Grant, InviteError
from ownkernel.node.users import Users
from ownkernel.store.identity import verify

__all__ = ["BOOK_DOC", "Credentials", "Gate", "PresenceClaim", "seal_presence"]

log = logging.getLogger(__name__)

BOOK_DOC = "_peers"  # the address book's doc id on the wire (node docs are 16 bytes)
MAX_CARRY_PER_PEER = 20_000  # docs one peer may ask this relay to carry
MAX_PRESENTED_PER_PEER = 20_000
HELD_PER_PEER = 4 * 1024 * 1024  # bytes of unverifiable envelopes held for one peer
HELD_PER_DOC = 8 * 1024 * 1024
HELD_TOTAL = 64 * 1024 * 1024
_PRESENCE_DOMAIN = "ownkernel/presence/v1"
MAX_PRESENCE_TTL = 300.0
PRESENCE_SKEW = 60.0  # seconds of clock difference tolerated between nodes
MAX_PRESENCE = 16 * 1024


@dataclass(frozen=True)
class Credentials:
    """What this node holds for a doc it joined: its grant and the owner's descriptor."""

    grant: bytes | None = None
    descriptor: bytes | None = None

    def to_bytes(self) -> bytes:
        return cbor2.dumps({"g": self.grant, "dd": self.descriptor})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Credentials:
        if not raw:
            return cls()
        try:
            m = cbor2.loads(raw)
        except Exception:
            return cls()
        if not isinstance(m, dict):
            return cls()
        g, d = m.get("g"), m.get("dd")
        return cls(g if isinstance(g, bytes) else None, d if isinstance(d, bytes) else None)


@dataclass
class _Doc:
    """What the gate knows of one document (from the documents table, kept fresh)."""

    owner: bytes
    encrypted: bool
    readable: bool  # not encrypted, or we hold its key
    access: dict[str, Any]
    creds: Credentials
    env_grants: dict[bytes, Grant] | None = None  # holder -> grant seen in stored envelopes
    mine: Grant | None = None  # our own grant, parsed once (we made it: no need to verify)
    relay_only: bool = False  # carried for others: not one of our user's docs
    token: bytes | None = None  # the row's credentials as stored (parsed into creds, mine)


@dataclass(frozen=True)
class PresenceClaim:
    doc: bytes
    origin: bytes
    state: Any
    expires: float  # wall-clock seconds (the origin's)
    counter: int


def seal_presence(identity: Any, doc: bytes, state: Any, expires: float, counter: int) -> bytes:
    """A presence claim signed by this node (``identity``): relays pass it on unchanged."""
    body = cbor2.dumps([_PRESENCE_DOMAIN, doc, identity.node_id, state, float(expires),
                        counter])
    return cbor2.dumps([body, identity.sign(body)])


@dataclass
class _Held:
    by_peer: Counter[bytes] = field(default_factory=Counter)
    by_doc: Counter[bytes] = field(default_factory=Counter)
    total: int = 0


class Gate:
    """One place for every admission decision of one node."""

    def __init__(self, node_id: bytes, rows: Callable[[], Iterable[Any]],
                 row: Callable[[bytes], Any], env_grants: Callable[[bytes], Iterable[tuple]],
                 relay: bool = False, users: Users | None = None,
                 cap_docs: Callable[[], Iterable[bytes]] | None = None) -> None:
        self.me = node_id
        # who is which user's device (users.py); the node replaces it with its own
        self.users = users if users is not None else Users(node_id, node_id)
        self._rows_fn = rows
        self._row_fn = row
        self._env_grants_fn = env_grants
        self._cap_docs_fn = cap_docs
        # when the index was built: the docs then, and those of them with any stored
        # grant (see _env_grants)
        self._indexed: set[bytes] = set()
        self._capped: set[bytes] = set()
        self.relay = relay
        self.rejected: Counter[str] = Counter()
        self._docs: dict[bytes, _Doc] | None = None
        self.presented: dict[bytes, dict[bytes, Grant]] = {}  # peer -> doc -> grant
        self._verified: dict[bytes, Grant] = {}  # grant bytes -> verified grant
        self.carried_for: dict[bytes, set[bytes]] = {}  # peer -> docs we relay for it
        self.carriers: dict[bytes, set[bytes]] = {}  # relay peer -> docs we asked it to carry
        self.held = _Held()
        # peer -> the docs it may read, kept up to date doc by doc (see changed())
        self._shared: dict[bytes, set[Any]] = {}

    # ------------------------------------------------------------------ bookkeeping
    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] += n
        if self.rejected[reason] == n:
            log.info("gate: %s", reason)

    def _index(self) -> dict[bytes, _Doc]:
        if self._docs is None:
            self._docs = {}
            for r in self._rows_fn():
                self._docs[r.id] = self._entry(r)
            if self._cap_docs_fn is not None:
                self._capped = set(self._cap_docs_fn())
                self._indexed = set(self._docs)
        return self._docs

    @staticmethod
    def _entry(r: Any, old: _Doc | None = None) -> _Doc:
        if old is not None and old.token == r.token:
            # the credentials did not change (an access list did): not parsed again,
            # which a catch-up of thousands of newly shared docs does once per doc
            creds, mine = old.creds, old.mine
        else:
            creds = Credentials.from_bytes(r.token)
            mine = None
            if creds.grant is not None:
                try:
                    mine = Grant.from_bytes(creds.grant, verify=False)
                except InviteError:
                    pass
        return _Doc(r.owner, bool(r.encrypted), not r.encrypted or r.key is not None,
                    dict(r.access or {}), creds, mine=mine,
                    relay_only=r.capability == "relay", token=r.token)

    def refresh(self, doc: bytes, row: Any = None) -> None:
        """The documents table row of ``doc`` changed (new doc, access list, key);
        ``row``: that row as just read, when the caller has it."""
        if self._docs is not None:
            r = row if row is not None else self._row_fn(doc)
            if r is None:
                self._docs.pop(doc, None)
            else:
                old = self._docs.get(doc)
                e = self._docs[doc] = self._entry(r, old)
                if old is not None:
                    e.env_grants = old.env_grants
        self.changed(doc=doc)

    def changed(self, doc: bytes | None = None, peer: bytes | None = None) -> None:
        """Something that decides ``may_read`` changed: for ``doc`` (every cached
        peer's answer for it is redone: O(peers)), for ``peer`` (its cache goes), or
        anything (all caches go)."""
        if peer is not None:
            self._shared.pop(peer, None)
        elif doc is not None:
            for p, docs in self._shared.items():
                if self.may_read(p, doc):
                    docs.add(doc)
                else:
                    docs.discard(doc)
        else:
            self._shared.clear()

    def docs(self) -> Iterable[bytes]:
        return self._index().keys()

    def knows(self, doc: bytes) -> bool:
        return doc in self._index()

    def grant_seen(self, doc: bytes, grant: Grant) -> None:
        """A grant arrived inside an accepted envelope (it is now part of the doc)."""
        d = self._index().get(doc)
        if d is not None and d.env_grants is not None:
            d.env_grants[grant.holder] = grant
        self.changed(doc=doc)

    def doc_grants(self, doc: bytes, stored: bool = True) -> dict[bytes, Grant]:
        """The live ``{holder: grant}`` of ``doc`` (the node's loaded doc shares it).
        ``stored`` False: the doc has no stored changes yet (no heads), so none of
        their grants to read: only ours (saves a query per newly shared doc)."""
        d = self._index()[doc]
        if not stored and d.env_grants is None:
            d.env_grants = {self.me: d.mine} if d.mine is not None else {}
        return self._env_grants(doc, d)

    def _env_grants(self, doc: bytes, d: _Doc) -> dict[bytes, Grant]:
        if d.env_grants is None:
            out: dict[bytes, Grant] = {}
            # A doc that had no stored grant when the index was built has none now
            # either: each doc's grants are read here before any of its changes is
            # stored, and later ones are added as they are accepted (grant_seen).
            # That spares a query per doc on the first `shared_with` of a node that
            # joined 10,000 docs (half of its CPU at a peer's hello).
            capless = doc in self._indexed and doc not in self._capped
            for actor, raw in () if capless else self._env_grants_fn(doc):
                try:
                    g = Grant.from_bytes(raw)
                except InviteError:
                    continue
                if g.holder == actor:
                    out[actor] = g
            if d.mine is not None:
                out.setdefault(self.me, d.mine)
            d.env_grants = out
        return d.env_grants

    # ------------------------------------------------------------------ roles
    def view(self, doc: bytes, access: Any = None) -> AccessView:
        """Roles in ``doc`` from its signed access map and the holder-bound grants in it."""
        d = self._index()[doc]
        return AccessView(d.owner, d.access if access is None else access,
                          self._env_grants(doc, d), self.users)

    def role(self, doc: bytes, actor: bytes) -> str | None:
        d = self._index().get(doc)
        if d is None:
            return None
        acc = self.view(doc)
        best = acc.role(actor, doc)
        g = self.presented.get(actor, {}).get(doc)
        if g is not None and acc.grant_problem(g, doc, g.holder) is None \
                and RANK[g.role] > RANK[best]:
            best = g.role
        return best

    def may_read(self, peer: bytes, doc: bytes) -> bool:
        """May ``peer`` (a verified session peer) be offered ``doc`` and sync it?"""
        if doc == BOOK_DOC:
            return self.may_see_book(peer)
        d = self._index().get(doc)
        if d is None:
            return False
        if self.users.revoked(peer):
            return False  # a revoked device receives nothing new
        if self.users.sibling(peer) and not d.relay_only:
            return True  # our user's other devices sync all of our docs
        if doc in self.carriers.get(peer, ()):
            return True  # a relay we chose ourselves to carry it
        if not d.readable:
            # We only hold ciphertext (relay role): we cannot read the access map, so
            # we serve the owner, and holders of grants the owner signed itself.
            if peer == d.owner:
                return True
            g = self.presented.get(peer, {}).get(doc)
            return g is not None and g.owner == d.owner and g.inviter == d.owner
        return self.role(doc, peer) is not None

    def shared_with(self, peer: bytes) -> set[Any]:
        """Every doc ``peer`` may read (kept up to date; the caller must not change it)."""
        hit = self._shared.get(peer)
        if hit is not None:
            return hit
        docs: set[Any] = {d for d in self._index() if self.may_read(peer, d)}
        if self.may_see_book(peer):
            docs.add(BOOK_DOC)
        if len(self._shared) > 4096:
            self._shared.clear()
        self._shared[peer] = docs
        return docs

    def may_see_book(self, peer: bytes) -> bool:
        """The address book goes to authenticated peers only (never before a verified
        hello). It lists the nodes that chose to be listed (``NetConfig.listed``, on by
        default so a workshop's bootstrap can introduce everyone): an address is how
        to knock, not a key — what a node serves is decided by ``may_read``."""
        return True

    # ------------------------------------------------------------------ changes
    def change_problem(self, doc: bytes, acc: AccessView, actor: bytes, grant_raw: bytes | None,
                       touches_access: bool, names_admin: bool) -> tuple[str | None, Grant | None]:
        """Why ``actor`` may not make this change (None: it may), and the grant it shows.

        ``acc`` is the doc's access view as of the change's position in the batch.
        """
        grant = None
        if grant_raw is not None:
            try:
                grant = Grant.from_bytes(grant_raw)
            except InviteError:
                return "bad_capability", None
            if grant.holder != actor and not self.users.same_user(grant.holder, actor):
                # someone else's grant (seen in an envelope) presented as one's own
                return "foreign_grant", None
            problem = acc.grant_problem(grant, doc, actor)
            if problem:
                return problem, None
            acc = AccessView(acc.owner, acc.amap, {**acc.grants, actor: grant}, acc.users)
        if touches_access:
            if not acc.can_admin(actor, doc):
                return "not_admin", grant
            if names_admin and acc.role(actor, doc) != "owner":
                return "not_admin", grant
        elif not acc.can_write(actor, doc):
            return "not_writer", grant
        return None, grant

    # ------------------------------------------------------------------ grants in sessions
    def present(self, peer: bytes, raw: bytes) -> str | None:
        """``peer`` shows a grant in its session; remembered if it is ``peer``'s own."""
        g = self._verified.get(raw)
        if g is None:
            try:
                g = Grant.from_bytes(raw)
            except InviteError:
                self.reject("bad_capability")
                return "bad_capability"
            if len(self._verified) >= 65_536:  # bounded: forget the oldest half
                for k in list(self._verified)[:32_768]:
                    del self._verified[k]
            self._verified[raw] = g  # a reconnect does not verify the same grant again
        if g.holder != peer and not self.users.same_user(g.holder, peer):
            self.reject("foreign_grant")
            return "foreign_grant"
        d = self._index().get(g.doc)
        # A doc we do not hold yet (a relay asked to carry it next): the grant is kept
        # (verified, holder-bound) and judged against the doc's access list when used.
        if d is not None and d.readable:
            problem = self.view(g.doc).grant_problem(g, g.doc, peer)
            if problem:
                self.reject(problem)
                return problem
        elif d is not None and g.owner != d.owner:
            self.reject("bad_capability")
            return "bad_capability"
        mine = self.presented.setdefault(peer, {})
        if g.doc not in mine and len(mine) >= MAX_PRESENTED_PER_PEER:
            self.reject("too_many_grants")
            return "too_many_grants"
        mine[g.doc] = g
        cached = self._shared.get(peer)  # only this peer's answer for this doc changed
        if cached is not None and d is not None and self.may_read(peer, g.doc):
            cached.add(g.doc)
        return None

    def grants_for(self, peer: bytes) -> list[bytes]:
        """Our grants worth showing to ``peer``: only for docs where ``peer`` is the
        owner, the inviter, has a role we can see, or carries the doc for us — a
        grant is useless to others, but it would still tell them we are members."""
        return [raw for _doc, raw, _src in self.grants_shown(peer)]

    def grants_shown(self, peer: bytes) -> list[tuple[bytes, bytes, bool]]:
        """``grants_for`` as ``(doc, grant, source)``; ``source``: ``peer`` is the doc's
        owner or our inviter, so it holds the doc and can serve it to us at once."""
        out = []
        sibling = self.users.sibling(peer)
        for doc, d in self._index().items():
            g = d.mine
            if g is None or d.creds.grant is None:
                continue
            source = peer in (d.owner, g.inviter)
            if (sibling or source or doc in self.carriers.get(peer, ())
                    or (d.readable and self.view(doc).role(peer, doc) is not None)):
                out.append((doc, d.creds.grant, source))
        return out

    def forget_peer(self, peer: bytes) -> None:
        """``peer``'s last session ended: session-presented grants go with it."""
        if self.presented.pop(peer, None) is not None:
            self.changed(peer=peer)

    # ------------------------------------------------------------------ relaying
    def carry(self, peer: bytes, raw: bytes) -> tuple[str | None, Descriptor | None]:
        """``peer`` asks this relay to carry a doc, showing the owner's descriptor."""
        if not self.relay:
            self.reject("relay_disabled")
            return "relay_disabled", None
        try:
            desc = Descriptor.from_bytes(raw)
        except InviteError:
            self.reject("bad_descriptor")
            return "bad_descriptor", None
        d = self._index().get(desc.doc)
        if d is not None and (d.owner != desc.owner or d.encrypted != desc.encrypted):
            self.reject("bad_descriptor")
            return "bad_descriptor", None
        if peer != desc.owner:
            g = self.presented.get(peer, {}).get(desc.doc)
            if g is None or g.owner != desc.owner:
                self.reject("carry_not_member")
                return "carry_not_member", None
        mine = self.carried_for.setdefault(peer, set())
        if desc.doc not in mine and len(mine) >= MAX_CARRY_PER_PEER:
            self.reject("relay_too_many")
            return "relay_too_many", None
        mine.add(desc.doc)
        return None, desc

    def asked_to_carry(self, relay: bytes, docs: Iterable[bytes]) -> None:
        self.carriers.setdefault(relay, set()).update(docs)
        self.changed(peer=relay)

    def descriptors(self, docs: Iterable[bytes] | None = None) -> list[bytes]:
        idx = self._index()
        keys = idx.keys() if docs is None else [d for d in docs if d in idx]
        return [idx[d].creds.descriptor for d in keys if idx[d].creds.descriptor]

    # ------------------------------------------------------------------ presence
    def open_presence(self, sender: bytes, blob: Any, now_wall: float) -> PresenceClaim | str:
        """Verify a signed presence claim (sent by its origin or passed on by anyone)."""
        if not isinstance(blob, bytes) or len(blob) > MAX_PRESENCE:
            return "bad_presence"
        try:
            body, sig = cbor2.loads(blob)
            domain, doc, origin, state, expires, counter = cbor2.loads(body)
        except Exception:
            return "bad_presence"
        if (domain != _PRESENCE_DOMAIN or not isinstance(doc, bytes)
                or not isinstance(origin, bytes) or len(origin) != 32
                or not isinstance(sig, bytes) or not isinstance(expires, float)
                or type(counter) is not int):
            return "bad_presence"
        if not verify(origin, body, sig):
            return "forged_presence"
        if expires < now_wall - PRESENCE_SKEW or expires > now_wall + MAX_PRESENCE_TTL \
                + PRESENCE_SKEW:
            return "stale_presence"
        if not self.may_read(origin, doc) or not self.may_read(sender, doc):
            return "presence_not_member"
        return PresenceClaim(doc, origin, state, expires, counter)

    # ------------------------------------------------------------------ held envelopes
    def hold(self, peer: bytes | None, doc: bytes, size: int) -> bool:
        """May ``size`` more bytes of not-yet-verifiable envelopes from ``peer`` be held?"""
        h, key = self.held, peer or b""
        if (h.by_peer[key] + size > HELD_PER_PEER or h.by_doc[doc] + size > HELD_PER_DOC
                or h.total + size > HELD_TOTAL):
            return False
        h.by_peer[key] += size
        h.by_doc[doc] += size
        h.total += size
        return True

    def release(self, peer: bytes | None, doc: bytes, size: int) -> None:
        h, key = self.held, peer or b""
        h.by_peer[key] -= size
        h.by_doc[doc] -= size
        h.total -= size
        if h.by_peer[key] <= 0:
            del h.by_peer[key]
        if h.by_doc[doc] <= 0:
            del h.by_doc[doc]
