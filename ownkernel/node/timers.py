"""The network's timer round: session timers, dialing, the address book, presence.

One coroutine (``TimerRound.run``) on the node thread wakes when the earliest
session timer is due (pings, anti-entropy, announces, delayed pulls), at least
``tick`` and at most ``idle_tick`` apart, or ``QUIET_TICK`` while no dial is
pending. Sessions report the timers they set (``on_due`` → ``due_at``), so no
pass over every session is needed per received frame; connection events and
urgent dials wake it at the next tick. Idle, a node wakes about once a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from ownkernel.node.addressbook import BOOK_DOC

if TYPE_CHECKING:
    from ownkernel.node.network import NodeNetwork

__all__ = ["QUIET_TICK", "TimerRound"]

log = logging.getLogger("ownkernel.node.network")

# The timer round's longest sleep while no dial is pending (every known peer is
# online): the address-book round runs once a second anyway, and the sessions'
# timers (pings, anti-entropy, announces) wake it sooner through next_due/on_due.
QUIET_TICK = 1.0
# Signatures of live changes taken from their authors (node/direct.py) are
# verified at most this often: one verification per typing author, not per key.
# Such changes are also written then, if typing stopped (store/deferred.py).
SETTLE_EVERY = 1.0


class TimerRound:
    """The timer round of one :class:`NodeNetwork` (a part of it, like Sharing)."""

    def __init__(self, net: NodeNetwork) -> None:
        self.net = net
        # the round sleeps on ``_wake`` until ``_at`` (``_timer`` fires it)
        self._wake: asyncio.Future[None] | None = None
        self._at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """The loop of timer rounds, until the network's main task cancels it."""
        net = self.net
        cfg = net.config
        last_book = last_presence = last_dial = last_settle = 0.0
        dialed_at: dict[bytes, int] | None = None  # the book's version last dialed from
        while True:
            now = time.monotonic()
            try:
                for link in list(net.links.values()):
                    net._handle(link, link.session.tick(now))
                await net.dialing.step(now)
                node = net.node
                if now - last_settle >= SETTLE_EVERY and (node.replica.unsettled
                                                          or node.store.deferring):
                    last_settle = now
                    with node.lock, node.store.batch(durable=False):
                        node.replica.settle()
                        node.store.write_deferred()  # (held live changes, store/deferred.py)
                if now - last_book >= 1.0:
                    last_book = now
                    assert net.book is not None
                    blob = net.book.announce(
                        net.node.name, net.addresses if cfg.listed else [], cfg.relay)
                    if blob is not None:
                        net.sharing.forward(BOOK_DOC, [blob], None, book=True)
                    net.book.save()
                    # Re-reading the book verifies every entry's signature (~1 ms a
                    # second per node at idle): only when it changed (ingest dials at
                    # once too), and every 30 s as a backstop.
                    version = net.book.version
                    if version != dialed_at or now - last_dial >= 30.0:
                        dialed_at, last_dial = version, now
                        net.dialing.dial_from_book()
                if now - last_presence >= cfg.presence_ttl / 3:
                    last_presence = now
                    net.presence.reseal()
                    for link in list(net.by_peer.values()):
                        net.presence.send(link)
                net.outbox.flush_all()
            except Exception:  # a bug in one round must not stop the node syncing
                net.count("tick-error")
                log.exception("network tick failed")
            await self.nap()

    def next_due(self) -> float:
        return min((link.session.next_due() for link in self.net.links.values()),
                   default=math.inf)

    async def nap(self) -> None:
        """Sleep until the next timer round: a session's earliest timer, at least
        ``tick`` and at most ``idle_tick`` away (idle, a node wakes 4 times a
        second, not 20: that polling was most of an idle node's CPU)."""
        cfg = self.net.config
        now = time.monotonic()
        longest = cfg.idle_tick if self.dialing_busy() else max(cfg.idle_tick, QUIET_TICK)
        delay = min(max(self.next_due() - now, cfg.tick), longest)
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        self._at = now + delay
        self._timer = loop.call_later(delay, _wake_up, wake)
        try:
            await wake
        finally:
            self._timer.cancel()
            self._wake = None

    def dialing_busy(self) -> bool:
        """Has the dialer anything to do (a peer it knows an address of is offline)?
        Then the timer round keeps its ``idle_tick`` pace for redials and give-ups."""
        online = self.net.online
        return any(d.addresses and not d.never and not online(d.node_id)
                   for d in self.net.dialing.planner.dials.values())

    def on_conn_event(self, ev: Any) -> None:
        self.net.dialing.on_conn_event(ev)
        self.due_at(0.0)  # a dial may have work now: a timer round at the next tick

    def wake_soon(self) -> None:
        """A timer round at the next tick (from any thread)."""
        if threading.current_thread() is self.net._thread:
            self.due_at(0.0)
        elif self.net._loop is not None and not self.net._closed:
            try:
                self.net._loop.call_soon_threadsafe(self.due_at, 0.0)
            except RuntimeError:  # loop closed
                pass

    def due_at(self, at: float) -> None:
        """A session set a timer (an announce, a delayed pull: its ``on_due``): bring
        the sleeping timer round forward to it. Sessions report their timers, so no
        pass over every session's ``next_due()`` is needed per frame. (While the
        round runs, ``nap`` reads every session's ``next_due()`` after it.)"""
        wake = self._wake
        if wake is None or wake.done() or at >= self._at:
            return
        due = max(at, time.monotonic() + self.net.config.tick)
        if due < self._at:
            assert self._timer is not None
            self._timer.cancel()
            self._at = due
            self._timer = asyncio.get_running_loop().call_later(
                due - time.monotonic(), _wake_up, wake)


def _wake_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
