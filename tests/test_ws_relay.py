"""The relay inside jupyter-server and ws:// / wss:// addresses (issue #11 §3).

Real processes throughout: a real ``jupyter server`` on 127.0.0.1 with the
extension enabled by the file the wheel installs (tests/ws_relay_server.py),
node processes that do not listen at all (``--no-listen``) and so can meet only
through the WebSocket, raw WebSocket clients that send garbage or half a
handshake, and the attacker process of tests/attacker.py speaking CurveZMQ
through the tunnel.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_attacks import attack
from test_net_processes import Child
from ws_relay_server import JupyterRelay, free_port
from wsclient import exchange

from ownkernel.net.transport import parse_address
from ownkernel.net.wstunnel import split_ws_url, zmtp_signature
from ownkernel.node import Node
from ownkernel.node.addressbook import _valid_address

REPO = Path(__file__).resolve().parents[1]
ID = "ab" * 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # the strict mode: every endpoint must say whether it needs a login (ours does)
    s = JupyterRelay(tmp_path_factory.mktemp("jupyter"),
                     extra=("--ServerApp.allow_unauthenticated_access=False",))
    yield s
    s.stop()
    s.log.close()


def ws_address(server: JupyterRelay) -> str:
    return server.info()["address"]


# -------------------------------------------------------------------- addresses
def test_ws_addresses_are_checked_and_accepted_where_tcp_ones_are():
    assert split_ws_url("wss://hub.example.org/user/x/ownkernel/relay#" + ID) == (
        "wss://hub.example.org/user/x/ownkernel/relay")
    assert split_ws_url("ws://127.0.0.1:8888") == "ws://127.0.0.1:8888/"
    for bad, why in [("ws://", "no host"), ("ws://h:99999/x", "bad port"),
                     ("wss://user:pw@h/x", "no user or password"),
                     ("wss://h/user/x/ownkernel/relay?token=abc", "no Jupyter token"),
                     ("ws://h/a b", "without spaces"), ("http://h/x", "not a ws")]:
        with pytest.raises(ValueError, match=why):
            split_ws_url(bad)
    assert parse_address(f"ws://h:1/ownkernel/relay#{ID}") == (
        "ws://h:1/ownkernel/relay", bytes.fromhex(ID))
    with pytest.raises(ValueError, match="bad port"):
        parse_address(f"ws://h:x/relay#{ID}")
    # the address book keeps ws addresses of the node they name, like tcp ones
    nid = bytes.fromhex(ID)
    assert _valid_address(f"wss://h/ownkernel/relay#{ID}", nid)
    assert _valid_address(f"tcp://127.0.0.1:1#{ID}", nid)
    assert not _valid_address(f"wss://h/ownkernel/relay#{'cd' * 32}", nid)
    assert not _valid_address(f"http://h/#{ID}", nid)
    # bootstrap and connect take them; a bad one is refused, named
    with Node(None, "n", listen=None, bootstrap=[f"ws://127.0.0.1:9/x#{ID}"]) as n, \
            pytest.raises(ValueError, match="no host"):
        n.connect(f"ws://#{ID}", timeout=None)


def test_zmtp_signature_check():
    greeting = b"\xff" + bytes(8) + b"\x7f"
    assert zmtp_signature(greeting) is True
    assert zmtp_signature(greeting[:4]) is None  # too early to tell
    assert zmtp_signature(b"GET / HTTP/1.1\r\n") is False
    assert zmtp_signature(b"\xff" + bytes(8) + b"\x00") is False


# -------------------------------------------------------------------- /info
def test_info_is_for_jupyter_users_only(server: JupyterRelay):
    assert server.get("ownkernel/relay/info", token=None)[0] == 403
    assert server.get("ownkernel/relay/info", token="wrong")[0] == 403
    status, body = server.get("ownkernel/relay/info")
    assert status == 200
    endpoint, nid = parse_address(body["address"])
    assert endpoint == f"ws://127.0.0.1:{server.port}/user/t/ownkernel/relay"
    assert nid is not None and nid.hex() == body["id"]
    # behind a TLS-terminating proxy (Binder): what the client used, not what we saw
    status, body = server.get("ownkernel/relay/info", headers={
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "hub.example.org"})
    assert status == 200
    assert body["address"] == f"wss://hub.example.org/user/t/ownkernel/relay#{body['id']}"
    # a header that is not a host is ignored, not pasted into the address
    status, body = server.get("ownkernel/relay/info", headers={
        "X-Forwarded-Host": "evil/path?x"})
    assert body["address"].startswith(f"ws://127.0.0.1:{server.port}/user/t/")


# -------------------------------------------------------------------- strangers
def _raw_ws(url: str, sends: list[bytes | str], wait: float) -> tuple[bytes, bool]:
    """Send ``sends`` on a raw WebSocket; (all bytes received, closed by the server)."""
    got = exchange(url, list(sends), wait)
    return got.data, got.closed


def test_unauthenticated_websockets_get_nothing(server: JupyterRelay):
    address = ws_address(server)
    url, _ = address.split("#")
    # an HTTP request, or any bytes that are not a ZMTP greeting: not one byte back,
    # and the server closes the socket at once
    for junk in [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 64, "hello"]:
        got, closed = _raw_ws(url, [junk], wait=10.0)
        assert got == b"" and closed, (junk, got, closed)
    # half a handshake: a ZMTP greeting asking for CURVE, then a HELLO command that
    # is not a valid box for the relay's key. The relay answers with its own greeting
    # (64 public bytes, the same for everyone) and then hangs up: nothing else.
    greeting = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\0") + \
        b"\x00" + bytes(31)
    bad_hello = b"\x04\xc8\x05HELLO\x01\x00" + bytes(72) + bytes(32) + bytes(8) + bytes(80)
    got, closed = _raw_ws(url, [greeting, bad_hello], wait=10.0)
    assert closed and len(got) <= 64, got
    # libzmq sends its greeting in two parts (10-byte signature, then the rest once
    # it read ours): how much of it arrives before the hang-up depends on timing
    assert got[:1] == b"\xff" and (len(got) <= 10 or b"CURVE" in got), got
    # a stranger that completes CurveZMQ (any key may) gets no frame before its hello
    r = attack(address, [{"raw": "00"}, {"raw": "ff" * 100}], listen=1.5)
    assert r["frames"] == [], r
    # ... and after a hello, the relay's hello etc., but no document (see the sync test)
    r = attack(address, [{"hello": True}], listen=5.0)
    assert "hello" in {f.get("type") for f in r["frames"]}, r  # the tunnel does carry
    # the server and its relay keep serving
    assert server.get("ownkernel/relay/info")[0] == 200


# -------------------------------------------------------------------- sync
def _child_until(child: Child, op: str, deadline: float = 60.0, **kw: object) -> bool:
    """Ask a child's bounded wait op (it gives up after 10 s) again until ok or deadline."""
    end = time.monotonic() + deadline
    while True:
        if child(op, **kw)["ok"]:
            return True
        if time.monotonic() > end:
            return False


