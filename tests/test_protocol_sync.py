"""Protocol v2 at scale, driven by hand: cursors, announces, digest anti-entropy, packing."""

from __future__ import annotations

import math

import cbor2
import pytest

from ownkernel.net.protocol import (
    CarryReceived,
    ChangesReceived,
    GrantsReceived,
    HaveReceived,
    LocalInfo,
    PeerSession,
    ProtocolError,
    PullTracker,
    SessionConfig,
    encode,
)
from ownkernel.net.sim import DOC, SetHost, doc_ids
from ownkernel.net.wire import MAX_GRANTS, batch_frame

A_ID = bytes(range(32))
B_ID = bytes(range(1, 33))
C_ID = bytes(range(2, 34))
QUIET = dict(ping_interval=1e9, anti_entropy_interval=1e9, peer_timeout=1e9,
             handshake_timeout=1e9)


class Wire:
    """Two sessions joined back to back; counts what crosses."""

    def __init__(self, a: PeerSession, b: PeerSession) -> None:
        self.a, self.b = a, b
        self.frames = self.bytes = self.hops = 0
        self.largest = 0
        self.events: list[tuple[str, object]] = []

    def pump(self, now: float = 0.0, limit: int = 100) -> int:
        """Deliver until quiet; return the number of one-way hops it took."""
        for hops in range(limit):
            fa, fb = self.a.data_to_send(), self.b.data_to_send()
            if not fa and not fb:
                self.hops += hops
                return hops
            for f in fa:
                self._count(f)
                self.events += [("b", e) for e in self.b.receive(f, now)]
            for f in fb:
                self._count(f)
                self.events += [("a", e) for e in self.a.receive(f, now)]
        raise AssertionError("sessions never went quiet")

    def _count(self, f: bytes) -> None:
        self.frames += 1
        self.bytes += len(f)
        self.largest = max(self.largest, len(f))


def connect(ha=None, hb=None, now: float = 0.0, **cfg) -> Wire:
    conf = SessionConfig(**{**QUIET, **cfg})
    a = PeerSession(LocalInfo(A_ID, "a"), now, host=ha, config=conf)
    b = PeerSession(LocalInfo(B_ID, "b"), now, host=hb, config=conf)
    a.hello()
    w = Wire(a, b)
    w.pump(now)
    assert a.is_open and b.is_open
    return w


def changes_in(w: Wire, who: str) -> int:
    return sum(len(e.blobs) for k, e in w.events if k == who and isinstance(e, ChangesReceived))


# ---------------------------------------------------------------- cursor (#8 hole 6)


def test_repeated_empty_have_is_answered_once():
    ha = SetHost(A_ID)
    for _ in range(50):
        ha.make_change()
    w = connect(ha, None)  # b: a hostless session we drive by hand
    w.events.clear()
    w.b.send_have(DOC, {})
    w.pump(1.0)
    assert changes_in(w, "b") == 50
    before = w.a.stats.bytes_out
    for _ in range(1000):  # the flood that used to resend the whole history each time
        w.b.send_have(DOC, {})
    w.pump(2.0)
    assert changes_in(w, "b") == 50  # nothing more
    assert w.a.stats.answers_skipped == 1000
    assert w.a.stats.bytes_out == before  # a answered with nothing at all


def test_reset_sent_and_stale_cursor_resend_in_full():
    ha = SetHost(A_ID)
    for _ in range(5):
        ha.make_change()
    w = connect(ha, None, resend_after=60.0)
    w.b.send_have(DOC, {})
    w.pump(0.0)
    w.b.send_have(DOC, {})
    w.pump(1.0)
    assert changes_in(w, "b") == 5
    w.a.reset_sent(DOC)  # the host learned frames to b were lost
    w.b.send_have(DOC, {})
    w.pump(2.0)
    assert changes_in(w, "b") == 10
    w.b.send_have(DOC, {})
    w.pump(30.0)
    assert changes_in(w, "b") == 10  # within resend_after: still believed sent
    w.b.send_have(DOC, {})
    w.pump(63.0)  # b still says {} long after: believe it, resend once
    assert changes_in(w, "b") == 15
    w.b.send_have(DOC, {})
    w.pump(64.0)
    assert changes_in(w, "b") == 15


