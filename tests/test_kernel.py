"""OwnKernel through jupyter_client: real kernel processes, real profiles on disk.

Every kernel here runs with a temporary OWNKERNEL_HOME, IPYTHONDIR and
JUPYTER_PATH (the kernelspec is installed into a temporary prefix), so the
real user's profiles and Jupyter data are never touched. The networked tests
give every kernel its own OWNKERNEL_HOME and let its node listen on
127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import kernel_sandbox
from jupyter_client.manager import KernelManager

from ownkernel.kernel.cells import apply_text_diff
from ownkernel.kernel.settings import SettingsError, load_settings, profile_candidates

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60


# -- helpers ---------------------------------------------------------------------
@dataclass
class Run:
    reply: dict[str, Any]
    stdout: str = ""
    stderr: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)  # execute_result data

    @property
    def status(self) -> str:
        return str(self.reply["status"])

    @property
    def text(self) -> str:
        return "\n".join(r.get("text/plain", "") for r in self.results)

    def next_input(self) -> str | None:
        for p in self.reply.get("payload", []):
            if p.get("source") == "set_next_input":
                return str(p["text"])
        return None


class Kernel:
    def __init__(self, **env: str) -> None:
        self.km = KernelManager(kernel_name="ownkernel")
        self.km.start_kernel(env={**os.environ, **env})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def run(self, code: str, ok: bool = True) -> Run:
        out = Run(reply={})

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    out.stdout += content["text"]
                else:
                    out.stderr += content["text"]
            elif kind == "execute_result":
                out.results.append(content["data"])

        reply = self.kc.execute_interactive(code, timeout=TIMEOUT, output_hook=hook)
        out.reply = reply["content"]
        if ok:
            assert out.status == "ok", (code, out.reply, out.stderr)
        return out

    def value(self, expr: str) -> Any:
        """A JSON-able value computed in the kernel."""
        run = self.run(f"import json as _j; print(_j.dumps({expr}))")
        return json.loads(run.stdout.strip().splitlines()[-1])

    def restart(self) -> None:
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)

    def wait_for(self, cond: str, timeout: float = 20.0) -> None:
        """Poll the Python expression `cond` inside the kernel until it is true (bounded)."""
        code = (f"import time as _t\n_end = _t.monotonic() + {timeout}\n"
                f"while not ({cond}) and _t.monotonic() < _end:\n    _t.sleep(0.05)\n"
                f"print('WAITED', bool({cond}))")
        out = self.run(code).stdout
        assert "WAITED True" in out, f"not true within {timeout} s: {cond}"

    def token(self, line: str) -> str:
        """The invite token a `%own invite …` line prints."""
        text = self.run(f"%own {line}").results[0]["text/plain"]
        return str(text.split(": ", 1)[1].strip())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with kernel_sandbox(tmp_path_factory.mktemp("kernels")) as h:
        yield h


@pytest.fixture(scope="module")
def two_kernels(home: Path) -> Iterator[tuple[Kernel, Kernel]]:
    a = Kernel()
    # Let A take "default" first so the assignment below is deterministic.
    assert a.value("node.short_id")
    b = Kernel()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


# -- pure pieces (no kernel) -------------------------------------------------------
def test_settings_precedence(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"name": "from-home", "relay": True}))
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "config.json").write_text(json.dumps({"name": "from-profile",
                                                              "bootstrap": ["tcp://a:1"]}))
    env = {"OWNKERNEL_HOME": str(tmp_path), "OWNKERNEL_PROFILE": "lab",
           "OWNKERNEL_BOOTSTRAP": "tcp://b:2, tcp://c:3"}
    s = load_settings(env)
    assert (s.profile, s.explicit_profile, s.name, s.relay) == ("lab", True, "from-profile", True)
    assert s.bootstrap == ["tcp://b:2", "tcp://c:3"]  # env beats config files
    assert s.profile_dir() == tmp_path / "lab"
    assert profile_candidates(s) == ["lab"]  # explicit: no silent fallback
    implicit = load_settings({"OWNKERNEL_HOME": str(tmp_path)})
    assert profile_candidates(implicit)[:3] == ["default", "default-2", "default-3"]


def test_settings_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SettingsError, match="config.json"):
        load_settings({"OWNKERNEL_HOME": str(tmp_path)})
    (tmp_path / "config.json").write_text(json.dumps({"colour": "blue"}))
    with pytest.raises(SettingsError, match="unknown setting.*colour"):
        load_settings({"OWNKERNEL_HOME": str(tmp_path)})


def test_cell_diffs_merge_concurrent_edits() -> None:
    """Two notebooks edit different lines of one shared cell at once: both edits survive."""
    from ownkernel.crdt import Doc

    base = "import math\nx = 1\ny = 2\nprint(x + y)\n"
    a, b = Doc(actor=b"a"), Doc(actor=b"b")
    a.text("source").insert(0, base)
    a.commit()
    b.apply(a.changes())
    apply_text_diff(a.text("source"), base, base.replace("x = 1", "x = 10"))
    apply_text_diff(b.text("source"), base, base.replace("print(x + y)", "print(x * y)"))
    a.commit()
    b.commit()
    a.apply(b.changes(since=a.version))
    b.apply(a.changes(since=b.version))
    merged = "import math\nx = 10\ny = 2\nprint(x * y)\n"
    assert str(a.text("source")) == str(b.text("source")) == merged


def test_profile_fallback_in_process(tmp_path: Path) -> None:
    """The default profile held by another Node: the host opens default-2."""
    from ownkernel import Node
    from ownkernel.kernel.nodehost import NodeHost

    settings = load_settings({"OWNKERNEL_HOME": str(tmp_path)})
    with Node(profile=str(tmp_path / "default")):
        host = NodeHost(settings)
        host.start()
        try:
            node = host.wait(30)
            assert host.profile == "default-2"
            assert Path(node.profile) == tmp_path / "default-2"
            assert any("in use" in text for _, text in host.events)
        finally:
            host.close()
    assert host.state == "closed"


# -- kernels -------------------------------------------------------------------------
def test_two_kernels_get_distinct_profiles(two_kernels: tuple[Kernel, Kernel]) -> None:
    a, b = two_kernels
    ids = [k.value("node.id.hex()") for k in (a, b)]
    assert ids[0] != ids[1]
    whoami_a = a.run("%own whoami").text
    whoami_b = b.run("%own whoami").text
    assert "profile   default\n" in whoami_a + "\n"
    assert "profile   default-2" in whoami_b
    assert ids[0] in whoami_a and ids[1] in whoami_b
    # Once ready, `node` is the Node itself, not the start-up proxy.
    assert a.value("type(node).__name__") == "Node"


def test_status_and_help(two_kernels: tuple[Kernel, Kernel]) -> None:
    a, _ = two_kernels
    status = a.run("%own status").text
    assert "state        ready" in status and "default" in status
    assert "docs" in status
    html = a.run("%own status").results[0].get("text/html", "")
    assert "<table" in html and "ready" in html
    help_text = a.run("%own help").text
    for cmd in ("status", "whoami", "peers", "connect", "pull", "cells", "%%shared"):
        assert cmd in help_text
    page = a.run("%own?").reply["payload"]
    assert page and "%own COMMAND" in page[0]["data"]["text/plain"]


def test_magic_errors_are_one_line(two_kernels: tuple[Kernel, Kernel]) -> None:
    a, _ = two_kernels
    for code, words in [
        ("%own frobnicate", "unknown command 'frobnicate'"),
        ("%own open no-such-doc", "no document matches 'no-such-doc'"),
        ("%own export", "the following arguments are required"),
        ("%own pull nothing-here", "no shared cell named 'nothing-here'"),
        ("%own new", "a TITLE is required"),
    ]:
        run = a.run(code, ok=False)
        assert run.status == "error", code
        assert run.reply["ename"] == "UsageError", code
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (code, run.stderr)


def test_docs_new_open_invite_export(two_kernels: tuple[Kernel, Kernel], tmp_path: Path) -> None:
    a, _ = two_kernels
    a.run("d = %own new Field notes\nd.text('body').insert(0, 'hello from a')")
    assert "Field notes" in a.run("%own docs").text
    opened = a.run("doc = %own open 'Field notes'\nstr(doc.text('body'))")
    assert opened.text == "'hello from a'"
    token = a.run("%own invite 'Field notes' --read").results[0]["text/plain"]
    assert "invite (read-only): " in token and len(token) > 40
    target = tmp_path / "notes.md"
    a.run(f"%own export 'Field notes' md {target}")
    assert "hello from a" in target.read_text()


def test_shared_cell_store_run_pull(two_kernels: tuple[Kernel, Kernel]) -> None:
    a, _ = two_kernels
    run = a.run("%%shared answer\nx = 6 * 7\nx")
    assert run.text == "42"  # ran as a normal cell: Out[] shown
    pulled = a.run("%own pull answer").next_input()
    assert pulled == "%%shared answer\nx = 6 * 7\nx"
    # Edit and store again: the doc's text follows.
    a.run("%%shared answer\nx = 6 * 8  # fixed\nx")
    assert a.run("%own pull answer").next_input() == "%%shared answer\nx = 6 * 8  # fixed\nx"
    cells = a.run("%own cells").text
    assert "answer" in cells and "no" in cells  # output not shared by default
    # An error in a shared cell fails the cell like any other (run-all stops).
    bad = a.run("%%shared broken\n1 / 0", ok=False)
    assert bad.status == "error" and bad.reply["ename"] == "ZeroDivisionError"
    assert a.run("%own pull broken").next_input() == "%%shared broken\n1 / 0"


def test_shared_cell_with_output(two_kernels: tuple[Kernel, Kernel]) -> None:
    a, _ = two_kernels
    run = a.run("%%shared greeting --with-output\nprint('hi there')")
    assert "hi there" in run.stdout  # still shown to the user
    pull = a.run("%own pull greeting")
    assert pull.next_input() == "%%shared greeting --with-output\nprint('hi there')"
    assert "shared output of greeting:\nhi there" in pull.stdout


def test_node_unavailable_is_shown_not_fatal(home: Path) -> None:
    """An explicitly chosen profile held by another process: the kernel still works."""
    from ownkernel import Node

    with Node(profile=str(home / "busy")):
        k = Kernel(OWNKERNEL_PROFILE="busy")
        try:
            assert k.run("1 + 1").text == "2"
            status = k.run("%own status").text
            assert "state        failed" in status and "in use" in status
            err = k.run("node.id", ok=False)
            assert err.reply["ename"] == "NodeUnavailable"
            assert "in use" in err.reply["evalue"]
        finally:
            k.stop()


def test_broken_config_is_shown_not_fatal(home: Path, tmp_path: Path) -> None:
    other_home = tmp_path / "home"
    other_home.mkdir()
    (other_home / "config.json").write_text("{oops")
    k = Kernel(OWNKERNEL_HOME=str(other_home))
    try:
        assert k.run("6 * 7").text == "42"
        status = k.run("%own status").text
        assert "state        failed" in status and "config.json is not valid JSON" in status
    finally:
        k.stop()


def test_restart_keeps_data_and_shutdown_releases_profile(home: Path) -> None:
    k = Kernel(OWNKERNEL_PROFILE="restart")
    try:
        node_id = k.value("node.id.hex()")
        k.run("d = node.new_doc(title='kept')\nd.text('body').insert(0, 'still here')")
        k.restart()
        assert k.value("node.id.hex()") == node_id
        assert k.value("[str(d.text('body')) for d in node.docs() if d.title == 'kept']") == [
            "still here"
        ]
    finally:
        k.stop()
    # Shutdown closed the node: the profile is free and holds the data.
    from ownkernel import Node

    with Node(profile=str(home / "restart")) as node:
        assert node.id.hex() == node_id
        assert [d.title for d in node.docs()] == ["kept"]


def test_pip_install_makes_kernelspec_appear(tmp_path: Path) -> None:
    """`pip install` alone (no `ownkernel install`) puts the kernelspec in the venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    if sys.prefix != sys.base_prefix:
        # Run from a venv, --system-site-packages exposes the base interpreter's
        # packages, not ours: point the scratch venv at our dependencies too
        # (it still imports its own pip-installed ownkernel, which comes first).
        import sysconfig

        probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        site = subprocess.run([str(py), "-c", probe], check=True, capture_output=True,
                              text=True).stdout.strip()
        Path(site, "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("JUPYTER_PATH", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
                   check=True, timeout=300, env=env, cwd=tmp_path)
    # The venv's own Python asks (a `jupyter` on PATH may belong to another env).
    listing = subprocess.run(
        [str(py), "-m", "jupyter_client.kernelspecapp", "list", "--json"],
        check=True, timeout=60, env=env, capture_output=True, text=True, cwd=tmp_path,
    )
    specs = json.loads(listing.stdout)["kernelspecs"]
    assert "ownkernel" in specs, sorted(specs)
    resource_dir = Path(specs["ownkernel"]["resource_dir"])
    assert resource_dir.is_relative_to(venv)
    assert specs["ownkernel"]["spec"]["display_name"] == "ownkernel (Python 3)"
    assert specs["ownkernel"]["spec"]["argv"][1:3] == ["-m", "ownkernel.kernel"]
    assert (resource_dir / "logo-64x64.png").read_bytes().startswith(b"\x89PNG")
    # The installed package (not this checkout) runs, console script included.
    demo = subprocess.run([str(bindir / "ownkernel"), "demo"], check=True, timeout=60, env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert "converged: yes" in demo.stdout


# -- two networked kernels ---------------------------------------------------------
def net_kernel(root: Path, name: str, **env: str) -> Kernel:
    """A kernel with a home of its own, its node listening on loopback only."""
    return Kernel(OWNKERNEL_HOME=str(root / name), OWNKERNEL_NAME=name,
                  OWNKERNEL_LISTEN="tcp://127.0.0.1:0", **env)


@pytest.fixture(scope="module")
def net_pair(home: Path) -> Iterator[tuple[Kernel, Kernel]]:
    root = home.parent / "net"
    a = net_kernel(root, "ann")
    try:
        b = net_kernel(root, "ben")
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


ONLINE = "any(p.name == {!r} and p.online for p in node.peers)"


def test_doc_edited_in_one_kernel_shows_up_in_the_other(
        net_pair: tuple[Kernel, Kernel]) -> None:
    a, b = net_pair
    a.run("d = %own new Plan\nd.text('body').insert(0, 'from A')")
    token = a.token("invite Plan")
    assert token.startswith("own:")
    # join connects to the inviter (the token carries A's address) and waits
    # for the content, so the very next cell sees it.
    b.run(f"d = %own join {token}")
    assert b.value("str(d.text('body'))") == "from A"
    b.run("d.text('body').insert(6, ' + B')")
    a.wait_for("str(d.text('body')) == 'from A + B'")
    peers = a.run("%own peers").text
    assert "ben" in peers and "yes" in peers and "tcp://127.0.0.1:" in peers
    status = b.run("%own status").text
    assert "listening    tcp://127.0.0.1:" in status
    assert "peers        1 online, 1 known" in status
    log = a.run("%own log").text
    assert "peer joined: ben (" in log and "to 'Plan' (" in log and "from ben (" in log
    # Reprs stay readable in a notebook.
    html = a.run("%own peers").results[0]["text/html"]
    assert "<table" in html and "ben" in html


def test_shared_cell_pulled_in_the_other_kernel(net_pair: tuple[Kernel, Kernel]) -> None:
    """A shares a cell; B joins its document by invite and pulls; B's edit reaches A."""
    a, b = net_pair
    a.run("%%shared greet\nmsg = 'hi from A'\nmsg")
    token = a.token("invite greet")
    joined = b.run(f"%own join {token}")
    assert "shared cell 'greet': `%own pull greet`" in joined.stdout
    assert b.run("%own pull greet").next_input() == "%%shared greet\nmsg = 'hi from A'\nmsg"
    assert b.run("%%shared greet\nmsg = 'hi from B'\nmsg").text == "'hi from B'"
    a.run("from ownkernel.kernel import cells")
    a.wait_for("'hi from B' in cells.cell_source(cells.find_cell(node, 'greet'))")
    assert a.run("%own pull greet").next_input() == "%%shared greet\nmsg = 'hi from B'\nmsg"
    assert "ben" in a.run("%own cells").text  # last changed by B's node


def test_restart_keeps_data_and_reconnects(net_pair: tuple[Kernel, Kernel]) -> None:
    a, b = net_pair
    b_id = b.value("node.id.hex()")
    b.restart()
    # A saw B leave (its node said goodbye on shutdown), then come back.
    a.wait_for(ONLINE.format("ben"), timeout=30)
    log = a.run("%own log 50").text
    assert log.index("peer left: ben") < log.rindex("peer joined: ben")
    assert b.value("node.id.hex()") == b_id
    b.run("d = %own open Plan")
    assert b.value("str(d.text('body'))") == "from A + B"  # kept across the restart
    a.run("d.text('body').insert(0, '> ')")  # and syncing again
    b.wait_for("str(d.text('body')) == '> from A + B'")


def test_bootstrap_node_then_sigterm_kernels_keep_syncing(home: Path) -> None:
    """`ownkernel node` introduces two kernels, then goes away; they carry on."""
    root = home.parent / "boot"
    env = {**os.environ, "OWNKERNEL_HOME": str(root / "boot")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownkernel", "node", "--name", "boot",
         "--listen", "tcp://127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    kernels: list[Kernel] = []
    try:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()),  # type: ignore
                                  daemon=True)
        reader.start()
        reader.join(30)
        assert box and box[0].startswith("ready "), "ownkernel node did not start"
        boot_addr = box[0].split()[2]
        for name in ("cat", "dan"):
            kernels.append(net_kernel(root, name, OWNKERNEL_BOOTSTRAP=boot_addr))
        c, d = kernels
        # Each knows only the bootstrap; its address book introduces them.
        c.wait_for(ONLINE.format("dan"), timeout=30)
        # A token without addresses: D can only reach C through that introduction.
        c.run("doc = node.new_doc(title='Via boot')\ndoc.text('body').insert(0, 'c1')\n"
              "tok = node.invite(doc, addresses=[])")
        token = c.value("tok")
        d.run(f"doc = %own join {token}")
        assert d.value("str(doc.text('body'))") == "c1"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        c.wait_for("not " + ONLINE.format("boot"))
        assert "peer left: boot" in c.run("%own log 50").text
        c.run("doc.text('body').insert(2, ' c2')")
        d.wait_for("str(doc.text('body')) == 'c1 c2'")
        d.run("doc.text('body').insert(0, 'd1 ')")
        c.wait_for("str(doc.text('body')) == 'd1 c1 c2'")
    finally:
        for k in kernels:
            k.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "peer joined: " in stderr and " cat (tcp://127.0.0.1:" in stderr, stderr
    assert " dan (tcp://127.0.0.1:" in stderr and "node closed" in stderr, stderr


def test_unreachable_bootstrap_does_not_delay_or_fail(home: Path) -> None:
    """No peer reachable is a normal state: the kernel and its node start as usual."""
    import socket

    with socket.socket() as s:  # a loopback port that nobody listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nobody = f"tcp://127.0.0.1:{port}#{'ab' * 32}"
    k = net_kernel(home.parent / "lonely", "solo", OWNKERNEL_BOOTSTRAP=nobody)
    try:
        t0 = time.monotonic()
        assert k.run("1 + 1").text == "2"
        assert k.value("node.name") == "solo"
        assert time.monotonic() - t0 < 10  # node start is not held up by the dial
        status = k.run("%own status").text
        assert "state        ready" in status and "peers        0 online" in status
        assert "bootstrap    " + nobody in status
        assert "no peers yet" in k.run("%own peers").text  # a peer is one that answered
    finally:
        k.stop()