def test_nodes_with_no_route_but_the_websocket_sync_both_ways(server: JupyterRelay,
                                                              tmp_path: Path):
    address = ws_address(server)
    relay_id = parse_address(address)[1].hex()  # type: ignore[union-attr]
    a = Child(tmp_path, "a", "--no-listen", "--bootstrap", address)
    b = Child(tmp_path, "b", "--no-listen", "--bootstrap", address)
    try:
        assert a.address is None and b.address is None  # nobody can dial them
        assert _child_until(a, "wait_peers", n=1) and _child_until(b, "wait_peers", n=1)
        doc = a("new_doc", title="over websocket")["doc"]
        a("insert", doc=doc, text="from a")
        token = a("invite", doc=doc)["token"]  # no address of a's: the relay carries it
        assert b("join", token=token)["doc"] == doc
        assert _child_until(b, "wait_text", doc=doc, contains=["from a"])
        b("insert", doc=doc, text=" and b")
        assert _child_until(a, "wait_text", doc=doc, contains=["from a and b"], length=12)
        for n in (a, b):  # each has exactly one peer online: the relay
            online = [p for p in n("wait_peers", n=1)["peers"] if p[2]]
            assert [p[0] for p in online] == [relay_id], (n.name, online)
        # a stranger coming in the same way gets the relay's hello, never the doc
        r = attack(address, [{"hello": True}, {"sleep": 0.3},
                             {"have": doc, "vv": {}}], listen=1.5)
        assert not [f for f in r["frames"] if f.get("doc") == doc], r
        assert b("stats")["net"]["transport"].get("ws-connected", 0) >= 1
    finally:
        a.kill()
        b.kill()