def test_have_answer_goes_beyond_what_the_peer_said():
    ha = SetHost(A_ID)
    for _ in range(10):
        ha.make_change()
    w = connect(ha, None)
    w.b.send_have(DOC, {ha.actor: 7})
    w.pump()
    got = [cbor2.loads(b)[1] for k, e in w.events if isinstance(e, ChangesReceived)
           for b in e.blobs]
    assert got == [8, 9, 10]


# ---------------------------------------------------------------- peer knowledge


def test_peer_has_from_haves_changes_and_sends():
    ha, hb = SetHost(A_ID), SetHost(B_ID)
    w = connect(ha, hb)
    a, b = w.a, w.b
    x = b"x" * 8
    assert not a.peer_has(DOC, x, 1)
    b.send_have(DOC, {x: 3}, partial=True)  # an announce
    w.pump()
    assert a.peer_has(DOC, x, 3) and not a.peer_has(DOC, x, 4)
    blob = ha.make_change()
    a.send_changes(DOC, [blob], upto={ha.actor: 1})  # what we sent
    assert a.peer_has(DOC, ha.actor, 1)
    w.pump()
    assert b.peer_has(DOC, ha.actor, 1)  # the changes frame said a holds it
    blob = hb.make_change()
    b.send_changes(DOC, [blob], upto={hb.actor: 1})
    w.pump()
    assert a.peer_has(DOC, hb.actor, 1)
    assert not a.announce(DOC, {hb.actor: 1})  # nothing to tell: it holds that


def test_announce_pulls_once_and_is_never_answered_with_changes():
    ha, hb = SetHost(A_ID), SetHost(B_ID)
    w = connect(ha, hb, pull_delay=0.02, announce_delay=0.0)
    for _ in range(3):
        ha.make_change()
    assert w.a.announce(DOC, {ha.actor: 3})
    w.pump(1.0)
    assert hb.vv[DOC] == {}  # the pull waits pull_delay for an eager push
    w.b.tick(1.05)
    w.pump(1.05)
    assert hb.vv[DOC] == {ha.actor: 3} and hb.duplicates == 0
    assert changes_in(w, "b") == 3
    # b is now ahead of what a announces: an announce is not answered
    for _ in range(4):
        hb.make_change()
    w.events.clear()
    w.a.announce(DOC, {ha.actor: 3})
    w.b.announce(DOC, {ha.actor: 3})  # b knows a holds it: nothing to send
    w.pump(2.0)
    assert changes_in(w, "a") == 0 and changes_in(w, "b") == 0


def test_announces_from_two_peers_cause_one_pull():
    hc = SetHost(C_ID)
    sources = [SetHost(A_ID), SetHost(B_ID)]
    blob = sources[0].make_change()
    sources[1].ingest(DOC, [blob], A_ID)
    wires = []
    for h, nid in zip(sources, (A_ID, B_ID)):
        s = PeerSession(LocalInfo(nid), 0, host=h, config=SessionConfig(**QUIET))
        c = PeerSession(LocalInfo(C_ID), 0, host=hc, config=SessionConfig(**QUIET))
        s.hello()
        w = Wire(s, c)
        w.pump()
        wires.append(w)
    actor = sources[0].actor
    for w in wires:
        w.a.announce(DOC, {actor: 1})
        w.pump(1.0)
    for w in wires:
        w.b.tick(2.0)
        w.pump(2.0)
    assert hc.vv[DOC] == {actor: 1}
    assert hc.ingested == 1 and hc.duplicates == 0  # one pull, through one peer
    t = PullTracker(timeout=2.0)
    assert t.claim(DOC, actor, 1, 0.0) and not t.claim(DOC, actor, 1, 1.0)
    assert t.claim(DOC, actor, 2, 1.0)  # a newer seq is a new pull
    assert t.claim(DOC, actor, 2, 3.5)  # unanswered for `timeout`: ask again


# ---------------------------------------------------------------- digest anti-entropy


