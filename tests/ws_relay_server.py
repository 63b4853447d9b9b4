"""A real ``jupyter server`` on 127.0.0.1 with the ownkernel relay extension enabled.

Used by tests/test_ws_relay.py and benchmarks/ws_relay.py. The extension is
enabled by the very file the wheel installs
(``jupyter-config/jupyter_server_config.d/ownkernel.json``, put on
``JUPYTER_CONFIG_PATH``); every Jupyter and ownkernel directory lives under the
given root, so nothing touches the user's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENABLE = REPO / "jupyter-config" / "jupyter_server_config.d" / "ownkernel.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterRelay:
    """``jupyter server`` subprocess; ``info()`` asks its relay for the ws address."""

    def __init__(self, root: Path, token: str = "test-token", base_url: str = "/user/t/",
                 extra: tuple[str, ...] = ()) -> None:
        self.root, self.token, self.base_url = root, token, base_url
        cfg = root / "jupyter-config" / "jupyter_server_config.d"
        cfg.mkdir(parents=True, exist_ok=True)
        shutil.copy(ENABLE, cfg / ENABLE.name)
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
            JUPYTER_CONFIG_PATH=str(root / "jupyter-config"),
            JUPYTER_CONFIG_DIR=str(root / "jupyter-user-config"),
            JUPYTER_DATA_DIR=str(root / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"),
            OWNKERNEL_HOME=str(root / "ownkernel-home"),
        )
        env.pop("OWNKERNEL_BOOTSTRAP", None)
        self.log_path = root / "jupyter-server.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        for _attempt in range(3):  # a free port can be taken before the server binds it
            self.port = free_port()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser",
                 "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                 "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                 f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={root}", *extra],
                env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=root)
            if self._wait_up(60.0):
                return
            self.stop()
        raise AssertionError(f"jupyter server did not start: see {self.log_path}")

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    def _wait_up(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            if self.get("api/status")[0] == 200:
                return True
            time.sleep(0.2)
        return False

    def get(self, path: str, token: str | None = "", headers: dict[str, str] | None = None
            ) -> tuple[int, Any]:
        """(status, JSON body or None). ``token=""``: ours; None: none at all."""
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"token {token or self.token}"
        req = urllib.request.Request(self.http + path, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                body = r.read()
                return r.status, json.loads(body) if body else None
        except urllib.error.HTTPError as e:
            return e.code, None
        except OSError:
            return 0, None

    def info(self) -> dict[str, Any]:
        status, body = self.get("ownkernel/relay/info")
        assert status == 200, (status, self.log_path)
        return body

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the server stops its extensions
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
