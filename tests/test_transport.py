"""CurveZMQ transport over real sockets on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from nacl.signing import SigningKey

from ownkernel.net.protocol import (
    HelloReceived,
    LocalInfo,
    PeerSession,
    SessionConfig,
    curve_key_of,
)
from ownkernel.net.sim import SetHost
from ownkernel.net.transport import (
    ConnEvent,
    Incoming,
    KeyPolicy,
    Transport,
    TransportConfig,
    format_address,
    parse_address,
)

LOOPBACK = ("tcp://127.0.0.1:0",)


def run(coro, timeout: float = 20.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def cfg(**kw) -> TransportConfig:
    return TransportConfig(listen=LOOPBACK, **kw)


def node_id(k: SigningKey) -> bytes:
    return k.verify_key.encode()


async def recv(t: Transport, timeout: float = 5.0) -> Incoming:
    return await asyncio.wait_for(t.recv(), timeout)


async def settle(t: Transport, counter: str, want: int, timeout: float = 5.0) -> None:
    """Wait until a stats counter reaches `want` (frames travel asynchronously)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while t.stats[counter] < want and loop.time() < end:
        await asyncio.sleep(0.01)


def test_addresses_round_trip():
    nid = bytes(range(32))
    addr = format_address("tcp://127.0.0.1:5555", nid)
    assert parse_address(addr) == ("tcp://127.0.0.1:5555", nid)
    assert parse_address("tcp://127.0.0.1:1") == ("tcp://127.0.0.1:1", None)


def test_curve_handshake_and_authenticated_key():
    ka, kb = SigningKey.generate(), SigningKey.generate()

    async def main():
        async with Transport(ka, cfg()) as server, Transport(kb, cfg()) as client:
            [ep] = server.endpoints
            assert ep.startswith("tcp://127.0.0.1:") and not ep.endswith(":0")
            conn = await client.connect(server.addresses[0], timeout=5)
            assert client.connection_state(conn) == "handshake-ok"
            assert await client.send(conn, b"hi")
            inc = await recv(server)
            assert inc.frame == b"hi" and inc.conn[0] == "in"
            # the key the server reports is the client's identity in Curve form
            assert inc.curve_key == curve_key_of(node_id(kb)) == client.curve_public
            assert inc.node_id is None  # not until a hello proves it
            assert not server.confirm_identity(inc.curve_key, node_id(ka))
            assert server.confirm_identity(inc.curve_key, node_id(kb))
            assert await server.send(inc.conn, b"ho")
            back = await recv(client)
            assert back.frame == b"ho" and back.curve_key == server.curve_public
            assert back.node_id == node_id(ka)  # dialed by id: Curve pinned it
            assert await client.send(conn, b"again")
            assert (await recv(server)).node_id == node_id(kb)
            assert server.stats["auth-ok"] == 1
    run(main())


def test_denied_key_is_refused():
    ka, kb, kc = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()

    async def main():
        policy = KeyPolicy(allow={curve_key_of(node_id(kb))})
        async with Transport(ka, cfg(), policy=policy) as server, \
                Transport(kb, cfg()) as friend, Transport(kc, cfg()) as stranger:
            with pytest.raises(PermissionError):
                await stranger.connect(server.addresses[0], timeout=5)
            assert server.stats["auth-denied"] >= 1
            # an allowed key still gets in afterwards
            conn = await friend.connect(server.addresses[0], timeout=5)
            await friend.send(conn, b"ok")
            assert (await recv(server)).frame == b"ok"
            # blocking mid-session drops its frames (ROUTER peers cannot be kicked)
            policy.deny.add(friend.curve_public)
            await friend.send(conn, b"late")
            await settle(server, "denied", 1)
            assert server.stats["denied"] == 1 and server._queue.empty()
            # and we refuse to dial a denied key ourselves
            with pytest.raises(PermissionError):
                await server.connect(friend.addresses[0])
    run(main())


def test_wrong_server_key_never_connects():
    ka, kb = SigningKey.generate(), SigningKey.generate()

    async def main():
        events: list[ConnEvent] = []
        async with Transport(ka, cfg()) as server, \
                Transport(kb, cfg(), on_event=events.append) as client:
            impostor_id = node_id(SigningKey.generate())
            with pytest.raises(TimeoutError):
                await client.connect(server.endpoints[0], impostor_id, timeout=1.0)
            assert server.stats["frames-in"] == 0
            assert not any(e.kind == "handshake-ok" for e in events)
    run(main())


