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
import json
import os
import random
import shutil
import subprocess
import sys
import time
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


# ------------------------------------------------------------------ Chromium pages
MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              "--autoplay-policy=no-user-gesture-required"]
WAIT = 90_000  # ms: conditions, not timings
CALL = '[data-own-widget="call"]'
CELL_A = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ann'\ndoc = node.new_doc('call')\n"
    "pathlib.Path('invite.txt').write_text(node.invite(doc))\n"
    "pathlib.Path('invite-bot.txt').write_text(node.invite(doc))",
    "ui.call(doc)",
]
CELL_B = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ben'\n"
    "doc = node.join(pathlib.Path('invite.txt').read_text(), timeout=60)",
    "ui.call(doc)",
]
# the participant tiles a page shows: {peer hex: [media state, frames decoded]}
TILES = f"""() => Object.fromEntries([...document.querySelectorAll(
  '{CALL} [data-own="participant"]')].map(t => [t.getAttribute('data-own-peer'),
  [t.getAttribute('data-own-media'), +t.getAttribute('data-own-frames')]]))"""


def connected(n: int) -> str:
    """JS: exactly ``n`` tiles, every one with media connected and frames decoded."""
    return (f"() => {{ const t = Object.values(({TILES})()); return t.length === {n} && "
            f"t.every(([m, f]) => m === 'connected' && f > 0); }}")


class CallPages:
    """JupyterLab + Chromium inside a fresh namespace; pages A and B show ui.call(doc)."""

    def __init__(self, root: Path, init: dict[str, str] | None = None) -> None:
        self.root = root
        self.init = init or {}  # page name -> script run before the page's own
        self.work = root / "work"
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> CallPages:
        st = self._stack
        try:
            self.ns = st.enter_context(namespace())  # first: everything started inherits it
            self.two = st.enter_context(lab.two_pages(
                self.root, CELL_A, CELL_B,
                lambda _, page: page.wait_for_selector(f"{CALL} [data-own='call-join']",
                                                       timeout=WAIT),
                shots="call", browser_args=MEDIA_ARGS, init=self.init, viewport=(1000, 800)))
        except BaseException:
            st.close()
            raise
        self.pages = self.two.pages
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:
            self.two.screenshot_all(self.two.shots, "call")
            print(f"screenshots of the failure in {self.two.shots}", file=sys.__stderr__)
        self._stack.close()

    def join(self, name: str) -> None:
        self.pages[name].click(f"{CALL} [data-own='call-join']")

    def tiles(self, name: str) -> dict[str, list[Any]]:
        return self.pages[name].evaluate(TILES)

    def bot(self) -> subprocess.Popen[str]:
        """An aiortc participant in its own process (own node, own key)."""
        return subprocess.Popen(
            [sys.executable, "-m", "ownkernel.apps.callbot", "--home", str(self.root / "bot"),
             "--invite-file", str(self.work / "invite-bot.txt"), "--name", "bot"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=self.work)


def read_status(proc: subprocess.Popen[str], pred: Any, timeout: float, what: str) -> Any:
    """Read the bot's JSON lines until ``pred(line)`` holds."""
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"{what}: the bot exited ({proc.poll()})")
        st = json.loads(line)
        if pred(st):
            return st
    raise AssertionError(f"{what}: not within {timeout} s")


@needs_ns
@needs_browser
def test_two_pages_and_a_bot_in_a_call(tmp_path: Path) -> None:
    pytest.importorskip("aiortc", reason="aiortc is in the test extra")
    with CallPages(tmp_path) as cp:
        a, b = cp.pages["A"], cp.pages["B"]
        cp.join("A")
        cp.join("B")
        # each page shows the other's tile, media playing and frames decoded
        a.wait_for_function(connected(1), timeout=WAIT)
        b.wait_for_function(connected(1), timeout=WAIT)
        [peer_of_a] = cp.tiles("A")
        [peer_of_b] = cp.tiles("B")
        assert peer_of_a != peer_of_b
        name_b = a.locator(f"{CALL} [data-own='participant'] .own-call-label").inner_text()
        assert name_b == "ben"
        # an aiortc bot joins: both pages see it, it decodes both pages' video
        bot = cp.bot()
        try:
            ready = read_status(bot, lambda s: s.get("ready"), 120, "bot ready")
            a.wait_for_function(connected(2), timeout=WAIT)
            b.wait_for_function(connected(2), timeout=WAIT)
            assert ready["id"] in cp.tiles("A") and ready["id"] in cp.tiles("B")
            read_status(bot, lambda s: len(s.get("frames", {})) == 2
                        and all(n > 0 for n in s["frames"].values()), 120,
                        "the bot decodes video from both pages")
            # B leaves: A and the bot see it go
            b.click(f"{CALL} [data-own='call-leave']")
            a.wait_for_function(f"() => Object.keys(({TILES})()).length === 1", timeout=WAIT)
            assert list(cp.tiles("A")) == [ready["id"]]
            assert "left" in a.locator(f"{CALL} [data-own='call-status']").inner_text()
            read_status(bot, lambda s: len(s["members"]) == 1, 60, "the bot sees B leave")
            assert cp.tiles("B") == {}
        finally:
            if bot.stdin is not None:
                bot.stdin.close()
            try:
                bot.wait(30)
            except subprocess.TimeoutExpired:
                bot.kill()


DENY_CAMERA = """navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException('denied by the test', 'NotAllowedError'));"""


@needs_ns
@needs_browser
def test_no_camera_permission_is_said_and_the_page_still_receives(tmp_path: Path) -> None:
    with CallPages(tmp_path, init={"A": DENY_CAMERA}) as cp:
        a, b = cp.pages["A"], cp.pages["B"]
        cp.join("A")
        status = a.locator(f"{CALL} [data-own='call-status']")
        a.wait_for_function(f"""() => document.querySelector(
          `{CALL} [data-own='call-status']`).getAttribute('data-own-error') === 'permission'""",
                            timeout=WAIT)
        assert "no camera/microphone permission" in status.inner_text()
        cp.join("B")
        a.wait_for_function(connected(1), timeout=WAIT)  # A sees and hears B
        # B sees A's tile, but A sends no media: never "connected"
        b.wait_for_function(f"() => Object.keys(({TILES})()).length === 1", timeout=WAIT)
        [(media, frames)] = cp.tiles("B").values()
        assert media == "connecting" and frames == 0
