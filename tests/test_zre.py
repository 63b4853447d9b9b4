"""ZRE (RFC 36) discovery: codecs, the sans-IO core, and interop with zeromq-pyre.

Safety: nothing in this file sends a UDP packet from the test process. Every process
that beacons (our helper scripts) runs under ``ip netns exec`` inside a network
namespace created here, which holds only ``lo``, and is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from ownkernel.net import zre
from ownkernel.net.zre import (
    Beacon,
    BeaconError,
    Connect,
    Disconnect,
    Hello,
    Join,
    Leave,
    MessageError,
    PeerEntered,
    PeerExited,
    Ping,
    PingOk,
    Send,
    Shout,
    Unknown,
    Whisper,
    ZreCore,
    ZreDiscovery,
    decode_beacon,
    decode_message,
    encode_beacon,
    encode_message,
)

TESTS = Path(__file__).resolve().parent
U1 = uuid.UUID("11111111-2222-3333-4444-555555555555")
U2 = uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")


# ---------------------------------------------------------------- beacon codec


def test_beacon_round_trip_and_layout() -> None:
    data = encode_beacon(U1, 0xC0DE)
    assert len(data) == 22
    assert data[:4] == b"ZRE\x01" and data[4:20] == U1.bytes and data[20:] == b"\xc0\xde"
    assert decode_beacon(data) == Beacon(U1, 0xC0DE)
    assert decode_beacon(encode_beacon(U1, 0)).is_exit


def test_beacon_matches_pyre_packing() -> None:
    # Exactly how pyre_node.py builds its beacon (native 'H' of htons = big-endian).
    pyre_bytes = struct.pack("cccb16sH", b"Z", b"R", b"E", 1, U2.bytes, socket.htons(54321))
    assert pyre_bytes == encode_beacon(U2, 54321)
    assert decode_beacon(pyre_bytes) == Beacon(U2, 54321)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "22 bytes"),
        (encode_beacon(U1, 1)[:21], "22 bytes"),
        (encode_beacon(U1, 1) + b"\x00", "22 bytes"),
        (b"ZRF\x01" + U1.bytes + b"\x00\x01", "'ZRE'"),
        (b"ZRE\x02" + U1.bytes + b"\x00\x01", "version 2"),
        (b"ZRE\x00" + U1.bytes + b"\x00\x01", "version 0"),
    ],
)
def test_malformed_beacons_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(BeaconError, match=reason):
        decode_beacon(data)


def test_beacon_fuzz_never_crashes() -> None:
    rng = random.Random(36)
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.choice([21, 22, 23, rng.randrange(40)])))
        if rng.random() < 0.5:
            data = b"ZRE" + data[3:]
        try:
            decode_beacon(data)
        except BeaconError:
            pass


# ---------------------------------------------------------------- message codec

ALL_MESSAGES = [
    Hello(1, "tcp://10.0.0.1:49152", ("g1", "g2"), 3, "node", {"X-A": "1", "k": "väl"}),
    Hello(7),
    Whisper(2, (b"hi", b"\x00there")),
    Shout(3, "grp", (b"payload",)),
    Join(4, "grp", 5),
    Leave(5, "grp", 6),
    Ping(65535),
    PingOk(0),
]


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trip(msg: Any) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_hello_exact_wire_layout() -> None:
    frames = encode_message(Hello(1, "tcp://h:1", ("g",), 2, "n", {"k": "v"}))
    assert frames == [
        b"\xaa\xa1\x01\x02"  # signature, HELLO, version 2
        b"\x00\x01"  # sequence
        b"\x09tcp://h:1"  # endpoint: string (1-byte length)
        b"\x00\x00\x00\x01" b"\x00\x00\x00\x01g"  # groups: strings = count + longstr
        b"\x02"  # status
        b"\x01n"  # name
        b"\x00\x00\x00\x01" b"\x01k" b"\x00\x00\x00\x01v"  # headers: hash
    ]
    assert encode_message(Ping(0x0102)) == [b"\xaa\xa1\x06\x02\x01\x02"]
    assert encode_message(PingOk(3)) == [b"\xaa\xa1\x07\x02\x00\x03"]


class _FakeSocket:
    """Enough of a zmq socket for pyre's ZreMsg.send() / recv()."""

    type = zmq.DEALER

    def __init__(self, incoming: list[bytes] | None = None) -> None:
        self.frames: list[bytes] = []
        self.incoming = incoming or []

    def send(self, data: bytes, flags: int = 0) -> None:
        self.frames.append(bytes(data))

    def send_multipart(self, frames: list[bytes]) -> None:
        self.frames.extend(bytes(f) for f in frames)

    def recv_multipart(self) -> list[bytes]:
        return list(self.incoming)