def _idle_per_minute(docs: int) -> tuple[float, float, int]:
    shared = doc_ids(docs)
    ha, hb = SetHost(A_ID, shared), SetHost(B_ID, shared)
    for d in list(shared)[:50]:
        ha.make_change(d)
        hb.make_change(d)
    w = connect(ha, hb, ping_interval=10.0, anti_entropy_interval=30.0)
    assert all(ha.vv[d] == hb.vv[d] for d in shared)
    before = w.a.stats.frames_out, w.a.stats.bytes_out, w.a.stats.doc_digests_out
    for t in range(1, 181):
        w.a.tick(float(t))
        w.b.tick(float(t))
        w.pump(float(t))
    frames = (w.a.stats.frames_out - before[0]) / 3
    nbytes = (w.a.stats.bytes_out - before[1]) / 3
    return frames, nbytes, w.a.stats.doc_digests_out - before[2]


def test_idle_cost_per_peer_does_not_grow_with_docs():
    one = _idle_per_minute(1)
    many = _idle_per_minute(10_000)
    for frames, nbytes, _rows in (one, many):
        assert frames <= 100 and nbytes <= 10 * 1024
    assert one[0] == many[0]  # pings, pongs and one digest per round: same frames
    assert abs(one[1] - many[1]) < 20  # the digest's doc count is the only difference
    assert many[2] == 0  # no per-doc rows travelled while in sync


def test_ten_thousand_docs_one_side_empty_converges_in_few_round_trips():
    shared = doc_ids(10_000)
    ha, hb = SetHost(A_ID, shared), SetHost(B_ID, shared)
    for d in shared:
        ha.make_change(d)
    conf = SessionConfig(**QUIET, max_frame_size=256 * 1024)
    a = PeerSession(LocalInfo(A_ID), 0, host=ha, config=conf)
    b = PeerSession(LocalInfo(B_ID), 0, host=hb, config=conf)
    a.hello()
    w = Wire(a, b)
    hops = w.pump()
    assert all(hb.vv[d] == ha.vv[d] for d in shared)
    assert hb.ingested == 10_000 and hb.duplicates == 0
    # hello, hello+digest, digests, haves, changes (+ trailing empties): about 3 round trips
    assert hops <= 7, hops
    assert w.largest <= 256 * 1024
    assert w.frames <= 60, w.frames  # packed: ~20k messages in a few dozen frames
    assert a.stats.messages_out + b.stats.messages_out > 20_000


def test_digests_settle_when_peers_share_different_doc_sets():
    ha = SetHost(A_ID, ("d1", "d2"))  # a shares both with b ...
    hb = SetHost(B_ID, ("d1", "d2"), allowed={A_ID: {"d1"}})  # ... b only d1 with a
    ha.make_change("d1")
    ha.make_change("d2")
    w = connect(ha, hb)
    assert hb.vv["d1"] == ha.vv["d1"] and hb.vv["d2"] == {}

    def rounds(*times: float) -> int:
        for t in times:
            w.a.sync_all(t)
            w.b.sync_all(t)
            w.pump(t)
        return w.a.stats.doc_digests_out + w.b.stats.doc_digests_out
    settled = rounds(30.0)  # the lists find nothing to sync: both sides say `settled`
    # from then on each round costs two digests and nothing more
    assert rounds(60.0, 90.0, 120.0) == settled
    assert hb.vv["d2"] == {}  # and nothing unshared leaked


def test_digest_flood_is_answered_at_most_once_per_interval():
    shared = doc_ids(100)
    w = connect(SetHost(A_ID, shared), None, digest_min_interval=1.0)
    hb_frames = [encode({"type": "digest", "d": bytes([i]) * 16, "n": 1}) for i in range(50)]
    out = []
    for f in hb_frames:
        w.a.receive(f, 5.0)
        out += w.a.data_to_send()
    assert w.a.stats.doc_digests_out == 100  # one list for fifty digests
    w.a.tick(5.5)
    assert w.a.data_to_send() == []
    w.a.tick(6.0)  # the last pending digest is answered once the interval passed
    assert w.a.stats.doc_digests_out == 200


