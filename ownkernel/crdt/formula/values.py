"""What a formula's values may be: error values, and the limits on depth, text and ints.

The semantics of the whole engine are written down in :mod:`ownkernel.crdt.formula`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Cell = tuple[int, int]
Getter = Callable[[int, int], Any]

# Bound on nested sub-expressions: the worst case then needs ~400 Python frames to parse
# and evaluate, well inside the default limit of 1000 whatever the caller's own depth.
MAX_DEPTH = 100
MAX_TEXT = 32767
MAX_INT = 2**53


class FormulaError(Exception):
    """An error value such as ``#DIV/0!``; equal by code. ``get`` callbacks may raise one."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return f"FormulaError({self.code!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FormulaError) and other.code == self.code

    def __hash__(self) -> int:
        return hash(("FormulaError", self.code))


ERRORS: dict[str, FormulaError] = {
    c: FormulaError(c)
    for c in ("#REF!", "#DIV/0!", "#NAME?", "#VALUE!", "#CYCLE!", "#ERROR!", "#NUM!")
}
REF, DIV0, NAME = ERRORS["#REF!"], ERRORS["#DIV/0!"], ERRORS["#NAME?"]
VALUE, CYCLE, NUM = ERRORS["#VALUE!"], ERRORS["#CYCLE!"], ERRORS["#NUM!"]