def _pyre_encode(msg_id: int, **fields: Any) -> list[bytes]:
    from pyre.zre_msg import ZreMsg

    m = ZreMsg(msg_id)
    for key, value in fields.items():
        setattr(m, key, value)
    sock = _FakeSocket()
    m.send(sock)
    return sock.frames


def _pyre_decode(frames: list[bytes]) -> Any:
    from pyre.zre_msg import ZreMsg

    m = ZreMsg()
    m.recv(_FakeSocket(frames))
    return m


def test_pyre_encoded_messages_decode_with_ours() -> None:
    pytest.importorskip("pyre")
    from pyre.zre_msg import ZreMsg

    hello = _pyre_encode(
        ZreMsg.HELLO, sequence=1, endpoint="tcp://127.0.0.1:5000", groups=["a", "bb"],
        status=9, name="pyre-node", headers={"X-OWNKERNEL-ID": "ab" * 16, "H": ""},
    )
    assert decode_message(hello) == Hello(
        1, "tcp://127.0.0.1:5000", ("a", "bb"), 9, "pyre-node",
        {"X-OWNKERNEL-ID": "ab" * 16, "H": ""},
    )
    assert decode_message(_pyre_encode(ZreMsg.PING, sequence=2)) == Ping(2)
    assert decode_message(_pyre_encode(ZreMsg.PING_OK, sequence=3)) == PingOk(3)
    assert decode_message(_pyre_encode(ZreMsg.JOIN, sequence=4, group="g", status=1)) == Join(
        4, "g", 1
    )
    assert decode_message(_pyre_encode(ZreMsg.LEAVE, sequence=5, group="g", status=2)) == Leave(
        5, "g", 2
    )
    assert decode_message(
        _pyre_encode(ZreMsg.WHISPER, sequence=6, content=[b"x", b"y"])
    ) == Whisper(6, (b"x", b"y"))
    assert decode_message(
        _pyre_encode(ZreMsg.SHOUT, sequence=7, group="g", content=[b"z"])
    ) == Shout(7, "g", (b"z",))


def test_our_messages_decode_with_pyre() -> None:
    pytest.importorskip("pyre")
    from pyre.zre_msg import ZreMsg

    # Non-ASCII survives in this direction: we write byte lengths, pyre reads bytes.
    hello = Hello(1, "tcp://127.0.0.1:6000", ("g",), 4, "ownkernel-é", {"X-ÉP": "tcp://x:1 ü"})
    m = _pyre_decode(encode_message(hello))
    assert m.id == ZreMsg.HELLO and m.sequence == 1 and m.endpoint == hello.endpoint
    assert (list(m.groups), m.status, m.name) == (["g"], 4, "ownkernel-é")
    assert m.headers == {"X-ÉP": "tcp://x:1 ü"}
    m = _pyre_decode(encode_message(Ping(12)))
    assert (m.id, m.sequence) == (ZreMsg.PING, 12)
    m = _pyre_decode(encode_message(PingOk(13)))
    assert (m.id, m.sequence) == (ZreMsg.PING_OK, 13)