def test_refresh_syncs_newly_shared_docs():
    allowed = {B_ID: {"d1"}}
    ha = SetHost(A_ID, ("d1", "d2"), allowed=allowed)
    hb = SetHost(B_ID, ("d1", "d2"))
    ha.make_change("d1")
    ha.make_change("d2")
    w = connect(ha, hb)
    assert hb.vv["d1"] == ha.vv["d1"] and hb.vv["d2"] == {}
    allowed[B_ID].add("d2")  # a grant arrived
    w.a.refresh(5.0)
    w.pump(5.0)
    assert hb.vv["d2"] == ha.vv["d2"]


def test_host_with_only_the_old_interface_still_syncs():
    class OldHost:
        def __init__(self, h: SetHost) -> None:
            self.h = h

        def shared_docs(self, peer):
            return {DOC}

        def version(self, doc):
            return self.h.version(doc)

        def changes_since(self, doc, vv):
            return self.h.changes_since(doc, vv)

        def ingest(self, doc, blobs, source):
            self.h.ingest(doc, blobs, source)

    ha, hb = SetHost(A_ID), SetHost(B_ID)
    ha.make_change()
    hb.make_change()
    connect(OldHost(ha), hb)
    assert ha.vv == hb.vv and len(ha.vv[DOC]) == 2


def test_may_share_not_shared_docs_per_message():
    class Counting(SetHost):
        calls = 0

        def shared_docs(self, peer_id):
            Counting.calls += 1
            return super().shared_docs(peer_id)

    ha, hb = Counting(A_ID, doc_ids(1000)), SetHost(B_ID, doc_ids(1000))
    w = connect(ha, hb)
    Counting.calls = 0
    for d in list(doc_ids(1000))[:200]:
        w.b.send_changes(d, [hb.make_change(d)])
        w.b.send_have(d)
    w.pump()
    assert ha.ingested == 200 and Counting.calls == 0


# ---------------------------------------------------------------- messages for the host


def test_grants_and_carry_are_chunked_and_surface_as_events():
    w = connect(max_frame_size=64 * 1024)
    grants = [bytes([i % 256]) * 1000 for i in range(300)]
    assert w.a.send_grants(grants)
    assert w.a.send_carry([b"doc-%d" % i for i in range(2500)])
    w.pump()
    got = [g for _, e in w.events if isinstance(e, GrantsReceived) for g in e.grants]
    carried = [d for _, e in w.events if isinstance(e, CarryReceived) for d in e.docs]
    assert got == grants and len(carried) == 2500
    assert len([e for _, e in w.events if isinstance(e, GrantsReceived)]) >= 300 / MAX_GRANTS
    assert w.largest <= 64 * 1024
    # at most 256 grants / 1,000 docs in one frame: those never share a batch
    w.a.send_grants([b"g"] * 10)
    w.a.send_grants([b"h"] * 10)
    frames = w.a.data_to_send()
    assert len(frames) == 2 and all(cbor2.loads(f)["type"] == "grants" for f in frames)
    evs = w.b.receive(batch_frame([encode({"type": "carry", "docs": [b"d"]})] * 2), 1.0)
    assert [e.reason for e in evs] == ["bad-message", "bad-message"]
    with pytest.raises(ValueError):
        w.a.send_grants([b"x" * 4097])
    with pytest.raises(ValueError):
        w.a.send_carry([b""])


@pytest.mark.parametrize("msg", [
    {"type": "grants", "grants": [b"g"] * 257},
    {"type": "grants", "grants": [b"x" * 4097]},
    {"type": "grants", "grants": ["str"]},
    {"type": "carry", "docs": [b"d"] * 1001},
    {"type": "carry", "docs": b"d"},
    {"type": "digest", "d": b""},
    {"type": "digest", "d": b"x" * 33},
    {"type": "digests", "docs": [["d"]], "d": b"x", "of": b"y", "end": True},
    {"type": "digests", "docs": [["d", "not bytes"]], "d": b"x", "of": b"y"},
    {"type": "settled", "mine": b"x"},
    {"type": "have", "doc": "d", "vv": {}, "part": 1},
    {"type": "changes", "doc": "d", "blobs": [], "vv": []},
    {"type": "presence", "doc": "d", "state": b"x" * (16 * 1024 + 1), "ttl": 5.0},
    {"type": "presence", "doc": "d", "state": {"cursor": 1}, "ttl": 5.0},
    {"type": "batch", "msgs": "all"},
])
def test_new_messages_are_schema_checked(msg):
    w = connect(SetHost(A_ID), SetHost(B_ID))
    [ev] = w.a.receive(encode(msg), 1.0)
    assert isinstance(ev, ProtocolError) and ev.reason == "bad-field" and w.a.is_open


