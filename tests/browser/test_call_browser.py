"""Calls (issue #14) for real: WebRTC between Chromium pages and an aiortc bot,
signalled over ownkernel nodes, inside a network namespace the test makes.

Why a namespace: Chromium gathers no loopback ICE candidates and aioice skips
127.0.0.1, so media needs a non-loopback interface; a veth pair with both ends
inside a fresh namespace (10.x addresses, no route out) gives one while nothing
leaves it. The test's main thread enters the namespace (``setns``, what
``ip netns exec`` does) while it starts JupyterLab, Chromium, the kernels and
the bot: each inherits it. Pages are on http://127.0.0.1 (a secure context, so
getUserMedia works; Chromium fakes camera and microphone).

Skipped with the reason when not root, without ``ip netns``, or without
Chromium/Playwright/JupyterLab.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

lab = pytest.importorskip("lab", reason="tests/browser/lab.py")

CLONE_NEWNET = 0x40000000


def _netns_missing() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    return None


_no_ns = _netns_missing()
_no_browser = lab.missing()
needs_ns = pytest.mark.skipif(_no_ns is not None, reason=_no_ns or "")
needs_browser = pytest.mark.skipif(_no_browser is not None, reason=_no_browser or "")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check:
        assert r.returncode == 0, (args, r.stderr)
    return r


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A fresh namespace with ``lo`` up and a veth pair (10.x.y.1 and .2, both
    ends inside); the calling thread lives in it for the ``with`` block."""
    name = f"ownk-call-{os.getpid() % 10000}-{random.randrange(16**4):04x}"
    if ip("netns", "add", name, check=False).returncode != 0:
        pytest.skip("cannot create network namespaces here (ip netns add failed)")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subnet = f"10.{random.randrange(100, 250)}.{random.randrange(0, 250)}"
        ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        for i, dev in enumerate(("v0", "v1"), 1):
            ip("-n", name, "addr", "add", f"{subnet}.{i}/24", "dev", dev)
            ip("-n", name, "link", "set", dev, "up")
        ip("-n", name, "link", "set", "lo", "up")
        assert "default" not in ip("-n", name, "route").stdout  # no way out
        fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        try:
            yield name
        finally:
            _setns(home)
    finally:
        os.close(home)
        ip("netns", "del", name, check=False)


def until(pred: Any, timeout: float, what: str) -> Any:
    return lab.until(pred, timeout, what)


# ------------------------------------------------------------------ aiortc <-> aiortc
@needs_ns
def test_two_aiortc_bots_call_each_other_through_their_nodes(tmp_path: Path) -> None:
    pytest.importorskip("aiortc", reason="aiortc is in the test extra")
    from ownkernel.apps.callbot import CallBot
    from ownkernel.node import Node
    from ownkernel.node.config import NetConfig

    with namespace():
        a = Node(tmp_path / "a", name="a", network=NetConfig(listen=["tcp://127.0.0.1:0"]))
        b = Node(tmp_path / "b", name="b", network=NetConfig(listen=["tcp://127.0.0.1:0"]))
        bots: list[CallBot] = []
        try:
            doc = a.new_doc("call")
            b.join(a.invite(doc), timeout=30)
            bots = [CallBot(a, doc).start(), CallBot(b, doc.id).start()]
            until(lambda: bots[0].frames.get(b.id, 0) > 5 and bots[1].frames.get(a.id, 0) > 5,
                  60, "video frames decoded both ways")
            assert bots[0].audio_frames.get(b.id, 0) > 0
            assert bots[0].states[b.id] == "connected"
            # b leaves: a hangs up on it
            bots.pop().close()
            until(lambda: bots[0].states.get(b.id) == "closed", 30, "a sees b leave")
            assert bots[0].members == ()
        finally:
            for bot in bots:
                bot.close()
            a.close()
            b.close()
