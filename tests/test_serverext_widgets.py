"""The server extension's widget endpoint (``<base_url>ownkernel/widget/<kernel id>``,
ownkernel/serverext/widgets.py) against a real jupyter server and a real kernel: who
gets in, and that frames pass both ways unchanged, one message per line.

The node's end is played by this test: a line server on a Unix socket, announced by
the pointer file the kernel's node would write next to its connection file (the node's
side, tokens included, is tests/test_ui_channel.py; both together in a browser:
tests/browser/test_direct_browser.py)."""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyterlab")
sys.path.insert(0, str(Path(__file__).parent / "browser"))
import lab  # noqa: E402
from wsclient import exchange  # noqa: E402

from ownkernel.ui.channel import pointer_path  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = lab.Lab(tmp_path_factory.mktemp("jupyter"))
    try:
        yield s
    finally:
        s.stop()


def start_kernel(server: Any) -> str:
    req = urllib.request.Request(f"{server.base}/api/kernels?token={server.token}",
                                 data=json.dumps({"name": "python3"}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return str(json.load(r)["id"])


class LineNode:
    """The node's end: accepts one connection, records its lines, sends ``replies``."""

    def __init__(self, replies: list[bytes]) -> None:
        self.dir = tempfile.mkdtemp(prefix="okw-test-")
        self.path = f"{self.dir}/s"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.got = b""
        self.replies = replies
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            for r in self.replies:
                conn.sendall(r)
            conn.settimeout(10)
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    self.got += chunk
            except OSError:
                pass
        self.done.set()


def ws(url: str, sends: Sequence[str | bytes] = (), wait: float = 5.0
       ) -> tuple[list[str | bytes], bool, int | None]:
    got = exchange(url, list(sends), wait)
    return got.frames, got.closed, got.status


def test_only_jupyter_users_reach_a_kernels_widget_socket(server: Any) -> None:
    kernel = start_kernel(server)
    url = f"ws://127.0.0.1:{server.port}/ownkernel/widget/{kernel}"
    assert ws(url)[2] == 403  # no token
    assert ws(f"{url}?token=wrong")[2] == 403
    # a Jupyter user, but the kernel offers no widget channel (no pointer file): 404
    assert ws(f"{url}?token={server.token}")[2] == 404
    other = f"ws://127.0.0.1:{server.port}/ownkernel/widget/0000-nope?token={server.token}"
    assert ws(other)[2] == 404
    # a pointer to a socket nobody listens on: the WebSocket opens, then closes empty
    runtime = server.root / ".jupyter" / "runtime"
    ptr = Path(pointer_path(str(runtime), kernel))
    ptr.write_text(json.dumps({"socket": str(server.root / "no-such.sock")}))
    got, closed, status = ws(f"{url}?token={server.token}", wait=10.0)
    assert status is None and closed and got == []
    ptr.write_text("not json")
    assert ws(f"{url}?token={server.token}")[2] == 404


def test_frames_pass_both_ways_one_message_per_line(server: Any) -> None:
    kernel = start_kernel(server)
    runtime = server.root / ".jupyter" / "runtime"
    node = LineNode([b'{"t":"snapshot","text":"h\xc3\xa9llo \xf0\x9f\x98\x80"}\n',
                     b'{"t":"deltas"}\n{"t":"cursors"}\n'])
    Path(pointer_path(str(runtime), kernel)).write_text(json.dumps({"socket": node.path}))
    url = f"ws://127.0.0.1:{server.port}/ownkernel/widget/{kernel}?token={server.token}"
    hello = json.dumps({"t": "hello", "token": "x"})
    pretty = '{\n  "t": "push",\n  "c": "é😀"\n}'  # newlines between tokens: one message
    got, closed, status = ws(url, [hello, pretty], wait=3.0)
    assert status is None
    assert got == ['{"t":"snapshot","text":"héllo 😀"}', '{"t":"deltas"}', '{"t":"cursors"}']
    assert node.done.wait(20)
    lines = node.got.decode().split("\n")
    assert lines[-1] == "" and len(lines) == 3
    assert json.loads(lines[0]) == {"t": "hello", "token": "x"}
    assert json.loads(lines[1]) == {"t": "push", "c": "é😀"}
    # a binary frame is refused: the connection closes
    node2 = LineNode([])
    Path(pointer_path(str(runtime), kernel)).write_text(json.dumps({"socket": node2.path}))
    got, closed, status = ws(url, [b"\x00\x01"], wait=10.0)
    assert closed and got == []
    assert node2.done.wait(20) and node2.got == b""
