"""Call signalling (issue #14): the pure membership state machine, then real nodes.

Real nodes: CurveZMQ sessions on 127.0.0.1. Signals reach call members; a
non-member (its own process, its own key, the real transport) is refused and
counted; nothing of a call lands in the doc or its SQLite file.

Run as a script (``python tests/test_call_signal.py intruder ADDR DOC DIR``)
this file is that non-member.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __name__ != "__main__":
    import pytest

from waiting import until

from ownkernel.net.protocol import LocalInfo, PeerSession, SignalReceived
from ownkernel.net.session import MAX_SIGNAL
from ownkernel.node import Node
from ownkernel.node.calls import (
    CallState,
    Deliver,
    Dropped,
    Full,
    Hangup,
    MakeOffer,
    Roster,
    Send,
    calls_of,
)
from ownkernel.node.config import NetConfig

FAST = dict(ping_interval=0.3, peer_timeout=2.0, anti_entropy=1.0, backoff_min=0.05,
            backoff_max=0.5, connect_timeout=1.0)
A, B, C, D, E = (bytes([i]) * 32 for i in range(1, 6))


# ------------------------------------------------------------------ pure state machine
def kinds(actions: list[Any]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for a in actions:
        if isinstance(a, Send):
            out.append(("send", a.to[:1].hex(), a.kind))
        elif isinstance(a, MakeOffer):
            out.append(("offer-to", a.peer[:1].hex()))
        elif isinstance(a, Hangup):
            out.append(("hangup", a.peer[:1].hex(), a.reason))
        elif isinstance(a, Roster):
            out.append(("roster", *(m[:1].hex() for m in a.members)))
        else:
            out.append((type(a).__name__,))
    return out


def test_join_tells_every_reachable_peer_and_the_smaller_id_offers() -> None:
    a, b = CallState(A), CallState(B)
    assert kinds(a.join([B, C])) == [("send", "02", "join"), ("send", "03", "join"), ("roster",)]
    assert kinds(b.join([])) == [("roster",)]  # joined before anyone was online
    # b (larger id) hears a's join: answers present, does not offer
    assert kinds(b.receive(A, "join", "")) == [("send", "01", "present"), ("roster", "01")]
    # a hears present: a has the smaller id, a offers
    assert kinds(a.receive(B, "present", "")) == [("roster", "02"), ("offer-to", "02")]
    # the SDP exchange reaches the local media end only
    assert a.receive(B, "answer", "v=0") == [Deliver(B, "answer", "v=0")]
    assert b.receive(A, "offer", "v=0") == [Deliver(A, "offer", "v=0")]


def test_two_joining_at_once_make_exactly_one_offer() -> None:
    a, b = CallState(A), CallState(B)
    a.join([B])
    b.join([A])
    ra = a.receive(B, "join", "")  # the joins cross
    rb = b.receive(A, "join", "")
    offers = [x for x in ra + rb if isinstance(x, MakeOffer)]
    assert offers == [MakeOffer(B)]  # from a only: no glare
    # the crossing "present"s change nothing
    assert a.receive(B, "present", "") == [] and b.receive(A, "present", "") == []
    assert list(a.members) == [B] and list(b.members) == [A]


def test_leave_gone_and_rejoin() -> None:
    a = CallState(A)
    a.join([B, C])
    a.receive(B, "join", "")
    a.receive(C, "join", "")
    assert kinds(a.receive(B, "leave", "")) == [("hangup", "02", "left"), ("roster", "03")]
    assert kinds(a.peer_gone(C)) == [("hangup", "03", "gone"), ("roster",)]
    assert a.peer_gone(C) == [] and a.receive(C, "leave", "") == []
    a.receive(B, "join", "")
    # a reloaded page joins again: the old connection is closed, a fresh one made
    assert kinds(a.receive(B, "join", "")) == [
        ("hangup", "02", "rejoined"), ("send", "02", "present"), ("roster", "02"),
        ("offer-to", "02")]
    assert kinds(a.leave()) == [("send", "02", "leave"), ("hangup", "02", "left"), ("roster",)]
    assert a.leave() == [] and not a.joined


def test_a_fifth_participant_is_told_the_call_is_full() -> None:
    a = CallState(A)
    a.join([])
    for p in (B, C, D):
        a.receive(p, "join", "")
    assert a.receive(E, "join", "") == [Send(E, "full")]
    assert E not in a.members
    e = CallState(E)
    e.join([A])
    assert e.receive(A, "full", "") == [Full(A)]


def test_media_signals_outside_the_call_are_dropped() -> None:
    a = CallState(A)
    assert a.receive(B, "offer", "v=0")[0].__class__ is Dropped  # not joined
    assert a.receive(B, "join", "") == []  # not joined: no answer
    a.join([])
    assert isinstance(a.receive(B, "offer", "v=0")[0], Dropped)  # B never joined
    assert isinstance(a.receive(A, "join", "")[0], Dropped)  # ourselves
    assert a.peer_online(B) == [Send(B, "join")]  # a peer that connects later hears of us
    with pytest.raises(ValueError):
        CallState(A, max_size=1)


def test_the_session_checks_the_shape_and_the_size_of_a_signal() -> None:
    def pair() -> tuple[PeerSession, PeerSession]:
        x, y = PeerSession(LocalInfo(A, "x"), 0.0), PeerSession(LocalInfo(B, "y"), 0.0)
        x.hello()
        for _ in range(3):
            for f in x.data_to_send():
                y.receive(f, 0.0)
            for f in y.data_to_send():
                x.receive(f, 0.0)
        assert x.is_open and y.is_open
        return x, y

    x, y = pair()
    assert x.send_signal(b"d" * 16, "offer", "v=0\r\n" * 100)
    [ev] = [e for f in x.data_to_send() for e in y.receive(f, 0.0)]
    assert ev == SignalReceived(b"d" * 16, "offer", "v=0\r\n" * 100)
    with pytest.raises(ValueError, match="kind"):
        x.send_signal(b"d", "bogus")
    with pytest.raises(ValueError, match="at most"):
        x.send_signal(b"d", "offer", "x" * (MAX_SIGNAL + 1))
    # a peer that bypasses its own checks: counted, the session stays open
    x._queue({"type": "signal", "doc": b"d", "kind": "offer", "data": "x" * (MAX_SIGNAL + 1)})
    x._queue({"type": "signal", "doc": b"d", "kind": "bogus", "data": ""})
    x._queue({"type": "signal", "doc": b"d", "kind": "offer", "data": b"bytes"})
    for f in x.data_to_send():
        y.receive(f, 0.0)
    assert y.errors["signal-too-large"] == 1 and y.errors["bad-signal"] == 2
    assert y.is_open


def test_ice_servers_come_from_the_environment(monkeypatch: Any) -> None:
    from ownkernel.node.calls import ice_servers

    monkeypatch.delenv("OWNKERNEL_ICE_SERVERS", raising=False)
    assert ice_servers() == []  # default: none (host candidates only)
    monkeypatch.setenv("OWNKERNEL_ICE_SERVERS", '[{"urls": "stun:stun.example.org:3478"}]')
    assert ice_servers() == [{"urls": "stun:stun.example.org:3478"}]
    monkeypatch.setenv("OWNKERNEL_ICE_SERVERS", "stun:x")
    with pytest.raises(ValueError, match="OWNKERNEL_ICE_SERVERS is not JSON"):
        ice_servers()
    monkeypatch.setenv("OWNKERNEL_ICE_SERVERS", '{"urls": "stun:x"}')
    with pytest.raises(ValueError, match="OWNKERNEL_ICE_SERVERS must be a JSON list"):
        ice_servers()


def test_a_present_naming_bad_members_is_counted_not_dialed() -> None:
    """`present` data comes from a member, but is still checked: ids, addresses."""
    from ownkernel.node.calls import Calls

    class Net:
        id = A
        counts: dict[str, int] = {}

        def __init__(self) -> None:
            self.errors: list[str] = []
            self.dialed: list[Any] = []
            self.dialing = type("D", (), {"planner": type("P", (), {
                "add": lambda _s, nid, addrs, **kw: self.dialed.append((nid, addrs))})()})()

        def count(self, reason: str, detail: str = "") -> None:
            self.errors.append(reason)

        def online(self, peer: bytes) -> bool:
            return False

    net = Net()
    calls = Calls(net)  # type: ignore[arg-type]
    calls._dial_members(b"doc", "not json")
    calls._dial_members(b"doc", '{"members": [["zz", []]]}')
    good = "tcp://10.0.0.2:7700#" + B.hex()
    other = "tcp://10.0.0.3:7700#" + C.hex()  # an address of another node: not dialed as B
    calls._dial_members(b"doc", json.dumps({"members": [[B.hex(), [other, good]],
                                                        [A.hex(), [good]]]}))
    assert net.errors == ["signal-bad-present", "signal-bad-present"]
    assert net.dialed == [(B, [good])]
    assert calls.introduced == {b"doc": {B}}


# ------------------------------------------------------------------ real nodes
class Heard:
    """A call listener: records every action (network thread)."""

    def __init__(self) -> None:
        self.actions: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, a: Any) -> None:
        with self.lock:
            self.actions.append(a)

    def of(self, cls: type) -> list[Any]:
        with self.lock:
            return [a for a in self.actions if isinstance(a, cls)]


if __name__ != "__main__":
    @pytest.fixture
    def trio(tmp_path: Path) -> Iterator[tuple[Node, Node, Node, Any]]:
        """a made a doc; b and c joined it; all connected to a."""
        made = [Node(tmp_path / n, name=n, network=NetConfig(**FAST)) for n in "abc"]
        a, b, c = made
        try:
            doc = a.new_doc("call")
            doc.text("body").insert(0, "hi")
            for other in (b, c):
                other.join(a.invite(doc), timeout=20)
            until(lambda: all(str(o.open(doc.id).text("body")) == "hi" for o in (b, c)))
            b.connect(c.address, timeout=10)
            yield a, b, c, doc
        finally:
            for n in made:
                n.close()


def test_signals_reach_members_and_nothing_is_stored(trio, tmp_path: Path) -> None:
    a, b, c, doc = trio
    heads = {n.id: dict(n.open(doc.id).version) for n in (a, b, c)}
    ha, hb = Heard(), Heard()
    calls_of(a).join(doc, ha)
    assert calls_of(b).join(doc, hb) == ()  # the roster fills in as answers come
    until(lambda: calls_of(a).members(doc) == (b.id,) and calls_of(b).members(doc) == (a.id,))
    offerer, answerer, h_off, h_ans = (a, b, ha, hb) if a.id < b.id else (b, a, hb, ha)
    assert until(lambda: h_off.of(MakeOffer)) == [MakeOffer(answerer.id)]
    assert h_ans.of(MakeOffer) == []
    sdp = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\nsecret-sdp-" + "x" * 20_000
    calls_of(offerer).signal(doc, answerer.id, "offer", sdp)
    assert until(lambda: h_ans.of(Deliver)) == [Deliver(offerer.id, "offer", sdp)]
    calls_of(answerer).signal(doc, offerer.id, "answer", "v=0 answer")
    assert until(lambda: h_off.of(Deliver)) == [Deliver(answerer.id, "answer", "v=0 answer")]
    # c is not in the call: nothing reached it, and it cannot be signalled
    with pytest.raises(ValueError, match="not in the call"):
        calls_of(a).signal(doc, c.id, "offer", "v=0")
    with pytest.raises(ValueError, match="64 KiB|at most"):
        calls_of(offerer).signal(doc, answerer.id, "offer", "x" * (MAX_SIGNAL + 1))
    # b leaves: a sees it go
    calls_of(b).leave(doc)
    until(lambda: ha.of(Hangup))
    assert ha.of(Hangup) == [Hangup(b.id, "left")] and calls_of(a).members(doc) == ()
    # never stored: heads unchanged, the SDP is in no SQLite file
    for n in (a, b, c):
        assert dict(n.open(doc.id).version) == heads[n.id]
    for n in "abc":
        for f in (tmp_path / n).rglob("*"):
            if f.is_file():
                assert b"secret-sdp-" not in f.read_bytes(), f
    st = a.network.stats()
    assert st["signals_in"] >= 2 and st["signals_out"] >= 1
    assert st["errors"].get("signal-refused", 0) == 0


def test_a_peer_that_drops_leaves_the_call(trio) -> None:
    a, b, c, doc = trio
    ha = Heard()
    calls_of(a).join(doc, ha)
    calls_of(c).join(doc, Heard())
    until(lambda: calls_of(a).members(doc) == (c.id,))
    c.close()
    until(lambda: ha.of(Hangup))
    assert ha.of(Hangup) == [Hangup(c.id, "gone")]


def test_a_newcomer_that_reached_only_its_inviter_meets_the_whole_mesh(tmp_path: Path) -> None:
    """b and c joined a's doc and never wrote: they do not show each other their
    grants, and are not connected. In the call they meet through a's `present`."""
    made = [Node(tmp_path / n, name=n, network=NetConfig(**FAST)) for n in "abc"]
    a, b, c = made
    try:
        doc = a.new_doc("mesh")
        for other in (b, c):
            other.join(a.invite(doc), timeout=20)
        heard = {n.id: Heard() for n in made}
        calls_of(a).join(doc, heard[a.id])
        calls_of(b).join(doc, heard[b.id])
        until(lambda: calls_of(a).members(doc) == (b.id,))
        calls_of(c).join(doc, heard[c.id])
        for n in made:
            until(lambda n=n: sorted(calls_of(n).members(doc))
                  == sorted(m.id for m in made if m is not n))
        # of each pair exactly one offered
        offers = [(n.id, o.peer) for n in made for o in heard[n.id].of(MakeOffer)]
        assert sorted(offers) == sorted((min(x.id, y.id), max(x.id, y.id))
                                        for x, y in ((a, b), (a, c), (b, c)))
        for n in made:
            assert n.network.stats()["errors"].get("signal-refused", 0) == 0
    finally:
        for n in made:
            n.close()


