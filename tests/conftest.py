"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OTHER_PERSON = "ownkernel-other-person"  # kernelspec of kernel_sandbox's second user


@contextmanager
def kernel_sandbox(root: Path) -> Iterator[Path]:
    """The "ownkernel" kernelspec installed into ``root/prefix`` (on JUPYTER_PATH),
    nodes under ``root/home``, IPython history under ``root/ipython``: kernels
    started inside never touch the user's Jupyter data or ownkernel profiles.
    Yields the OWNKERNEL_HOME."""
    from ownkernel.kernel.install import install

    prefix = root / "prefix"
    with pytest.MonkeyPatch.context() as mp:
        # The kernel subprocess imports ownkernel from this checkout even when
        # the package is not installed (an editable install works either way).
        mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        mp.setenv("OWNKERNEL_HOME", str(root / "home"))
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        for var in ("OWNKERNEL_PROFILE", "OWNKERNEL_LISTEN", "OWNKERNEL_BOOTSTRAP",
                    "OWNKERNEL_NAME"):
            mp.delenv(var, raising=False)
        install(prefix=str(prefix))
        # A second person on this machine: kernels of one OS user share its user
        # (issue #13: names and colours follow across them), so a test that plays
        # two people starts the second one's notebooks on this kernelspec, whose
        # profiles (and user key) live elsewhere.
        install(prefix=str(prefix), name=OTHER_PERSON, display_name="ownkernel (other person)",
                env={"OWNKERNEL_HOME": str(root / "home-other")})
        yield root / "home"
