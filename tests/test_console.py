"""`ownkernel console`: a real terminal session on the ownkernel kernel (pexpect)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

REPO = Path(__file__).resolve().parents[1]


# "bare-path": PATH holds no jupyter-console script (as outside an activated venv); the
# console must still start, because it runs the module with this interpreter.
@pytest.mark.parametrize("path", ["inherited", "bare-path"])
def test_console_runs_magics_and_exits(tmp_path: Path, path: str) -> None:
    from ownkernel.kernel.install import install

    prefix = tmp_path / "prefix"
    install(prefix=str(prefix))
    env = {
        **os.environ,
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "OWNKERNEL_HOME": str(tmp_path / "home"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "TERM": "dumb",
    }
    if path == "bare-path":
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        env["PATH"] = str(empty)
    env.pop("OWNKERNEL_PROFILE", None)
    env.pop("OWNKERNEL_BOOTSTRAP", None)
    child = pexpect.spawn(sys.executable, ["-m", "ownkernel", "console"], env=env,
                          encoding="utf-8", timeout=60)
    try:
        child.expect(r"In \[1\]")
        child.sendline("%own whoami")
        child.expect(r"short id\s+([0-9a-f]{8})")
        short = child.match.group(1)
        child.expect(r"In \[2\]")
        child.sendline("node.short_id")
        child.expect(short)
        child.expect(r"In \[3\]")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)
    child.close()
    assert child.exitstatus == 0, child.before
