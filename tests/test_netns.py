"""Two machines, as far as the nodes can tell: two network namespaces joined by a
veth pair (10.x addresses, no other route: nothing leaves the test's namespaces).

A node in each (child processes under ``ip netns exec``) listens on 0.0.0.0, so
it must advertise its interface address for the invite to be dialable; they
sync both ways; the link goes down, both keep editing; it comes back, they
converge. Skipped (with the reason) without root or iproute2.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_net_processes import Child

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces need root and iproute2 (`ip`)")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check:
        assert r.returncode == 0, (args, r.stderr)
    return r


@pytest.fixture
def pair() -> Iterator[dict[str, str]]:
    """Namespaces a and b, veth a<->b, 10.<x>.<y>.1/24 and .2/24; removed afterwards."""
    tag = f"{os.getpid() % 10000}-{random.randrange(16**4):04x}"
    ns = {"a": f"ownk-a-{tag}", "b": f"ownk-b-{tag}"}
    if ip("netns", "add", ns["a"], check=False).returncode != 0:
        pytest.skip("cannot create network namespaces here (ip netns add failed)")
    try:
        ip("netns", "add", ns["b"])
        subnet = f"10.{random.randrange(100, 250)}.{random.randrange(0, 250)}"
        ip("-n", ns["a"], "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
           "netns", ns["b"])
        for side, host in (("a", 1), ("b", 2)):
            ip("-n", ns[side], "addr", "add", f"{subnet}.{host}/24", "dev", f"veth-{side}")
            ip("-n", ns[side], "link", "set", f"veth-{side}", "up")
            ip("-n", ns[side], "link", "set", "lo", "up")
            routes = ip("-n", ns[side], "route").stdout
            assert "default" not in routes, routes  # no way out of the pair
        yield {**ns, "ip_a": f"{subnet}.1", "ip_b": f"{subnet}.2"}
    finally:
        for name in ns.values():
            ip("netns", "del", name, check=False)


def test_two_machines_sync_across_a_link_that_drops(tmp_path: Path, pair) -> None:
    a = Child(tmp_path, "a", "--listen", "tcp://0.0.0.0:0",
              prefix=("ip", "netns", "exec", pair["a"]))
    b = Child(tmp_path, "b", "--listen", "tcp://0.0.0.0:0",
              prefix=("ip", "netns", "exec", pair["b"]))
    try:
        # listening on every interface, each advertises its veth address (not 0.0.0.0)
        assert a.address.startswith(f"tcp://{pair['ip_a']}:"), a.address
        assert b.address.startswith(f"tcp://{pair['ip_b']}:"), b.address
        doc = a("new_doc", title="across")["doc"]
        a("insert", doc=doc, text="from a. ")
        token = a("invite", doc=doc)["token"]
        assert b("join", token=token)["doc"] == doc  # dials 10.x.y.1: the only route
        b.wait_text(doc, "from a. ")
        b("insert", doc=doc, text="from b. ")
        a.wait_text(doc, "from a. ", "from b. ")

        # the cable is pulled: both notice (ping timeout), both keep editing
        ip("-n", pair["a"], "link", "set", "veth-a", "down")
        for side in (a, b):
            end = time.monotonic() + 30
            while side("stats")["net"]["peers_online"] != 0:
                assert time.monotonic() < end, f"{side.name} still sees its peer online"
                time.sleep(0.2)
        a("insert", doc=doc, text="a offline. ")
        b("insert", doc=doc, text="b offline. ")
        assert "b offline" not in a("text", doc=doc)["text"]
        assert "a offline" not in b("text", doc=doc)["text"]

        # plugged back in: they find each other again and converge
        ip("-n", pair["a"], "link", "set", "veth-a", "up")
        want = ("from a. ", "from b. ", "a offline. ", "b offline. ")
        ta = a.wait_text(doc, *want, timeout=60)
        tb = b.wait_text(doc, *want, timeout=60)
        assert ta == tb
    finally:
        a.kill()
        b.kill()
