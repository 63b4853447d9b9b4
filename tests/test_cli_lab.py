"""`ownkernel lab`: a real JupyterLab on 127.0.0.1 serving the course notebooks with the
ownkernel kernel registered. Jupyter's data, config and runtime dirs are temporary."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OWNKERNEL_", "JUPYTER"))}
    e.update(OWNKERNEL_HOME=str(tmp_path / "home"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
             JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
             JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
             JUPYTER_PATH=str(tmp_path / "data"), IPYTHONDIR=str(tmp_path / "ipython"),
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return e


def test_lab_opens_the_notebooks_with_the_kernel(env: dict[str, str], tmp_path: Path) -> None:
    port, token = _free_port(), "t0k3n"
    args = [sys.executable, "-m", "ownkernel", "lab", "--no-browser", "--ip", "127.0.0.1",
            "--port", str(port), f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # JupyterLab's own rule
    log = open(tmp_path / "lab.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()
            try:
                specs = _get(f"{base}/api/kernelspecs", token)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < end, (tmp_path / "lab.log").read_text()
                time.sleep(0.3)
        assert "ownkernel" in specs["kernelspecs"]
        names = {c["name"] for c in _get(f"{base}/api/contents", token)["content"]}
        assert "01-first-steps.ipynb" in names  # the course, wherever the cwd is
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_lab_on_a_missing_directory_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "ownkernel", "lab", "--notebooks",
                        str(tmp_path / "nope")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no notebooks directory" in r.stderr and "nope" in r.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_lab_as_root_says_how_before_jupyterlab_refuses(env: dict[str, str],
                                                        tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "ownkernel", "lab", "--no-browser"], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "ownkernel lab --allow-root" in r.stderr
