"""Profile directories and the one-process-per-profile lock.

A profile is a directory holding the node's identity key, its SQLite database
and a lock file. Resolution order (first match wins):

1. an explicit path argument (``str``/``PathLike`` containing a path separator,
   or starting with ``.`` or ``~``, or absolute) is used as the profile itself;
2. a bare name (``"default"``, ``"alice"``) is a named profile under the base
   directory, which is ``$OWNKERNEL_HOME`` if set, else the platform's user data
   dir (``~/.local/share/ownkernel`` on Linux);
3. ``None`` means a fresh temporary profile that the caller deletes on close.

The lock is an OS advisory lock (``flock``) on ``<profile>/lock``; the holder
writes its pid into the file so the second opener can say who holds it. The OS
drops the lock when the holder dies (even by SIGKILL), so a stale lock file
never blocks anyone.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from ownkernel.store.errors import ProfileError, ProfileLockedError

__all__ = [
    "DEFAULT_PROFILE",
    "ProfileLock",
    "base_dir",
    "default_profile",
    "make_temp_profile",
    "resolve_profile",
]

DEFAULT_PROFILE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def base_dir() -> Path:
    """Directory holding named profiles: ``$OWNKERNEL_HOME`` or the user data dir."""
    env = os.environ.get("OWNKERNEL_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs  # imported lazily: only needed for named profiles

    return Path(platformdirs.user_data_dir("ownkernel", appauthor=False))


def default_profile() -> Path:
    return base_dir() / DEFAULT_PROFILE


def _is_name(profile: str) -> bool:
    return (
        bool(_NAME.match(profile))
        and os.sep not in profile
        and (os.altsep is None or os.altsep not in profile)
        and not profile.startswith(".")
    )


def resolve_profile(profile: str | os.PathLike[str]) -> Path:
    """Absolute profile directory for a path or a bare profile name (see module doc)."""
    if isinstance(profile, str) and _is_name(profile):
        return (base_dir() / profile).absolute()
    return Path(profile).expanduser().absolute()


def make_temp_profile() -> Path:
    return Path(tempfile.mkdtemp(prefix="ownkernel-profile-"))


def ensure_dir(path: Path) -> None:
    """Create the profile directory (mode 0700: it holds a private key) or explain why not."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ProfileError(
            f"cannot create profile directory {path}: {e.strerror or e}. "
            f"Choose a writable location (Node(profile=...) or OWNKERNEL_HOME)."
        ) from e
    if not path.is_dir():
        raise ProfileError(f"profile path {path} exists but is not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ProfileError(
            f"profile directory {path} is not readable and writable by this user; "
            f"fix its permissions (chmod u+rwx) or choose another profile."
        )


class ProfileLock:
    """Exclusive, non-blocking OS lock on ``<profile>/lock`` for the life of a node."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.path = profile / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ProfileError(f"cannot open lock file {self.path}: {e.strerror or e}") from e
        try:
            _lock(fd)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise ProfileLockedError(str(self.profile), pid) from None
        except OSError as e:
            os.close(fd)
            raise ProfileError(f"cannot lock {self.path}: {e.strerror or e}") from e
        # We hold the lock: record our pid for whoever comes second.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Clear the pid before unlocking so a reader never sees a stale holder.
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> ProfileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None


if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
    import msvcrt

    def _lock(fd: int) -> None:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            raise BlockingIOError(str(e)) from e

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        # flock (not fcntl/lockf): locks belong to the open file description, so a
        # second open in the *same* process conflicts too, and the kernel releases
        # it when the holder dies.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
