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


class CorruptRowError(DatabaseError):
    """One stored change or snapshot cannot be read back (damaged on disk).

    Names the file, the doc, the author and the seq so that the damage is scoped:
    only that row and what depends on it are affected; ``ownkernel doctor
    --quarantine`` moves it aside so the rest of the document loads.
    """

    def __init__(self, path: object, doc: bytes, actor: bytes | None, seq: int | None,
                 what: str, reason: str) -> None:
        self.path = str(path)
        self.doc = doc
        self.actor = actor
        self.seq = seq
        self.what = what  # "change" | "snapshot" | "document"
        self.reason = reason
        where = f"document {doc.hex()}"
        if actor is not None:
            where += f", author {actor.hex()}"
        if seq is not None:
            where += f", seq {seq}"
        super().__init__(
            f"damaged {what} in database {self.path} ({where}): {reason}. Only this "
            f"{what} and what depends on it are affected; run `ownkernel doctor "
            f"--quarantine` on the profile (with no node using it) to set it aside, then "
            f"peers can send it again."
        )


class StoreFullError(DatabaseError):
    """The disk (or the database's size limit) is full: the write was not stored."""

    def __init__(self, path: object, detail: str = "") -> None:
        self.path = str(path)
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"disk full: {self.path}: this write could not be stored and was rolled "
            f"back{extra}; nothing acknowledged was lost. Free disk space, then retry."
        )
