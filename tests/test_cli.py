"""The `ownkernel` command, run as a real subprocess (`python -m ownkernel`).

Profiles live under a temporary OWNKERNEL_HOME; nothing touches the user's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["install", "node", "console", "status", "invite", "join", "demo"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("OWNKERNEL_")}
    e["OWNKERNEL_HOME"] = str(tmp_path / "home")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return e


def own(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownkernel", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


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
    r = own(env, "demo")
    assert r.returncode == 0, r.stderr
    assert "alice now has:        'Hello, dear everyone!'" in r.stdout
    assert "bob now has:          'Hello, dear everyone!'" in r.stdout
    assert r.stdout.rstrip().endswith("converged: yes")


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
    with Node(profile=str(home / "alice")) as node:
        doc = node.new_doc(title="plan")
        doc.text("body").insert(0, "step one")
        doc_id = doc.id.hex()
        alice_id = node.id.hex()
        # While a process holds the profile, status says so instead of failing.
        busy = own(env, "status", "--profile", "alice")
        assert busy.returncode == 0 and "in use" in busy.stdout
    status = own(env, "status", "--profile", "alice")
    assert status.returncode == 0, status.stderr
    assert f"id:          {alice_id}" in status.stdout
    assert f"{doc_id[:12]}  plan" in status.stdout
    token = own(env, "invite", "plan", "--profile", "alice")
    assert token.returncode == 0, token.stderr
    assert token.stdout.startswith("own:")
    joined = own(env, "join", token.stdout.strip(), "--profile", "bob")
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.strip() == doc_id


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
