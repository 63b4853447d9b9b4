"""Grants, the relay flag, and carry requests: the network's part for what a peer
may read beyond its roles, and for relaying.

All of it travels in protocol messages that a session accepts only after a
verified hello (net/session.py): nothing here is answered, or even parsed, for a
stranger that has not said who it is.

- ``grants`` — our holder-bound grants (grants.py), sent after hello to peers
  entitled to know we hold them (Gate.grants_for): a reader that never wrote is
  then offered the doc. Received grants go to Gate.present; the session then
  runs its digest exchange again (``refresh``) for the docs they opened.
- hello ``relay`` flag — a claim: it only makes us ask that peer to carry our
  docs (when ``use_relays``).
- ``carry`` — owner-signed descriptors of docs a relay should carry. A relay
  carries only what an owner signed (owner and encryption fixed by it), for the
  owner or a member who showed its grant: Gate.carry. For a doc in clear it
  judges access like any node; for an encrypted one it stores and forwards
  ciphertext to the owner and to holders of grants the owner signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ownkernel.node.network import Link, NodeNetwork

__all__ = ["Relay"]


class Relay:
    """Grants out and in, carry requests out and in (and relaying when enabled)."""

    def __init__(self, net: NodeNetwork, enabled: bool, use_relays: bool) -> None:
        self.net = net
        self.gate = net.node.gate
        self.enabled = enabled
        self.use_relays = use_relays
        self.relays: set[bytes] = set()  # peers whose hello says they relay

    # -- after a verified hello --------------------------------------------------
    def greet(self, link: Link) -> None:
        """Show our grants once per connection, to a peer whose hello we verified."""
        if link.greeted or link.peer is None:
            return
        link.greeted = True
        self.net.node._devices.greet(link)  # certificates first, then grants
        self.net.sharing.show_grants(link)  # (with a have for docs we hold nothing of)

    def on_grants(self, link: Link, grants: Sequence[bytes]) -> None:
        peer = link.peer
        assert peer is not None
        grants = self.net.node._devices.on_blobs(link, grants)  # user records: pairing.py
        if not grants:
            self.net.sharing.offer_new(link)
            return
        with self.net.node.lock:
            for g in grants:
                self.gate.present(peer, g)
        self.net.privilege(link)  # a member now: never evicted for strangers
        self.net.sharing.offer_new(link)

    def on_carry(self, link: Link, docs: Sequence[bytes]) -> None:
        peer = link.peer
        assert peer is not None
        node = self.net.node
        added = False
        for raw in docs:
            with node.lock:
                _problem, desc = self.gate.carry(peer, raw)
                if desc is None:
                    continue
                node.carry_doc(desc)  # (tells the gate about the new doc)
            added = True
        if added:
            self.net.sharing.offer_new(link)

    def ask(self, link: Link, docs: list[bytes] | None = None) -> None:
        """Ask relay ``link.peer`` to carry our docs (all, or ``docs``)."""
        assert link.peer is not None
        with self.net.node.lock:
            descs = self.gate.descriptors(docs)
            ids = list(docs) if docs is not None else list(self.gate.docs())
            self.gate.asked_to_carry(link.peer, ids)
            grants = self.gate.grants_for(link.peer)
        if grants:
            link.session.send_grants(grants)
        if descs:
            link.session.send_carry(descs)
        self.net.sharing.offer_new(link)

    def ask_all_relays(self, docs: list[bytes]) -> None:
        if not self.use_relays:
            return
        for peer in list(self.relays):
            link = self.net.link_of(peer)
            if link is not None and link.session.is_open:
                self.ask(link, docs)

    def forget(self, peer: bytes) -> None:
        self.relays.discard(peer)
