"""Formula syntax: the AST, the tokenizer, the recursive-descent parser, and what
cells a formula names (``references`` for dependencies, ``ref_groups`` for re-anchoring)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

from .address import col_to_index, index_to_col
from .values import MAX_DEPTH, MAX_INT, Cell

# --- AST -----------------------------------------------------------------------------------



@dataclass(frozen=True, slots=True)
class Num:
    value: int | float


@dataclass(frozen=True, slots=True)
class Str:
    value: str


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool


@dataclass(frozen=True, slots=True)
class Error:
    """An error literal (``=#REF!``) or a parse failure (code ``#ERROR!``, reason in detail)."""

    code: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Ref:
    row: int
    col: int
    abs_row: bool = False  # kept for copy/fill adjustment; evaluation ignores them
    abs_col: bool = False


@dataclass(frozen=True, slots=True)
class Range:
    start: Ref
    end: Ref

    def bounds(self) -> tuple[int, int, int, int]:
        r1, r2 = sorted((self.start.row, self.end.row))
        c1, c2 = sorted((self.start.col, self.end.col))
        return r1, c1, r2, c2


@dataclass(frozen=True, slots=True)
class Unary:
    """``op`` is ``"-"`` or ``"%"`` applied ``count`` times (runs are folded to bound depth)."""

    op: str
    count: int
    operand: Node


@dataclass(frozen=True, slots=True)
class Chain:
    """Left-associative run of same-precedence operators, kept flat so ``1+1+...`` is not deep."""

    first: Node
    rest: tuple[tuple[str, Node], ...]


@dataclass(frozen=True, slots=True)
class Func:
    name: str
    args: tuple[Node, ...]


Node = Union[Num, Str, Bool, Error, Name, Ref, Range, Unary, Chain, Func]


# --- tokenizer and parser ------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<str>"(?:[^"]|"")*")
    |(?P<err>\#(?:REF!|DIV/0!|NAME\?|VALUE!|CYCLE!|ERROR!|NUM!))
    |(?P<word>[A-Za-z_$][A-Za-z0-9_.$]*)
    |(?P<op><=|>=|<>|[-+*/^&=<>%(),:])""",
    re.VERBOSE | re.ASCII | re.IGNORECASE,
)
_REF_WORD = re.compile(r"(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7})", re.ASCII)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*", re.ASCII)
_BINARY = {
    "=": 1,
    "<>": 1,
    "<": 1,
    ">": 1,
    "<=": 1,
    ">=": 1,
    "&": 2,
    "+": 3,
    "-": 3,
    "*": 4,
    "/": 4,
    "^": 5,
}
# The functions there are, with their (least, most) numbers of arguments.
ARITY = {
    "SUM": (1, 255),
    "AVERAGE": (1, 255),
    "MIN": (1, 255),
    "MAX": (1, 255),
    "COUNT": (1, 255),
    "IF": (2, 3),
    "ROUND": (2, 2),
    "ABS": (1, 1),
}


class _ParseError(Exception):
    pass


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    toks: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _ParseError(f"unexpected character {text[pos]!r} at {pos}")
        kind = m.lastgroup or ""
        if kind == "word" and text.startswith("(", m.end()):
            kind = "func"
        if kind != "ws":
            toks.append((kind, m.group(), pos))
        pos = m.end()
    toks.append(("end", "", pos))
    return toks


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        kind, got, pos = self.take()
        if kind != "op" or got != text:
            raise _ParseError(f"expected {text!r} at {pos}, got {got or 'end'!r}")

    def expr(self, min_prec: int = 1) -> Node:
        # Precedence climbing: recursion only for a tighter-binding right operand.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _ParseError("formula nested too deeply")
        left = self.unary()
        while True:
            kind, op, _ = self.peek()
            prec = _BINARY.get(op) if kind == "op" else None
            if prec is None or prec < min_prec:
                break
            self.i += 1
            right = self.expr(prec + 1)
            if isinstance(left, Chain) and _BINARY[left.rest[0][0]] == prec:
                left = Chain(left.first, (*left.rest, (op, right)))
            else:
                left = Chain(left, ((op, right),))
        self.depth -= 1
        return left

    def unary(self) -> Node:
        minus = 0
        while self.peek()[0] == "op" and self.peek()[1] in "+-":
            minus += self.take()[1] == "-"
        node = self.primary()
        percent = 0
        while self.peek()[:2] == ("op", "%"):
            self.i += 1
            percent += 1
        if percent:
            node = Unary("%", percent, node)
        return Unary("-", minus, node) if minus else node

    def primary(self) -> Node:
        kind, text, pos = self.take()
        if kind == "num":
            value = float(text) if any(ch in text for ch in ".eE") else int(text)
            if isinstance(value, float) and not math.isfinite(value):
                raise _ParseError(f"number out of range at {pos}")
            return Num(value if abs(value) <= MAX_INT else float(value))
        if kind == "str":
            return Str(text[1:-1].replace('""', '"'))
        if kind == "err":
            return Error(text.upper())
        if kind == "func":
            return self.call(text, pos)
        if kind == "word":
            upper = text.upper()
            if upper in ("TRUE", "FALSE"):
                return Bool(upper == "TRUE")
            ref = self.ref(text)
            if ref is not None:
                if self.peek()[:2] == ("op", ":"):
                    self.i += 1
                    end = self.ref(self.take()[1])
                    if end is None:
                        raise _ParseError(f"bad range end after {text!r}")
                    return Range(ref, end)
                return ref
            if _IDENT.fullmatch(text):
                return Name(upper)
            raise _ParseError(f"bad reference {text!r} at {pos}")
        if kind == "op" and text == "(":
            node = self.expr()
            self.expect(")")
            return node
        raise _ParseError(f"unexpected {text or 'end of formula'!r} at {pos}")

    @staticmethod
    def ref(text: str) -> Ref | None:
        m = _REF_WORD.fullmatch(text)
        if m is None or int(m.group(4)) < 1:
            return None
        row, col = int(m.group(4)) - 1, col_to_index(m.group(2))
        return Ref(row, col, abs_row=bool(m.group(3)), abs_col=bool(m.group(1)))

    def call(self, text: str, pos: int) -> Node:
        if not _IDENT.fullmatch(text):
            raise _ParseError(f"bad function name {text!r} at {pos}")
        name = text.upper()
        self.expect("(")
        args: list[Node] = []
        if self.peek()[:2] == ("op", ")"):
            self.i += 1
        else:
            while True:
                args.append(self.expr())
                kind, got, at = self.take()
                if kind == "op" and got == ")":
                    break
                if kind != "op" or got != ",":
                    raise _ParseError(f"expected ',' or ')' at {at}")
        lo, hi = ARITY.get(name, (0, 1 << 30))
        if not lo <= len(args) <= hi:
            raise _ParseError(f"{name} takes {lo}..{hi} arguments, got {len(args)}")
        return Func(name, tuple(args))


def ref_groups(text: str) -> list[tuple[int, int, tuple[Ref, ...], tuple[str, ...]]]:
    """Where a formula's text names cells, in order: ``(start, end, refs, texts)`` per
    single reference (one Ref) or range (two: its corners), with each corner's text as
    typed. ``[]`` when the text does not tokenize (it then evaluates to ``#ERROR!``).
    For :class:`~ownkernel.crdt.sheet.Sheet`, which anchors references to row/column ids."""
    try:
        toks = _tokenize(text)
    except _ParseError:
        return []
    out: list[tuple[int, int, tuple[Ref, ...], tuple[str, ...]]] = []
    i = 0
    while i < len(toks):
        kind, tok, pos = toks[i]
        ref = _Parser.ref(tok) if kind == "word" else None
        if ref is None:
            i += 1
            continue
        end = (_Parser.ref(toks[i + 2][1]) if i + 2 < len(toks) and toks[i + 1][:2] == (
            "op", ":") and toks[i + 2][0] == "word" else None)
        if end is not None:
            etok, epos = toks[i + 2][1], toks[i + 2][2]
            out.append((pos, epos + len(etok), (ref, end), (tok, etok)))
            i += 3
        else:
            out.append((pos, pos + len(tok), (ref,), (tok,)))
            i += 1
    return out


def ref_a1(ref: Ref, row: int, col: int) -> str:
    """``ref``'s ``$`` flags at (row, col): ``$B3``, ``B$3``…"""
    return (f"{'$' if ref.abs_col else ''}{index_to_col(col)}"
            f"{'$' if ref.abs_row else ''}{row + 1}")


def parse(formula: str) -> Node:
    """Parse ``"=1+A1"`` (leading ``=`` optional). Bad input gives an ``Error("#ERROR!")`` node."""
    if not isinstance(formula, str):
        return Error("#ERROR!", "formula is not a string")
    text = formula[1:] if formula.startswith("=") else formula
    try:
        parser = _Parser(text)
        node = parser.expr()
        kind, got, pos = parser.peek()
        if kind != "end":
            raise _ParseError(f"unexpected {got!r} at {pos}")
        return node
    except _ParseError as exc:
        return Error("#ERROR!", str(exc))


def references(ast: Node, nrows: int | None = None, ncols: int | None = None) -> set[Cell]:
    """Cells ``ast`` may read, ranges expanded, both IF branches included.

    With ``nrows``/``ncols`` only cells inside the sheet are listed (what dependency
    tracking needs, and bounded by the sheet size); without them a huge range such
    as ``A1:ZZZ9999999`` expands to every cell it names, so pass bounds for
    formulas from untrusted peers.
    """
    out: set[Cell] = set()
    rmax = math.inf if nrows is None else nrows - 1
    cmax = math.inf if ncols is None else ncols - 1
    stack: list[Node] = [ast]
    while stack:
        node = stack.pop()
        if isinstance(node, Ref):
            if node.row <= rmax and node.col <= cmax:
                out.add((node.row, node.col))
        elif isinstance(node, Range):
            r1, c1, r2, c2 = node.bounds()
            r2, c2 = int(min(r2, rmax)), int(min(c2, cmax))
            out.update((r, c) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1))
        elif isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, Chain):
            stack.append(node.first)
            stack.extend(n for _, n in node.rest)
        elif isinstance(node, Func):
            stack.extend(node.args)
    return out

