"""A document's access list, kept inside the document itself.

It is the reserved map root ``_access`` (an LWW map) with flat keys, so that
concurrent grants of different people never overwrite each other:

    "owner"                 -> owner id (informational; the root of trust is the
                               owner recorded when the doc was created or joined)
    "role:<id hex>"         -> "admin" | "writer" | "reader"
    "revoked:<token hex>"   -> True
    "token:<token hex>"     -> {"c": capability, "n": inviter id}   (issued invites)

Rules (checked on every change that arrives, before anything is stored):
- only the owner and admins may change ``_access``; only the owner names admins;
- the owner, admins and writers may change anything else;
- an author may also write (or read) by a holder-bound grant (grants.py): an
  invite redeemed for the author's own key, issued by the owner or an admin,
  whose token is not revoked. A grant names its holder, so it only ever counts
  for that holder.

Users (users.py, docs/auth.md): a device certified by a user acts for it — the
owner device's user owns the doc, ``role:<user id>`` covers each of its
devices, and one device's grant counts for its siblings. Which changes of a
revoked device count is decided by its revocation's seq cut (replica.py), not
here.

Access is judged against the receiving node's current view (documented
limitation: a change made concurrently with a revocation may be accepted by
nodes that have not yet seen the revocation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ownkernel.node.grants import Grant

if TYPE_CHECKING:
    from ownkernel.node.users import Users

__all__ = ["ACCESS_KEY", "ACCESS_ROOT", "RANK", "AccessView", "role_key", "revoked_key"]

ACCESS_ROOT = "_access"
ACCESS_KEY = "m:" + ACCESS_ROOT
META_ROOT = "_meta"
RANK = {None: 0, "reader": 1, "writer": 2, "admin": 3, "owner": 4}


def role_key(actor: bytes) -> str:
    return "role:" + actor.hex()


def revoked_key(token_id: bytes) -> str:
    return "revoked:" + token_id.hex()


def token_key(token_id: bytes) -> str:
    return "token:" + token_id.hex()


class AccessView:
    """Roles in one doc, from its owner, its ``_access`` map and presented capabilities."""

    def __init__(self, owner: bytes, amap: Any, grants: dict[bytes, Grant],
                 users: Users | None = None) -> None:
        self.owner = owner
        self.amap = amap  # anything with .get(key, default): the crdt Map or a dict
        self.grants = grants
        self.users = users  # device -> user (users.py); None: devices only

    def explicit_role(self, actor: bytes) -> str | None:
        if actor == self.owner:
            return "owner"
        r = self.amap.get(role_key(actor))
        best = r if r in ("admin", "writer", "reader") else None
        # A device acts for its user: the owner device's user owns the doc, and a
        # role given to a user id covers each of its devices. Revocation is not
        # judged here but by seq cut at admission (a revoked device's earlier
        # changes keep the role they had) and in Gate.may_read.
        u = self.users.user_of(actor) if self.users is not None else None
        if u is not None:
            if u == self.users.user_of(self.owner):  # type: ignore[union-attr]
                return "owner"
            ru = self.amap.get(role_key(u))
            if ru in ("admin", "writer", "reader") and RANK[ru] > RANK[best]:
                best = ru
        return best

    def _same_user(self, a: bytes, b: bytes) -> bool:
        if self.users is None:
            return False
        u = self.users.user_of(a)
        return u is not None and u == self.users.user_of(b)

    def grant_problem(self, g: Grant, doc: bytes, holder: bytes) -> str | None:
        """Why grant ``g`` gives ``holder`` nothing here (None: it is valid).
        A grant held by one device of a user counts for all its devices."""
        if g.holder != holder and not self._same_user(g.holder, holder):
            return "foreign_grant"
        if g.doc != doc or g.owner != self.owner:
            return "bad_capability"
        if RANK[self.explicit_role(g.inviter)] < RANK["admin"]:
            return "bad_capability"
        if self.amap.get(revoked_key(g.token_id)):
            return "revoked"
        return None

    def role(self, actor: bytes, doc: bytes) -> str | None:
        best = self.explicit_role(actor)
        g = self.grants.get(actor)
        if g is None and self.users is not None and self.users.user_of(actor) is not None:
            g = next((h for k, h in self.grants.items() if self._same_user(k, actor)), None)
        if (g is not None and self.grant_problem(g, doc, actor) is None
                and RANK[g.role] > RANK[best]):
            best = g.role
        return best

    def can_write(self, actor: bytes, doc: bytes) -> bool:
        return RANK[self.role(actor, doc)] >= RANK["writer"]

    def can_admin(self, actor: bytes, doc: bytes) -> bool:
        return RANK[self.role(actor, doc)] >= RANK["admin"]

    def snapshot(self) -> dict[str, Any]:
        """Plain dict of the access list (stored in the documents table for listings)."""
        items = self.amap.items() if hasattr(self.amap, "items") else []
        return {"owner": self.owner, **{k: v for k, v in items if k != "owner"}}
