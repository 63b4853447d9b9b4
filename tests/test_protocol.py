"""The sans-IO sync protocol, driven by hand: no sockets, no threads, no clocks."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ownkernel.net.protocol import (
    DECODE_KW,
    PROTOCOL_VERSIONS,
    ChangesReceived,
    ErrorReceived,
    HaveReceived,
    HelloReceived,
    LocalInfo,
    PeerInfo,
    PeerSession,
    PeersReceived,
    PeerTimeout,
    Pong,
    PresenceExpired,
    PresenceReceived,
    ProtocolError,
    SessionClosed,
    SessionConfig,
    curve_key_of,
    encode,
    plan_sync,
)
from ownkernel.net.sim import SetHost
from ownkernel.net.wire import batch_frame

V = PROTOCOL_VERSIONS[-1]
A_ID = bytes(range(32))
B_ID = bytes(range(1, 33))


def pump(a: PeerSession, b: PeerSession, now: float = 0.0, limit: int = 50) -> list:
    """Deliver frames both ways until quiet; return all events (tagged by receiver)."""
    events = []
    for _ in range(limit):
        fa, fb = a.data_to_send(), b.data_to_send()
        if not fa and not fb:
            return events
        for f in fa:
            events += [("b", e) for e in b.receive(f, now)]
        for f in fb:
            events += [("a", e) for e in a.receive(f, now)]
    raise AssertionError("sessions never went quiet")


def pair(host_a=None, host_b=None, va=PROTOCOL_VERSIONS, vb=PROTOCOL_VERSIONS, **kw):
    a = PeerSession(LocalInfo(A_ID, "alice", ("tcp://127.0.0.1:1",), va), 0.0, host=host_a, **kw)
    b = PeerSession(LocalInfo(B_ID, "bob", (), vb), 0.0, host=host_b, **kw)
    return a, b


def opened(**kw):
    a, b = pair(**kw)
    a.hello()
    pump(a, b)
    assert a.is_open and b.is_open
    return a, b


# ---------------------------------------------------------------- handshake


def test_handshake_opens_both_sides_and_reports_peer():
    a, b = pair()
    a.hello()
    events = pump(a, b)
    hellos = {who: e for who, e in events if isinstance(e, HelloReceived)}
    assert hellos["b"].node_id == A_ID and hellos["b"].name == "alice"
    assert hellos["b"].addresses == ("tcp://127.0.0.1:1",)
    assert hellos["a"].node_id == B_ID
    assert a.is_open and b.is_open and a.version == b.version == V
    assert a.peer_id == B_ID and b.peer_id == A_ID


def test_version_negotiation_picks_highest_common():
    a, b = pair(va=(1, 2, 3), vb=(2, 3, 7))
    a.hello()
    pump(a, b)
    assert a.version == b.version == 3


def test_version_mismatch_closes_with_error():
    a, b = pair(va=(1, 2), vb=(3,))
    a.hello()
    b.hello()
    events = pump(a, b)
    assert a.state == b.state == "closed"
    errs = [e for _, e in events if isinstance(e, ProtocolError)]
    assert errs and all(e.reason == "version-mismatch" and e.fatal for e in errs)
    assert any(isinstance(e, SessionClosed) for _, e in events)
    assert a.receive(encode({"type": "ping", "nonce": 1, "t": 0.0}), 1.0) == []


def test_identity_must_match_transport_key():
    ka, kb = SigningKey.generate(), SigningKey.generate()
    a_id, b_id = ka.verify_key.encode(), kb.verify_key.encode()
    good = PeerSession(LocalInfo(b_id), 0, transport_key=curve_key_of(a_id))
    [ev] = good.receive(encode({"type": "hello", "id": a_id, "versions": [V]}), 0)
    assert isinstance(ev, HelloReceived) and good.is_open
    bad = PeerSession(LocalInfo(b_id), 0, transport_key=curve_key_of(b_id))
    evs = bad.receive(encode({"type": "hello", "id": a_id, "versions": [V]}), 0)
    assert isinstance(evs[0], ProtocolError) and evs[0].reason == "identity-mismatch"
    assert bad.state == "closed"
    frames = bad.data_to_send()
    assert cbor2.loads(frames[-1])["type"] == "error"


def test_self_connection_refused():
    s = PeerSession(LocalInfo(A_ID), 0)
    evs = s.receive(encode({"type": "hello", "id": A_ID, "versions": [V]}), 0)
    assert evs[0].reason == "self-connection" and s.state == "closed"


def test_handshake_timeout():
    s = PeerSession(LocalInfo(A_ID), 0, config=SessionConfig(handshake_timeout=5))
    assert s.tick(4.9) == []
    evs = s.tick(5.0)
    assert isinstance(evs[0], ProtocolError) and evs[0].reason == "handshake-timeout"
    assert s.state == "closed"


def test_messages_before_hello_are_rejected_but_session_survives():
    a, b = pair()
    [ev] = b.receive(encode({"type": "have", "doc": "d", "vv": {}}), 0)
    assert ev.reason == "before-hello" and b.errors["before-hello"] == 1
    a.hello()
    pump(a, b)
    assert b.is_open


# ---------------------------------------------------------------- sync


def test_have_changes_exchange_by_hand_without_host():
    a, b = opened()
    assert a.send_have("doc", {b"x": 3})
    [(who, ev)] = pump(a, b)
    assert who == "b" and ev == HaveReceived("doc", {b"x": 3}, False)
    assert b.send_changes("doc", [b"c1", b"c2"])
    [(who, ev)] = pump(a, b)
    assert ev == ChangesReceived("doc", (b"c1", b"c2"))


def test_hosts_sync_both_ways_on_open():
    ha, hb = SetHost(A_ID), SetHost(B_ID)
    for _ in range(3):
        ha.make_change()
    hb.make_change()
    a, b = pair(ha, hb)
    a.hello()
    pump(a, b)
    assert ha.vv == hb.vv == {"doc": {A_ID[:8]: 3, B_ID[:8]: 1}}
    # in sync: an anti-entropy round costs two `digest`s and nothing else
    a.sync_all(10.0)
    b.sync_all(10.0)
    sent = a.data_to_send() + b.data_to_send()
    assert [cbor2.loads(f)["type"] for f in sent] == ["digest", "digest"]
    for f in sent[:1]:
        assert b.receive(f, 10.0) == [] and b.data_to_send() == []


def test_live_push_and_anti_entropy_tick():
    ha, hb = SetHost(A_ID), SetHost(B_ID)
    cfg = SessionConfig(anti_entropy_interval=30, ping_interval=1e9, peer_timeout=1e9)
    a, b = opened(host_a=ha, host_b=hb, config=cfg)
    a.send_changes("doc", [ha.make_change()])
    pump(a, b)
    assert hb.vv["doc"] == {A_ID[:8]: 1}
    ha.make_change()  # made but never pushed: anti-entropy must repair it
    assert a.tick(10) == []
    assert a.data_to_send() == []
    a.tick(30)
    pump(a, b, now=30)
    assert hb.vv["doc"] == {A_ID[:8]: 2}


def test_only_shared_docs_are_offered_or_accepted():
    ha = SetHost(A_ID, docs=("public", "secret"), allowed={B_ID: {"public"}})
    hb = SetHost(B_ID, docs=("public", "secret"))
    ha.make_change("public")
    ha.make_change("secret")
    a, b = pair(ha, hb)
    a.hello()
    pump(a, b)
    assert hb.vv["public"] == {A_ID[:8]: 1}
    assert hb.vv["secret"] == {}
    # asking for the secret doc gets silence, not an error that reveals it exists
    b.send_have("secret", {})
    events = pump(a, b)
    assert [e.reason for _, e in events] == ["doc-not-shared"]
    assert hb.vv["secret"] == {}
    assert not a.send_changes("secret", [b"x"])
    # pushing into a doc we do not share with them is refused too
    hb.make_change("secret")
    b.send_changes("secret", hb.changes_since("secret", {}))
    events = pump(a, b)
    assert [e.reason for _, e in events] == ["doc-not-shared"]
    assert ha.vv["secret"] == {A_ID[:8]: 1}


def test_rejected_changes_are_counted_and_session_survives():
    ha, hb = SetHost(A_ID), SetHost(B_ID)
    a, b = opened(host_a=ha, host_b=hb)
    a.send_changes("doc", [b"\xff garbage"])
    [(_, ev)] = pump(a, b)
    assert ev.reason == "rejected-changes" and not ev.fatal
    a.send_changes("doc", [ha.make_change()])
    pump(a, b)
    assert hb.vv["doc"] == {A_ID[:8]: 1}


def test_large_batches_split_under_the_frame_limit():
    cfg = SessionConfig(max_frame_size=4096)
    a, b = opened(config=cfg)
    blobs = [bytes([i]) * 1000 for i in range(10)]
    a.send_changes("doc", blobs)
    frames = a.data_to_send()
    assert len(frames) > 1 and all(len(f) <= 4096 for f in frames)
    got = [blob for f in frames for e in b.receive(f, 0) for blob in e.blobs]
    assert got == blobs


def test_plan_sync():
    plan = plan_sync({b"a": 3, b"b": 1}, {b"b": 4, b"c": 2})
    assert plan.local_lacks == {b"b": (1, 4), b"c": (0, 2)}
    assert plan.remote_lacks == {b"a": (0, 3)}
    assert plan_sync({b"a": 1}, {b"a": 1}).in_sync


# ---------------------------------------------------------------- other messages


def test_ping_pong_latency():
    a, b = opened()
    assert a.ping(10.0)
    b.receive(a.data_to_send()[0], 10.02)
    [pong] = a.receive(b.data_to_send()[0], 10.05)
    assert isinstance(pong, Pong) and pong.latency == pytest.approx(0.05)
    [ev] = a.receive(encode({"type": "pong", "nonce": 999, "t": 0.0}), 11)
    assert ev.reason == "unexpected-pong"


def test_tick_pings_and_reports_silence():
    cfg = SessionConfig(ping_interval=5, peer_timeout=20, anti_entropy_interval=1e9)
    a, b = opened(config=cfg)
    a.tick(5)
    assert cbor2.loads(a.data_to_send()[0])["type"] == "ping"
    evs = a.tick(20)
    assert any(isinstance(e, PeerTimeout) for e in evs)
    assert not any(isinstance(e, PeerTimeout) for e in a.tick(21))  # reported once


def test_peers_and_presence():
    a, b = opened()
    a.send_peers([PeerInfo(bytes(32), "carol", ("tcp://127.0.0.1:9",), 12.5)])
    a.send_presence("doc", b"signed-state", ttl=10)
    with pytest.raises(TypeError):
        a.send_presence("doc", {"cursor": 4}, ttl=10)  # opaque bytes only
    events = [e for _, e in pump(a, b, now=100)]
    assert events[0] == PeersReceived((PeerInfo(bytes(32), "carol", ("tcp://127.0.0.1:9",),
                                                12.5),))
    assert isinstance(events[1], PresenceReceived) and events[1].state == b"signed-state"
    assert b.presence["doc"].expires_at == 110
    assert b.tick(109) == [] or not any(isinstance(e, PresenceExpired) for e in b.tick(109))
    assert PresenceExpired("doc") in b.tick(110)
    assert "doc" not in b.presence


def test_error_from_peer_closes():
    a, b = opened()
    evs = a.receive(encode({"type": "error", "reason": "bye"}), 0)
    assert evs == [ErrorReceived("bye"), SessionClosed("peer: bye")]
    assert not a.is_open


# ---------------------------------------------------------------- malformed input


def _hello(**over):
    msg = {"type": "hello", "id": B_ID, "versions": [V]}
    msg.update(over)
    return encode(msg)


MALFORMED = [
    (b"", "bad-cbor"),
    (b"\xff\x00", "bad-cbor"),
    (b"\xa1", "bad-cbor"),  # truncated map
    (cbor2.dumps([1, 2, 3]), "bad-message"),
    (cbor2.dumps({"nope": 1}), "bad-message"),
    (cbor2.dumps({"type": 5}), "bad-message"),
    (encode({"type": "ping", "nonce": 1, "t": 0}) + b"\x00", "bad-cbor"),  # trailing bytes
    (b"\xa1\x64type\xd8\x23\x61x", "bad-cbor"),  # regex tag
    (b"\xa1\x64type\xc1\x01", "bad-cbor"),  # datetime tag
    (b"\x81" * 200 + b"\x00", "bad-cbor"),  # deep nesting
    (b"\xa1\x64type\xf7", "bad-cbor"),  # undefined
    (b"\xa2\x64type\x64ping\xf8\x20\x01", "bad-cbor"),  # simple value as key
    pytest.param(b"\xa2\x64type\x64ping\x64type\x64pong", "bad-cbor",  # duplicate key
                 marks=pytest.mark.skipif(not DECODE_KW, reason="needs cbor2 >= 6")),
    (encode({"type": "warp-drive"}), "unknown-type"),
    (encode({"type": "have", "doc": "d"}), "bad-field"),
    (encode({"type": "have", "doc": "", "vv": {}}), "bad-field"),
    (encode({"type": "have", "doc": 7, "vv": {}}), "bad-field"),
    (encode({"type": "have", "doc": "d", "vv": {"str": 1}}), "bad-field"),
    (encode({"type": "have", "doc": "d", "vv": {b"a": -1}}), "bad-field"),
    (encode({"type": "have", "doc": "d", "vv": {b"a": True}}), "bad-field"),
    (encode({"type": "have", "doc": "d", "vv": {b"a": 2**63}}), "bad-field"),
    (encode({"type": "changes", "doc": "d", "blobs": ["str"]}), "bad-field"),
    (encode({"type": "changes", "doc": "d", "blobs": b"x"}), "bad-field"),
    (encode({"type": "peers", "peers": [[b"short", "n", [], 0]]}), "bad-field"),
    (encode({"type": "peers", "peers": [[bytes(32), "n", [1], 0]]}), "bad-field"),
    (encode({"type": "peers", "peers": [[bytes(32), "n", [], float("nan")]]}), "bad-field"),
    (encode({"type": "peers", "peers": "all"}), "bad-field"),
    (encode({"type": "ping", "nonce": "x", "t": 0}), "bad-field"),
    (encode({"type": "ping", "nonce": 1, "t": float("inf")}), "bad-field"),
    (encode({"type": "presence", "doc": "d", "state": 1, "ttl": 0}), "bad-field"),
    (encode({"type": "presence", "doc": "d", "state": 1, "ttl": 1e9}), "bad-field"),
    (encode({"type": "presence", "doc": "d", "ttl": 5}), "bad-field"),
    (_hello(), "duplicate-hello"),
    (b"x" * 70_000, "oversize"),
]


@pytest.mark.parametrize("frame,reason", MALFORMED)
def test_malformed_frames_are_counted_and_harmless(frame, reason):
    a, b = opened(config=SessionConfig(max_frame_size=65536))
    evs = a.receive(frame, 1.0)
    assert len(evs) == 1 and isinstance(evs[0], ProtocolError), evs
    assert evs[0].reason == reason and not evs[0].fatal
    assert a.errors[reason] == 1 and a.is_open
    # still usable afterwards
    b.send_have("d", {b"a": 1})
    assert a.receive(b.data_to_send()[0], 2.0) == [HaveReceived("d", {b"a": 1}, False)]


@pytest.mark.parametrize("hello", [
    _hello(id=b"short"), _hello(versions=[]), _hello(versions="1"), _hello(versions=[True]),
    _hello(name=5), _hello(addrs=["x" * 1000]), _hello(docs="d"), _hello(max_frame=10),
])
def test_bad_hello_is_rejected_and_handshake_can_still_complete(hello):
    s = PeerSession(LocalInfo(A_ID), 0)
    [ev] = s.receive(hello, 0)
    assert ev.reason == "bad-field" and s.state == "handshake"
    [ok] = s.receive(_hello(), 0)
    assert isinstance(ok, HelloReceived)


# ---------------------------------------------------------------- fuzz

VALID = [
    encode({"type": "have", "doc": "doc", "vv": {b"actor": 3}, "reply": False}),
    encode({"type": "changes", "doc": "doc", "blobs": [cbor2.dumps([b"actor", 1])]}),
    encode({"type": "peers", "peers": [[bytes(32), "x", ["tcp://127.0.0.1:1"], 1.0]]}),
    encode({"type": "ping", "nonce": 3, "t": 1.5}),
    encode({"type": "pong", "nonce": 1, "t": 1.5}),
    encode({"type": "presence", "doc": "doc", "state": b"state", "ttl": 5}),
    encode({"type": "have", "doc": "doc", "vv": {b"actor": 3}, "part": True}),
    encode({"type": "digest", "d": b"d" * 16, "n": 3}),
    encode({"type": "digests", "docs": [["doc", b"v" * 16], ["doc", b"w" * 16, {b"a": 1}]],
            "d": b"d" * 16, "of": b"o" * 16, "end": True}),
    encode({"type": "settled", "mine": b"m" * 16, "yours": b"y" * 16}),
    encode({"type": "grants", "grants": [b"g" * 40]}),
    encode({"type": "carry", "docs": [b"doc"]}),
    batch_frame([encode({"type": "ping", "nonce": 3, "t": 1.5}),
                 encode({"type": "have", "doc": "doc", "vv": {}})]),
    _hello(),
]

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.binary(max_size=40),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "doc", "vv", "blobs", "peers", "nonce", "t", "ttl",
                         "state", "id", "versions", "reply", "part", "d", "of", "end",
                         "docs", "msgs", "grants", "mine", "yours"]) | st.text(max_size=4),
        kids, max_size=5),
    max_leaves=20,
)
types = st.sampled_from(["hello", "have", "changes", "peers", "ping", "pong", "presence",
                         "error", "digest", "digests", "settled", "batch", "grants", "carry",
                         "zzz"])


@st.composite
def frames(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        msg = draw(st.dictionaries(st.text(max_size=6), cbor_values, max_size=5))
        msg["type"] = draw(types)
        return cbor2.dumps(msg)
    base = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(base)))
        if op == 0 and pos < len(base):
            base[pos] = draw(st.integers(0, 255))
        elif op == 1:
            base[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del base[pos:pos + draw(st.integers(1, 4))]
    return bytes(base)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=8), st.booleans())
def test_fuzz_receive_never_raises(batch, with_host):
    ha = SetHost(A_ID) if with_host else None
    hb = SetHost(B_ID) if with_host else None
    a, b = opened(host_a=ha, host_b=hb)
    for i, f in enumerate(batch):
        for ev in a.receive(f, float(i)):
            assert not isinstance(ev, BaseException)
        a.tick(float(i))
    if a.is_open:  # whatever happened, a session that is still open still syncs
        if with_host:
            hb.make_change()
            b.sync_all(100.0)
            pump(a, b, now=100.0)
            assert ha.vv["doc"].get(B_ID[:8]) == 1
    else:
        assert a.receive(_hello(), 0) == []
