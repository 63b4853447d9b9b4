"""The kernel's side of ``@codemirror/collab``: one bridge per view, as an OT server keeps.

Pure: change sets in, change sets out; no widget, no lock, no I/O (the editor,
editor.py, feeds it and applies what it returns). The kernel numbers every update
it accepts (its version) and sends them all, in order, to every view. A view
pushes its own updates with the version it had received when it made them; by
then the kernel may have accepted others. Its :class:`Bridge` replays what the
view does with its unconfirmed updates as it receives ours (``receiveUpdates``:
drop its own as they come back, rebase the rest over everyone else's), so we know
the exact document each pushed update was made on and can map it onto ours with
CodeMirror's own rules (utf16.ChangeSet).

``since``: the updates after the bridge's version, ``[(client id, change set)]``
in the kernel's order (the editor keeps the last ``HISTORY`` of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ownkernel.ui.utf16 import ChangeSet

__all__ = ["Bridge", "advance", "through_bridge"]

Update = tuple[str, ChangeSet]


@dataclass
class Bridge:
    """What the kernel knows of one view (client id): the version ``v`` it had
    last received when it pushed, its updates not yet confirmed by then (in its
    own frame, as it holds them), and the number of the next update it sends."""

    gen: int
    v: int
    unconfirmed: list[ChangeSet] = field(default_factory=list)
    seq: int = 0


def advance(br: Bridge, since: Sequence[Update], v: int, client: str) -> None:
    """Replay on ``br`` what the view did on receiving our updates up to version ``v``
    (``since`` starts after ``br.v``)."""
    if not br.unconfirmed:  # nothing to rebase: no need for the history
        br.v = v
        return
    for c, h in since[:v - br.v]:
        if c == client:
            br.unconfirmed.pop(0)  # confirmed (ours come back in order)
            if not br.unconfirmed:
                break
        else:
            br.unconfirmed = rebase(br.unconfirmed, h)
    br.v = v


def through_bridge(br: Bridge, since: Sequence[Update], own: ChangeSet,
                   client: str) -> ChangeSet:
    """``own``, made on the view's document (version ``br.v`` plus its unconfirmed
    updates), mapped onto the document after ``since``. ValueError if the push does
    not match what the view was sent."""
    pending = list(br.unconfirmed)
    for c, h in since:
        if c == client:
            if not pending:
                raise ValueError(f"push from {client} does not match what it was sent")
            pending.pop(0)
        else:
            # the other update as it looks after the view's pending ones;
            # ours go after theirs at the same place (as receiveUpdates maps)
            h = rebase_over(pending, h)
            own = own.map(h)
    if pending:
        raise ValueError(f"push from {client} skips some of its own updates")
    return own


def rebase(pending: list[ChangeSet], other: ChangeSet) -> list[ChangeSet]:
    """A view's unconfirmed updates after it received ``other`` (receiveUpdates)."""
    out = []
    for u in pending:
        out.append(u.map(other))
        other = other.map(u, True)
    return out


def rebase_over(pending: list[ChangeSet], other: ChangeSet) -> ChangeSet:
    """``other`` as it applies after the view's unconfirmed updates; ``pending``
    is rebased over it in place (what the view will do on receiving it)."""
    for i, u in enumerate(pending):
        pending[i] = u.map(other)
        other = other.map(u, True)
    return other
