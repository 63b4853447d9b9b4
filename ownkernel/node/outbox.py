"""`Outbox`: the network's one writer. Sessions queue frames; they leave in order.

Every session (protocol.py) only queues messages; this part takes its frames
(``flush``), puts them in one queue for all connections, and hands them to the
transport in the order they were queued (``kick``). The transport never waits
(NOBLOCK sends, byte budgets with a backlog: net/flow.py), so no writer task is
needed per burst. Two rules come from elsewhere:

- inside a burst of received frames (inbox.py) nothing leaves before the burst's
  store transaction commits: nothing received is acknowledged or passed on
  before it is stored; the inbox kicks again after it;
- a peer that does not read (``Transport.congested``) keeps its frames in its
  session until it drains; a session with more to produce (a catch-up) is asked
  again once what is queued has gone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ownkernel.net.transport import ConnId
    from ownkernel.node.network import Link, NodeNetwork

__all__ = ["Outbox"]


class Outbox:
    """The one writer of a :class:`~ownkernel.node.network.NodeNetwork` (a part of it,
    like Sharing); runs on the network thread."""

    def __init__(self, net: NodeNetwork) -> None:
        self.net = net
        self._queue: deque[tuple[ConnId, bytes]] = deque()
        self._sending = False
        self._more_scheduled = False

    def flush(self, link: Link, kick: bool = True) -> None:
        """Queue ``link``'s frames and send them (``kick=False``: the caller sends
        after queueing several links' frames, as flush_all does)."""
        session = link.session
        if not session.has_output:
            return
        transport = self.net.transport
        if transport is not None and transport.congested(link.conn):
            return  # the peer is not reading: keep it in the session until it drains
        for f in session.data_to_send():
            self._queue.append((link.conn, f))
        if kick:
            self.kick()
        if session.wants_send and not self._more_scheduled:
            # more answers to produce (a catch-up): after what is queued now has
            # gone, and after any frames that arrived meanwhile were handled
            self._more_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_more)

    def flush_all(self) -> None:
        for link in list(self.net.links.values()):
            if link.session.has_output:  # (most links have nothing: no call for them)
                self.flush(link, kick=False)
        self.kick()  # one writer pass for all links (a keystroke goes to n-1 peers)

    def _flush_more(self) -> None:
        self._more_scheduled = False
        if self._queue:  # the writer has not caught up: look again next turn
            self._more_scheduled = True
            asyncio.get_running_loop().call_later(0.002, self._flush_more)
            return
        for link in list(self.net.links.values()):
            if link.session.wants_send:
                self.flush(link)

    def kick(self) -> None:
        """Send what is queued now, unless inside a burst of received frames."""
        if self._queue and not self._sending and not self.net.inbox.in_burst:
            self.send_queued()

    def send_queued(self) -> None:
        """Frames leave in the order they were queued."""
        transport = self.net.transport
        if transport is None:
            return
        self._sending = True  # (a frame lost below must not re-enter this loop)
        try:
            while self._queue:
                conn, frame = self._queue.popleft()
                if not transport.send_now(conn, frame):
                    link = self.net.links.get(conn)
                    if link is not None:  # lost: answer its next `have` in full
                        link.session.reset_sent()
        finally:
            self._sending = False
