"""How rows are stored and read back, and how SQLite failures are told apart (used by
sqlite.py): the row types, change bodies, version vectors.

Change bodies are stored deflated with a preset dictionary holding the author's
id (which every change repeats), about half the size for typing; the first byte
says how (0 raw, 1 deflate).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cbor2

from ownkernel.store.errors import CorruptRowError, DatabaseError

__all__ = ["DOC_COLS", "ChangeRow", "DocRow", "Head", "decode_version", "doc_row", "is_corrupt",
           "is_full", "pack_body", "unpack_body"]


class DocRow(NamedTuple):
    """One ``documents`` row. A NamedTuple, not a frozen dataclass: listing 1,000 docs
    builds 1,000 of these at every open, and a frozen dataclass costs 3x more each."""

    id: bytes
    title: str
    created: float
    owner: bytes
    capability: str
    encrypted: bool
    key: bytes | None
    access: Any
    inviter: bytes | None
    addresses: list[str]
    token: bytes | None


@dataclass
class Head:
    """Newest link of one author's chain in one doc, and its newest signature."""

    seq: int
    hash: bytes
    sig: bytes | None = None
    sig_seq: int = 0


@dataclass(frozen=True)
class ChangeRow:
    actor: bytes
    seq: int
    blob: bytes
    auth: bytes | None = None


DOC_COLS = (
    "id, title, created, owner, capability, encrypted, key, access, inviter, addresses, token"
)


_EMPTY_LIST = cbor2.dumps([])


def doc_row(r: Sequence[Any], path: Path) -> DocRow:
    try:
        access = cbor2.loads(r[7]) if r[7] else None
        addresses = [] if not r[9] or r[9] == _EMPTY_LIST else cbor2.loads(r[9])
    except Exception as e:  # cbor2 raises many types on garbage
        raise CorruptRowError(path, bytes(r[0]), None, None, "document",
                              f"its access list or addresses are not CBOR ({e})") from e
    return DocRow(
        id=bytes(r[0]), title=r[1], created=r[2], owner=bytes(r[3]), capability=r[4],
        encrypted=bool(r[5]), key=bytes(r[6]) if r[6] is not None else None,
        access=access, inviter=bytes(r[8]) if r[8] is not None else None,
        addresses=addresses, token=bytes(r[10]) if r[10] is not None else None,
    )


_RAW, _DEFLATE = b"\x00", b"\x01"
_ZDICT_COMMON = b"t:bodym:_accessm:_metatitleownerrole:revoked:token:g:chatl:m:n:s:r:c:"


def _zdict(actor: bytes) -> bytes:
    return _ZDICT_COMMON + actor


def pack_body(actor: bytes, body: bytes) -> bytes:
    """Stored form of a change body: deflated with the author as dictionary, if smaller."""
    zdict = _zdict(actor)
    # A window just big enough for dictionary + body, and a small hash table for a
    # small body: zlib allocates (and the kernel zeroes) both per stream, which cost
    # ~15-250 us per keystroke-sized change at the defaults (32 KB window, memLevel
    # 9) for the same output. Any window inflates with the reader's 32 KB one.
    n = len(body) + len(zdict)
    wbits = min(15, max(9, n.bit_length()))
    co = zlib.compressobj(6, zlib.DEFLATED, -wbits, 1 if n < 4096 else 8,
                          zlib.Z_DEFAULT_STRATEGY, zdict)
    z = co.compress(body) + co.flush()
    return _DEFLATE + z if len(z) < len(body) else _RAW + body


def unpack_body(actor: bytes, stored: bytes) -> bytes:
    kind, data = stored[:1], stored[1:]
    if kind == _RAW:
        return data
    if kind == _DEFLATE:
        try:
            do = zlib.decompressobj(-15, _zdict(actor))
            return do.decompress(data) + do.flush()
        except zlib.error as e:
            raise DatabaseError(f"a stored change is damaged ({e})") from e
    raise DatabaseError("a stored change has an unknown encoding")


def decode_version(raw: bytes) -> dict[bytes, int]:
    try:
        v = cbor2.loads(raw)
    except Exception as e:  # cbor2 raises many types on garbage
        raise ValueError(f"its version vector is not CBOR ({e})") from None
    if not isinstance(v, dict) or not all(
            isinstance(k, bytes) and len(k) == 32 and type(n) is int and n >= 0
            for k, n in v.items()):
        raise ValueError("its version vector is not a map of 32-byte author ids to seqs")
    return v


def is_corrupt(e: sqlite3.Error) -> bool:
    """SQLITE_CORRUPT / SQLITE_NOTADB: damaged pages, not a usage error."""
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return (code & 0xFF) in (11, 26)
    text = str(e).lower()
    return "malformed" in text or "not a database" in text


def is_full(e: sqlite3.Error) -> bool:
    """SQLITE_FULL: disk full, or the database reached ``max_page_count``."""
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return (code & 0xFF) == 13
    return "full" in str(e).lower()  # 3.10: "database or disk is full"
