"""Spreadsheet formulas: tokenizer, recursive-descent parser, evaluator, dependencies.

Pure: no I/O, threads, clocks, ``eval`` or ``exec``; formulas are data walked by
hand-written code, so a peer's formula can do nothing but compute a value.

Semantics (Excel-like; choices written down here because users will hit them):

- A raw cell is a formula iff it is a ``str`` starting with ``=``; anything else
  is a literal whose value is the raw value itself.
- Precedence, loosest first: comparisons ``= <> < > <= >=``, ``&``, ``+ -``,
  ``* /``, ``^``, postfix ``%``, prefix ``- +``. As in Excel, unary minus binds
  tighter than ``^`` (``=-2^2`` is 4) and every binary operator, ``^``
  included, is left-associative (``=2^3^2`` is 64).
- Prefix ``+`` alone is a no-op (``=+"a"`` is ``"a"``), like Excel.
- Arithmetic: empty cell -> 0, TRUE/FALSE -> 1/0, text (even ``"1"``) -> #VALUE!.
  Cells are typed (CBOR values), so a string that looks like a number was
  stored as text on purpose; silently converting it would hide mistakes.
- Numbers are Python ints while exact and within 2**53, floats otherwise; ``/``
  of ints gives an int when it divides exactly. Capping ints matters because
  peers write formulas: chained ``=A1*A1`` cells would otherwise grow ints
  without bound. Infinite or impossible results (``=10^400``, ``=(-8)^0.5``)
  are #NUM! (an extra code, as in Excel). ``0^0`` is 1, ``0^-1`` is #DIV/0!.
- ``&``: empty -> "", booleans -> "TRUE"/"FALSE", floats with 15 significant
  digits. Results longer than 32767 characters (Excel's cell limit) are
  #VALUE!, so doubling chains cannot exhaust memory.
- Comparisons: text is compared case-insensitively; mixed types order as
  numbers < text < booleans; an empty cell acts as 0, "" or FALSE to match the
  other side; numbers within a relative 1e-15 are equal (``=0.1+0.2=0.3``).
- SUM AVERAGE MIN MAX COUNT: cells reached through references/ranges count
  only if they are numbers (text, booleans, empty are skipped); direct
  arguments also accept booleans, and direct text is #VALUE! (COUNT skips it).
  Errors propagate, except that COUNT skips error cells. MIN/MAX of nothing is
  0, AVERAGE of nothing #DIV/0!.
- IF(cond, a, [b]): only the chosen branch is evaluated; b defaults to FALSE;
  text "TRUE"/"FALSE" is accepted as a condition, other text is #VALUE!.
- ROUND(x, digits) rounds half away from zero on the shortest decimal form of
  x (``ROUND(2.675, 2)`` is 2.68); digits are truncated toward zero.
- Errors propagate left to right: the first error met is the result.
- A reference outside the sheet is #REF!; a range is #REF! if any part is.
- Unparseable formulas (bad syntax, unknown characters, wrong number of
  arguments to a known function, nesting deeper than ``MAX_DEPTH``) evaluate
  to #ERROR!; unknown function or bare names to #NAME?. ``parse`` never raises.
- Cycles are found on the *static* reference graph (both IF branches count, as
  in Excel's circular-reference check): every cell on a cycle is #CYCLE!, and
  cells reading it get #CYCLE! by ordinary error propagation.
- A formula whose result is an empty cell shows 0; a bare range is #VALUE!.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Union

Cell = tuple[int, int]
Getter = Callable[[int, int], Any]

# Bound on nested sub-expressions: the worst case then needs ~400 Python frames to parse
# and evaluate, well inside the default limit of 1000 whatever the caller's own depth.
MAX_DEPTH = 100
MAX_TEXT = 32767
_MAX_INT = 2**53


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
_REF, _DIV0, _NAME = ERRORS["#REF!"], ERRORS["#DIV/0!"], ERRORS["#NAME?"]
_VALUE, _CYCLE, _NUM = ERRORS["#VALUE!"], ERRORS["#CYCLE!"], ERRORS["#NUM!"]


# --- addresses -----------------------------------------------------------------------------


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
_ARITY = {
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
            return Num(value if abs(value) <= _MAX_INT else float(value))
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
        lo, hi = _ARITY.get(name, (0, 1 << 30))
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


# --- evaluation ----------------------------------------------------------------------------

_RANGE = object()  # what a bare range evaluates to outside an aggregate function
_DEC = Context(prec=1000)


def _num(x: int | float) -> int | float | FormulaError:
    if isinstance(x, int):
        if -_MAX_INT <= x <= _MAX_INT:
            return int(x)
        try:
            x = float(x)
        except OverflowError:
            return _NUM
    return x if math.isfinite(x) else _NUM


def _number(v: Any) -> int | float | FormulaError:
    if v is None:
        return 0
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return _num(v)
    return v if isinstance(v, FormulaError) else _VALUE


def _text(v: Any) -> str | FormulaError:
    if v is None:
        return ""
    if isinstance(v, (str, FormulaError)):
        return v
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.15g}".replace("e", "E")
    return _VALUE


def _compare(a: Any, b: Any) -> int | FormulaError:
    def rank(v: Any) -> int:
        if isinstance(v, bool):
            return 2
        if isinstance(v, (int, float)):
            return 0
        return 1 if isinstance(v, str) else -1

    if a is None and b is None:
        return 0
    if a is None:
        a = {0: 0, 1: "", 2: False}.get(rank(b))
    if b is None:
        b = {0: 0, 1: "", 2: False}.get(rank(a))
    ra, rb = rank(a), rank(b)
    if ra < 0 or rb < 0:
        return _VALUE
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 1:
        a, b = a.casefold(), b.casefold()
    elif ra == 0 and math.isclose(a, b, rel_tol=1e-15, abs_tol=0.0):
        return 0
    return (a > b) - (a < b)


def _divide(x: int | float, y: int | float) -> int | float | FormulaError:
    if y == 0:
        return _DIV0
    if isinstance(x, int) and isinstance(y, int) and x % y == 0:
        return _num(x // y)
    return _num(x / y)


def _power(x: int | float, y: int | float) -> int | float | FormulaError:
    if x == 0 and y < 0:
        return _DIV0
    if isinstance(x, int) and isinstance(y, int) and y >= 0 and abs(x).bit_length() * y <= 64:
        return _num(x**y)
    try:
        return _num(math.pow(x, y))
    except (OverflowError, ValueError):
        return _NUM


def _first_error(*values: Any) -> FormulaError | None:
    return next((v for v in values if isinstance(v, FormulaError)), None)


_COMPARE: dict[str, Callable[[int], bool]] = {
    "=": lambda c: c == 0,
    "<>": lambda c: c != 0,
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda x, y: _num(x + y),
    "-": lambda x, y: _num(x - y),
    "*": lambda x, y: _num(x * y),
    "/": _divide,
    "^": _power,
}


def _binop(op: str, a: Any, b: Any) -> Any:
    if a is _RANGE or b is _RANGE:
        return _VALUE
    if op == "&":
        a, b = _text(a), _text(b)
    elif op not in _COMPARE:
        a, b = _number(a), _number(b)
    err = _first_error(a, b)
    if err is not None:
        return err
    if op == "&":
        return a + b if len(a) + len(b) <= MAX_TEXT else _VALUE
    if op in _COMPARE:
        c = _compare(a, b)
        return c if isinstance(c, FormulaError) else _COMPARE[op](c)
    return _ARITH[op](a, b)


def _read(get: Getter, row: int, col: int) -> Any:
    try:
        return get(row, col)
    except FormulaError as exc:
        exc.__traceback__ = None  # often a shared singleton: do not pin the caller's frames
        return ERRORS.get(exc.code, exc)
    except LookupError:
        return _REF


def _ref_values(node: Ref | Range, get: Getter) -> list[Any] | FormulaError:
    if isinstance(node, Ref):
        return [_read(get, node.row, node.col)]
    r1, c1, r2, c2 = node.bounds()
    # Probe the far corner first: if the range leaves the sheet we learn it without
    # walking (possibly billions of) cells that do not exist.
    if _read(get, r2, c2) == _REF:
        return _REF
    return [_read(get, r, c) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)]


def _collect(args: tuple[Node, ...], get: Getter, counting: bool) -> list[Any] | FormulaError:
    nums: list[Any] = []
    for arg in args:
        if isinstance(arg, (Ref, Range)):
            values = _ref_values(arg, get)
            if isinstance(values, FormulaError):
                return values
            for v in values:
                if isinstance(v, FormulaError) and not counting:
                    return v
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    nums.append(_num(v))
            continue
        v = _eval(arg, get)
        if isinstance(v, (int, float)):  # booleans included: direct arguments count them
            nums.append(_number(v))
        elif v is not None and not counting:
            return v if isinstance(v, FormulaError) else _VALUE
    err = None if counting else _first_error(*nums)  # a number beyond float range
    return nums if err is None else err


def _round(x: int | float, digits: int | float) -> int | float | FormulaError:
    d = int(digits)
    if (isinstance(x, int) and d >= 0) or d > 330:
        return x
    if d < -330:
        return 0
    exact = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    r = exact.quantize(Decimal(1).scaleb(-d), rounding=ROUND_HALF_UP, context=_DEC)
    return _num(int(r)) if d <= 0 else _num(float(r))


def _truth(v: Any) -> bool | FormulaError:
    if isinstance(v, FormulaError):
        return v
    if v is None or isinstance(v, (bool, int, float)):
        return bool(v)
    if isinstance(v, str) and v.upper() in ("TRUE", "FALSE"):
        return v.upper() == "TRUE"
    return _VALUE


def _call(node: Func, get: Getter) -> Any:
    name, args = node.name, node.args
    if name == "IF":
        cond = _truth(_eval(args[0], get))
        if isinstance(cond, FormulaError):
            return cond
        if cond:
            return _eval(args[1], get)
        return _eval(args[2], get) if len(args) > 2 else False
    if name in ("ROUND", "ABS"):
        xs = [_number(_eval(a, get)) for a in args]
        err = _first_error(*xs)
        if err is not None:
            return err
        return _num(abs(xs[0])) if name == "ABS" else _round(xs[0], xs[1])
    if name not in _ARITY:
        return _NAME
    nums = _collect(args, get, counting=name == "COUNT")
    if isinstance(nums, FormulaError):
        return nums
    if name == "COUNT":
        return len(nums)
    if name == "SUM":
        return _num(sum(nums))
    if name == "AVERAGE":
        return _divide(sum(nums), len(nums)) if nums else _DIV0
    if not nums:
        return 0
    return min(nums) if name == "MIN" else max(nums)


def _eval(node: Node, get: Getter) -> Any:
    if isinstance(node, (Num, Str, Bool)):
        return node.value
    if isinstance(node, Ref):
        return _read(get, node.row, node.col)
    if isinstance(node, Chain):
        acc = _eval(node.first, get)
        for op, operand in node.rest:
            if isinstance(acc, FormulaError):
                break
            acc = _binop(op, acc, _eval(operand, get))
        return acc
    if isinstance(node, Unary):
        v = _eval(node.operand, get)
        x = _VALUE if v is _RANGE else _number(v)
        for _ in range(node.count if node.op == "%" else 0):
            if isinstance(x, FormulaError):
                break
            x = _divide(x, 100)
        if node.op == "-" and node.count % 2 and not isinstance(x, FormulaError):
            x = -x
        return x
    if isinstance(node, Func):
        return _call(node, get)
    if isinstance(node, Range):
        return _RANGE
    if isinstance(node, Error):
        return ERRORS.get(node.code) or FormulaError(node.code)
    return _NAME  # Name: no named ranges exist


def evaluate(ast: Node, get: Getter) -> Any:
    """Value of ``ast``; ``get(row, col)`` gives a cell's evaluated value (None when empty)
    and returns or raises ``ERRORS["#REF!"]`` (a LookupError also works) outside the sheet."""
    value = _eval(ast, get)
    if value is _RANGE:
        return _VALUE
    return 0 if value is None else value


# --- whole sheets ----------------------------------------------------------------------------


def is_formula(raw: Any) -> bool:
    return isinstance(raw, str) and raw.startswith("=")


def _sccs(nodes: Iterable[Cell], edges: Callable[[Cell], Iterable[Cell]]) -> list[list[Cell]]:
    """Tarjan, iterative (dependency chains can be longer than the recursion limit).
    Components come out dependencies-first, which is exactly evaluation order."""
    index: dict[Cell, int] = {}
    low: dict[Cell, int] = {}
    stack: list[Cell] = []
    on_stack: set[Cell] = set()
    out: list[list[Cell]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges(root)))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(edges(w))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp: list[Cell] = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(comp)
    return out


def _compute(
    nodes: Iterable[Cell],
    asts: Mapping[Cell, Node],
    deps: Mapping[Cell, set[Cell]],
    values: dict[Cell, Any],
    nrows: int,
    ncols: int,
) -> None:
    """Evaluate formula cells ``nodes`` into ``values``; other cells' values must be there."""
    todo = set(nodes)

    def get(row: int, col: int) -> Any:
        if not (0 <= row < nrows and 0 <= col < ncols):
            return _REF
        return values.get((row, col))

    for comp in _sccs(sorted(todo), lambda c: [d for d in deps[c] if d in todo]):
        if len(comp) > 1 or comp[0] in deps[comp[0]]:
            for c in comp:
                values[c] = _CYCLE
        else:
            values[comp[0]] = evaluate(asts[comp[0]], get)


