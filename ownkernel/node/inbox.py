"""`Inbox`: received frames, handled in bursts under one store transaction.

The transport hands every frame to ``on_frame``; frames are queued and handled
together once the socket's waiting frames are read (the transport's
``on_drained``), or at once when ``INBOX_BURST`` are waiting (a flood then waits
for us instead of piling up in memory). A burst runs under the node lock, one
``Store.batch(durable=False)`` (other authors' changes are not fsynced: peers
hold them; anything else written is, once for the burst) and a paused cyclic GC.
Events its frames cause (``doc_changed``...) are held until the burst commits,
and nothing is sent before then (outbox.py): nothing received is acknowledged or
passed on before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ownkernel.crdt.integrate import gc_paused
from ownkernel.net.protocol import decode

if TYPE_CHECKING:
    from ownkernel.net.transport import Incoming
    from ownkernel.node.network import NodeNetwork

__all__ = ["INBOX_BURST", "Inbox"]

log = logging.getLogger("ownkernel.node.network")

INBOX_BURST = 64  # frames handled under one store transaction


def _is_hello(frame: bytes) -> bool:
    try:
        msg = decode(frame)
    except Exception:
        return False
    return isinstance(msg, dict) and msg.get("type") == "hello"


class Inbox:
    """The received frames of a :class:`~ownkernel.node.network.NodeNetwork` (a part
    of it, like Sharing); runs on the network thread."""

    def __init__(self, net: NodeNetwork) -> None:
        self.net = net
        self._frames: list[Incoming] = []
        self._scheduled = False
        self.cut_burst = False  # the frame just handled asks to end the burst (grants)
        # events fired while a burst runs, fired once it is stored; None outside one
        self.held_events: list[tuple[str, tuple[Any, ...]]] | None = None

    @property
    def in_burst(self) -> bool:
        return self.held_events is not None

    def on_frame(self, inc: Incoming) -> None:
        """Transport callback, once per frame: queue it; a burst is handled in one go."""
        stop = self.net._stop
        if stop is None or stop.is_set():
            return
        self._frames.append(inc)
        if len(self._frames) >= INBOX_BURST:
            # A full burst is handled right here, inside the transport's receive loop:
            # a flood then waits for us (backpressure) instead of piling up in memory.
            self.process()
        # Else the transport calls process (its on_drained) once the socket's waiting
        # frames are read: one batch per read, and no callback of ours per frame
        # (that was one more loop pass for every frame received).

    def process(self) -> None:
        """Handle the queued frames under one store transaction, then fire events
        and send (see the module docstring)."""
        self._scheduled = False  # (a pending call finds nothing: harmless)
        burst, self._frames = self._frames, []
        if not burst:
            return
        net = self.net
        node = net.node
        self.held_events = []
        try:
            # The cyclic GC is held for the (bounded) burst: a catch-up allocates
            # many small acyclic objects, and in a process holding thousands of
            # docs each full collection it triggers scans them all (measured:
            # 25 % of ingest time at 2,000 docs).
            with node.lock, node.store.batch(durable=False), gc_paused(True):
                for i, inc in enumerate(burst):
                    self.cut_burst = False
                    try:
                        self._receive(inc)
                    except Exception:  # one frame's bug must not undo the others
                        net.count("handler-error")
                        log.exception("handling a frame failed")
                    if self.cut_burst and i + 1 < len(burst):
                        # A frame of grants opened docs to a peer and queued their
                        # offers: send those now, and handle the frames behind it on
                        # the next turn. A peer showing 10,000 grants (40 frames) then
                        # gets its first docs while we still check the later grants.
                        self._frames[:0] = burst[i + 1:]
                        if not self._scheduled:
                            self._scheduled = True
                            asyncio.get_running_loop().call_soon(self.process)
                        break
        except Exception:
            net.count("batch-error")
            log.exception("storing a burst of frames failed")
        finally:
            held, self.held_events = self.held_events, None
        for event, args in held:
            net._emit(event, *args)
        net.outbox.flush_all()  # (also sends frames queued during the burst: a close)

    def _receive(self, inc: Incoming) -> None:
        net = self.net
        link = net.links.get(inc.conn)
        if link is None:
            if inc.conn[0] == "in" and not self._admit(inc):
                return
            link = net.new_link(inc.conn, inc.curve_key)
        events = link.session.receive(inc.frame, time.monotonic())
        net._handle(link, events)

    def _admit(self, inc: Incoming) -> bool:
        """May this incoming connection get a session? Limits per key, per address and
        in all; when full, handshakes and peers sharing nothing make room, members never."""
        net = self.net
        now = time.monotonic()
        if net.table.was_evicted(inc.conn, now) and not _is_hello(inc.frame):
            net.count("evicted-conn-frame")
            return False
        adm = net.table.admit(inc.conn, inc.curve_key, inc.address, now)
        for conn in adm.evict:
            old = net.links.get(conn)
            if old is not None:
                net.drop_link(old, "evicted")
        if not adm.ok:
            net.count(f"refused:{adm.reason}")
            return False
        return True
