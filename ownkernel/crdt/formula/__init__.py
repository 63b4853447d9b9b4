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

from .address import col_to_index, index_to_col, parse_a1, to_a1
from .evaluation import evaluate
from .recalc import Evaluator, evaluate_all, is_formula
from .syntax import (
    Bool,
    Chain,
    Error,
    Func,
    Name,
    Node,
    Num,
    Range,
    Ref,
    Str,
    Unary,
    parse,
    ref_a1,
    ref_groups,
    references,
)
from .values import ERRORS, MAX_DEPTH, MAX_TEXT, Cell, FormulaError, Getter

__all__ = [
    "ERRORS", "MAX_DEPTH", "MAX_TEXT", "Bool", "Cell", "Chain", "Error", "Evaluator",
    "FormulaError", "Func", "Getter", "Name", "Node", "Num", "Range", "Ref", "Str", "Unary",
    "col_to_index", "evaluate", "evaluate_all", "index_to_col", "is_formula", "parse",
    "parse_a1", "ref_a1", "ref_groups", "references", "to_a1",
]