def test_every_truncation_of_hello_rejected() -> None:
    body = encode_message(ALL_MESSAGES[0])[0]
    for n in range(len(body)):
        with pytest.raises(MessageError):
            decode_message([body[:n]])


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([], "no frames"),
        ([b"\xaa\xa0\x06\x02\x00\x01"], "signature"),
        ([b"\xaa\xa1\x06\x01\x00\x01"], "version 1"),
        ([b"\xaa\xa1\x06\x03\x00\x01"], "version 3"),
        ([b"\xaa\xa1\x06\x02\x00\x01\x00"], "trailing"),
        ([b"\xaa\xa1\x06\x02\x00\x01", b"extra"], "extra frame"),
        ([b"\xaa\xa1\x01\x02\x00\x01\x00\xff\xff\xff\xff"], "exceeds"),  # forged group count
        ([b"\xaa\xa1\x04\x02\x00\x01\x02\xff\xfe\x01"], "UTF-8"),
    ],
)
def test_malformed_messages_rejected(frames: list[bytes], reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        decode_message(frames)


def test_unknown_message_id_tolerated() -> None:
    msg = decode_message([b"\xaa\xa1\x08\x02\x00\x09rest"])
    assert msg == Unknown(8, b"\x00\x09rest", 9)
    assert decode_message(encode_message(msg)) == msg


def test_message_fuzz_never_crashes() -> None:
    rng = random.Random(7)
    seeds = [encode_message(m)[0] for m in ALL_MESSAGES]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decode_message([bytes(data)])
        except MessageError:
            pass


def test_encoder_refuses_overlong_short_string() -> None:
    with pytest.raises(ValueError, match="255"):
        encode_message(Hello(1, name="x" * 256))


# ---------------------------------------------------------------- sans-IO core

OWN = uuid.UUID(int=1)
ME = "tcp://127.0.0.1:50000"


def _core(**kw: Any) -> ZreCore:
    return ZreCore(OWN, "me", ME, {"X-OWNKERNEL-ID": "00ff"}, **kw)


def _ident(u: uuid.UUID) -> bytes:
    return b"\x01" + u.bytes


def _sent(action: Any) -> Any:
    assert isinstance(action, Send)
    return decode_message(list(action.frames))


def test_core_beacon_connects_and_says_hello() -> None:
    core = _core()
    actions = core.on_beacon(encode_beacon(U1, 40000), "127.0.0.1", now=0.0)
    assert actions[0] == Connect(U1, "tcp://127.0.0.1:40000")
    assert _sent(actions[1]) == Hello(1, ME, (), 0, "me", {"X-OWNKERNEL-ID": "00ff"})
    assert core.peers[U1].ready is False and core.ready_peers() == {}
    # a repeated beacon only refreshes
    assert core.on_beacon(encode_beacon(U1, 40000), "127.0.0.1", now=1.0) == []
    assert core.peers[U1].expires_at == 1.0 + core.peer_expiry


def test_core_beacon_from_unspecified_source_waits_for_hello() -> None:
    core = _core()
    assert core.on_beacon(encode_beacon(U1, 40000), "0.0.0.0", 0.0) == []
    hello = Hello(1, "tcp://127.0.0.1:40000", name="p")
    actions = core.on_message([_ident(U1), *encode_message(hello)], 0.5)
    assert actions[0] == Connect(U1, "tcp://127.0.0.1:40000")
    assert actions[-1] == PeerEntered(U1, "p", "tcp://127.0.0.1:40000", {})
    assert core.on_beacon(encode_beacon(U1, 40000), "0.0.0.0", 3.0) == []  # still refreshes
    assert core.peers[U1].expires_at == 3.0 + core.peer_expiry


def test_core_ignores_own_and_bad_beacons() -> None:
    core = _core()
    assert core.on_beacon(core.beacon(), "127.0.0.1", 0.0) == []
    assert core.on_beacon(b"ZRE\x01junk", "127.0.0.1", 0.0) == []
    assert core.on_beacon(encode_beacon(U1, 0), "127.0.0.1", 0.0) == []  # exit of a stranger
    assert core.peers == {}
    assert decode_beacon(core.beacon()) == Beacon(OWN, 50000)
    assert decode_beacon(core.beacon(exiting=True)) == Beacon(OWN, 0)


def test_core_hello_enters_then_ping_pong_then_exit_beacon() -> None:
    core = _core()
    core.on_beacon(encode_beacon(U1, 40000), "127.0.0.1", 0.0)
    hello = Hello(1, "tcp://127.0.0.1:40000", (), 0, "peer", {"X-OWNKERNEL-ID": "ab"})
    actions = core.on_message([_ident(U1), *encode_message(hello)], 0.5)
    assert actions == [PeerEntered(U1, "peer", "tcp://127.0.0.1:40000", {"X-OWNKERNEL-ID": "ab"})]
    assert set(core.ready_peers()) == {U1}
    (pong,) = core.on_message([_ident(U1), *encode_message(Ping(2))], 1.0)
    assert _sent(pong) == PingOk(2)  # our HELLO was 1
    assert core.on_message([_ident(U1), *encode_message(Join(3, "g", 1))], 1.0) == []
    assert core.peers[U1].groups == {"g"}
    actions = core.on_beacon(encode_beacon(U1, 0), "127.0.0.1", 2.0)
    assert actions == [Disconnect(U1), PeerExited(U1, "peer")]
    assert core.peers == {}


def test_core_hello_from_unknown_peer_connects_back() -> None:
    core = _core()
    hello = Hello(1, "tcp://10.1.2.3:45000", ("g",), 2, "p", {})
    actions = core.on_message([_ident(U2), *encode_message(hello)], 0.0)
    assert actions[0] == Connect(U2, "tcp://10.1.2.3:45000")
    assert isinstance(_sent(actions[1]), Hello)
    assert actions[2] == PeerEntered(U2, "p", "tcp://10.1.2.3:45000", {})


def test_core_rejects_before_hello_bad_identity_and_bad_endpoint() -> None:
    core = _core()
    core.on_beacon(encode_beacon(U1, 40000), "127.0.0.1", 0.0)
    assert core.on_message([_ident(U1), *encode_message(Ping(1))], 0.0) == []  # not ready
    assert core.on_message([b"\x02" + U1.bytes, *encode_message(Hello(1))], 0.0) == []
    assert core.on_message([U1.bytes, *encode_message(Hello(1))], 0.0) == []
    assert core.on_message([_ident(U1), b"garbage"], 0.0) == []
    for bad in ("ipc:///tmp/x", "inproc://x", "tcp://nohost", "tcp://h:0", ""):
        assert core.on_message([_ident(U2), *encode_message(Hello(1, bad))], 0.0) == []
    assert U2 not in core.peers and not core.peers[U1].ready


def test_core_sequence_gap_drops_peer() -> None:
    core = _core()
    core.on_message([_ident(U1), *encode_message(Hello(1, "tcp://h:1", name="p"))], 0.0)
    assert core.on_message([_ident(U1), *encode_message(Ping(3))], 0.0) == [
        Disconnect(U1), PeerExited(U1, "p"),
    ]


def test_core_evasive_ping_then_expiry() -> None:
    core = _core(peer_expiry=4.0)
    core.on_message([_ident(U1), *encode_message(Hello(1, "tcp://h:1", name="p"))], 0.0)
    assert core.tick(1.0) == []
    (ping,) = core.tick(2.0)
    assert _sent(ping) == Ping(2)
    assert core.tick(3.0) == []  # pinged once only
    assert core.tick(4.0) == [Disconnect(U1), PeerExited(U1, "p")]


def test_core_second_hello_means_restart() -> None:
    core = _core()
    core.on_message([_ident(U1), *encode_message(Hello(1, "tcp://h:1", name="p"))], 0.0)
    actions = core.on_message([_ident(U1), *encode_message(Hello(1, "tcp://h:2", name="p2"))], 1)
    assert actions[:3] == [Disconnect(U1), PeerExited(U1, "p"), Connect(U1, "tcp://h:2")]
    assert actions[-1] == PeerEntered(U1, "p2", "tcp://h:2", {})


def test_core_new_uuid_on_same_endpoint_purges_old() -> None:
    core = _core()
    core.on_message([_ident(U1), *encode_message(Hello(1, "tcp://h:1", name="old"))], 0.0)
    actions = core.on_beacon(encode_beacon(U2, 1), "h", 1.0)
    assert actions[:3] == [Disconnect(U1), PeerExited(U1, "old"), Connect(U2, "tcp://h:1")]


def test_core_peer_limit() -> None:
    core = _core(max_peers=2)
    for i in range(5):
        core.on_beacon(encode_beacon(uuid.UUID(int=100 + i), 40000 + i), "127.0.0.1", 0.0)
    assert len(core.peers) == 2


def test_core_shutdown_disconnects_silently() -> None:
    core = _core()
    core.on_beacon(encode_beacon(U1, 40000), "127.0.0.1", 0.0)
    assert core.shutdown() == [Disconnect(U1)] and core.peers == {}


# ---------------------------------------------------------------- runner config (no sockets)


def test_discovery_requires_explicit_interface() -> None:
    with pytest.raises(TypeError):
        ZreDiscovery("n", {})  # type: ignore[call-arg]
    for bad in ("0.0.0.0", "224.0.0.1", "255.255.255.255", "not-an-ip", "::1"):
        with pytest.raises(ValueError):
            ZreDiscovery("n", {}, bad)
    with pytest.raises(ValueError, match="prefix"):
        ZreDiscovery("n", {}, "192.168.7.10")
    with pytest.raises(ValueError, match="255"):
        ZreDiscovery("n", {"k" * 300: "v"}, "127.0.0.1")


def test_discovery_beacon_address_choice() -> None:
    d = ZreDiscovery("n", {}, "127.0.0.1")
    assert str(d.beacon_address) == zre.LOOPBACK_MULTICAST_GROUP and d.multicast
    d = ZreDiscovery("n", {}, "192.168.7.10/24")
    assert str(d.beacon_address) == "192.168.7.255" and not d.multicast
    d = ZreDiscovery("n", {}, "127.0.0.1/8", beacon_address="127.255.255.255")
    assert not d.multicast and d.peers == {}


def test_ownkernel_header_helpers() -> None:
    h = zre.ownkernel_headers("ab12", ["tcp://10.0.0.1:7000", "tcp://[::1]:7000"])
    assert zre.parse_ownkernel_headers(h) == ("ab12", ["tcp://10.0.0.1:7000", "tcp://[::1]:7000"])
    assert zre.parse_ownkernel_headers({}) == (None, [])


# ---------------------------------------------------------------- namespace tests


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` (up, multicast, 224/4 routed to it)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 'ip' not available")
    name = f"ownk-zre-{os.getpid()}-{random.randrange(16**6):06x}"
    res = _run("ip", "netns", "add", name)
    if res.returncode != 0:
        pytest.skip(f"ip netns unavailable: {res.stderr.strip()}")
    try:
        for cmd in (
            ("link", "set", "lo", "up"),
            # lo has no MULTICAST flag by default; pyre's loopback fallback (and our
            # default on loopback) beacon to 225.25.25.25, which needs it and a route.
            ("link", "set", "lo", "multicast", "on"),
            ("route", "add", "224.0.0.0/4", "dev", "lo"),
        ):
            res = _run("ip", "-n", name, *cmd)
            assert res.returncode == 0, res.stderr
        links = _run("ip", "-n", name, "-o", "link").stdout.strip().splitlines()
        assert len(links) == 1 and ": lo:" in links[0], links  # only loopback, ever
        yield name
    finally:
        _run("ip", "netns", "del", name)


class NsProcess:
    """A helper script run inside the namespace, printing JSON events line by line."""

    def __init__(self, ns: str, script: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(TESTS.parent), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(TESTS / script), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.stderr.append(f"stdout: {line}")

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def expect(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        for ev in self.seen:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(ev)
            if pred(ev):
                return ev
        raise AssertionError(
            f"event not seen within {timeout}s; seen={self.seen}; stderr={''.join(self.stderr)}"
        )

    def ready(self) -> dict[str, Any]:
        return self.expect(lambda e: e["event"] == "ready", 10.0)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        self.expect(lambda e: e["event"] == "stopped", timeout)
        assert self.proc.wait(timeout) == 0, "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def spawn(netns: str) -> Iterator[Callable[..., NsProcess]]:
    procs: list[NsProcess] = []

    def _spawn(script: str, *args: str) -> NsProcess:
        p = NsProcess(netns, script, *args)
        procs.append(p)
        return p

    try:
        yield _spawn
    finally:
        for p in procs:  # before the namespace fixture deletes the namespace
            p.kill()


def _entered(uuid_: str, name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == "enter" and e["uuid"] == uuid_ and e["name"] == name


def _exited(uuid_: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == "exit" and e["uuid"] == uuid_


OK_ID = "0123456789abcdef" * 4


def _start_pair(spawn: Callable[..., NsProcess]) -> tuple[NsProcess, NsProcess, str, str]:
    py = spawn("zre_peer_pyre.py", "--name", "pyre-peer", "--header", "X-PYRE=yes")
    ok = spawn(
        "zre_peer_ownkernel.py", "--name", "ok-peer", "--expiry", "3",
        "--header", f"X-OWNKERNEL-ID={OK_ID}",
        "--header", "X-OWNKERNEL-ENDPOINT=tcp://127.0.0.1:7777",
    )
    py_uuid, ok_ready = py.ready()["uuid"], ok.ready()
    ok_uuid = ok_ready["uuid"]
    # each side sees the other, with name and headers, within a bounded time
    seen_by_ok = ok.expect(_entered(py_uuid, "pyre-peer"), 10.0)
    assert seen_by_ok["headers"] == {"X-PYRE": "yes"}
    assert seen_by_ok["endpoint"].startswith("tcp://127.0.0.1:"), (seen_by_ok, py.seen)
    seen_by_pyre = py.expect(_entered(ok_uuid, "ok-peer"), 10.0)
    assert seen_by_pyre["headers"] == {
        "X-OWNKERNEL-ID": OK_ID, "X-OWNKERNEL-ENDPOINT": "tcp://127.0.0.1:7777",
    }
    assert seen_by_pyre["endpoint"] == ok_ready["endpoint"]
    return py, ok, py_uuid, ok_uuid


def test_interop_with_pyre_and_pyre_leaving(spawn: Callable[..., NsProcess]) -> None:
    py, ok, py_uuid, _ = _start_pair(spawn)
    py.stop()
    ok.expect(_exited(py_uuid), 8.0)  # pyre's port-0 beacon, or our 3 s expiry at worst
    ok.stop()


def test_pyre_sees_ownkernel_leave(spawn: Callable[..., NsProcess]) -> None:
    py, ok, _, ok_uuid = _start_pair(spawn)
    ok.stop()
    # pyre's own expiry is 30 s: seeing the exit this fast proves our goodbye beacon.
    py.expect(_exited(ok_uuid), 5.0)
    py.stop()


def test_ping_pong_with_pyre(spawn: Callable[..., NsProcess]) -> None:
    # Our expiry (1.2 s, so PING after 0.6 s of silence) is shorter than pyre's 1 s beacon
    # interval: we PING pyre every second and it must answer PING-OK in sequence. A bad
    # sequence on either side would make that side drop the other (an exit event).
    py = spawn("zre_peer_pyre.py", "--name", "pyre-peer")
    ok = spawn("zre_peer_ownkernel.py", "--name", "ok-peer", "--expiry", "1.2", "--verbose")
    py_uuid, ok_uuid = py.ready()["uuid"], ok.ready()["uuid"]
    ok.expect(_entered(py_uuid, "pyre-peer"), 10.0)
    py.expect(_entered(ok_uuid, "ok-peer"), 10.0)
    deadline = time.monotonic() + 10.0
    while sum("PingOk seq=" in line for line in ok.stderr) < 2:
        assert time.monotonic() < deadline, "".join(ok.stderr)
        time.sleep(0.1)
    assert any("sending Ping" in line for line in ok.stderr)
    ok.stop()
    py.stop()
    assert not [e for e in ok.seen if e["event"] == "exit"], ok.seen
    assert [e["uuid"] for e in py.seen if e["event"] == "exit"] in ([], [ok_uuid]), py.seen


def test_two_ownkernel_nodes_multicast(spawn: Callable[..., NsProcess]) -> None:
    a = spawn("zre_peer_ownkernel.py", "--name", "a", "--header", "X-OWNKERNEL-ID=aa")
    b = spawn("zre_peer_ownkernel.py", "--name", "b", "--header", "X-OWNKERNEL-ID=bb")
    ua, ub = a.ready()["uuid"], b.ready()["uuid"]
    assert a.expect(_entered(ub, "b"), 5.0)["headers"] == {"X-OWNKERNEL-ID": "bb"}
    assert b.expect(_entered(ua, "a"), 5.0)["headers"] == {"X-OWNKERNEL-ID": "aa"}
    a.stop()
    b.expect(_exited(ua), 3.0)
    b.stop()


def test_two_ownkernel_nodes_broadcast_and_expiry(spawn: Callable[..., NsProcess]) -> None:
    args = ("--interface", "127.0.0.1/8", "--beacon-address", "127.255.255.255",
            "--port", "5999", "--expiry", "2")
    a = spawn("zre_peer_ownkernel.py", "--name", "a", *args)
    b = spawn("zre_peer_ownkernel.py", "--name", "b", *args)
    ua, ub = a.ready()["uuid"], b.ready()["uuid"]
    a.expect(_entered(ub, "b"), 5.0)
    b.expect(_entered(ua, "a"), 5.0)
    started = time.monotonic()
    a.kill()  # no goodbye beacon: b must notice the silence (PING unanswered, then expiry)
    b.expect(_exited(ua), 6.0)
    assert time.monotonic() - started >= 1.0
    b.stop()


def test_events_iterator_and_no_leaks(netns: str) -> None:
    p = NsProcess(netns, "zre_peer_ownkernel.py", "--name", "x", "--selftest", "3")
    try:
        rounds = [p.expect(lambda e, i=i: e.get("round") == i, 15.0) for i in range(3)]
        failed = p.expect(lambda e: e["event"] == "start_failed", 10.0)
        assert p.proc.wait(10) == 0, "".join(p.stderr)
    finally:
        p.kill()
    for r in rounds:
        assert r["tasks"] == 0, r
        assert r["fds"] == r["baseline"], rounds
    assert failed["fds"] == failed["baseline"], failed
