"""Read a plain (sync) ZeroMQ socket from an asyncio loop, without futures.

Why not ``zmq.asyncio``: each ``await sock.recv_multipart()`` there costs a
Future, a few PollEvent enum operations and several loop passes per frame;
with one typist and seven readers that was most of a reader's Python work
per received frame. Here the loop watches the socket's ``FD`` with
``add_reader`` and :meth:`SocketReader.drain` reads with ``NOBLOCK`` while
``EVENTS`` says ``POLLIN``: one callback for a whole burst.

ZeroMQ's FD is edge-triggered: it signals a *change* of the socket's state,
and any ``send``/``recv``/``getsockopt(EVENTS)`` call may consume that
signal. So a message that arrives while we send on the same socket may
never make the FD readable: after every send the owner calls :meth:`poke`,
which reads ``EVENTS`` and schedules a drain if ``POLLIN`` is set. A drain
stopped by its per-call budget (a flood) reschedules itself with
``call_soon``, so other callbacks on the loop get their turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import zmq
from zmq.backend import Socket as _RawSocket

log = logging.getLogger(__name__)

# The Cython methods with plain ints: the sugar ones turn every option and
# EVENTS result into an enum (a third of a send's Python cost in a profile).
_get, _recv, _send = _RawSocket.get, _RawSocket.recv, _RawSocket.send
EVENTS, POLLIN, RCVMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.RCVMORE)
NOBLOCK, SNDMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE)


def send_parts(sock: zmq.Socket[Any], parts: list[bytes]) -> None:
    """``sock.send_multipart(parts, NOBLOCK)`` without the sugar (raises zmq.ZMQError)."""
    for p in parts[:-1]:
        _send(sock, p, NOBLOCK | SNDMORE)
    _send(sock, parts[-1], NOBLOCK)


def send_one(sock: zmq.Socket[Any], frame: bytes) -> None:
    """``sock.send(frame, NOBLOCK)`` without the sugar (raises zmq.ZMQError)."""
    _send(sock, frame, NOBLOCK)


def pollin(sock: zmq.Socket[Any]) -> bool:
    """Is a message waiting? (Also re-arms the FD signal: see above.)"""
    return bool(_get(sock, EVENTS) & POLLIN)


class SocketReader:
    """Drain ``sock`` on ``loop``: ``on_msg(parts)`` per message, ``on_done()`` after
    each drain that read something. ``limit`` messages per call, then yield."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: zmq.Socket[Any],
                 on_msg: Callable[[list[Any]], None], *, limit: int = 32,
                 copy: bool = True, on_done: Callable[[], None] | None = None) -> None:
        self.loop, self.sock = loop, sock
        self.on_msg, self.on_done = on_msg, on_done
        self.limit, self.copy = limit, copy
        self.closed = False
        self._scheduled = False
        self._fd: int = sock.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._readable)
        # something may already be waiting (its signal came before add_reader)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.loop.call_soon(self._run_scheduled)

    def _readable(self) -> None:
        if not self._scheduled:  # else a drain is already queued: it reads this too
            self.drain()

    def _run_scheduled(self) -> None:
        self._scheduled = False
        self.drain()

    def poke(self) -> None:
        """After a send on the socket: drain soon if a message is waiting (see above)."""
        if self._scheduled or self.closed:
            return
        try:
            ready = _get(self.sock, EVENTS) & POLLIN
        except zmq.ZMQError:
            return
        if ready:
            self._schedule()

    def drain(self) -> None:
        """Read what is waiting, up to ``limit`` messages (then reschedule)."""
        if self.closed:
            return
        sock, on_msg, copy = self.sock, self.on_msg, self.copy
        n = 0
        try:
            while n < self.limit:
                try:
                    # EVENTS, not a recv ending in EAGAIN: an exception per drain
                    # cost more than the check (and it resets the FD signal too)
                    if not _get(sock, EVENTS) & POLLIN:
                        return
                    parts = [_recv(sock, NOBLOCK, copy)]
                    while _get(sock, RCVMORE):  # the rest of a multipart is there too
                        parts.append(_recv(sock, NOBLOCK, copy))
                except zmq.Again:
                    return
                except zmq.ZMQError:  # closed under us (ETERM, ENOTSOCK): nothing more
                    return
                n += 1
                try:
                    on_msg(parts)
                except Exception:  # a handler bug must not stop the reading
                    log.exception("handling a message failed")
                if self.closed:
                    return
            self._schedule()  # budget used: more may wait, and the FD may not say so
        finally:
            if n and self.on_done is not None and not self.closed:
                try:
                    self.on_done()
                except Exception:
                    log.exception("after a drain")

    def close(self) -> None:
        """Stop watching (before the socket is closed: its fd number may be reused)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self._fd)
        except (ValueError, OSError, RuntimeError):  # loop closed already
            pass


__all__ = ["SocketReader", "pollin", "send_one", "send_parts"]