def test_new_messages_need_a_verified_hello():
    s = PeerSession(LocalInfo(A_ID), 0)
    for msg in ({"type": "grants", "grants": [b"g"]}, {"type": "carry", "docs": [b"d"]},
                {"type": "digest", "d": b"x" * 16}):
        [ev] = s.receive(encode(msg), 0)
        assert ev.reason == "before-hello"
    [ev] = s.receive(batch_frame([encode({"type": "ping", "nonce": 1, "t": 0.0})] * 2), 0)
    assert ev.reason == "before-hello"


def test_hello_relay_flag_is_checked():
    s = PeerSession(LocalInfo(A_ID), 0)
    [ev] = s.receive(encode({"type": "hello", "id": B_ID, "versions": [2], "relay": 1}), 0)
    assert ev.reason == "bad-field" and s.state == "handshake"


def test_hello_relay_flag():
    a = PeerSession(LocalInfo(A_ID, relay=True), 0)
    b = PeerSession(LocalInfo(B_ID), 0)
    a.hello()
    w = Wire(a, b)
    w.pump()
    assert b.peer is not None and b.peer.relay and a.peer is not None and not a.peer.relay


def test_a_bad_message_in_a_batch_costs_only_itself():
    w = connect()
    good = encode({"type": "have", "doc": "d", "vv": {b"a": 1}})
    frame = batch_frame([good, encode({"type": "have", "doc": 5}), b"\x05",
                         encode({"type": "hello", "id": B_ID, "versions": [2]}),
                         encode({"type": "batch", "msgs": []}), good])
    evs = w.a.receive(frame, 1.0)
    reasons = [e.reason for e in evs if isinstance(e, ProtocolError)]
    assert reasons == ["bad-field", "bad-message", "bad-message", "bad-message"]
    assert [e for e in evs if isinstance(e, HaveReceived)] == [
        HaveReceived("d", {b"a": 1}, False)] * 2
    assert w.a.is_open


def test_old_protocol_version_is_refused():
    s = PeerSession(LocalInfo(A_ID), 0)
    evs = s.receive(encode({"type": "hello", "id": B_ID, "versions": [1]}), 0)
    assert evs[0].reason == "version-mismatch" and s.state == "closed"


def test_next_due_names_the_earliest_timer():
    """A node sleeps until its sessions' next timer instead of polling every 50 ms:
    each timer that `tick` fires must show in `next_due`, or it would fire late."""
    ha, hb = SetHost(A_ID), SetHost(B_ID)
    w = connect(ha, hb, now=0.0, ping_interval=5.0, peer_timeout=15.0,
                anti_entropy_interval=30.0, pull_delay=0.02, announce_delay=0.05)
    a, b = w.a, w.b
    assert a.next_due() == 5.0  # idle: the next ping
    a.tick(5.0)  # the pings go (and their pongs come back)
    b.tick(5.0)
    w.pump(5.0)
    assert a.next_due() == 10.0
    ha.make_change()
    a.announce(DOC, {ha.actor: 1})  # held announce_delay
    assert a.next_due() == 5.05
    assert not a.has_output  # held, not yet output
    a.tick(5.05)
    assert a.has_output and a.next_due() == 10.0
    w.pump(5.05)
    assert b.next_due() == pytest.approx(5.07)  # the delayed pull
    b.tick(5.07)
    w.pump(5.07)
    assert hb.vv[DOC] == {ha.actor: 1}
    a.close("bye")
    assert a.next_due() == math.inf
