"""Evaluating one parsed formula against a cell getter: arithmetic, text, comparison
and the built-in functions. Errors are values here, never exceptions."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from .syntax import ARITY, Bool, Chain, Error, Func, Node, Num, Range, Ref, Str, Unary
from .values import DIV0, ERRORS, MAX_INT, MAX_TEXT, NAME, NUM, REF, VALUE, FormulaError, Getter

_RANGE = object()  # what a bare range evaluates to outside an aggregate function
_DEC = Context(prec=1000)


def _num(x: int | float) -> int | float | FormulaError:
    if isinstance(x, int):
        if -MAX_INT <= x <= MAX_INT:
            return int(x)
        try:
            x = float(x)
        except OverflowError:
            return NUM
    return x if math.isfinite(x) else NUM


def _number(v: Any) -> int | float | FormulaError:
    if v is None:
        return 0
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return _num(v)
    return v if isinstance(v, FormulaError) else VALUE


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
    return VALUE


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
        return VALUE
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 1:
        a, b = a.casefold(), b.casefold()
    elif ra == 0 and math.isclose(a, b, rel_tol=1e-15, abs_tol=0.0):
        return 0
    return (a > b) - (a < b)


def _divide(x: int | float, y: int | float) -> int | float | FormulaError:
    if y == 0:
        return DIV0
    if isinstance(x, int) and isinstance(y, int) and x % y == 0:
        return _num(x // y)
    return _num(x / y)


def _power(x: int | float, y: int | float) -> int | float | FormulaError:
    if x == 0 and y < 0:
        return DIV0
    if isinstance(x, int) and isinstance(y, int) and y >= 0 and abs(x).bit_length() * y <= 64:
        return _num(x**y)
    try:
        return _num(math.pow(x, y))
    except (OverflowError, ValueError):
        return NUM


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
        return VALUE
    if op == "&":
        a, b = _text(a), _text(b)
    elif op not in _COMPARE:
        a, b = _number(a), _number(b)
    err = _first_error(a, b)
    if err is not None:
        return err
    if op == "&":
        return a + b if len(a) + len(b) <= MAX_TEXT else VALUE
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
        return REF


def _ref_values(node: Ref | Range, get: Getter) -> list[Any] | FormulaError:
    if isinstance(node, Ref):
        return [_read(get, node.row, node.col)]
    r1, c1, r2, c2 = node.bounds()
    # Probe the far corner first: if the range leaves the sheet we learn it without
    # walking (possibly billions of) cells that do not exist.
    if _read(get, r2, c2) == REF:
        return REF
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
            return v if isinstance(v, FormulaError) else VALUE
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
    return VALUE


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
    if name not in ARITY:
        return NAME
    nums = _collect(args, get, counting=name == "COUNT")
    if isinstance(nums, FormulaError):
        return nums
    if name == "COUNT":
        return len(nums)
    if name == "SUM":
        return _num(sum(nums))
    if name == "AVERAGE":
        return _divide(sum(nums), len(nums)) if nums else DIV0
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
        x = VALUE if v is _RANGE else _number(v)
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
    return NAME  # Name: no named ranges exist


def evaluate(ast: Node, get: Getter) -> Any:
    """Value of ``ast``; ``get(row, col)`` gives a cell's evaluated value (None when empty)
    and returns or raises ``ERRORS["#REF!"]`` (a LookupError also works) outside the sheet."""
    value = _eval(ast, get)
    if value is _RANGE:
        return VALUE
    return 0 if value is None else value

