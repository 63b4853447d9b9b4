"""`Names`: what this node calls itself (name and colour) and what its peers call themselves.

A part of :class:`~ownkernel.node.node.Node` (``node._names``), behind its
``name``, ``color``, ``on_profile`` and ``peer_profiles``. Our name and colour are
kept in the profile's settings; a change is told at once to the peers present in
a doc with us (the signed presence claim, re-signed), to every connected peer (a
`profile` message), to our user's other devices (pairing.py), and to the others
at the next hello. What a peer calls itself only ever means "this key calls
itself X": for display, never for trust.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ownkernel.node.node import Node

__all__ = ["MAX_NAME", "PALETTE", "Names", "is_colour"]

MAX_NAME = 64
# readable on white, distinct from each other (a first-start colour is one of these)
PALETTE = ("#d1495b", "#e07a1f", "#c9a227", "#5a9e2f", "#2a9d8f", "#1f77b4",
           "#4a56c4", "#8e44ad", "#c2418f", "#7f5539", "#3d7068", "#6c757d")


def is_colour(value: str) -> bool:
    return (len(value) == 7 and value[0] == "#"
            and all(c in "0123456789abcdefABCDEF" for c in value[1:]))


class Names:
    """Our name and colour, and our peers' as they last said them."""

    def __init__(self, node: Node, name: str | None) -> None:
        self.node = node
        self.listeners: list[Callable[[], None]] = []
        store = node.store
        if name is not None:
            if store.get_setting("name") != name:  # no fsync'd write when unchanged
                store.set_setting("name", name)
            self.name = name
        else:
            self.name = store.get_setting("name") or f"node-{node.short_id}"
        stored = store.get_setting("color")
        if isinstance(stored, str) and is_colour(stored):
            self.color = stored
        else:  # first start: a colour at random, kept from now on
            self.color = secrets.choice(PALETTE)
            store.set_setting("color", self.color)

    def set_name(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
            raise ValueError(f"a node name is 1 to {MAX_NAME} characters of text, "
                             f"not {value!r:.80}")
        self.set("name", value.strip())

    def set_color(self, value: str) -> None:
        if not (isinstance(value, str) and is_colour(value)):
            raise ValueError(f"a colour is '#rrggbb' (hex), not {value!r:.40}")
        self.set("color", value.lower())

    def set(self, key: str, value: str) -> None:
        """Store ``key`` ("name" or "color") and tell everyone who shows it."""
        node = self.node
        with node.lock:
            node._check_open()
            if node.store.get_setting(key) != value:
                node.store.set_setting(key, value)
            setattr(self, key, value)
        net = node.network
        if net is None:
            return

        def restamp() -> None:  # node thread: every presence claim we make, re-signed
            for doc, st in list(net.presence.local_state.items()):
                if isinstance(st, dict):
                    net.set_presence(doc, {**st, "name": self.name, "color": self.color})
            net.send_profile(self.name, self.color)  # and every connected peer
            node._devices.profile_changed()  # and our user's other devices (pairing.py)
            for cb in list(self.listeners):
                cb()
        try:
            net.call_soon(restamp)
        except RuntimeError:  # network closing: nobody to tell
            pass

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on the node thread after our name or colour changed;
        returns the function that stops it."""
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback) if callback in self.listeners else None

    def of_peers(self, ids: Iterable[bytes] | None = None) -> dict[bytes, tuple[str, str]]:
        """``{peer id: (name, colour)}`` as the peers last said: see ``Node.peer_profiles``."""
        node = self.node
        net = node.network
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
                    if pid in out or pid == node.id:
                        continue  # presence is re-signed at once on a change: fresher
                    e = net.book.get(pid)
                    if e is not None and e.name:
                        out[pid] = (e.name, "")
            return out
        return net._call(read)
