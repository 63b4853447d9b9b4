"""ownkernel: a local-first peer-to-peer node that lives in your Jupyter kernel."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Node", "__version__"]


def __getattr__(name: str) -> Any:
    # Import lazily so `import ownkernel.crdt` stays free of sockets and threads.
    if name == "Node":
        from ownkernel.node import Node

        return Node
    raise AttributeError(f"module 'ownkernel' has no attribute {name!r}")
