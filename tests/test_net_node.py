"""The networked node in one process (each node runs its own network thread).

Real CurveZMQ sockets on 127.0.0.1 only. Covers the public API, clean close,
what is offered to whom, hostile input through the real transport, the
address book, the dial planner and presence.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey
from waiting import until

from ownkernel.crdt import Doc
from ownkernel.net.protocol import PROTOCOL_VERSIONS, encode
from ownkernel.net.transport import Transport, TransportConfig
from ownkernel.node import Node
from ownkernel.node.addressbook import AddressBook
from ownkernel.node.config import NetConfig, sticky_listen
from ownkernel.node.dialing import Dialer
from ownkernel.node.network import NodeNetwork
from ownkernel.store import Identity, decode_envelope, encode_envelope

FAST = dict(ping_interval=0.3, peer_timeout=2.0, anti_entropy=1.0, backoff_min=0.05,
            backoff_max=0.5, connect_timeout=1.0)


def mk(path: Any, name: str, **kw: Any) -> Node:
    return Node(path, name=name, network=NetConfig(**{**FAST, **kw}))


def start(node: Node) -> NodeNetwork:
    assert node.network is not None
    return node.network


def text_of(node: Node, doc: bytes) -> str | None:
    try:
        return str(node.open(doc).text())
    except (KeyError, PermissionError):
        return None


@pytest.fixture
def nodes(tmp_path) -> Iterator[Callable[..., tuple[Node, NodeNetwork]]]:
    made: list[tuple[Node, NodeNetwork]] = []

    def make(name: str, **kw: Any) -> tuple[Node, NodeNetwork]:
        node = mk(tmp_path / name, name, **kw)
        net = start(node)
        made.append((node, net))
        return node, net
    yield make
    for node, net in made:
        net.close()
        node.close()


# --------------------------------------------------------------------- API


def test_connect_peers_events_and_live_push(nodes):
    a, na = nodes("a")
    b, nb = nodes("b")
    [addr] = na.addresses
    assert addr.startswith("tcp://127.0.0.1:") and addr.endswith("#" + a.id.hex())
    seen: list[tuple[str, Any]] = []
    nb.on("peer_joined", lambda p: seen.append(("joined", p.id)))
    nb.on("peer_left", lambda p: seen.append(("left", p.id)))
    changed = threading.Event()
    off = nb.on("doc_changed", lambda doc, src: changed.set() if src == a.id else None)
    with pytest.raises(ValueError):
        nb.on("no-such-event", print)
    with pytest.raises(ValueError, match="node id"):
        nb.connect("tcp://127.0.0.1:1")
    peer = nb.connect(addr, timeout=5)
    assert peer is not None and peer.online and peer.id == a.id and peer.name == "a"
    assert peer.addresses == (addr,)
    until(lambda: ("joined", a.id) in seen)
    doc = a.new_doc("live")
    b.join(a.invite(doc))
    nb.announce_doc(doc.id)
    doc.text().insert(0, "x")
    until(lambda: text_of(b, doc.id) == "x")
    assert changed.wait(5)
    off()
    p = until(lambda: [q for q in nb.peers() if q.latency is not None])[0]
    assert 0 <= p.latency < 1 and p.last_seen is not None and p.short_id == a.id.hex()[:8]
    t = time.monotonic()
    na.close()
    assert time.monotonic() - t < 1.0
    until(lambda: ("left", a.id) in seen)
    [gone] = nb.peers()
    assert not gone.online and gone.name == "a"


def _resources() -> tuple[int, int]:
    return len(os.listdir("/proc/self/fd")), threading.active_count()


def test_close_is_fast_and_leaks_nothing(tmp_path):
    def cycle(i: int) -> None:
        a = mk(tmp_path / f"a{i}", "a")
        b = mk(tmp_path / f"b{i}", "b", listen=[])  # dials out only
        na, nb = start(a), start(b)
        nb.connect(na.addresses[0], timeout=5)
        d = a.new_doc("x")
        d.text().insert(0, "abc")
        for net, node in ((nb, b), (na, a)):
            t = time.monotonic()
            net.close()
            node.close()
            assert time.monotonic() - t < 1.0
            net.close()  # idempotent
    cycle(0)  # warm up lazily created process-wide state
    before = _resources()
    for i in range(1, 4):
        cycle(i)
    assert _resources() == before


def test_edits_from_many_threads_converge(nodes):
    a, na = nodes("a")
    b, nb = nodes("b", bootstrap=[na.addresses[0]])
    doc = a.new_doc("threads")
    b.join(a.invite(doc))
    nb.announce_doc(doc.id)
    until(lambda: text_of(b, doc.id) == "")

    def typist(node: Node, ch: str) -> None:
        t = node.open(doc.id).text()
        for _ in range(25):
            t.insert(0, ch)
    threads = [threading.Thread(target=typist, args=(n, c))
               for n, c in ((a, "a"), (a, "A"), (b, "b"), (b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    until(lambda: len(text_of(a, doc.id) or "") == 100 and text_of(a, doc.id) == text_of(
        b, doc.id))
    assert sorted(text_of(a, doc.id) or "") == sorted("aAbB" * 25)


# --------------------------------------------------------------- who sees what


def test_only_docs_a_peer_may_see_are_offered(nodes):
    a, na = nodes("a")
    b, nb = nodes("b", bootstrap=[na.addresses[0]])
    c, nc = nodes("c", bootstrap=[na.addresses[0]])
    private = a.new_doc("private")
    private.text().insert(0, "mine only")
    shared = a.new_doc("shared")
    shared.text().insert(0, "for b")
    b.join(a.invite(shared))
    nb.announce_doc(shared.id)
    until(lambda: text_of(b, shared.id) == "for b")
    until(lambda: c.id in {p.id for p in na.peers() if p.online})
    offered_b = na._call(na.sharing.shared_docs, b.id)
    offered_c = na._call(na.sharing.shared_docs, c.id)
    assert shared.id in offered_b and private.id not in offered_b
    assert shared.id not in offered_c and private.id not in offered_c
    # c knows the private doc id and asks for it anyway: silence, counted
    c.store.add_document(private.id, title="", owner=a.id, capability="relay",
                         access={"owner": a.id})
    with c.lock:  # the gate is the node thread's: only under the node lock
        c.gate.refresh(private.id)
    nc.announce_doc(private.id)
    nc.sync_now()
    time.sleep(1.0)  # several digest exchanges: the private doc is never among a's
    assert b.store.document(private.id) is None
    assert c.open(private.id).version == {} and text_of(c, private.id) == ""


# --------------------------------------------------------------- hostile peers


async def _raw_client(key: SigningKey, address: str, frames: list[bytes],
                      want: int = 0) -> list[bytes]:
    """Connect with our own transport, send frames, collect up to `want` replies."""
    got: list[bytes] = []
    async with Transport(key, TransportConfig(listen=(), max_frame_size=8 << 20)) as t:
        conn = await t.connect(address, timeout=5)
        for f in frames:
            await t.send(conn, f)
        end = asyncio.get_running_loop().time() + 3
        while len(got) < want and asyncio.get_running_loop().time() < end:
            try:
                got.append((await asyncio.wait_for(t.recv(), 0.5)).frame)
            except asyncio.TimeoutError:
                pass
        await asyncio.sleep(0.2)
    return got


def _hello(key: SigningKey, versions: list[int] | None = None) -> bytes:
    return encode({"type": "hello", "id": key.verify_key.encode(), "name": "raw",
                   "addrs": [], "versions": versions or list(PROTOCOL_VERSIONS),
                   "max_frame": 1 << 20})


def test_hostile_frames_are_rejected_counted_and_the_node_keeps_serving(nodes):
    a, na = nodes("a")
    b, nb = nodes("b", bootstrap=[na.addresses[0]])
    doc = a.new_doc("target")
    doc.text().insert(0, "ok")
    b.join(a.invite(doc))
    nb.announce_doc(doc.id)
    until(lambda: text_of(b, doc.id) == "ok")
    # a real change by b, then forged, altered and replayed copies of it
    doc_b = b.open(doc.id)
    doc_b.text().insert(2, "!")
    until(lambda: text_of(a, doc.id) == "ok!")
    genuine = b.replica.outgoing(doc.id, {a.id: 2})
    env = decode_envelope(genuine[-1])
    thief = Identity.generate()
    forged = encode_envelope(env._replace(seq=env.seq + 1, sig=thief.sign(b"x" * 32)))
    altered = encode_envelope(env._replace(seq=env.seq + 1, body=env.body[:-1] + b"\x00"))
    key = b.identity._sk  # speaks as b (a hostile peer holding b's key)
    frames = [
        b"\x00garbage", os.urandom(300), encode({"type": "have"}),  # before hello
        _hello(key),
        encode({"type": "changes", "doc": doc.id, "blobs": [forged]}),
        encode({"type": "changes", "doc": doc.id, "blobs": [altered]}),
        encode({"type": "changes", "doc": doc.id, "blobs": genuine}),  # replay
        encode({"type": "changes", "doc": doc.id, "blobs": [b"\xff" * 50]}),
        encode({"type": "nonsense"}), b"\xa1\x61", b"\xffOK2\x00",
        encode({"type": "carry", "docs": [os.urandom(200)]}),
    ]
    asyncio.run(_raw_client(key, na.addresses[0], frames))
    # a stranger with the wrong protocol version, and one asking for a private doc
    stranger = SigningKey.generate()
    asyncio.run(_raw_client(stranger, na.addresses[0], [_hello(stranger, [99])]))
    asyncio.run(_raw_client(stranger, na.addresses[0], [
        _hello(stranger), encode({"type": "have", "doc": doc.id, "vv": {}})], want=3))
    until(lambda: na.stats()["errors"].get("doc-not-shared", 0) >= 1)
    st = na.stats()["errors"]
    for reason in ("bad-cbor", "before-hello", "version-mismatch", "unknown-type",
                   "rejected:bad_signature", "rejected:bad_envelope",
                   "doc-not-shared"):
        assert st.get(reason, 0) >= 1, (reason, st)
    assert a.stats()["duplicates"] >= 1
    assert a.stats()["rejected"].get("relay_disabled", 0) >= 1
    # nothing forged was stored, and the node still syncs with b
    assert a.open(doc.id).version[b.id] == 1
    b.open(doc.id).text().insert(0, ">")
    until(lambda: text_of(a, doc.id) == ">ok!")


# --------------------------------------------------------------- address book


def test_address_book_entries_are_self_signed_and_persisted(tmp_path):
    me, other = Identity.generate(), Identity.generate()
    book = AddressBook(me)
    addr = f"tcp://127.0.0.1:7000#{me.node_id.hex()}"
    blob = book.announce("me", [addr, "tcp://127.0.0.1:1#" + "00" * 32])
    assert blob is not None and book.announce("me", [addr]) is None  # unchanged: no write
    entry = book.get(me.node_id)
    assert entry is not None and entry.addresses == (addr,)  # foreign address dropped
    # another book takes it; forgeries are refused
    peer = AddressBook(other)
    assert peer.ingest(book.changes_since({})) == 1
    assert peer.get(me.node_id) == entry
    liar = Doc(actor=other.node_id)
    liar.map("peers").set(me.node_id.hex(), {"n": "me", "a": [], "t": 1.0, "r": False,
                                             "s": bytes(64)})
    with pytest.raises(ValueError):
        AddressBook(Identity.generate()).ingest([liar.commit()])
    forged = Doc(actor=other.node_id)
    forged.map("peers").set(other.node_id.hex(), {"n": "x", "a": [], "t": 1.0, "r": False,
                                                  "s": bytes(64)})
    fresh = AddressBook(Identity.generate())
    with pytest.raises(ValueError):
        fresh.ingest([forged.commit(), b"garbage"])
    assert fresh.rejected["book_bad_entry"] == 1 and fresh.rejected["book_bad_change"] == 1
    # persisted in the node's store
    node = Node(tmp_path / "p", network=False)
    try:
        b1 = AddressBook(node.identity, node.store)
        b1.announce("n", [f"tcp://127.0.0.1:9#{node.id.hex()}"])
        b1.ingest(book.changes_since({}))
        b1.save()
        b2 = AddressBook(node.identity, node.store)
        assert set(b2.entries()) == {node.id, me.node_id}
    finally:
        node.close()


def test_dialer_backs_off_and_sticky_ports():
    cfg = NetConfig(backoff_min=1.0, backoff_max=8.0, connect_timeout=2.0, max_peers=2)
    d = Dialer(b"me", cfg)
    nid = b"p" * 32
    dial = d.add(nid, ["tcp://x:1#" + nid.hex()], sticky=True)
    assert dial is not None and d.add(b"me", ["tcp://y:1"], sticky=True) is None
    assert d.step(0.0, lambda _: False) == [("connect", dial)]
    d.connected(dial, ("out", b"1"), 0.0)
    assert d.step(1.0, lambda _: False) == []
    assert d.step(2.5, lambda _: False) == [("give-up", dial)]
    delays = []
    now = 3.0
    for _ in range(6):
        d.conn_closed(dial.conn, now, failed=True) if dial.conn else d.failed(dial, now)
        delays.append(dial.next_at - now)
    assert 0.8 <= delays[0] <= 1.2 and delays[-1] <= 8.0 * 1.2 and delays[3] > delays[1]
    assert d.step(now, lambda _: True) == []  # online: nothing to do
    for i in range(3):  # casual (address book) dials are capped
        d.add(bytes([i]) * 32, ["tcp://z:1"], sticky=False)
    assert len(d.dials) == 3
    assert sticky_listen(["tcp://127.0.0.1:0"], ["tcp://127.0.0.1:4444"]) == [
        "tcp://127.0.0.1:4444"]
    assert sticky_listen(["tcp://127.0.0.1:5"], ["tcp://127.0.0.1:4444"]) == [
        "tcp://127.0.0.1:5"]


def test_restarted_peer_is_found_again_on_its_port(tmp_path):
    a = mk(tmp_path / "a", "a")
    b = mk(tmp_path / "b", "b")
    na, nb = start(a), start(b)
    try:
        nb.connect(na.addresses[0], timeout=5)
        doc = a.new_doc("r")
        b.join(a.invite(doc))
        nb.announce_doc(doc.id)
        port = na.addresses[0]
        na.close()
        a.close()
        b.open(doc.id).text().insert(0, "offline edit")  # a is down
        a = mk(tmp_path / "a", "a")
        na = start(a)
        assert na.addresses[0] == port  # same port as last time: peers find it there
        until(lambda: text_of(a, doc.id) == "offline edit")
    finally:
        na.close()
        nb.close()
        a.close()
        b.close()


# --------------------------------------------------------------- presence


def test_presence_is_shared_expires_and_is_never_stored(nodes):
    a, na = nodes("a", presence_ttl=1.0)
    b, nb = nodes("b", bootstrap=[na.addresses[0]])
    doc = a.new_doc("p")
    b.join(a.invite(doc))
    nb.announce_doc(doc.id)
    until(lambda: text_of(b, doc.id) == "")
    events: list[Any] = []
    nb.on("presence", lambda d, peer, state: events.append((d, peer, state)))
    na.set_presence(doc.id, {"name": "alice", "cursors": {"body": [0, 0]}})
    until(lambda: nb.get_presence(doc.id).get(a.id, {}).get("name") == "alice")
    na.set_presence(doc.id, None)  # closed the doc
    until(lambda: a.id not in nb.get_presence(doc.id))
    assert events and events[0][1] == a.id
    na.set_presence(doc.id, {"name": "alice"})
    until(lambda: a.id in nb.get_presence(doc.id))
    na.close()  # gone without a word: the TTL / the session end clears it
    until(lambda: a.id not in nb.get_presence(doc.id), timeout=5)
    assert b"alice" not in b"".join(p.read_bytes() for p in b.profile.glob("*sqlite3*"))


def test_discovery_is_off_unless_asked(nodes):
    _, na = nodes("a")
    assert na.dialing.discovery is None and na.config.discovery is None
    with pytest.raises(ValueError, match="interface"):
        Node(discovery={"port": 5670})


def test_node_arguments_env_bootstrap_and_local_only(tmp_path, monkeypatch):
    a = Node(tmp_path / "a", name="a", listen="tcp://127.0.0.1:0",
             network=NetConfig(**FAST))
    try:
        assert a.address is not None and a.addresses == [a.address]
        monkeypatch.setenv("OWNKERNEL_BOOTSTRAP", a.address)
        b = Node(tmp_path / "b", name="b", listen=None, network=NetConfig(**FAST))
        try:
            assert b.address is None  # dials out, does not listen
            until(lambda: [p for p in b.peers if p.online and p.id == a.id])
            doc = a.new_doc("via env")
            doc.text().insert(0, "hi")
            joined = b.join(a.invite(doc), timeout=5)  # token: fetch before returning
            assert str(joined.text()) == "hi"
            assert "net" in b.stats() and b.stats()["net"]["peers_online"] == 1
        finally:
            b.close()
        monkeypatch.delenv("OWNKERNEL_BOOTSTRAP")
        local = Node(tmp_path / "c", network=False)
        try:
            assert local.network is None and local.peers == [] and local.address is None
            with pytest.raises(RuntimeError, match="no network"):
                local.connect(a.address)
        finally:
            local.close()
    finally:
        a.close()


def test_a_stuck_network_thread_raises_the_builtin_timeout_error(nodes):
    # Before 3.11 concurrent.futures.TimeoutError is not the builtin TimeoutError,
    # which is what callers (%own status, connect, join) catch.
    _, net = nodes("slow")
    with pytest.raises(TimeoutError):
        net._call(asyncio.sleep, 2.0, timeout=0.05)
