"""The fan-out send path (net/flow.py SendBudgets): a flush asks ``congested`` and
then sends, microseconds apart; the peer's acked bytes (TCP_INFO, a syscall) are
read once for both, and the reused value never under-states what is in flight.
Real TCP sockets on 127.0.0.1."""
from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ownkernel.net import flow
from ownkernel.net.flow import REREAD_AFTER, SendBudgets
from ownkernel.net.limits import SendAccount, wire_size


@dataclass
class Cfg:
    send_budget: int = 1 << 20
    send_budget_total: int = 8 << 20
    congested_at: float = 0.5


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def budgets(a: socket.socket) -> tuple[SendBudgets, SendAccount, list[int]]:
    acct = SendAccount(time.monotonic(), flow.acked(a))
    sent: list[int] = []

    def put(_conn: object, frame: bytes) -> bool:
        # what libzmq would put on the wire for this frame, so acks match the account
        a.sendall(b"\0" * wire_size(len(frame)))
        sent.append(len(frame))
        return True
    sb = SendBudgets(Cfg(), Counter(), put, lambda c: (acct, a) if c == "c" else None,
                     lambda: [(acct, a)])
    return sb, acct, sent


def test_a_flush_reads_tcp_info_once(pair, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a, _b = pair
    sb, acct, sent = budgets(a)
    reads = []
    real = flow.acked
    monkeypatch.setattr(flow, "acked", lambda p: reads.append(1) or real(p))
    time.sleep(2 * REREAD_AFTER)
    assert not sb.congested("c")
    assert sb.send("c", b"x" * 100)
    assert len(reads) == 1 and sent == [100]
    # the reused value counts the frame just handed over: never less than the truth
    assert sb.in_flight("c") >= 0 and acct.in_flight == wire_size(100)
    time.sleep(2 * REREAD_AFTER)  # later: read again (the peer's TCP acked it by now)
    deadline = time.monotonic() + 5
    while sb.in_flight("c") and time.monotonic() < deadline:
        time.sleep(2 * REREAD_AFTER)
    assert len(reads) >= 2
    assert acct.in_flight == 0  # loopback TCP acked the bytes; nothing is read by b


def test_reuse_never_hides_a_full_budget(pair) -> None:  # type: ignore[no-untyped-def]
    """Frames handed over in one instant (no fresh read between them) still add up:
    congested at half the budget, then backlogged, as with a read per frame."""
    a, _b = pair
    acct = SendAccount(time.monotonic(), flow.acked(a))
    handed: list[int] = []  # given to "libzmq" that never sends: nothing is acked
    sb = SendBudgets(Cfg(), Counter(), lambda _c, f: handed.append(len(f)) or True,
                     lambda c: (acct, a), lambda: [(acct, a)])
    frame = b"y" * 100_000
    n = 0
    while not sb.congested("c"):
        assert sb.send("c", frame)
        n += 1
        assert n < 100
    cost = wire_size(len(frame))
    assert n == -(-Cfg.congested_at * Cfg.send_budget // cost)  # ceil: 6 frames
    assert acct.in_flight == n * cost
    while len(handed) * cost + cost <= Cfg.send_budget:
        assert sb.send("c", frame)
    assert sb.send("c", frame)  # over the budget: waits in the backlog, not handed
    assert len(handed) * cost <= Cfg.send_budget and sb.held_total == cost


# ---------------------------------------------------------------- one-change announce
def test_one_change_announce_decides_as_the_general_rule() -> None:
    """Sharing._announce_one (a live keystroke) against lacking_from_marks."""
    from ownkernel.node.sharing import announce_one_to, lacking_from_marks
    for mark in range(0, 8):
        for seq in range(1, 8):
            general = lacking_from_marks({b"a": [seq]}, lambda _a, m=mark: m) == {b"a": seq}
            assert announce_one_to(mark, seq) == general, (mark, seq)


def test_peer_mark_of_agrees_with_peer_mark() -> None:
    from test_protocol_sync import A_ID, B_ID, connect

    from ownkernel.net.sim import DOC, SetHost

    ha, hb = SetHost(A_ID), SetHost(B_ID)
    w = connect(ha, hb)
    x, y = b"x" * 8, b"y" * 8
    assert w.a.peer_mark_of(DOC, x) == 0  # nothing heard or sent yet
    w.b.send_have(DOC, {x: 3, y: 1}, partial=True)  # what a hears (said)
    w.pump()
    for _ in range(2):
        ha.make_change()
    w.a.send_changes(DOC, [b"?"], upto={ha.actor: 2, y: 4})  # what a sent
    mark = w.a.peer_mark(DOC)
    for actor in (x, y, ha.actor, b"z" * 8):
        assert w.a.peer_mark_of(DOC, actor) == mark(actor), actor
    assert (w.a.peer_mark_of(DOC, x), w.a.peer_mark_of(DOC, y)) == (3, 4)
    assert w.a.peer_mark_of(b"other doc", x) == 0
