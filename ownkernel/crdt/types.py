"""The interface root types (Text, List, Map, Counter, Log, Sheet) need from
their document.

Roots are created by :class:`~ownkernel.crdt.doc.Doc` and write into it; they
depend on this small protocol rather than on ``Doc`` itself, so the module
graph stays a tree (``doc`` imports the roots, never the reverse). The
underscored members are the CRDT package's internals: shared between its
modules, not part of the public API.
"""

from __future__ import annotations

from typing import Any, Protocol


class DocCore(Protocol):
    """What a root may read and change of the document that holds it."""

    actor: bytes  # this replica's actor id (index 0 of ``_actors``)
    _actors: list[bytes]  # actor table: index -> id
    _aidx: dict[bytes, int]  # id -> index
    _lamport: int  # the last lamport taken
    _pending: list[list[Any]]  # ops of the open transaction (bundle form)
    _pending_runs: bool  # some pending insert holds a PendingRun
    _objs: dict[str, Any]  # roots by key, "<type>:<name>"

    def _local_op(self, op: list[Any]) -> int:
        """Record a one-lamport op of the open transaction; returns its lamport."""
        ...
