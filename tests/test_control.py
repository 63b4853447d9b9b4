"""The CLI beside a running node: `ownkernel node` serves a control socket in its
profile, and `ownkernel status / docs / new / invite / join` talk to it instead of
failing on the profile lock (real subprocesses, real unix sockets)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cbor2
import clirun
import pytest
from clirun import REPO, own

env = clirun.env


def _read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()),  # type: ignore
                         daemon=True)
    t.start()
    t.join(timeout)
    assert box and box[0], f"no line from {proc.args} within {timeout} s"
    return box[0]


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`ownkernel node` on profile "desk", listening on loopback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownkernel", "node", "--profile", "desk", "--name", "desk",
         "--listen", "tcp://127.0.0.1:0"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = _read_line(proc).split()
        assert ready[0] == "ready", ready
        yield proc, ready
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_cli_talks_to_the_running_node(env: dict[str, str], running: tuple) -> None:
    proc, ready = running
    node_id, address = ready[1], ready[2]
    st = own(env, "status", "--profile", "desk")
    assert st.returncode == 0, st.stderr
    assert f"state:       running (pid {proc.pid};" in st.stdout
    assert f"id:          {node_id}" in st.stdout and f"addresses:   {address}" in st.stdout

    # new: unquoted words make one title; the running node creates it
    made = own(env, "new", "workshop", "notes", "--profile", "desk")
    assert made.returncode == 0, made.stderr
    doc_id = made.stdout.strip()
    assert len(doc_id) == 32 and int(doc_id, 16) >= 0
    docs = own(env, "docs", "--profile", "desk")
    assert docs.returncode == 0 and f"{doc_id[:12]}  owner   {node_id[:8]}  workshop notes" in (
        docs.stdout)

    # invite by (unquoted) title: the token carries the running node's live address
    tok = own(env, "invite", "workshop", "notes", "--profile", "desk")
    assert tok.returncode == 0, tok.stderr
    from ownkernel.node.grants import Invite

    inv = Invite.parse(tok.stdout.strip())
    assert inv.doc.hex() == doc_id and address in inv.addresses

    # another profile joins through the CLI (no node runs there: it opens its own)
    joined = own(env, "join", tok.stdout.strip(), "--profile", "guest", "--timeout", "20")
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.strip() == doc_id

    # errors from the running node are one line, exit 1
    bad = own(env, "invite", "no such doc", "--profile", "desk")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "no document matching 'no such doc'" in bad.stderr and "desk" in bad.stderr


def test_join_through_the_running_node(env: dict[str, str], running: tuple) -> None:
    """`ownkernel join` on a profile whose node runs: that node joins and fetches."""
    from ownkernel import Node

    home = Path(env["OWNKERNEL_HOME"])
    with Node(profile=str(home / "host"), name="host", listen="tcp://127.0.0.1:0") as host:
        doc = host.new_doc(title="plan")
        doc.text("body").insert(0, "step one")
        token = host.invite(doc)
        r = own(env, "join", token, "--profile", "desk", "--timeout", "20")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == doc.hex
        st = own(env, "status", "--profile", "desk")
        assert f"{doc.hex[:12]}  plan" in st.stdout
        assert "host  direct tcp://127.0.0.1:" in st.stdout  # the route it uses


def test_the_socket_is_the_owners_only(env: dict[str, str], running: tuple) -> None:
    from ownkernel.node.control import ControlError, request, socket_path

    profile = Path(env["OWNKERNEL_HOME"]) / "desk"
    path = socket_path(profile)
    assert path.parent == profile / "control"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert request(profile, "ping")["ok"] is True
    with pytest.raises(ControlError, match="unknown control request 'format_disk'"):
        request(profile, "format_disk")
    with pytest.raises(ControlError, match="bad arguments"):
        request(profile, "new", title="x", evil=1)

    # garbage and an oversize request get an error; the node keeps serving
    for payload in (struct.pack(">I", 3) + b"\xff\xff\xff",
                    struct.pack(">I", 10 * 1024 * 1024)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(payload)
        n = struct.unpack(">I", s.recv(4))[0]
        reply = cbor2.loads(s.recv(n))
        s.close()
        assert "bad request" in reply["error"]
    assert request(profile, "ping")["ok"] is True

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Another OS user cannot even reach it (0700 directory): a forked child that
        # became "nobody" (it only connects a socket, then _exits)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.setuid(65534)
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    c.connect(str(path))
                    code = 0
                except PermissionError:
                    code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 3


def test_stale_socket_falls_back_to_the_profile(env: dict[str, str]) -> None:
    """A node that died leaves its socket file: the CLI opens the profile itself."""
    profile = Path(env["OWNKERNEL_HOME"]) / "gone"
    (profile / "control").mkdir(parents=True, mode=0o700)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(profile / "control" / "node.sock"))
    s.close()  # bound, never listening: connecting is refused, as after a crash
    made = own(env, "new", "after", "the", "crash", "--profile", "gone")
    assert made.returncode == 0, made.stderr
    st = own(env, "status", "--profile", "gone")
    assert st.returncode == 0 and "after the crash" in st.stdout


def test_long_profile_paths_use_a_short_socket(tmp_path: Path) -> None:
    from ownkernel import Node
    from ownkernel.node.control import request, socket_path

    deep = tmp_path / ("p" * 60) / ("q" * 60)
    with Node(profile=deep, listen="tcp://127.0.0.1:0") as node:
        path = socket_path(deep)
        assert path.parent != deep / "control" and len(str(path)) < 108
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert request(deep, "ping")["id"] == node.id.hex()
    assert not path.exists() and not (deep / "control" / "where").exists()


def test_a_kernel_like_node_serves_too_and_temp_profiles_do_not(tmp_path: Path) -> None:
    from ownkernel import Node
    from ownkernel.node.control import ControlUnavailable, request

    with Node(profile=tmp_path / "k", listen=None) as node:  # dial-only, like a kernel
        assert request(tmp_path / "k", "status")["id"] == node.id.hex()
    with pytest.raises(ControlUnavailable):
        request(tmp_path / "k", "ping")  # closed: the socket is gone
    with Node(profile=None) as temp:
        assert not (temp.profile / "control").exists()
    with Node(profile=tmp_path / "local", network=False):
        assert not (tmp_path / "local" / "control").exists()


def test_cli_beside_a_running_kernel(tmp_path: Path, env: dict[str, str]) -> None:
    """Every kernel's node serves the control socket: the CLI creates a doc in it."""
    from conftest import kernel_sandbox
    from jupyter_client.manager import KernelManager

    (tmp_path / "k").mkdir()
    with kernel_sandbox(tmp_path / "k") as home:
        env = {**env, "OWNKERNEL_HOME": str(home)}
        km = KernelManager(kernel_name="ownkernel")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            seen: list[str] = []

            def run(code: str) -> str:
                seen.clear()

                def hook(msg: dict) -> None:
                    data = msg["content"].get("data", {})
                    if "text/plain" in data:
                        seen.append(data["text/plain"])
                reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
                assert reply["content"]["status"] == "ok", reply["content"]
                return "".join(seen)
            assert run("node.doc('kernel notes').title") == "'kernel notes'"
            docs = own(env, "docs")  # default profile: the kernel's
            assert docs.returncode == 0, docs.stderr
            assert "kernel notes" in docs.stdout
            made = own(env, "new", "from", "the", "shell")
            assert made.returncode == 0, made.stderr
            assert run("node.open('from the shell').hex") == repr(made.stdout.strip())
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def test_ambiguous_titles_are_listed_with_authors(env: dict[str, str]) -> None:
    from ownkernel import Node

    with Node(profile=Path(env["OWNKERNEL_HOME"]) / "twice", name="tess", network=False) as n:
        one, two = n.new_doc("minutes"), n.new_doc("minutes")
    r = own(env, "invite", "minutes", "--profile", "twice")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "'minutes' is ambiguous: 2 documents match" in r.stderr
    for d in (one, two):
        assert f"{d.hex[:12]} 'minutes' by tess (you)" in r.stderr
    assert own(env, "invite", one.hex[:12], "--profile", "twice").returncode == 0
