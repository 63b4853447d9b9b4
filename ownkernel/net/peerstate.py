"""Per-peer sync knowledge: what a peer is known to hold, what we already sent it.

Pure bookkeeping for :class:`ownkernel.net.protocol.PeerSession`, split out so
the state machine reads on its own. ``PullTracker`` is the one node-wide piece:
a host that runs many sessions shares one so that several peers announcing the
same change cause one pull, not one per peer.
"""

from __future__ import annotations

from collections.abc import Mapping

from .wire import DocId


def vv_max(a: Mapping[bytes, int], b: Mapping[bytes, int]) -> dict[bytes, int]:
    out = dict(a)
    for actor, seq in b.items():
        if seq > out.get(actor, 0):
            out[actor] = seq
    return out


class PeerKnowledge:
    """What one peer holds, per doc: the union of three sources.

    * ``said``: what its `have`s and the ``vv`` of its `changes` told us. A full
      `have` replaces it (the peer's own word on its whole state; frames arrive
      in order, so a later word is newer), a partial one only raises it.
    * ``sent``: what we sent it (answers to its `have`, pushes with ``upto``).

    The *cursor* ``max(said, sent)`` is what a `have` is answered beyond, so a
    repeated ``have {}`` costs nothing after the first answer. ``sent`` may be
    wrong when frames were lost: the host calls ``reset_sent`` when its
    transport fails, and a `have` naming less than we sent, more than
    ``resend_after`` seconds after we sent it, is believed (so a silent loss
    heals, at most one resend per doc per ``resend_after``).
    """

    def __init__(self, resend_after: float) -> None:
        self.resend_after = resend_after
        self.said: dict[DocId, dict[bytes, int]] = {}
        self.sent: dict[DocId, dict[bytes, int]] = {}
        self.sent_at: dict[DocId, float] = {}

    def heard(self, doc: DocId, vv: Mapping[bytes, int], *, replace: bool = False) -> None:
        if replace:
            self.said[doc] = {a: s for a, s in vv.items() if s}
        elif vv:
            self.said[doc] = vv_max(self.said.get(doc, {}), vv)

    def sent_upto(self, doc: DocId, vv: Mapping[bytes, int], now: float) -> None:
        if vv:
            self.sent[doc] = vv_max(self.sent.get(doc, {}), vv)
            self.sent_at[doc] = now

    def reset_sent(self, doc: DocId | None = None) -> None:
        if doc is None:
            self.sent.clear()
            self.sent_at.clear()
        else:
            self.sent.pop(doc, None)
            self.sent_at.pop(doc, None)

    def believe(self, doc: DocId, vv: Mapping[bytes, int], now: float,
                actors: Mapping[bytes, int] | None = None) -> None:
        """The peer says it holds ``vv`` (for ``actors``, or all): forget stale sends below it."""
        sent = self.sent.get(doc)
        if not sent or now - self.sent_at.get(doc, now) < self.resend_after:
            return
        names = actors if actors is not None else sent
        if any(vv.get(a, 0) < sent.get(a, 0) for a in names):
            self.reset_sent(doc)

    def cursor(self, doc: DocId) -> dict[bytes, int]:
        return vv_max(self.said.get(doc, {}), self.sent.get(doc, {}))

    def has(self, doc: DocId, actor: bytes, seq: int) -> bool:
        return (self.said.get(doc, {}).get(actor, 0) >= seq
                or self.sent.get(doc, {}).get(actor, 0) >= seq)


class PullTracker:
    """Node-wide pulls in flight: ``claim`` is True for the first asker of (doc, actor, seq).

    A pull that is not answered within ``timeout`` seconds may be claimed
    again (through another peer), so a lost answer delays, never stalls.
    """

    def __init__(self, timeout: float = 2.0, limit: int = 100_000) -> None:
        self.timeout = timeout
        self.limit = limit
        self._inflight: dict[tuple[DocId, bytes], tuple[int, float]] = {}

    def claim(self, doc: DocId, actor: bytes, seq: int, now: float) -> bool:
        key = (doc, actor)
        cur = self._inflight.get(key)
        if cur is not None and cur[0] >= seq and cur[1] > now:
            return False
        if len(self._inflight) >= self.limit:  # bounded: drop what has expired
            self._inflight = {k: v for k, v in self._inflight.items() if v[1] > now}
            if len(self._inflight) >= self.limit:
                self._inflight.clear()
        self._inflight[key] = (seq, now + self.timeout)
        return True


__all__ = ["PeerKnowledge", "PullTracker", "vv_max"]
