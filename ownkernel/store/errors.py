"""Errors of the storage layer.

Every error names the file or directory concerned and says what to do, because
the person reading it is usually a notebook user, not the author of this code.
Nothing in this package deletes or overwrites user data to "recover" silently.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class for profile, identity and database problems."""


class ProfileLockedError(StoreError):
    """Another process (or another Node in this process) holds the profile."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"profile {path} is already in use by {who}. Close the other node "
            f"(node.close() or exit that process), or open a different profile "
            f"(Node(profile='other-name') or set OWNKERNEL_HOME)."
        )


class ProfileError(StoreError):
    """The profile directory cannot be created, read or written."""


class IdentityError(StoreError):
    """The identity key file is missing, unreadable or does not match the database."""


class DatabaseError(StoreError):
    """The SQLite file is corrupt, truncated, or from an unknown (newer) schema."""