def test_oversize_frames_dropped_and_counted():
    ka, kb = SigningKey.generate(), SigningKey.generate()

    async def main():
        async with Transport(ka, cfg(max_frame_size=1024)) as server, \
                Transport(kb, cfg(max_frame_size=1 << 20)) as client:
            conn = await client.connect(server.addresses[0], timeout=5)
            for _ in range(3):
                await client.send(conn, b"x" * 5000)
            await client.send(conn, b"small")
            assert (await recv(server)).frame == b"small"
            assert server.stats["oversize"] == 3
            # and we never send what the peer's (our own) limit forbids
            assert not await server.send(("in", b"nobody"), b"y" * 2000)
            assert server.stats["send-oversize"] == 1
            assert not await server.send(("in", b"nobody"), b"y")  # unknown peer
            assert server.stats["send-failed"] == 1
    run(main())


def test_rate_limit_per_peer():
    ka, kb = SigningKey.generate(), SigningKey.generate()

    async def main():
        async with Transport(ka, cfg(rate=1.0, burst=5)) as server, \
                Transport(kb, cfg()) as client:
            conn = await client.connect(server.addresses[0], timeout=5)
            for i in range(50):
                await client.send(conn, b"%d" % i)
            await settle(server, "rate-limited", 44)
            got = server._queue.qsize()
            assert 5 <= got <= 7  # the burst (plus whatever refilled meanwhile)
            assert server.stats["rate-limited"] == 50 - got
    run(main())


def _sync_node(key: SigningKey, transport: Transport, host: SetHost, sessions: dict) -> None:
    """The glue a node writes: a session per connection, identity bound by hello."""
    loop = asyncio.get_running_loop()

    def on_frame(inc: Incoming) -> None:
        s = sessions.get(inc.conn)
        if s is None:
            s = sessions[inc.conn] = PeerSession(
                LocalInfo(node_id(key), "n"), loop.time(), host=host,
                transport_key=inc.curve_key, config=SessionConfig())
        for ev in s.receive(inc.frame, loop.time()):
            if isinstance(ev, HelloReceived):
                assert transport.confirm_identity(inc.curve_key, ev.node_id)
        for f in s.data_to_send():
            loop.create_task(transport.send(inc.conn, f))

    transport.on_frame = on_frame


def test_sessions_sync_over_curve():
    ka, kb = SigningKey.generate(), SigningKey.generate()

    async def main():
        ha, hb = SetHost(node_id(ka)), SetHost(node_id(kb))
        for _ in range(5):
            ha.make_change()
        hb.make_change()
        sa: dict = {}
        sb: dict = {}
        async with Transport(ka, cfg()) as ta, Transport(kb, cfg()) as tb:
            _sync_node(ka, ta, ha, sa)
            _sync_node(kb, tb, hb, sb)
            conn = await tb.connect(ta.addresses[0], timeout=5)
            loop = asyncio.get_running_loop()
            s = sb[conn] = PeerSession(LocalInfo(node_id(kb)), loop.time(), host=hb,
                                       transport_key=curve_key_of(node_id(ka)))
            s.hello()
            for f in s.data_to_send():
                await tb.send(conn, f)
            for _ in range(200):
                if ha.vv == hb.vv:
                    break
                await asyncio.sleep(0.01)
            assert ha.vv == hb.vv and len(ha.vv["doc"]) == 2
            assert ta.node_id_of(tb.curve_public) == node_id(kb)
    run(main())


def _resources() -> tuple[int, int, int]:
    return (len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")),
            threading.active_count())


def test_clean_close_leaks_nothing():
    keys = [SigningKey.generate() for _ in range(3)]

    async def cycle():
        ts = [Transport(k, cfg()) for k in keys]
        for t in ts:
            await t.start()
        for t in ts[1:]:
            conn = await t.connect(ts[0].addresses[0], timeout=5)
            await t.send(conn, b"x")
        await recv(ts[0])
        await ts[1].connect(ts[2].addresses[0])  # left connecting on purpose
        for t in ts:
            await t.close()
            await t.close()  # idempotent

    run(cycle())  # warm up lazily created process-wide state
    before = _resources()
    for _ in range(3):
        run(cycle())
    assert _resources() == before


def test_frame_past_hard_limit_drops_only_that_connection():
    ka, kb, kc = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()

    async def main():
        async with Transport(ka, cfg(max_frame_size=1024)) as server, \
                Transport(kb, cfg(max_frame_size=1 << 20)) as hostile, \
                Transport(kc, cfg()) as friend:
            bad = await hostile.connect(server.addresses[0], timeout=5)
            await hostile.send(bad, b"z" * 200_000)  # past MAXMSGSIZE: libzmq hangs up
            good = await friend.connect(server.addresses[0], timeout=5)
            await friend.send(good, b"still here")
            inc = await recv(server)
            assert inc.frame == b"still here" and inc.curve_key == friend.curve_public
    run(main())


