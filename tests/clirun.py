"""Running the `ownkernel` command as a real subprocess (`python -m ownkernel`) for
test_cli.py and test_control.py: profiles under a temporary OWNKERNEL_HOME, none of
the caller's OWNKERNEL_* settings, this checkout first on PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Adopted by a module as ``env = clirun.env``: the environment for `own`."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("OWNKERNEL_")}
    e["OWNKERNEL_HOME"] = str(tmp_path / "home")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return e


def own(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownkernel", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
