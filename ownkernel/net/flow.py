"""What the kernel knows about each TCP connection, for the transport.

libzmq does not say *why* it closed a connection, nor how much of what we
handed it is still queued. A dup of its TCP socket (a "probe") answers both
from the kernel: TCP_INFO's bytes_acked counts what the peer received, and a
peek at close time tells "peer hung up" (EOF) from "libzmq hung up on a peer
still sending" (data pending or socket open), e.g. a frame past MAXMSGSIZE.
The dup keeps the connection open until we close it, which we do as soon as
libzmq reports the disconnect.

- :class:`InboundWatch` counts every incoming connection's fate by reason,
  from the ROUTER's monitor events and the probes;
- :class:`SendBudgets` keeps bytes in flight per connection and in total
  under budgets, with a bounded per-connection backlog for the excess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq

from .limits import SendAccount, wire_size

Conn = Hashable  # the transport's ConnId
Account = tuple[SendAccount, "socket.socket | None"]

# A full ZMTP greeting is 64 bytes: a server that sent no more than that never
# got to the Curve handshake (the peer's greeting was garbage).
GREETING = 64
# A connection's acked bytes (TCP_INFO) read less than this long ago are reused:
# the same flush asks twice (congested, then room). Microseconds apart when warm,
# but a typist flushing to 7 peers after a 50 ms pause took ~1 ms from the first
# ask to the last send, so at 0.5 ms every send read TCP_INFO again (14 reads per
# keystroke, not 7). A stale value only over-states what is in flight.
REREAD_AFTER = 0.005

PROTOCOL_ERRORS = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "in-no-curve",  # NULL/PLAIN client
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "in-bad-curve",  # wrong server key, bad box
}
FAILED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "in-handshake-aborted",
          zmq.EVENT_HANDSHAKE_FAILED_AUTH: "in-auth-failed",
          zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "in-protocol-error"}
MONITOR_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                  | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


# ---------------------------------------------------------------- probes

def probe(fd: int, port_ok: Callable[[socket.socket], bool]) -> socket.socket | None:
    """A dup of libzmq's socket ``fd``, or None if it is gone or not what we expect."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None  # libzmq closed it already
    try:
        p = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None
    try:  # the fd may have been reused by another socket meanwhile: check it is ours
        if p.type == socket.SOCK_STREAM and port_ok(p):
            return p
    except (OSError, IndexError, TypeError, ValueError):
        pass
    p.close()
    return None


def acked(p: socket.socket | None) -> int | None:
    """Bytes of ours the peer's TCP acknowledged (Linux TCP_INFO), or None."""
    if p is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = p.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return None
    if len(info) < 128:
        return None
    return int(struct.unpack_from("=Q", info, 120)[0])  # struct tcp_info.tcpi_bytes_acked


