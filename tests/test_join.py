"""First contact (issue #11 §1-2): join waits for the first sync, `node.doc(title)`
opens or creates, titles matching several docs are listed, the address book
expires dead peers and never holds temporary profiles, and a node listening on
every interface advertises addresses others can dial. Real nodes on 127.0.0.1."""

from __future__ import annotations

import ast
import time
import warnings
from pathlib import Path

import pytest
from waiting import until

from ownkernel import Node
from ownkernel.node.config import NetConfig, advertised, interface_addresses
from ownkernel.node.grants import Invite
from ownkernel.node.node import AmbiguousDoc, JoinWarning

FAST = dict(ping_interval=0.5, peer_timeout=3.0, anti_entropy=1.0, backoff_min=0.05,
            backoff_max=0.5, connect_timeout=1.0)


def test_join_returns_with_the_content(tmp_path: Path) -> None:
    with Node(tmp_path / "a", "ann", network=NetConfig(**FAST)) as a, \
            Node(tmp_path / "b", "ben", network=NetConfig(**FAST)) as b:
        doc = a.new_doc("plan")
        doc.text("body").insert(0, "step one")
        mine = b.join(a.invite(doc))  # default: waits (bounded) for the first sync
        assert str(mine.text("body")) == "step one" and mine.title == "plan"
        t0 = time.monotonic()
        assert b.join(a.invite(doc)) == mine  # again: nothing to wait for
        assert time.monotonic() - t0 < 2.0


def test_join_returns_while_the_inviter_keeps_typing(tmp_path: Path) -> None:
    """Join waits for what the inviter held, not for a quiet moment: a doc someone
    is typing into never goes quiet (a classmate joining a busy doc hung until its
    timeout)."""
    import threading

    with Node(tmp_path / "a", "ann", network=NetConfig(**FAST)) as a, \
            Node(tmp_path / "b", "ben", network=NetConfig(**FAST)) as b:
        doc = a.new_doc("busy")
        body = doc.text("body")
        body.insert(0, "start ")
        typed = threading.Event()
        stop = threading.Event()

        def type_on() -> None:
            while not stop.is_set():
                body.insert(len(body), "x")
                typed.set()
                time.sleep(0.02)

        typist = threading.Thread(target=type_on, daemon=True)
        typist.start()
        try:
            typed.wait(5)
            before = len(str(body))
            t0 = time.monotonic()
            with warnings.catch_warnings():
                warnings.simplefilter("error", JoinWarning)
                mine = b.join(a.invite(doc), timeout=30)
            took = time.monotonic() - t0
            assert len(str(mine.text("body"))) >= before
            assert str(mine.text("body")).startswith("start x")
            assert took < 15, f"join waited {took:.1f} s for a doc that never goes quiet"
        finally:
            stop.set()
            typist.join(5)


def test_join_with_nobody_reachable_warns_and_keeps_trying(tmp_path: Path) -> None:
    with Node(tmp_path / "a", "ann", network=NetConfig(**FAST)) as a:
        doc = a.new_doc("plan")
        doc.text("body").insert(0, "later")
        token = a.invite(doc)
        where = a.address.split("#")[0]
    # ann is gone; ben joins: a warning naming whom it tried, the handle anyway
    with Node(tmp_path / "b", "ben", network=NetConfig(**FAST)) as b:
        with pytest.warns(JoinWarning, match=f"nobody who has it was reachable.*{where}"):
            mine = b.join(token, timeout=0.5)
        assert mine.id == doc.id and mine.title == "plan"
        with pytest.raises(TimeoutError, match="not received within 0.3 s"):
            b.join(token, timeout=0.3, strict=True)
        # ann comes back on the same port (sticky): the content arrives by itself
        with Node(tmp_path / "a", "ann", network=NetConfig(**FAST)):
            until(lambda: str(mine.text("body")) == "later", what="background sync")


def test_join_without_network_does_not_wait(tmp_path: Path) -> None:
    with Node(tmp_path / "a", network=False) as a, Node(tmp_path / "b", network=False) as b:
        token = a.invite(a.new_doc("x"), addresses=["tcp://127.0.0.1:9#" + a.id.hex()])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            t0 = time.monotonic()
            b.join(token)
            assert time.monotonic() - t0 < 1.0


def test_doc_opens_or_creates_and_lists_duplicates(tmp_path: Path) -> None:
    with Node(tmp_path / "a", "ann", network=False) as a:
        notes = a.doc("workshop notes")
        notes.text("body").insert(0, "hi")
        again = a.doc("workshop notes")  # a re-run notebook: the same doc
        assert again.id == notes.id and len(a.docs()) == 1
        assert str(again.text("body")) == "hi"
        twin = a.new_doc("workshop notes")
        with pytest.raises(AmbiguousDoc) as exc:
            a.doc("workshop notes")
        msg = str(exc.value)
        assert "'workshop notes' is ambiguous: 2 documents match" in msg
        for d in (notes, twin):
            assert f"{d.hex[:12]} 'workshop notes' by ann (you) ({a.short_id})" in msg
        with pytest.raises(KeyError, match="is ambiguous"):  # open() lists them too
            a.open("workshop notes")
        assert a.open(twin.hex[:12]) == twin
        with pytest.raises(ValueError, match="non-empty title"):
            a.doc("  ")


