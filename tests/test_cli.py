"""The `ownkernel` command, run as a real subprocess (`python -m ownkernel`).

Profiles live under a temporary OWNKERNEL_HOME; nothing touches the user's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import clirun
import pytest
from clirun import REPO, own

SUBCOMMANDS = ["install", "node", "console", "status", "doctor", "invite", "join", "demo",
               "docs", "new", "lab"]


env = clirun.env


def test_help(env: dict[str, str]) -> None:
    r = own(env, "--help")
    assert r.returncode == 0
    for sub in SUBCOMMANDS:
        assert sub in r.stdout


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_subcommand_help(env: dict[str, str], sub: str) -> None:
    r = own(env, sub, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: ownkernel {sub}")


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (["bogus"], "invalid choice: 'bogus'", 2),
        (["node", "--bogus"], "unrecognized arguments: --bogus", 2),
        (["install", "--user", "--sys-prefix"], "not allowed with argument", 2),
        (["invite"], "the following arguments are required: DOC", 2),
        (["status", "--profile", ".hidden"], "invalid profile name '.hidden'", 1),
        (["invite", "no-such-doc", "--profile", "p"], "no document matches 'no-such-doc'", 1),
        (["join", "not-a-token", "--profile", "p"], "cannot join", 1),
    ],
)
def test_errors_are_one_line(env: dict[str, str], args: list[str], words: str, code: int) -> None:
    r = own(env, *args)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ownkernel") and "error: " in lines[0] and words in lines[0]


def test_no_command_prints_help_and_fails(env: dict[str, str]) -> None:
    r = own(env)
    assert r.returncode == 2 and "usage: ownkernel" in r.stderr


def test_demo_converges(env: dict[str, str]) -> None:
    t0 = time.monotonic()
    r = own(env, "demo")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "alice now has:        'Hello, dear everyone!'" in r.stdout
    assert "bob now has:          'Hello, dear everyone!'" in r.stdout
    assert "converged: yes" in r.stdout
    # The networked part: two real nodes on loopback, edits from both sides.
    net = r.stdout.split("now over the network", 1)[1]
    assert "alice listens on      tcp://127.0.0.1:" in net
    assert "bob joined and has:   'Hello world'" in net
    assert net.count("'Hello, dear everyone!'") == 2
    assert r.stdout.rstrip().splitlines()[-1].startswith("converged over the network: yes")
    assert elapsed < 30  # ~1 s normally; the bound only catches a hang
    # Temporary profiles: the demo leaves nothing in OWNKERNEL_HOME.
    assert not Path(env["OWNKERNEL_HOME"]).exists()


def test_install_to_prefix(env: dict[str, str], tmp_path: Path) -> None:
    r = own(env, "install", "--prefix", str(tmp_path / "pfx"), "--name", "ok-test",
            "--display-name", "OK test")
    assert r.returncode == 0, r.stderr
    spec_dir = tmp_path / "pfx" / "share" / "jupyter" / "kernels" / "ok-test"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "OK test" and spec["language"] == "python"
    assert spec["argv"][1:] == ["-m", "ownkernel.kernel", "-f", "{connection_file}"]
    for size in (32, 64):
        assert (spec_dir / f"logo-{size}x{size}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(spec_dir) in r.stdout


def test_status_invite_join(env: dict[str, str], tmp_path: Path) -> None:
    from ownkernel import Node

    home = Path(env["OWNKERNEL_HOME"])
    with Node(profile=str(home / "alice"), listen="tcp://127.0.0.1:0") as node:
        doc = node.new_doc(title="plan")
        doc.text("body").insert(0, "step one")
        doc_id = doc.id.hex()
        alice_id = node.id.hex()
        alice_addr = node.address
        # While a node runs the profile, status asks it (control socket) instead of failing.
        busy = own(env, "status", "--profile", "alice")
        assert busy.returncode == 0, busy.stderr
        assert f"state:       running (pid {os.getpid()};" in busy.stdout
        assert f"addresses:   {alice_addr}" in busy.stdout and "plan" in busy.stdout
    with Node(profile=str(home / "alice"), listen="tcp://127.0.0.1:0", control=False):
        # A node that serves no control socket: status says the profile is in use.
        busy = own(env, "status", "--profile", "alice")
        assert busy.returncode == 0 and "in use" in busy.stdout
    status = own(env, "status", "--profile", "alice")
    assert status.returncode == 0, status.stderr
    assert f"id:          {alice_id}" in status.stdout
    assert f"{doc_id[:12]}  plan" in status.stdout
    # The address where alice's node listened (and will again: sticky port).
    assert f"addresses:   {alice_addr}" in status.stdout
    token = own(env, "invite", "plan", "--profile", "alice")
    assert token.returncode == 0, token.stderr
    assert token.stdout.startswith("own:")
    # Alice offline: join records the invite but cannot fetch; one line, exit 1.
    lonely = own(env, "join", token.stdout.strip(), "--profile", "carol", "--timeout", "1")
    assert lonely.returncode == 1
    assert lonely.stderr.count("\n") == 1 and "no peer sent its content within 1 s" in (
        lonely.stderr)
    # Alice back online (same profile, so the same port): bob joins and fetches.
    with Node(profile=str(home / "alice"), listen="tcp://127.0.0.1:0") as node:
        assert node.address == alice_addr
        joined = own(env, "join", token.stdout.strip(), "--profile", "bob")
        assert joined.returncode == 0, joined.stderr
        assert joined.stdout.strip() == doc_id
    with Node(profile=str(home / "bob"), network=False) as bob:
        assert str(bob.open(doc_id).text("body")) == "step one"


def test_one_shot_commands_do_not_network(env: dict[str, str]) -> None:
    """status and invite read the profile and leave: no sockets, no network thread."""
    from ownkernel import Node

    home = Path(env["OWNKERNEL_HOME"])
    with Node(profile=str(home / "quiet"), network=False) as node:
        node.new_doc(title="memo")
    for args in (["status"], ["invite", "memo"]):
        r = own(env, *args, "--profile", "quiet")
        assert r.returncode == 0, r.stderr
    assert "addresses:   - (never listened)" in own(env, "status", "--profile", "quiet").stdout
    with Node(profile=str(home / "quiet"), network=False) as node:
        # A networked start records the endpoints it bound; none were.
        assert node.store.get_setting("net.endpoints") is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_node_stops_cleanly_on_signal(env: dict[str, str], sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownkernel", "node", "--profile", "headless", "--name", "hl"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # blocks until the node runs (or the process dies)
        assert ready.startswith("ready "), proc.stderr.read() if proc.stderr else ""
        t0 = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=2)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    assert elapsed < 2
    assert f"received {sig.name}, stopping" in stderr and "node closed" in stderr
    # Closed cleanly: the profile lock is free and the identity is the one announced.
    from ownkernel import Node

    with Node(profile=str(Path(env["OWNKERNEL_HOME"]) / "headless")) as node:
        assert ready.split()[1] == node.id.hex()
        assert node.name == "hl"


def _read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """One stdout line, or fail after `timeout` s (a hung child must not hang the suite)."""
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()  # type: ignore
                                                   ), daemon=True)
    t.start()
    t.join(timeout)
    assert box, f"no line from {proc.args} within {timeout} s"
    return box[0]


def test_node_is_a_bootstrap_and_logs_peers(env: dict[str, str]) -> None:
    """`ownkernel node --listen`: peers bootstrap from it; it logs them joining and leaving."""
    from ownkernel import Node

    proc = subprocess.Popen(
        [sys.executable, "-m", "ownkernel", "node", "--profile", "boot", "--name", "boot",
         "--listen", "tcp://127.0.0.1:0"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready = _read_line(proc).split()
        assert ready[0] == "ready" and ready[2].startswith("tcp://127.0.0.1:")
        assert ready[2].endswith("#" + ready[1])
        home = Path(env["OWNKERNEL_HOME"])
        with Node(profile=str(home / "p1"), name="p1", bootstrap=[ready[2]]) as p1:
            p1.connect(ready[2], timeout=15)
            assert [p.name for p in p1.peers if p.online] == ["boot"]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    assert "listening on tcp://127.0.0.1:" in stderr
    assert "peer joined: " in stderr and " p1 (tcp://127.0.0.1:" in stderr
    assert "peer left: " in stderr and "node closed" in stderr


# --- doctor ------------------------------------------------------------------------------

def _spoil(db_path: Path, sql: str, *args: object) -> None:
    import sqlite3

    db = sqlite3.connect(db_path)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_doctor_reports_quarantines_and_the_rest_loads(env: dict[str, str]) -> None:
    from ownkernel import Node
    from ownkernel.store import DB_FILE

    profile = Path(env["OWNKERNEL_HOME"]) / "p"
    with Node(profile=profile, network=False) as node:
        hurt, fine = node.new_doc("hurt"), node.new_doc("fine")
        for word in ("a", "b", "c", "d", "e"):  # one change each: seq 2..6 (1: creation)
            hurt.text("body").insert(len(hurt.text("body")), word)
        fine.text("body").insert(0, "untouched")
        me, hurt_id, fine_id = node.id, hurt.id, fine.id
    db_path = profile / DB_FILE
    r = own(env, "doctor", "p")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "integrity ok" in r.stdout and r.stdout.count(": ok") == 2

    # As after a crash before the node snapshotted: no snapshot, and seq 4 ("c") damaged.
    _spoil(db_path, "DELETE FROM snapshots")
    _spoil(db_path, "UPDATE changes SET blob = x'01deadbeef' WHERE seq = 4 AND doc = "
           "(SELECT n FROM documents WHERE id = ?)", hurt_id)
    before = db_path.read_bytes()
    r = own(env, "doctor", "p")
    assert r.returncode == 1
    out = r.stdout
    assert f"doc {hurt_id.hex()[:12]} 'hurt'" in out and f"by {me.hex()[:8]} seq 4" in out
    assert f"doc {fine_id.hex()[:12]} 'fine'" in out and "--quarantine" in out
    assert db_path.read_bytes() == before  # reporting changes nothing
    with Node(profile=profile, network=False) as node:  # loads around the damage
        assert str(node.open(hurt_id).text("body")) == "ab"
        assert node.stats()["damaged_rows"] == 1

    r = own(env, "doctor", "p", "--quarantine")
    assert r.returncode == 1 and "[quarantined]" in r.stdout
    assert "3 rows quarantined" in r.stdout and "changes made by this node" in r.stdout
    r = own(env, "doctor", "p")
    assert r.returncode == 0, r.stdout
    with Node(profile=profile, network=False) as node:
        assert str(node.open(hurt_id).text("body")) == "ab"
        assert str(node.open(fine_id).text("body")) == "untouched"
        node.open(hurt_id).text("body").insert(2, "X")  # the chain continues at seq 4
        kept = node.store.transact(lambda db: db.execute(
            "SELECT seq FROM quarantine ORDER BY seq").fetchall())
    assert [k[0] for k in kept] == [4, 5, 6]
    with Node(profile=profile, network=False) as node:
        assert str(node.open(hurt_id).text("body")) == "abX"


def test_doctor_on_a_profile_in_use_says_so(env: dict[str, str]) -> None:
    from ownkernel import Node

    with Node(profile=Path(env["OWNKERNEL_HOME"]) / "busy", network=False):
        r = own(env, "doctor", "busy")
    assert r.returncode == 1
    assert "already in use by process" in r.stderr and "stop that node" in r.stderr
    r = own(env, "doctor", "nothing-here")
    assert r.returncode == 1 and "no database" in r.stderr