# ------------------------------------------------------------------ attacks, counted
# Each attack is done for real against a Transport on 127.0.0.1; afterwards
# its own counter has moved (and no other attack's) and an honest client is
# still served.

ATTACK_COUNTERS = ("in-garbage", "in-no-curve", "in-bad-curve", "in-hard-limit",
                   "in-auth-failed")


async def until_counter(t: Transport, counter: str, want: int = 1, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while t.stats[counter] < want:
        assert loop.time() < end, f"{counter} stayed at {t.stats[counter]}: {dict(t.stats)}"
        await asyncio.sleep(0.01)


async def still_serves(server: Transport, client: Transport, conn, tag: bytes) -> None:
    assert await client.send(conn, tag)
    inc = await recv(server)
    assert inc.frame == tag and inc.curve_key == client.curve_public
    assert await server.send(inc.conn, b"re:" + tag)
    assert (await recv(client)).frame == b"re:" + tag


def host_port(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_attacks_each_leave_their_own_counter():
    import random
    import socket

    import zmq
    import zmq.asyncio

    ka, kb, kh = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()

    async def main():
        ctx = zmq.asyncio.Context()
        try:
            async with Transport(ka, cfg(max_frame_size=1024)) as server, \
                    Transport(kb, cfg()) as honest, \
                    Transport(kh, cfg(max_frame_size=1 << 20)) as hostile:
                conn = await honest.connect(server.addresses[0], timeout=5)
                await still_serves(server, honest, conn, b"before")

                def moved() -> set[str]:
                    return {c for c in ATTACK_COUNTERS if server.stats[c]}

                # 1. raw TCP garbage (an HTTP request and random bytes)
                s = socket.create_connection(host_port(server.endpoints[0]))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + random.Random(7).randbytes(4096))
                await until_counter(server, "in-garbage")
                s.close()
                assert moved() == {"in-garbage"}
                await still_serves(server, honest, conn, b"after garbage")

                # 2. a client without Curve (NULL mechanism). A zmq DEALER: when it
                # sees our CURVE greeting first it hangs up (libzmq: "no detail"),
                # else libzmq reports the mechanism mismatch.
                d = ctx.socket(zmq.DEALER)
                d.linger = 0
                d.connect(server.endpoints[0])
                await d.send(b"let me in")
                await until_counter(server, "in-accepted", 3)
                loop = asyncio.get_running_loop()
                end = loop.time() + 10
                while not (server.stats["in-no-curve"] or server.stats["in-handshake-aborted"]):
                    assert loop.time() < end, dict(server.stats)
                    await asyncio.sleep(0.01)
                d.close()
                assert moved() <= {"in-garbage", "in-no-curve"}
                # the same client speaking ZMTP by hand, staying connected: the
                # mismatch is always libzmq's to see
                s = socket.create_connection(host_port(server.endpoints[0]))
                s.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00")
                          + bytes(32))
                await until_counter(server, "in-no-curve")
                s.close()
                assert moved() == {"in-garbage", "in-no-curve"}
                await still_serves(server, honest, conn, b"after null")

                # 3. a Curve client that does not know the server's key
                d = ctx.socket(zmq.DEALER)
                d.linger = 0
                d.curve_publickey, d.curve_secretkey = zmq.curve_keypair()
                d.curve_serverkey = zmq.curve_keypair()[0]
                d.connect(server.endpoints[0])
                await d.send(b"hello?")
                await until_counter(server, "in-bad-curve")
                d.close()
                assert moved() == {"in-garbage", "in-no-curve", "in-bad-curve"}
                await still_serves(server, honest, conn, b"after wrong key")

                # 4. an authenticated peer sending a frame past the hard limit
                bad = await hostile.connect(server.addresses[0], timeout=5)
                assert await hostile.send(bad, b"z" * 200_000)
                await until_counter(server, "in-hard-limit")
                assert moved() == {"in-garbage", "in-no-curve", "in-bad-curve", "in-hard-limit"}
                await still_serves(server, honest, conn, b"after oversize")
                assert server.stats["frames-in"] == 5  # only the honest frames got through
                assert server.stats["in-disconnected"] == 0  # nobody hung up by themselves
        finally:
            ctx.destroy(linger=0)
    run(main(), timeout=60)


