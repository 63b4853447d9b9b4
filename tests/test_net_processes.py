"""Nodes as separate OS processes (tests/net_child_node.py), real sockets on 127.0.0.1.

Each child is driven over stdin/stdout with JSON lines; every wait is bounded.
Timers are shortened (``--fast``) so restarts and partitions are noticed in
seconds.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from child_harness import ChildProcess

CHILD = Path(__file__).with_name("net_child_node.py")


class Child(ChildProcess):
    """One node process of tests/net_child_node.py."""

    errors_allowed = ("wait_text",)

    def __init__(self, tmp: Path, name: str, *args: str, fast: bool = True,
                 prefix: tuple[str, ...] = ()) -> None:
        super().__init__(tmp, name)
        self.args, self.prefix = list(args), list(prefix)
        self.profile = tmp / name
        self.fast = fast
        self.start()

    def command(self, *extra: str) -> list[str]:
        return [*self.prefix, sys.executable, str(CHILD), "--profile", str(self.profile),
                "--name", self.name, *self.args, *extra, *(["--fast"] if self.fast else [])]

    def stop(self) -> float:
        """Quit; how long the child's node took to close."""
        return float(self.quit(10)["close_s"])


@pytest.fixture
def spawn(tmp_path: Path):
    children: list[Child] = []

    def make(name: str, *args: str, prefix: tuple[str, ...] = ()) -> Child:
        c = Child(tmp_path, name, *args, prefix=prefix)
        children.append(c)
        return c
    yield make
    for c in children:
        c.kill()


def test_two_nodes_edit_the_same_doc_from_both_sides(spawn):
    a = spawn("a")
    b = spawn("b")
    doc = a("new_doc", title="shared")["doc"]
    a("insert", doc=doc, text="hello")
    token = a("invite", doc=doc)["token"]  # carries a's address: b needs nothing else
    assert b("join", token=token)["doc"] == doc
    b.wait_text(doc, "hello")
    a("insert", doc=doc, text="AAAA", pos=0)
    b("insert", doc=doc, text="bbbb")
    ta = a.wait_text(doc, "AAAA", "bbbb", "hello", length=13)
    tb = b.wait_text(doc, "AAAA", "bbbb", "hello", length=13)
    assert ta == tb
    assert a.stop() < 1.0 and b.stop() < 1.0


def test_five_nodes_chain_then_peer_exchange(spawn):
    nodes = [spawn("n0")]
    for i in range(1, 5):  # each knows only the one before it
        nodes.append(spawn(f"n{i}", "--bootstrap", nodes[-1].address))
    for n in nodes:  # the address book tells everybody about everybody
        out = n("wait_peers", n=4, timeout=20)
        assert out["ok"], (n.name, out)
    doc = nodes[0]("new_doc", title="chain")["doc"]
    for n in nodes[1:]:  # tokens without addresses: the mesh must carry the doc
        n("join", token=nodes[0]("invite", doc=doc, addresses=[])["token"])
    nodes[4]("insert", doc=doc, text="from the end")
    nodes[0]("insert", doc=doc, text="<", pos=0)
    final = [n.wait_text(doc, "from the end", "<", length=13) for n in nodes]
    assert len(set(final)) == 1


def test_bootstrap_gone_nodes_restart_and_find_each_other(spawn):
    boot = spawn("boot")
    x = spawn("x", "--bootstrap", boot.address)
    y = spawn("y", "--bootstrap", boot.address)
    assert x("wait_peers", n=2, timeout=20)["ok"]  # boot and y (via the address book)
    doc = x("new_doc", title="book")["doc"]
    x("insert", doc=doc, text="before")
    y("join", token=x("invite", doc=doc, addresses=[])["token"])
    y.wait_text(doc, "before")
    boot.stop()  # for good
    x.stop()
    y.stop()
    x.args = y.args = []  # no bootstrap this time: only what they remember
    x.start()
    y.start()
    # data intact right after the restart, before any sync
    assert x("text", doc=doc)["text"] == "before" == y("text", doc=doc)["text"]
    assert x("wait_peers", n=1, timeout=20)["ok"]
    x("insert", doc=doc, text=" after")
    y.wait_text(doc, "before after")


def _relay_topology(spawn):
    b = spawn("relay", "--relay")
    a = spawn("a", "--bootstrap", b.address, "--allow", b.id)
    c = spawn("c", "--bootstrap", b.address, "--allow", b.id)
    assert a("wait_peers", n=1)["ok"] and c("wait_peers", n=1)["ok"]
    return a, b, c


def test_relay_carries_edits_between_nodes_that_cannot_reach_each_other(spawn):
    a, b, c = _relay_topology(spawn)
    doc = a("new_doc", title="relayed")["doc"]
    a("insert", doc=doc, text="via relay")
    c("join", token=a("invite", doc=doc)["token"])  # a's address is there, but a refuses c
    c.wait_text(doc, "via relay")
    c("insert", doc=doc, text="!")
    a.wait_text(doc, "via relay!")
    # they never talked directly: each has exactly one peer online, the relay
    for n in (a, c):
        online = [p for p in n("wait_peers", n=1)["peers"] if p[2]]
        assert [p[0] for p in online] == [b.id], (n.name, online)


