"""ownkernel.kernel: OwnKernel (an IPython kernel with a node), `%own` magics, kernelspec.

Imports are lazy so that `ownkernel install` and the CLI don't pay for
ipykernel unless they start a kernel.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OwnKernel", "install"]


def __getattr__(name: str) -> Any:
    if name == "OwnKernel":
        from ownkernel.kernel.kernel import OwnKernel

        return OwnKernel
    if name == "install":
        from ownkernel.kernel.install import install

        return install
    raise AttributeError(f"module 'ownkernel.kernel' has no attribute {name!r}")