def test_refused_key_and_honest_close_are_told_apart():
    ka, kb, kc = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()

    async def main():
        events: list[ConnEvent] = []
        policy = KeyPolicy(deny={curve_key_of(node_id(kc))})
        async with Transport(ka, cfg(), policy=policy, on_event=events.append) as server, \
                Transport(kc, cfg()) as denied:
            with pytest.raises(PermissionError):
                await denied.connect(server.addresses[0], timeout=5)
            await until_counter(server, "in-auth-failed")
            client = Transport(kb, cfg())
            await client.start()
            conn = await client.connect(server.addresses[0], timeout=5)
            await client.send(conn, b"hi")
            inc = await recv(server)
            # the sender's network address travels with each frame, both ways
            assert inc.address == "127.0.0.1"
            await server.send(inc.conn, b"back")
            assert (await recv(client)).address == "127.0.0.1"
            await client.close()
            await until_counter(server, "in-disconnected")
            # the node learns that this ROUTER peer is gone (to free its session)
            for _ in range(100):
                if ConnEvent(inc.conn, "disconnected") in events:
                    break
                await asyncio.sleep(0.01)
            assert ConnEvent(inc.conn, "disconnected") in events
            assert server.stats["in-hard-limit"] == server.stats["in-garbage"] == 0
            assert server.stats["in-handshake-ok"] == 1
            assert not server._watch.fds and not server._in  # nothing kept for the gone peer
    run(main())


# ------------------------------------------------------------------ send budgets

_SLOW_READER = r"""
import sys, time, zmq
pub, sec, server = (bytes.fromhex(a) for a in sys.argv[1:4])
ctx = zmq.Context()
d = ctx.socket(zmq.DEALER)
d.linger = 0
d.rcvhwm = 1  # bounded here too: this process is not the one measured
d.curve_publickey, d.curve_secretkey, d.curve_serverkey = pub, sec, server
d.connect(sys.argv[4])
d.send(b"hello, then I never read")
print("sent", flush=True)
time.sleep(120)
"""


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


RSS_BOUND = 64 * 1024 * 1024


def test_peer_that_never_reads_costs_bounded_memory():
    """Hole 6: 1 MiB frames to a peer that never reads; RSS growth stays < 64 MB."""
    import subprocess
    import sys

    from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519

    ka, kb, kr = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    r_pub = curve_key_of(node_id(kr))
    r_sec = crypto_sign_ed25519_sk_to_curve25519(bytes(kr) + node_id(kr))

    async def main():
        async with Transport(ka, cfg()) as server, Transport(kb, cfg()) as honest:
            child = subprocess.Popen(
                [sys.executable, "-c", _SLOW_READER, r_pub.hex(), r_sec.hex(),
                 server.curve_public.hex(), server.endpoints[0]],
                stdout=subprocess.PIPE, text=True)
            try:
                inc = await recv(server, timeout=15)
                assert inc.curve_key == r_pub
                slow = inc.conn
                good = await honest.connect(server.addresses[0], timeout=5)
                await honest.send(good, b"hi")
                good_in = (await recv(server)).conn
                before = _rss()
                sent = refused = got = 0
                peak = 0
                for i in range(400):  # 400 MiB offered to the slow reader
                    frame = os.urandom(1 << 20)  # a fresh frame each time, as a node encodes
                    if await server.send(slow, frame):
                        sent += 1
                    else:
                        refused += 1
                    if i % 20 == 0:  # an honest peer keeps getting its frames
                        assert await server.send(good_in, b"tick %d" % i)
                        assert (await recv(honest)).frame == b"tick %d" % i
                        got += 1
                    await asyncio.sleep(0.002)
                    peak = max(peak, _rss() - before)
                assert got == 20
                assert refused > 0 and server.stats["send-budget"] == refused
                assert server.congested(slow) and not server.congested(good_in)
                # in libzmq/the kernel ≤ one budget (+ the frame let through when idle),
                # waiting in the backlog ≤ another
                assert server.in_flight(slow) <= 2 * server.config.send_budget + (1 << 20) + 100
                assert server.stats["send-deferred"] >= 1
                print(f"sent {sent} refused {refused} MiB frames; RSS growth peak "
                      f"{peak / 2**20:.1f} MiB (bound {RSS_BOUND >> 20})")
                assert peak < RSS_BOUND
            finally:
                child.kill()
                child.wait()
    run(main(), timeout=90)


