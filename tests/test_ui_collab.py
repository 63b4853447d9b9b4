"""The kernel's collab authority (ownkernel/ui/collab.py) driven directly: views that
type and push at once, the kernel's own edits, and both directions delayed at random.
Every view must end with the kernel's text. The views follow CodeMirror's
``receiveUpdates`` (written out here, not taken from collab.py); the change-set
algebra underneath is checked against CodeMirror itself in test_ui_changeset.py."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from test_ui_changeset import apply, random_changes

from ownkernel.ui.collab import Bridge, advance, through_bridge
from ownkernel.ui.utf16 import ChangeSet, units


class Kernel:
    """What editor.py does with a push (``Editor._on_push``), minus the widget."""

    def __init__(self, doc: str) -> None:
        self.doc = doc
        self.updates: list[tuple[str, ChangeSet]] = []
        self.bridges: dict[str, Bridge] = {}

    def edit(self, cs: ChangeSet) -> None:
        self.doc = apply(self.doc, cs)
        self.updates.append(("py", cs))

    def push(self, client: str, v: int, seq: int, updates: list[ChangeSet]) -> None:
        br = self.bridges.setdefault(client, Bridge(0, 0))
        assert seq <= br.seq, "pushes arrive in order here"
        if seq + len(updates) <= br.seq:
            return
        advance(br, self.updates[br.v:] if br.unconfirmed else [], v, client)
        for own in updates[br.seq - seq:]:
            cs = through_bridge(br, self.updates[br.v:], own, client)
            assert cs.length == units(self.doc)
            self.doc = apply(self.doc, cs)
            self.updates.append((client, cs))
            br.unconfirmed.append(own)
            br.seq += 1


@dataclass
class View:
    """A CodeMirror view with the collab extension: pushes each update at once."""

    client: str
    doc: str
    v: int = 0
    seq: int = 0
    unconfirmed: list[ChangeSet] = field(default_factory=list)
    outbox: deque[tuple[int, int, ChangeSet]] = field(default_factory=deque)

    def type(self, cs: ChangeSet) -> None:
        self.doc = apply(self.doc, cs)
        self.unconfirmed.append(cs)
        self.outbox.append((self.v, self.seq, cs))
        self.seq += 1

    def receive(self, client: str, h: ChangeSet) -> None:
        self.v += 1
        if client == self.client:
            self.unconfirmed.pop(0)  # ours, confirmed: already in our doc
            return
        for i, u in enumerate(self.unconfirmed):  # receiveUpdates: rebase ours over it
            self.unconfirmed[i], h = u.map(h), h.map(u, True)
        self.doc = apply(self.doc, h)


@pytest.mark.parametrize("seed", range(40))
def test_views_and_kernel_converge_whatever_the_delays(seed: int) -> None:
    rnd = random.Random(seed)
    start = "".join(rnd.choice("ab😀\n") for _ in range(rnd.randint(0, 8)))
    kernel = Kernel(start)
    views = [View(f"v{i}", start) for i in range(rnd.randint(1, 3))]
    for _ in range(60):
        r, view = rnd.random(), rnd.choice(views)
        if r < 0.3:
            view.type(random_changes(rnd, view.doc))
        elif r < 0.4:
            kernel.edit(random_changes(rnd, kernel.doc))
        elif r < 0.7 and view.outbox:
            v, seq, cs = view.outbox.popleft()
            kernel.push(view.client, v, seq, [cs])
        elif view.v < len(kernel.updates):
            view.receive(*kernel.updates[view.v])
    for view in views:  # the network drains: every push in, every update out
        while view.outbox:
            v, seq, cs = view.outbox.popleft()
            kernel.push(view.client, v, seq, [cs])
    for view in views:
        while view.v < len(kernel.updates):
            view.receive(*kernel.updates[view.v])
        assert not view.unconfirmed
        assert view.doc == kernel.doc, (seed, view.client)


def test_a_resent_push_is_applied_once() -> None:
    """A view that switched channel resends all it has unconfirmed, numbered from the
    first: what the kernel has already is skipped, the rest applied."""
    kernel = Kernel("abc")
    view = View("v0", "abc")
    view.type(ChangeSet.single(3, 0, 0, "X"))
    view.type(ChangeSet.single(4, 4, 0, "Y"))
    (v0, s0, u0), (v1, s1, u1) = view.outbox
    kernel.push("v0", v0, s0, [u0])  # the first arrived, the second was lost
    kernel.push("v0", v1, s0, [u0, u1])  # resent from the first unconfirmed
    assert kernel.doc == "XabcY"
    assert [c for c, _ in kernel.updates] == ["v0", "v0"]


def test_a_push_that_skips_its_own_updates_is_refused() -> None:
    kernel = Kernel("abc")
    kernel.push("v0", 0, 0, [ChangeSet.single(3, 0, 0, "X")])
    br = kernel.bridges["v0"]
    br.unconfirmed.clear()  # as if the view claimed it never sent it
    with pytest.raises(ValueError, match="does not match what it was sent"):
        through_bridge(br, kernel.updates[br.v:], ChangeSet.single(4, 0, 0, "Y"), "v0")