def test_a_fifth_node_is_told_the_call_is_full(tmp_path: Path) -> None:
    made = [Node(tmp_path / n, name=n, network=NetConfig(**FAST)) for n in "abcde"]
    try:
        doc = made[0].new_doc("full")
        for other in made[1:]:
            other.join(made[0].invite(doc), timeout=20)
        heard = {n.id: Heard() for n in made}
        for n in made[:4]:
            calls_of(n).join(doc, heard[n.id])
        for n in made[:4]:
            until(lambda n=n: len(calls_of(n).members(doc)) == 3)
        e = made[4]
        calls_of(e).join(doc, heard[e.id])
        until(lambda: heard[e.id].of(Full))
        assert calls_of(e).members(doc) == ()
        for n in made[:4]:
            assert e.id not in calls_of(n).members(doc)
    finally:
        for n in made:
            n.close()


def test_a_non_member_in_its_own_process_is_refused_and_counted(trio, tmp_path: Path) -> None:
    a, b, c, doc = trio
    ha = Heard()
    calls_of(a).join(doc, ha)
    proc = subprocess.Popen(
        [sys.executable, __file__, "intruder", a.address, doc.id.hex(), str(tmp_path / "x")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        said = json.loads(line)
        assert said["sent"] == 4, said
        until(lambda: a.network.stats()["errors"].get("signal-refused", 0) >= 3)
        st = a.network.stats()
        assert st["errors"]["signal-refused"] == 3  # join, offer, candidate
        assert st["errors"].get("signal-too-large") == 1
        assert a.gate.rejected["signal-not-member"] == 3
        assert calls_of(a).members(doc) == ()
        assert ha.of(Deliver) == [] and ha.of(MakeOffer) == []
        proc.stdin.write("bye\n")
        proc.stdin.flush()
    finally:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_call_widget_relays_the_set_up_between_two_pages(trio) -> None:
    """Two ui.call widgets on two nodes, their browsers stood in for by ui_front.Front."""
    from ui_front import Front

    from ownkernel import ui

    a, b, c, doc = trio
    wa, wb = ui.call(doc), ui.call(b.open(doc.id))
    fa, fb = Front(wa), Front(wb)
    try:
        for f in (fa, fb):
            f.deliver({"t": "ready"})
            until(lambda f=f: f.of_type("snapshot"))
            assert f.of_type("snapshot")[0]["joined"] is False
        fa.deliver({"t": "join"})
        fb.deliver({"t": "join"})

        def state(f: Front) -> dict[str, Any]:
            snaps = [m for _, m in f.sent if m.get("t") in ("snapshot", "deltas")]
            last = snaps[-1]
            return last if last["t"] == "snapshot" else last["ops"][-1]
        until(lambda: [p["id"] for p in state(fa)["participants"]] == [b.id.hex()]
              and [p["id"] for p in state(fb)["participants"]] == [a.id.hex()])
        assert state(fa)["joined"] and state(fb)["participants"][0]["name"] == "a"
        # who is in the call shows in presence (for the peer list and the chat)
        for seer, n in ((c, a), (a, b)):
            until(lambda s=seer, n=n: (s.presence(doc.id).get(n.id) or {}).get("call")
                  == {"joined": True})
        # ... and c's peer list and chat show it (issue #14 §1)
        from ownkernel.ui.peers import peer_rows

        def in_call_on(n: Node) -> dict[str, str]:
            return {r["name"]: r["call"] for r in peer_rows(n.peers, n)}
        until(lambda: in_call_on(c).get("a") == "call" and in_call_on(a).get("b") == "call")
        chat_c = ui.chat(c.open(doc.id).log("chat"))
        fc = Front(chat_c)
        fc.deliver({"t": "ready"})
        # (c hears a, through whom it joined; b's presence may not reach it)
        until(lambda: fc.of_type("snapshot") and "a" in fc.of_type("snapshot")[-1]["call"])
        chat_c.close()
        off, ans = (fa, fb) if a.id < b.id else (fb, fa)
        offerer, answerer = (a, b) if off is fa else (b, a)
        [o] = until(lambda: off.of_type("offer-to"))
        assert o["peer"] == answerer.id.hex() and ans.of_type("offer-to") == []
        off.deliver({"t": "signal", "to": answerer.id.hex(), "kind": "offer", "data": "v=0 o"})
        [got] = until(lambda: ans.of_type("signal"))
        assert got == {"t": "signal", "from": offerer.id.hex(), "kind": "offer", "data": "v=0 o"}
        ans.deliver({"t": "signal", "to": offerer.id.hex(), "kind": "answer", "data": "v=0 a"})
        until(lambda: off.of_type("signal"))
        # bad input from a page: a clear error, nothing sent, the call goes on
        off.deliver({"t": "signal", "to": "zz", "kind": "offer", "data": ""})
        off.deliver({"t": "signal", "to": c.id.hex(), "kind": "offer", "data": ""})
        errs = until(lambda: len(off.of_type("error")) >= 2 and off.of_type("error"))
        assert "not a hex node id" in errs[0]["error"] and "not in the call" in errs[1]["error"]
        fb.deliver({"t": "leave"})
        [hang] = until(lambda: fa.of_type("hangup"))
        assert hang == {"t": "hangup", "peer": b.id.hex(), "reason": "left"}
        until(lambda: state(fa)["participants"] == [])
        until(lambda: (a.presence(doc.id).get(b.id) or {}).get("call") == {})  # left
        until(lambda: in_call_on(a).get("b") == "-")
    finally:
        wa.close()
        wb.close()


def intruder(address: str, doc_hex: str, home: str) -> None:
    """A node of its own that may not read ``doc`` sends call signals for it anyway
    (it bypasses its own session's check by queueing the raw message)."""
    node = Node(Path(home), name="intruder", network=NetConfig(**FAST))
    try:
        peer = node.connect(address, timeout=20)
        assert peer is not None
        net = node.network
        assert net is not None
        doc = bytes.fromhex(doc_hex)

        def send() -> int:
            link = net.by_peer[peer.id]
            msgs = [("join", ""), ("offer", "v=0 forged"), ("candidate", "{}"),
                    ("offer", "x" * (MAX_SIGNAL + 1))]
            for kind, data in msgs:
                link.session._queue({"type": "signal", "doc": doc, "kind": kind, "data": data})
            net.outbox.flush_all()
            return len(msgs)
        n = net._call(send)
        print(json.dumps({"sent": n}), flush=True)
        sys.stdin.readline()
    finally:
        node.close()


if __name__ == "__main__" and sys.argv[1:2] == ["intruder"]:
    intruder(*sys.argv[2:5])