def peer_still_there(p: socket.socket) -> bool:
    """After libzmq closed: True if the peer had not hung up (unread data or no EOF)."""
    try:
        return bool(p.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True  # open, nothing pending: libzmq hung up, not the peer
    except OSError:
        return False  # reset by the peer


def close_probe(p: socket.socket | None) -> None:
    if p is not None:
        with contextlib.suppress(OSError):
            p.close()


# ---------------------------------------------------------------- inbound

@dataclass
class Accepted:
    """A TCP connection the ROUTER accepted, by libzmq's fd."""
    probe: socket.socket | None
    rids: set[bytes] = field(default_factory=set)


class InboundWatch:
    """Count every incoming TCP connection's fate by reason (``stats``).

    libzmq reports a handshake failure and then, in the same call on its I/O
    thread, the DISCONNECTED of that connection: so a DISCONNECTED right after
    a failure is that failure's (already counted). This needs the context's
    single I/O thread (the default, which the transport's private context
    keeps). Any other DISCONNECTED is classified with the connection's probe.
    Events come in batches so that a connection both accepted and closed
    before we look is never probed (its fd may already belong to someone else).
    """

    def __init__(self, stats: Counter[str], ports: set[int], probe_limit: int,
                 on_closed: Callable[[set[bytes]], None]) -> None:
        self.stats, self.ports, self.probe_limit = stats, ports, probe_limit
        self.on_closed = on_closed  # routing ids whose connection is gone
        self.fds: dict[int, Accepted] = {}
        self._after_failure = False

    def handle(self, batch: list[dict[str, Any]]) -> None:
        closing = Counter(e["value"] for e in batch if e["event"] == zmq.EVENT_DISCONNECTED)
        for e in batch:
            ev, value = e["event"], e["value"]
            if ev == zmq.EVENT_ACCEPTED:
                self._accepted(value, probe_it=closing[value] == 0)
            elif ev == zmq.EVENT_DISCONNECTED:
                closing[value] -= 1
                self._disconnected(value, counted=self._after_failure)
            elif ev == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.stats["in-handshake-ok"] += 1
            elif ev == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.stats[PROTOCOL_ERRORS.get(value, "in-protocol-error")] += 1
            elif ev in FAILED:
                self.stats[FAILED[ev]] += 1
            self._after_failure = ev in FAILED

    def attach(self, fd: int | None, rid: bytes) -> socket.socket | None:
        """A routing id's first frame came over ``fd``: tie them; return its probe."""
        rec = self.fds.get(fd) if fd is not None else None
        if rec is None:
            return None
        rec.rids.add(rid)
        return rec.probe

    def close(self) -> None:
        for rec in self.fds.values():
            close_probe(rec.probe)
        self.fds.clear()

    def _accepted(self, fd: int, probe_it: bool) -> None:
        self.stats["in-accepted"] += 1
        old = self.fds.pop(fd, None)
        if old is not None:  # its DISCONNECTED went missing: the fd was reused
            self._closed(old)
        p = None
        if probe_it and len(self.fds) < self.probe_limit:
            p = probe(fd, lambda s: s.getsockname()[1] in self.ports)
        self.fds[fd] = Accepted(p)

    def _disconnected(self, fd: int, counted: bool) -> None:
        rec = self.fds.pop(fd, None)
        if not counted:
            self.stats[self._why_closed(rec)] += 1
        if rec is not None:
            self._closed(rec)

    def _why_closed(self, rec: Accepted | None) -> str:
        if rec is None:
            return "in-disconnected"
        sent = acked(rec.probe)
        if not rec.rids and (sent is None or sent <= GREETING):
            # a peer closing mid-handshake gets "handshake failed" events; a
            # bare close before any handshake is libzmq refusing the greeting
            return "in-garbage"
        if rec.probe is not None and peer_still_there(rec.probe):
            return "in-hard-limit"
        return "in-disconnected"

    def _closed(self, rec: Accepted) -> None:
        close_probe(rec.probe)
        rec.probe = None
        if rec.rids:
            self.on_closed(rec.rids)


# ---------------------------------------------------------------- sending

class BudgetConfig(Protocol):
    send_budget: int
    send_budget_total: int
    congested_at: float


@dataclass
class _Backlog:
    frames: deque[bytes] = field(default_factory=deque)
    held: int = 0  # wire bytes of the frames waiting
    wait: float = 0.001  # next check delay: backs off while the peer does not read
    due: float = 0.0


class SendBudgets:
    """Bytes in flight per connection and in total, and a bounded backlog.

    In flight = handed to libzmq and not yet acked by the peer's TCP (libzmq's
    queue plus our kernel send buffer). It stays under ``send_budget`` per
    conn — one frame always goes to an idle conn — and, for conns that are not
    idle, under ``send_budget_total`` in all. A frame that does not fit waits
    in the conn's backlog (order kept) until the peer drains; the backlog is
    capped at ``send_budget`` per conn and ``send_budget_total`` in all. Past
    that, refused ("send-budget" / "send-budget-total").
    """

    def __init__(self, config: BudgetConfig, stats: Counter[str],
                 put: Callable[[Conn, bytes], bool],
                 account: Callable[[Conn], Account | None],
                 accounts: Callable[[], Iterable[Account]]) -> None:
        self.config, self.stats = config, stats
        self._put, self._account, self._accounts = put, account, accounts
        self.in_flight_total = 0  # sum of accounts' last in_flight (stale: over-estimates)
        self.held_total = 0
        self._refreshed = 0.0
        self._backlog: dict[Conn, _Backlog] = {}
        self._flusher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ queries
    def in_flight(self, conn: Conn) -> int:
        a = self._account(conn)
        if a is None:
            return 0
        b = self._backlog.get(conn)
        return self._refresh(*a, time.monotonic()) + (b.held if b else 0)

    def congested(self, conn: Conn) -> bool:
        cfg = self.config
        return (conn in self._backlog
                or self.in_flight(conn) >= cfg.congested_at * cfg.send_budget
                or self.in_flight_total + self.held_total
                >= cfg.congested_at * cfg.send_budget_total)

    # ------------------------------------------------------------ sending
    def send(self, conn: Conn, frame: bytes) -> bool:
        """True: handed to libzmq or waiting in the backlog ("frames-out" counts both).
        Never blocks (``put`` sends with NOBLOCK), so it is a plain call: no
        coroutine per frame."""
        ok = self._send(conn, frame)
        if ok:
            self.stats["frames-out"] += 1
        return ok

    def _send(self, conn: Conn, frame: bytes) -> bool:
        a = self._account(conn)
        if a is None:  # unknown or gone: libzmq says which
            return self._put(conn, frame)
        cost = wire_size(len(frame))
        if conn not in self._backlog and self._room(*a, cost, time.monotonic()):
            if not self._put(conn, frame):
                return False
            a[0].add(cost)
            self.in_flight_total += cost
            return True
        return self._defer(conn, frame, cost)

    def forget(self, conn: Conn, acct: SendAccount) -> None:
        """The conn is gone: its bytes no longer count; its backlog is dropped."""
        self.in_flight_total -= acct.in_flight
        b = self._backlog.pop(conn, None)
        if b is not None:
            self.held_total -= b.held
            self.stats["send-failed"] += len(b.frames)

    def moved(self, acct: SendAccount, probe: socket.socket | None) -> None:
        """A new TCP connection under the same conn (libzmq reconnected a DEALER)."""
        carried = acct.in_flight  # what libzmq still queues carries over
        acct.rebase(acked(probe), time.monotonic())
        acct.add(carried)

    def task(self) -> asyncio.Task[None] | None:
        return self._flusher

    def clear(self) -> None:
        self._backlog.clear()
        self.held_total = 0

    # ------------------------------------------------------------ internals
    def _refresh(self, acct: SendAccount, probe: socket.socket | None, now: float) -> int:
        if now - acct.read_at < REREAD_AFTER:
            # Read a moment ago (a flush asks congested(), then send() asks for
            # room): TCP_INFO is a syscall per call, and a value this fresh can
            # only over-estimate what is in flight (acks only grow), never under.
            return acct.in_flight
        before = acct.in_flight
        acct.update(now, acked(probe))
        self.in_flight_total += acct.in_flight - before
        return acct.in_flight

    def _refresh_all(self, now: float) -> None:
        """Re-read every connection's in-flight bytes (when the total looks full)."""
        if now - self._refreshed < 0.01:  # at most 100 times a second under overload
            return
        self._refreshed = now
        self.in_flight_total = sum(acct.update(now, acked(p)) for acct, p in self._accounts())

    def _room(self, acct: SendAccount, probe: socket.socket | None, cost: int,
              now: float) -> bool:
        """May ``cost`` more bytes go to libzmq now? One frame always goes to an idle conn."""
        cfg = self.config
        mine = self._refresh(acct, probe, now)
        if mine == 0:
            return True
        if mine + cost > cfg.send_budget:
            return False
        if self.in_flight_total + cost > cfg.send_budget_total:
            self._refresh_all(now)
            return self.in_flight_total + cost <= cfg.send_budget_total
        return True

    def _defer(self, conn: Conn, frame: bytes, cost: int) -> bool:
        cfg = self.config
        b = self._backlog.get(conn)
        if b is not None and b.held + cost > cfg.send_budget:
            self.stats["send-budget"] += 1
            return False
        if self.held_total + cost > cfg.send_budget_total:
            self.stats["send-budget-total"] += 1
            return False
        if b is None:
            b = self._backlog[conn] = _Backlog(due=time.monotonic() + 0.001)
        b.frames.append(frame)
        b.held += cost
        self.held_total += cost
        self.stats["send-deferred"] += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return True

    async def _flush(self) -> None:
        """Move waiting frames to libzmq as their peers drain (checks back off when stuck)."""
        while self._backlog:
            now = time.monotonic()
            for conn, b in list(self._backlog.items()):
                if b.due > now:
                    continue
                a = self._account(conn)
                if a is None:
                    self._backlog.pop(conn, None)
                    self.held_total -= b.held
                    self.stats["send-failed"] += len(b.frames)
                    continue
                progress = False
                while b.frames and self._room(*a, wire_size(len(b.frames[0])), now):
                    frame = b.frames.popleft()
                    cost = wire_size(len(frame))
                    b.held -= cost
                    self.held_total -= cost
                    if self._put(conn, frame):
                        a[0].add(cost)
                        self.in_flight_total += cost
                    progress = True
                    if self._backlog.get(conn) is not b:  # forgotten meanwhile
                        break
                if not b.frames or self._backlog.get(conn) is not b:
                    if self._backlog.get(conn) is b:
                        del self._backlog[conn]
                    continue
                b.wait = 0.001 if progress else min(0.1, b.wait * 2)
                b.due = now + b.wait
            if self._backlog:
                nxt = min(b.due for b in self._backlog.values())
                await asyncio.sleep(max(0.0005, nxt - time.monotonic()))


__all__ = ["GREETING", "MONITOR_EVENTS", "Accepted", "InboundWatch", "SendBudgets", "acked",
           "close_probe", "peer_still_there", "probe"]