def test_temporary_profiles_never_enter_the_address_book(tmp_path: Path) -> None:
    with Node(tmp_path / "a", "ann", network=NetConfig(**FAST)) as a, \
            Node(None, "neighbour", network=NetConfig(**FAST)) as t:
        doc = a.new_doc("n")
        t.join(a.invite(doc))
        until(lambda: any(p.id == t.id and p.online for p in a.peers), what="neighbour online")
        net = a.network
        assert net is not None and net.book is not None
        assert t.id not in net.book.entries() and t.id not in t.network.book.entries()
        assert a.id in t.network.book.entries()  # ann is listed, and passed on
    # ann restarts: the dead neighbour is neither listed nor dialed
    with Node(tmp_path / "a", "ann", network=NetConfig(**FAST)) as a:
        assert all(p.id != t.id for p in a.peers)
        assert t.id not in a.network.dialing.planner.dials


def test_address_book_entries_expire_and_are_refreshed(tmp_path: Path) -> None:
    from ownkernel.node.addressbook import AddressBook

    with Node(tmp_path / "a", "ann", network=False) as a, \
            Node(tmp_path / "b", "ben", network=False) as b:
        book_a = AddressBook(a.identity, None, ttl=100.0)
        book_b = AddressBook(b.identity, None, ttl=100.0)
        addr = "tcp://10.0.0.1:7700#" + a.id.hex()
        blob = book_a.announce("ann", [addr])
        assert blob is not None and book_a.announce("ann", [addr]) is None  # unchanged
        book_b.ingest([blob])
        now = time.time()
        assert a.id in book_b.entries(now)
        assert a.id not in book_b.entries(now + 101)  # unseen for longer than the ttl
        assert book_b.get(a.id, expired=True) is not None
        # a live node re-signs its entry before a quarter of the ttl has passed
        book_a.ttl = 0.0
        assert book_a.announce("ann", [addr]) is not None
        # nothing to dial: a node without addresses writes no entry at all
        assert AddressBook(b.identity, None).announce("ben", []) is None


def test_wildcard_listen_advertises_interface_addresses(tmp_path: Path) -> None:
    nid = bytes(range(32))
    ips = interface_addresses(4)
    got = advertised(["tcp://0.0.0.0:7700"], None, nid)
    want = [f"tcp://{ip}:7700#{nid.hex()}" for ip in ips] or [
        f"tcp://127.0.0.1:7700#{nid.hex()}"]
    assert got == want
    assert all(not a.startswith(("tcp://0.0.0.0", "tcp://*")) for a in got)
    assert advertised(["tcp://0.0.0.0:7700"], ["example.org", "10.1.2.3:99", "[2001:db8::1]"],
                      nid) == [f"tcp://example.org:7700#{nid.hex()}",
                               f"tcp://10.1.2.3:99#{nid.hex()}",
                               f"tcp://[2001:db8::1]:7700#{nid.hex()}"]
    with pytest.raises(ValueError, match="not a port number"):
        advertised(["tcp://0.0.0.0:7700"], ["host:http"], nid)
    assert advertised(["tcp://127.0.0.1:5"], [], nid) == []  # [] advertises nothing

    with Node(tmp_path / "w", listen="tcp://0.0.0.0:0", network=NetConfig(**FAST)) as w:
        port = w.network.transport.endpoints[0].rsplit(":", 1)[1]
        assert w.addresses == advertised([f"tcp://0.0.0.0:{port}"], None, w.id)
        inv = Invite.parse(w.invite(w.new_doc("lan")))
        assert list(inv.addresses) == w.addresses


def test_advertise_env_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNKERNEL_ADVERTISE", "203.0.113.7")
    with Node(tmp_path / "x", advertise="relay.example.org:7000",
              network=NetConfig(**FAST)) as x:
        port = x.network.transport.endpoints[0].rsplit(":", 1)[1]
        assert x.addresses == [f"tcp://relay.example.org:7000#{x.id.hex()}",
                               f"tcp://203.0.113.7:{port}#{x.id.hex()}"]
        assert x.store.get_setting("net.advertised") == x.addresses