def test_in_flight_accounting_returns_to_zero_for_a_reader():
    """Exact wire accounting: what a reading peer received is no longer in flight."""
    ka, kb = SigningKey.generate(), SigningKey.generate()

    async def main():
        async with Transport(ka, cfg()) as server, Transport(kb, cfg()) as client:
            conn = await client.connect(server.addresses[0], timeout=5)
            await client.send(conn, b"hi")
            back = (await recv(server)).conn
            # both ends measure from the kernel (TCP_INFO), not by assumption
            assert server._in[back[1]].probe is not None
            assert client._out[conn[1]].probe is not None
            sizes = [0, 1, 200, 222, 223, 300, 70_000, 1 << 20]
            for n in sizes * 5:
                assert await server.send(back, b"q" * n)
                assert await client.send(conn, b"r" * n)
            for _ in range(len(sizes) * 5):
                await recv(client)
                await recv(server)
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            while server.in_flight(back) or client.in_flight(conn):
                assert loop.time() < end, (server.in_flight(back), client.in_flight(conn))
                await asyncio.sleep(0.01)
            assert not server.congested(back) and server.stats["send-budget"] == 0
    run(main())


def test_backlog_keeps_order_and_pacing_by_congested_loses_nothing():
    ka, kb = SigningKey.generate(), SigningKey.generate()
    fast = {"rate": 1e9, "burst": 1e9}

    async def main():
        async with Transport(ka, cfg(**fast)) as server, Transport(kb, cfg(**fast)) as client:
            conn = await client.connect(server.addresses[0], timeout=5)
            await client.send(conn, b"hi")
            back = (await recv(server)).conn
            big = b"b" * (1 << 20)
            # back to back: what does not fit waits (in order) or is refused (counted)
            accepted = [i for i in range(40) if await server.send(back, b"%03d" % i + big)]
            assert server.stats["send-deferred"] > 0
            assert len(accepted) + server.stats["send-budget"] == 40
            got = [int((await recv(client)).frame[:3]) for _ in accepted]
            assert got == accepted  # every accepted frame arrives, in order
            # a producer that waits while congested() loses nothing
            before = server.stats["send-budget"]
            for i in range(40):
                while server.congested(back):
                    await asyncio.sleep(0.001)
                assert await server.send(back, b"%03d" % i + big)
            got = [int((await recv(client)).frame[:3]) for _ in range(40)]
            assert got == list(range(40)) and server.stats["send-budget"] == before
            while server.in_flight(back):
                await asyncio.sleep(0.01)
            assert not server._budgets._backlog and server._budgets.held_total == 0
    run(main(), timeout=60)


TERMINAL = ("in-garbage", "in-no-curve", "in-bad-curve", "in-auth-failed", "in-handshake-aborted",
            "in-protocol-error", "in-hard-limit", "in-disconnected")


def test_connection_flood_each_counted_once_and_nothing_leaks():
    """150 hostile TCP connections at once: every one ends in exactly one counter,
    no probe (dup'ed fd) is left behind, and an honest client is served meanwhile."""
    import random
    import socket

    ka, kb = SigningKey.generate(), SigningKey.generate()
    null_greeting = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + bytes(32)

    async def main():
        async with Transport(ka, cfg()) as server, Transport(kb, cfg()) as honest:
            conn = await honest.connect(server.addresses[0], timeout=5)
            await still_serves(server, honest, conn, b"before")
            fds_before = len(os.listdir("/proc/self/fd"))
            rnd = random.Random(3)
            socks = []
            for i in range(150):
                s = socket.create_connection(host_port(server.endpoints[0]))
                s.sendall(null_greeting if i % 3 == 0 else rnd.randbytes(rnd.randrange(1, 3000)))
                socks.append(s)
            await until_counter(server, "in-accepted", 151)
            await still_serves(server, honest, conn, b"during")
            for s in socks:
                s.close()
            loop = asyncio.get_running_loop()
            end = loop.time() + 15
            # all but the honest connection have ended, each counted once
            while sum(server.stats[c] for c in TERMINAL) < 150:
                assert loop.time() < end, dict(server.stats)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # nothing counted twice arrives late
            assert sum(server.stats[c] for c in TERMINAL) == 150, dict(server.stats)
            assert server.stats["in-no-curve"] >= 1 and server.stats["in-garbage"] >= 1
            assert server.stats["in-hard-limit"] == server.stats["in-disconnected"] == 0
            assert len(server._watch.fds) == 1  # the honest one
            assert len(os.listdir("/proc/self/fd")) <= fds_before
            await still_serves(server, honest, conn, b"after")
    run(main(), timeout=60)