def evaluate_all(cells: Mapping[Cell, Any], nrows: int, ncols: int) -> dict[Cell, Any]:
    """Value of every cell of ``cells`` (``{(row, col): raw}``) on an nrows x ncols sheet."""
    asts = {c: parse(raw) for c, raw in cells.items() if is_formula(raw)}
    deps = {c: references(ast, nrows, ncols) for c, ast in asts.items()}
    values = {c: raw for c, raw in cells.items() if c not in asts}
    _compute(asts, asts, deps, values, nrows, ncols)
    return values


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)


class Evaluator:
    """Incremental sheet evaluation.

    Keeps raw cells, parsed formulas, each formula's in-sheet references and the
    reverse index (cell -> formulas reading it). ``set`` re-evaluates the edited
    cell plus its transitive dependents only, in Tarjan order restricted to that
    set; every other cell keeps its cached value, which is still right because
    nothing it reads changed. A cycle through the edited cell lies entirely
    inside that set, so cycle detection there is complete. Resizing re-derives
    everything (which cells exist changes what every range means).
    """

    def __init__(self, nrows: int, ncols: int, cells: Mapping[Cell, Any] | None = None) -> None:
        self.nrows, self.ncols = nrows, ncols
        self._raw: dict[Cell, Any] = {}
        self._ast: dict[Cell, Node] = {}
        self._deps: dict[Cell, set[Cell]] = {}
        self._rdeps: dict[Cell, set[Cell]] = {}
        self._values: dict[Cell, Any] = {}
        self.last_recomputed: set[Cell] = set()  # formula cells evaluated by the last call
        for (row, col), raw in (cells or {}).items():
            self._store((row, col), raw)
        self._recompute(set(self._raw))

    def value(self, row: int, col: int) -> Any:
        return self._values.get((row, col))

    def raw(self, row: int, col: int) -> Any:
        return self._raw.get((row, col))

    def values(self) -> dict[Cell, Any]:
        return dict(self._values)

    def set(self, row: int, col: int, raw: Any) -> set[Cell]:
        """Store ``raw`` (None empties the cell); return the cells whose value changed."""
        cell = (row, col)
        self._store(cell, raw)
        affected = {cell}
        frontier = [cell]
        while frontier:
            for dep in self._rdeps.get(frontier.pop(), ()):
                if dep not in affected:
                    affected.add(dep)
                    frontier.append(dep)
        return self._recompute(affected)

    def resize(self, nrows: int, ncols: int) -> set[Cell]:
        self.nrows, self.ncols = nrows, ncols
        for cell, raw in list(self._raw.items()):
            self._store(cell, raw)
        return self._recompute(set(self._raw) | set(self._values))

    def _store(self, cell: Cell, raw: Any) -> None:
        for dep in self._deps.pop(cell, ()):
            readers = self._rdeps[dep]
            readers.discard(cell)
            if not readers:
                del self._rdeps[dep]
        self._ast.pop(cell, None)
        if raw is None:
            self._raw.pop(cell, None)
            return
        self._raw[cell] = raw
        if is_formula(raw):
            self._ast[cell] = ast = parse(raw)
            self._deps[cell] = deps = references(ast, self.nrows, self.ncols)
            for dep in deps:
                self._rdeps.setdefault(dep, set()).add(cell)

    def _recompute(self, affected: set[Cell]) -> set[Cell]:
        old = {c: self._values.get(c) for c in affected}
        for c in affected:
            if c in self._ast:
                continue
            if c in self._raw:
                self._values[c] = self._raw[c]
            else:
                self._values.pop(c, None)
        formulas = {c for c in affected if c in self._ast}
        _compute(formulas, self._ast, self._deps, self._values, self.nrows, self.ncols)
        self.last_recomputed = formulas
        return {c for c in affected if not _same(old[c], self._values.get(c))}