class _Host:
    """Stands in for the kernel's NodeHost: the magics only ask it for the node."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def wait(self) -> Node:
        return self.node


def test_magics_parse_quoted_and_unquoted_titles_alike(tmp_path: Path) -> None:
    from IPython.core.error import UsageError

    from ownkernel.kernel import cells
    from ownkernel.kernel.magics import OwnMagics

    with Node(tmp_path / "a", "ann", network=False) as a:
        own = OwnMagics(None, host=_Host(a)).own  # type: ignore[arg-type]
        made = own("new my field notes")
        assert made.title == "my field notes"
        for line in ("open my field notes", "open 'my field notes'", 'open "my field notes"',
                     f"open {made.hex[:8]}"):
            assert own(line).id == made.id, line
        tok = str(own("invite my field notes --read").text)
        assert Invite.parse(tok).capability == "read"
        own(f"export my field notes md {tmp_path / 'x.md'}")
        assert (tmp_path / "x.md").exists()
        # two docs with one title: the error lists both, with ids and authors
        twin = a.new_doc("my field notes")
        with pytest.raises(UsageError) as exc:
            own("open my field notes")
        msg = str(exc.value)
        assert "'my field notes' is ambiguous: 2 documents match" in msg
        assert made.hex[:12] in msg and twin.hex[:12] in msg and "by ann (you)" in msg
        assert "%own open" in msg
        # shared cells: a two-word name without quotes; two cells of one name listed
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        pulled: list[str] = []
        shell.set_next_input = lambda text, replace=False: pulled.append(text)
        own = OwnMagics(shell, host=_Host(a)).own  # type: ignore[arg-type]
        cells.store_cell(a, "my cell", "x = 1")
        own("pull my cell")
        assert pulled == ["%%shared 'my cell'\nx = 1"]
        first, _ = cells.store_cell(a, "dup", "y = 1")
        second = a.new_doc("dup")
        second.map(cells.CELL_ROOT)["name"] = "dup"  # (another notebook's) cell "dup"
        with pytest.raises(UsageError) as exc:
            own("pull dup")
        msg = str(exc.value)
        assert "'dup' is ambiguous: 2 documents match" in msg and "%own pull" in msg
        assert first.hex[:12] in msg and second.hex[:12] in msg


def test_first_steps_notebook_is_idempotent(tmp_path: Path) -> None:
    """Run notebook 01 twice on one profile: one doc, the same text, one neighbour."""
    import nbformat
    from conftest import kernel_sandbox
    from nbclient import NotebookClient

    path = Path(__file__).resolve().parents[1] / "notebooks" / "01-first-steps.ipynb"
    with kernel_sandbox(tmp_path) as home:
        runs = []
        for _ in range(2):
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=120, kernel_name="ownkernel",
                           resources={"metadata": {"path": str(tmp_path)}}).execute()
            runs.append(nb)
        profile = home / "default"  # the kernel's profile (kernels ended: free again)
    second = runs[1]

    def out(cell_has: str) -> str:
        cell = next(c for c in second.cells if c.cell_type == "code" and cell_has in c.source)
        return "\n".join(o.get("data", {}).get("text/plain", "") or o.get("text", "")
                         for o in cell.outputs)
    want = "'Neighbour was here. Hello from this notebook. And so was I.'"
    assert out("wait_for(lambda: str(mine)") == want
    chat = ast.literal_eval(out('[m["text"] for m'))  # concurrent appends: any order
    assert sorted(chat) == ["me!", "who brings the cake?"]
    assert out("node.peers").count("neighbour") == 1  # the first run's is gone
    with Node(profile, network=False) as n:
        assert [d.title for d in n.docs()].count("workshop notes") == 1


def test_route_shows_direct_or_via_relay(tmp_path: Path) -> None:
    """B may not talk to A directly (its own deny list), only through relay R: the
    doc still arrives, and B's peer list says A is reached via the relay."""
    with Node(tmp_path / "r", "relay", relay=True, network=NetConfig(**FAST)) as r:
        a = Node(tmp_path / "a", "ann", bootstrap=[r.address], network=NetConfig(**FAST))
        try:
            cfg = NetConfig(**FAST, deny={a.id})
            with Node(tmp_path / "b", "ben", bootstrap=[r.address], network=cfg) as b:
                doc = a.new_doc("relayed")
                doc.text("body").insert(0, "through r")
                mine = b.join(a.invite(doc), timeout=30, strict=True)
                until(lambda: str(mine.text("body")) == "through r", what="relayed content")
                until(lambda: any(p.id == a.id for p in b.peers), what="ann listed")
                routes = {p.name: p.route for p in b.peers}
                assert routes["relay"].startswith("direct tcp://127.0.0.1:"), routes
                assert routes["ann"] == "via relay relay", routes
        finally:
            a.close()


def test_ipv6_listen_and_a_dual_stack_peer(tmp_path: Path) -> None:
    """A node bound to [::1] is reached by a node on 127.0.0.1 (both loopback); a
    wildcard [::] bind works and advertises interface addresses, never `::` itself."""
    import socket

    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with Node(tmp_path / "a", "ann", listen="tcp://[::1]:0", network=NetConfig(**FAST)) as a, \
            Node(tmp_path / "b", "ben", network=NetConfig(**FAST)) as b:
        assert a.address is not None and a.address.startswith("tcp://[::1]:")
        doc = a.new_doc("six")
        doc.text("body").insert(0, "over IPv6")
        mine = b.join(a.invite(doc), timeout=15)
        assert str(mine.text("body")) == "over IPv6"
    with Node(tmp_path / "w", listen="tcp://[::]:0", network=NetConfig(**FAST)) as w:
        assert w.addresses and not any("[::]" in x for x in w.addresses)