def test_encrypted_doc_through_a_relay(spawn):
    a, b, c = _relay_topology(spawn)
    doc = a("new_doc", title="secret", encrypted=True)["doc"]
    a("insert", doc=doc, text="top-secret-plaintext")
    c("join", token=a("invite", doc=doc)["token"])
    c.wait_text(doc, "top-secret-plaintext")
    c("insert", doc=doc, text="-reply")
    a.wait_text(doc, "top-secret-plaintext-reply")
    # the relay stored and forwarded ciphertext it cannot read
    assert b("readable", doc=doc)["readable"] is False
    assert b("stats")["node"]["accepted"] > 0
    assert b("db_contains", needle="top-secret")["found"] is False
    assert a("db_contains", needle="top-secret")["found"] is False  # sealed at rest too


def test_partition_heals_and_offline_edits_flow(spawn):
    a = spawn("a")
    b = spawn("b", "--bootstrap", a.address)
    c = spawn("c", "--bootstrap", a.address)
    doc = a("new_doc", title="p")["doc"]
    for n in (b, c):
        n("join", token=a("invite", doc=doc, addresses=[])["token"])
    assert c("wait_peers", n=2, timeout=20)["ok"]
    a("insert", doc=doc, text="0")
    c.wait_text(doc, "0")
    # partition: c frozen (its sockets stay open but silent), a and b go on editing
    os.kill(c.proc.pid, signal.SIGSTOP)
    try:
        a("insert", doc=doc, text="a")
        b("insert", doc=doc, text="b")
        b.wait_text(doc, "a", "b")
        time.sleep(3.5)  # beyond the peer timeout: a and b consider c gone
    finally:
        os.kill(c.proc.pid, signal.SIGCONT)
    c("insert", doc=doc, text="c")  # heal
    for n in (a, b, c):
        n.wait_text(doc, "0", "a", "b", "c", length=4, timeout=20)
    # a node restarted while everyone else is down edits offline, then catches up
    a.stop()
    b.stop()
    c.stop()
    b.start()
    b("insert", doc=doc, text="B")  # alone
    a.start()
    c.start()
    for n in (a, b, c):
        n.wait_text(doc, "B", length=5, timeout=20)
    texts = {n("text", doc=doc)["text"] for n in (a, b, c)}
    assert len(texts) == 1


def test_invite_token_is_all_a_joiner_needs(spawn):
    a = spawn("a")
    doc = a("new_doc", title="invite")["doc"]
    a("insert", doc=doc, text="welcome")
    readonly = a("invite", doc=doc, write=False)["token"]
    r = spawn("reader")
    r("join", token=readonly)
    r.wait_text(doc, "welcome")  # a reader never writes, yet is offered the doc
    w = spawn("writer")
    w("join", token=a("invite", doc=doc)["token"])
    w.wait_text(doc, "welcome")
    w("insert", doc=doc, text="!")
    a.wait_text(doc, "welcome!")
    r.wait_text(doc, "welcome!")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_headless_cli_node_bootstraps_and_relays(spawn, tmp_path):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(CHILD.parents[1]))
    env.pop("OWNKERNEL_BOOTSTRAP", None)
    log = open(tmp_path / "headless.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownkernel", "node", "--profile", str(tmp_path / "headless"),
         "--listen", f"tcp://127.0.0.1:{port}", "--relay", "--name", "boot"],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready <node id hex>"
        assert line.startswith("ready "), line
        boot = f"tcp://127.0.0.1:{port}#{line.split()[1]}"
        a = spawn("a", "--bootstrap", boot, "--allow", line.split()[1])
        c = spawn("c", "--bootstrap", boot, "--allow", line.split()[1])
        doc = a("new_doc", title="headless")["doc"]
        a("insert", doc=doc, text="through the headless relay")
        c("join", token=a("invite", doc=doc)["token"])
        c.wait_text(doc, "through the headless relay")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        log.close()


@pytest.fixture
def netns():
    """A fresh network namespace with only ``lo``: beacons never leave it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    name = f"ownk-net-{os.getpid()}-{random.randrange(16**6):06x}"

    def ip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if ip("netns", "add", name).returncode != 0:
        pytest.skip("ip netns unavailable")
    try:
        for cmd in (("link", "set", "lo", "up"), ("link", "set", "lo", "multicast", "on"),
                    ("route", "add", "224.0.0.0/4", "dev", "lo")):
            assert ip("-n", name, *cmd).returncode == 0
        links = ip("-n", name, "-o", "link").stdout.strip().splitlines()
        assert len(links) == 1 and ": lo:" in links[0], links
        yield name
    finally:
        ip("netns", "del", name)


def test_lan_discovery_in_a_namespace(spawn, netns):
    prefix = ("ip", "netns", "exec", netns)
    port = str(random.randrange(20000, 30000))
    a = spawn("a", "--discovery", "127.0.0.1", "--beacon-port", port, prefix=prefix)
    b = spawn("b", "--discovery", "127.0.0.1", "--beacon-port", port, prefix=prefix)
    assert a("wait_peers", n=1, timeout=15)["ok"]  # no bootstrap, no address given
    doc = a("new_doc", title="lan")["doc"]
    a("insert", doc=doc, text="found you")
    b("join", token=a("invite", doc=doc, addresses=[])["token"])
    b.wait_text(doc, "found you")
