"""A1 addresses: ``"B3"`` <-> ``(row, col)``, columns ``"A"`` <-> 0."""

from __future__ import annotations

import re

from .values import Cell


def col_to_index(col: str) -> int:
    """``"A"`` -> 0, ``"Z"`` -> 25, ``"AA"`` -> 26 (case-insensitive)."""
    if not isinstance(col, str) or not col or not (col.isascii() and col.isalpha()):
        raise ValueError(f"bad column: {col!r}")
    n = 0
    for ch in col.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def index_to_col(index: int) -> str:
    """0 -> ``"A"``, 26 -> ``"AA"``."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"bad column index: {index!r}")
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


_A1 = re.compile(r"(\$?)([A-Za-z]+)(\$?)([0-9]+)", re.ASCII)


def parse_a1(address: str) -> Cell:
    """``"B3"`` or ``"$b$3"`` -> ``(2, 1)`` as (row, col); ValueError if malformed."""
    m = _A1.fullmatch(address) if isinstance(address, str) else None
    if m is None or int(m.group(4)) < 1:
        raise ValueError(f"bad cell address: {address!r}")
    return int(m.group(4)) - 1, col_to_index(m.group(2))


def to_a1(row: int, col: int) -> str:
    """``(2, 1)`` -> ``"B3"``."""
    if not isinstance(row, int) or row < 0:
        raise ValueError(f"bad row index: {row!r}")
    return f"{index_to_col(col)}{row + 1}"