# -------------------------------------------------------------------- standalone
def test_cli_node_serves_the_same_endpoint_standalone(tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownkernel", "node", "--profile", str(tmp_path / "relay"),
         "--relay", "--websocket", f"127.0.0.1:{port}", "--name", "teacher"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[:1] == ["ready"], ready
        address = ready[2]
        assert address == f"ws://127.0.0.1:{port}/ownkernel/relay#{ready[1]}"
        with Node(None, "a", listen=None, bootstrap=[address]) as a, \
                Node(None, "b", listen=None, bootstrap=[address]) as b:
            doc = a.new_doc("standalone")
            doc.text("body").insert(0, "hi")
            h = b.join(a.invite(doc), timeout=30)
            assert str(h.text("body")) == "hi"
            h.text("body").insert(2, "!")
            end = time.monotonic() + 30
            while str(doc.text("body")) != "hi!" and time.monotonic() < end:
                time.sleep(0.02)
            assert str(doc.text("body")) == "hi!"
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0
    bad = subprocess.run([sys.executable, "-m", "ownkernel", "node", "--profile",
                          str(tmp_path / "x"), "--websocket", "nope"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert bad.returncode == 1 and "--websocket 'nope': expected HOST:PORT" in bad.stderr


def test_a_relay_that_is_down_gets_few_websocket_attempts():
    from nacl.signing import SigningKey

    from ownkernel.net.transport import Transport, TransportConfig

    async def run() -> dict[str, int]:
        async with Transport(SigningKey.generate(), TransportConfig(listen=())) as t:
            peer = SigningKey.generate().verify_key.encode().hex()
            await t.connect(f"ws://127.0.0.1:{free_port()}/ownkernel/relay#{peer}")
            await asyncio.sleep(2.0)  # libzmq redials every 100 ms meanwhile
            return dict(t.stats)

    stats = asyncio.run(run())
    assert 1 <= stats.get("ws-connect-failed", 0) <= 3, stats
    assert stats.get("ws-backoff", 0) >= 1, stats  # redials closed at once, no HTTP


def test_an_invite_carrying_the_relay_address_is_all_a_student_needs(server: JupyterRelay):
    """The workshop path (docs/relay.md): the teacher's node reaches the relay and puts
    its ws address in the invite; a student's node that knows nothing else joins."""
    relay = ws_address(server)
    with Node(None, "teacher", listen=None) as teacher, \
            Node(None, "student", listen=None) as student:
        teacher.connect(relay, timeout=30)
        doc = teacher.new_doc("workshop notes")
        doc.text("body").insert(0, "welcome")
        token = teacher.invite(doc, addresses=[relay])
        h = student.join(token, timeout=30)
        assert str(h.text("body")) == "welcome"
        online = [p.id for p in student.peers if p.online]
        assert online == [parse_address(relay)[1]]  # the relay, dialed as itself
        assert student.stats()["net"]["errors"].get("identity-mismatch", 0) == 0


def test_websocket_limits():
    """Connection cap (503), silent sockets closed, oversize messages close the socket."""
    from tornado.httpclient import HTTPClientError
    from tornado.websocket import websocket_connect

    from ownkernel.serverext.standalone import WebSocketEndpoint

    signature = b"\xff" + bytes(8) + b"\x7f"
    with Node(None, "relay", relay=True) as relay:
        ep = WebSocketEndpoint(relay, "127.0.0.1", 0, max_connections=2,
                               first_bytes_timeout=1.0)
        url = ep.address.split("#")[0]

        async def run() -> None:
            held = []
            for _ in range(2):  # past the signature: tunnels, not subject to the silence timer
                ws = await websocket_connect(url)
                await ws.write_message(signature, binary=True)
                held.append(ws)
            with pytest.raises(HTTPClientError) as e:
                await websocket_connect(url)
            assert e.value.code == 503
            for ws in held:
                ws.close()
            while ep.relay.connections:  # the closes reach the server
                await asyncio.sleep(0.01)
            silent = await websocket_connect(url)
            assert await asyncio.wait_for(silent.read_message(), 30) is None
            big = await websocket_connect(url)
            await big.write_message(signature + bytes(300 * 1024), binary=True)
            assert await asyncio.wait_for(big.read_message(), 30) is None

        try:
            asyncio.run(run())
            stats = ep.relay.stats
            assert stats["ws-full"] == 1 and stats["ws-silent"] == 1, stats
            assert stats["ws-tunnels"] == 2, stats  # the oversize one never got upstream
        finally:
            ep.close()


def _until(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_nodes_come_back_when_the_relay_restarts(tmp_path: Path):
    from ownkernel.serverext.standalone import WebSocketEndpoint

    profile = tmp_path / "relay"
    relay = Node(profile, "relay", relay=True)
    ep = WebSocketEndpoint(relay, "127.0.0.1", 0)
    address, port = ep.address, ep.port
    with Node(None, "a", listen=None, bootstrap=[address]) as a, \
            Node(None, "b", listen=None, bootstrap=[address]) as b:
        doc = a.new_doc("restart")
        doc.text("body").insert(0, "one")
        h = b.join(a.invite(doc), timeout=30)
        # (through a relay the first sync may land in parts: join settles, but this
        # test is about the restart, so it waits for the whole text)
        assert _until(lambda: str(h.text("body")) == "one", 30)
        ep.close()
        relay.close()
        assert _until(lambda: not any(p.online for p in a.peers))
        doc.text("body").insert(3, " two")  # made while nobody can be reached
        relay = Node(profile, "relay", relay=True)  # same key, same port
        ep = WebSocketEndpoint(relay, "127.0.0.1", port)
        try:
            assert _until(lambda: str(b.open(h.id).text("body")) == "one two", 60)
        finally:
            ep.close()
            relay.close()


def test_the_wheel_enables_the_extension():
    import json

    enable = REPO / "jupyter-config" / "jupyter_server_config.d" / "ownkernel.json"
    cfg = json.loads(enable.read_text())
    assert cfg["ServerApp"]["jpserver_extensions"] == {"ownkernel.serverext": True}
    # hatch shared-data puts it where jupyter-server looks: <prefix>/etc/jupyter/...
    assert ('"jupyter-config/jupyter_server_config.d/ownkernel.json" = '
            '"etc/jupyter/jupyter_server_config.d/ownkernel.json"'
            ) in (REPO / "pyproject.toml").read_text()
    from ownkernel.serverext import _jupyter_server_extension_points

    (point,) = _jupyter_server_extension_points()
    assert point["module"] == "ownkernel.serverext" and point["app"].name == "ownkernel"


def test_learned_addresses_are_advertised_reachable_first():
    from ownkernel.serverext.host import RelayHost

    with Node(None, "relay", relay=True) as relay:
        tcp = relay.address
        host = RelayHost(node=relay)
        host.advertise("wss://hub.example.org/user/x/ownkernel/relay")
        host.advertise("ws://127.0.0.1:8888/user/x/ownkernel/relay")  # newer, but loopback
        want = [f"wss://hub.example.org/user/x/ownkernel/relay#{relay.id.hex()}",
                f"ws://127.0.0.1:8888/user/x/ownkernel/relay#{relay.id.hex()}", tcp]
        assert _until(lambda: relay.addresses == want), relay.addresses


def test_listeners_per_ws_address_are_bounded(monkeypatch: pytest.MonkeyPatch):
    from ownkernel.net import wstunnel

    monkeypatch.setattr(wstunnel, "MAX_LISTENERS", 2)

    async def run() -> None:
        t = wstunnel.TunnelClient()
        try:
            e1 = await t.endpoint("ws://a.example/x")
            await t.endpoint("ws://b.example/x")
            assert await t.endpoint("ws://a.example/x") == e1  # one listener per URL
            monkeypatch.setattr(wstunnel, "LISTENER_IDLE", 3600.0)
            with pytest.raises(ValueError, match="2 ws addresses in use"):
                await t.endpoint("ws://c.example/x")  # none idle long enough
            monkeypatch.setattr(wstunnel, "LISTENER_IDLE", -1.0)
            await t.endpoint("ws://c.example/x")  # the least recently used one made room
            assert sorted(t._servers) == ["ws://a.example/x", "ws://c.example/x"]
            assert t.stats["ws-too-many-urls"] == 1
        finally:
            await t.close()

    asyncio.run(run())


def test_relay_host_opens_its_node_on_first_use(tmp_path: Path):
    from ownkernel.serverext.host import RelayHost

    with pytest.raises(ValueError, match="no host"):
        RelayHost(tmp_path / "x", public_url="wss:///ownkernel/relay")  # config typo: named
    host = RelayHost(tmp_path / "relay", public_url="wss://hub.example.org/u/ownkernel/relay")
    assert host.node is None  # nothing runs until someone connects or asks /info
    node = host.start()
    try:
        assert host.start() is node and host.upstream()[0] == "127.0.0.1"
        want = f"wss://hub.example.org/u/ownkernel/relay#{node.id.hex()}"
        assert _until(lambda: node.addresses[:1] == [want]), node.addresses
        # its profile is locked while it runs: a second host falls back to a temporary one
        other = RelayHost(tmp_path / "relay")
        try:
            assert other.start().id != node.id
        finally:
            other.close()
    finally:
        host.close()
    assert host.node is None
