"""The database *file*: create it whole, recognise it without writing, know if it was
closed cleanly.

Why this exists (issue #8 hole 9, #15 target 3):

- **Refuse untouched.** Opening a SQLite file and running ``PRAGMA journal_mode=WAL``
  rewrites its header, so a foreign file would be changed before we could say
  "not ours". ``identify`` therefore decides from the 100-byte header (read with
  plain file I/O) and, only when the header cannot tell, from a ``mode=ro``
  connection, which never writes the file (a hot journal makes it fail instead).
- **Created whole.** ``create`` builds the schema in a temporary file and links it
  into place, so a database at the real path is never legitimately empty: a 0-byte
  file is damage (truncation, a failed copy), not a fresh profile.
- **Fast reopen.** A full ``quick_check`` reads every page (79 ms for a 49 MB
  profile). ``Store.close`` leaves a marker recording the file's size and mtime;
  the next open skips the check only if the marker matches and no ``-wal`` file is
  left, i.e. the last user closed cleanly and nobody changed the file since.
  After a crash (SIGKILL, power cut) the ``-wal`` file is still there, so the
  check runs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ownkernel.store.errors import DatabaseError

__all__ = ["APPLICATION_ID", "create", "identify", "marker_path", "read_clean_marker",
           "write_clean_marker"]

APPLICATION_ID = 0x6F776E6B  # "ownk": lets us tell our file from any other SQLite file
_MAGIC = b"SQLite format 3\x00"
_UNTOUCHED = "It was left untouched"


def _refuse(path: Path, what: str, todo: str) -> DatabaseError:
    return DatabaseError(f"database {path} {what}. {_UNTOUCHED}: {todo}")


_RESTORE = ("restore it from a backup, or move the profile directory away to start "
            "afresh (peers can send shared documents again).")


def identify(path: Path) -> None:
    """Raise DatabaseError unless ``path`` (which exists) looks like an ownkernel database.

    Reads only: the file's bytes and mtime are the same afterwards.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as e:
        raise DatabaseError(f"cannot read database {path}: {e.strerror or e}") from e
    if size == 0:
        raise _refuse(
            path, "is empty (0 bytes). ownkernel creates its database whole, so an empty "
            "file means it was truncated or replaced",
            "restore it from a backup. If this profile never held documents, delete the "
            "empty file (keep identity.key) to start with an empty database.")
    if not header.startswith(_MAGIC) or len(header) < 100:
        raise _refuse(path, "is not a SQLite database (corrupt, truncated, or some other "
                      "file)", _RESTORE)
    app = int.from_bytes(header[68:72], "big")
    if app not in (0, APPLICATION_ID):
        raise _refuse(path, f"is a SQLite database of another application (application_id "
                      f"{app:#x}), not ownkernel's", "open a different profile, or move "
                      "this file away if it does not belong there.")
    _check_length(path, header, size)
    if app == APPLICATION_ID:
        return
    # application_id 0: an ownkernel file whose first commit is still only in the WAL
    # (databases made before files were created whole), an empty SQLite file, or a
    # foreign one. Look at the tables over a read-only connection.
    tables = _tables_readonly(path)
    if tables and "schema_version" not in tables:
        raise _refuse(path, f"is a SQLite database without an ownkernel schema (tables: "
                      f"{', '.join(sorted(tables)[:8])})", "open a different profile, or "
                      "move this file away if it does not belong there.")


def _check_length(path: Path, header: bytes, size: int) -> None:
    """A file shorter than its header says lost its tail (truncated copy, full disk)."""
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return  # the WAL may hold pages the main file does not have yet
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    # The in-header page count is valid only when written by a SQLite that also
    # updated the "version-valid-for" field (offset 92) in the same change.
    if pages and header[24:28] == header[92:96] and size < page * pages:
        raise _refuse(path, f"is damaged: truncated ({size} bytes, its header says "
                      f"{page * pages})", _RESTORE)


def _tables_readonly(path: Path) -> set[str]:
    wal = Path(f"{path}-wal")
    # immutable=1: no locks, no -shm/-wal files created, nothing written. Only when a
    # WAL is left over do we need a (read-only) connection that reads it.
    mode = "mode=ro" if wal.exists() and wal.stat().st_size > 0 else "immutable=1"
    uri = f"{path.absolute().as_uri()}?{mode}"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise _refuse(path, f"cannot be opened read-only to identify it ({e})",
                      _RESTORE) from e
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as e:
        raise _refuse(path, f"is corrupt or not an ownkernel database ({e})", _RESTORE) from e
    finally:
        db.close()


def create(path: Path, build: Callable[[sqlite3.Connection], None]) -> None:
    """Create the database at ``path`` whole: ``build`` runs on a temporary file that is
    then linked into place, so a crash leaves either no database or a complete one."""
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover from a crash of this same pid number
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        db = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            # Set before the first table: lets compaction give pages back later.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            build(db)
        finally:
            db.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link, not rename: never replaces a database another opener just made.
            os.link(tmp, path)
        except FileExistsError:
            pass  # someone else created it first; we open theirs
        except OSError:
            if not path.exists():  # file systems without hard links
                os.rename(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        raise DatabaseError(f"cannot create database {path}: {e.strerror or e}. Check that "
                            f"the profile directory is writable and the disk not full.") from e
    except sqlite3.Error as e:
        raise DatabaseError(f"cannot create database {path}: {e}") from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
        with contextlib.suppress(OSError):
            Path(f"{tmp}-journal").unlink()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories
    finally:
        os.close(fd)


# -- clean-shutdown marker ------------------------------------------------------------
def marker_path(path: Path) -> Path:
    return path.with_name(path.name + "-clean")


def _signature(path: Path) -> str:
    st = path.stat()
    return f"ownkernel-clean-v1 {st.st_size} {st.st_mtime_ns}\n"


def write_clean_marker(path: Path) -> None:
    """After a clean close: record the file as it is now (not fsynced: losing the
    marker only costs one integrity check at the next open)."""
    try:
        if Path(f"{path}-wal").exists():
            return  # not folded back (another connection?): let the next open check
        marker_path(path).write_text(_signature(path))
    except OSError:
        pass


def read_clean_marker(path: Path) -> bool:
    """True if the last close was clean and the file is unchanged since; consumes the
    marker either way (from now on the file is in use, i.e. not known clean)."""
    m = marker_path(path)
    try:
        text = m.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        ok = text == _signature(path) and not Path(f"{path}-wal").exists()
    except OSError:
        ok = False
    with contextlib.suppress(OSError):
        m.unlink()
    return ok
