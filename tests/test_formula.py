"""Tests for the spreadsheet formula engine (ownkernel.crdt.formula)."""

from __future__ import annotations

import inspect
import math
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownkernel.crdt.formula import (
    ERRORS,
    MAX_DEPTH,
    MAX_TEXT,
    Chain,
    Error,
    Evaluator,
    FormulaError,
    Func,
    Range,
    Ref,
    col_to_index,
    evaluate,
    evaluate_all,
    index_to_col,
    parse,
    parse_a1,
    references,
    to_a1,
)

REF, DIV0, NAME = ERRORS["#REF!"], ERRORS["#DIV/0!"], ERRORS["#NAME?"]
VALUE, CYCLE, ERROR, NUM = ERRORS["#VALUE!"], ERRORS["#CYCLE!"], ERRORS["#ERROR!"], ERRORS["#NUM!"]


def sheet(cells: dict[str, Any], nrows: int = 10, ncols: int = 10) -> dict[str, Any]:
    """evaluate_all with A1-style keys in and out."""
    out = evaluate_all({parse_a1(k): v for k, v in cells.items()}, nrows, ncols)
    return {to_a1(*cell): v for cell, v in out.items()}


def calc(formula: str, **cells: Any) -> Any:
    """Value of ``formula`` placed in J10 of a 10x10 sheet holding ``cells``."""
    return sheet({**cells, "J10": formula})["J10"]


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isclose(a, b)))


# --- addresses --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("col", "index"), [("A", 0), ("Z", 25), ("AA", 26), ("AZ", 51), ("BA", 52), ("ZZ", 701),
                       ("AAA", 702), ("XFD", 16383)])
def test_columns(col: str, index: int) -> None:
    assert col_to_index(col) == index
    assert col_to_index(col.lower()) == index
    assert index_to_col(index) == col


@given(st.integers(min_value=0, max_value=10**6))
def test_column_roundtrip(index: int) -> None:
    assert col_to_index(index_to_col(index)) == index


@pytest.mark.parametrize("bad", ["", "A1", "$A", "Ä", 3, None])
def test_col_to_index_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        col_to_index(bad)


@pytest.mark.parametrize("bad", [-1, True, 1.0])
def test_index_to_col_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        index_to_col(bad)


def test_a1() -> None:
    assert parse_a1("B3") == (2, 1)
    assert parse_a1("b3") == (2, 1)
    assert parse_a1("$B$3") == parse_a1("B$3") == parse_a1("$B3") == (2, 1)
    assert parse_a1("AA10") == (9, 26)
    assert to_a1(2, 1) == "B3"
    assert to_a1(0, 0) == "A1"
    assert to_a1(9, 26) == "AA10"


@pytest.mark.parametrize("bad", ["", "A", "1", "A0", "1A", "A1B", "A-1", " A1", "A$$1", None])
def test_parse_a1_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_a1(bad)


def test_to_a1_rejects() -> None:
    with pytest.raises(ValueError):
        to_a1(-1, 0)
    with pytest.raises(ValueError):
        to_a1(0, -1)


# --- error values -----------------------------------------------------------------------------

def test_error_values() -> None:
    assert set(ERRORS) >= {"#REF!", "#DIV/0!", "#NAME?", "#VALUE!", "#CYCLE!", "#ERROR!"}
    for code, err in ERRORS.items():
        assert str(err) == code
        assert err.code == code
        assert err == FormulaError(code)
        assert hash(err) == hash(FormulaError(code))
    assert DIV0 != REF
    assert DIV0 != "#DIV/0!"
    assert repr(DIV0) == "FormulaError('#DIV/0!')"


# --- literals and operators -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("=1", 1), ("=1.5", 1.5), ("=.5", 0.5), ("=1e3", 1000.0), ("=2E-1", 0.2), ("=1.", 1.0),
        ('="hi"', "hi"), ('=""', ""), ('="say ""hi"""', 'say "hi"'), ("=TRUE", True),
        ("=false", False), ("=True", True), ("=#DIV/0!", DIV0), ("=#ref!", REF),
        ("=1+2", 3), ("=5-7", -2), ("=3*4", 12), ("=7/2", 3.5), ("=8/2", 4), ("=2^10", 1024),
        ("=2^0.5", math.sqrt(2)), ("=4^-1", 0.25), ("=0^0", 1), ("=1.5+1.5", 3.0),
        ('="a"&"b"', "ab"), ('="a"&1', "a1"), ('=1&2', "12"), ('="x"&TRUE', "xTRUE"),
        ('="x"&1.5', "x1.5"), ('="x"&0.1+0.2', "x0.3"), ('="x"&1e20', "x1E+20"),
        ('="x"&2.0', "x2"), ("=-3", -3), ("=+3", 3), ("=--3", 3), ("=-+-3", 3), ("=---3", -3),
        ('=+"a"', "a"), ("=50%", 0.5), ("=50%%", 0.005), ("=-50%", -0.5), ("=(1+1)%", 0.02),
        ("=1 + 2 * 3", 7), ("= 1", 1),
    ],
)
def test_literals_and_operators(formula: str, expected: Any) -> None:
    assert same(calc(formula), expected), calc(formula)


def test_parse_leading_equals_optional() -> None:
    def get(r: int, c: int) -> Any:
        return None

    assert evaluate(parse("1+1"), get) == 2
    assert parse("1+1") == parse("=1+1")
    assert evaluate(parse("  =1"), get) == ERROR  # only a leading "=" is stripped
    assert calc("1+1") == "1+1"  # a raw cell without "=" is a literal


def test_integer_results_stay_int() -> None:
    assert type(calc("=6/3")) is int
    assert type(calc("=2^3")) is int
    assert type(calc("=7/2")) is float
    assert type(calc("=2^-1")) is float


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("=1=1", True), ("=1=2", False), ("=1<>2", True), ("=1<2", True), ("=2<1", False),
        ("=2>1", True), ("=1<=1", True), ("=2<=1", False), ("=1>=1", True), ("=0>=1", False),
        ('="abc"="ABC"', True), ('="abc"<"ABD"', True), ('="b">"A"', True),
        ('="a"<>"A"', False), ("=TRUE=TRUE", True), ("=FALSE<TRUE", True),
        ('=1<"a"', True), ('="a"<TRUE', True), ('=1="1"', False), ("=1=TRUE", False),
        ("=0.1+0.2=0.3", True), ("=1+1=2", True), ("=1<2=TRUE", True),
        ("=A1=0", True), ('=A1=""', True), ("=A1=FALSE", True), ("=A1<1", True),
        ('=A1<"a"', True), ("=A1=A2", True),
    ],
)
def test_comparisons(formula: str, expected: bool) -> None:
    assert calc(formula) is expected


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("=1+2*3", 7), ("=(1+2)*3", 9), ("=2*3+1", 7), ("=10-2-3", 5), ("=100/10/5", 2),
        ("=1-(2-3)", 2), ("=2*3^2", 18), ("=-2^2", 4), ("=(-2)^2", 4), ("=-(2^2)", -4),
        ("=0-2^2", -4), ("=2^3^2", 64), ("=2^(3^2)", 512), ("=2^-2", 0.25),
        ("=1+2&3", "33"), ('=1&2+3', "15"), ("=1+1=2", True), ('="a"&"b"="AB"', True),
        ("=2^50%", math.sqrt(2)), ("=-2^-2", 0.25), ("=2*-3", -6), ("=1--1", 2),
        ("=1+1+1+1+1", 5), ("=2*3*4/6", 4), ("=1=1=TRUE", True),
    ],
)
def test_precedence(formula: str, expected: Any) -> None:
    # Excel: unary minus binds tighter than ^ (-2^2 == 4); ^ is left-associative.
    assert same(calc(formula), expected), calc(formula)


def test_chain_is_flat() -> None:
    ast = parse("=1+2-3+4")
    assert isinstance(ast, Chain)
    assert [op for op, _ in ast.rest] == ["+", "-", "+"]
    mixed = parse("=1+2*3")
    assert isinstance(mixed, Chain) and isinstance(mixed.rest[0][1], Chain)


# --- coercions --------------------------------------------------------------------------------

def test_empty_cells() -> None:
    assert calc("=A1+1") == 1
    assert calc("=A1*5") == 0
    assert calc('="x"&A1&"y"') == "xy"
    assert calc("=A1") == 0  # a formula showing an empty cell shows 0, like Excel
    assert calc("=-A1") == 0
    assert calc("=A1", A1="") == ""


def test_type_coercions() -> None:
    assert calc("=TRUE+1") == 2
    assert calc("=FALSE*5") == 0
    assert calc('="a"+1') == VALUE
    assert calc('="1"+1') == VALUE  # documented: numeric text is not converted
    assert calc("=A1+1", A1="2") == VALUE
    assert calc("=-A1", A1="x") == VALUE
    assert calc("=A1%", A1="x") == VALUE
    assert calc("=A1+1", A1=b"bytes") == VALUE
    assert calc("=A1&1", A1=[1]) == VALUE
    assert calc("=A1=1", A1={"a": 1}) == VALUE
    assert calc("=A1+1", A1=True) == 2
    assert calc("=A1&B1", A1=True, B1=2.5) == "TRUE2.5"


def test_literal_cells_pass_through() -> None:
    values = sheet({"A1": 1, "A2": "text", "A3": True, "A4": 2.5, "A5": None, "A6": [1, 2]})
    assert values == {"A1": 1, "A2": "text", "A3": True, "A4": 2.5, "A5": None, "A6": [1, 2]}
    assert calc("=A1", A1="hello") == "hello"


def test_number_limits() -> None:
    assert calc("=10^400") == NUM
    assert calc("=(-8)^0.5") == NUM
    assert calc("=0^-1") == DIV0
    assert calc("=1e308*10") == NUM
    assert calc("=99999999999999999999") == 1e20  # beyond 2**53: float, like Excel
    assert calc("=A1+0", A1=10**400) == NUM
    assert calc("=A1+0", A1=10**20) == 1e20
    assert calc("=A1+1", A1=float("inf")) == NUM
    assert calc("=1e400") == ERROR
    # Squaring chains would grow ints without bound; floats cap them.
    cells = {"A1": 10, **{f"A{i}": f"=A{i - 1}*A{i - 1}" for i in range(2, 11)}}
    values = sheet(cells)
    assert values["A10"] == NUM
    assert isinstance(values["A6"], float)


def test_text_length_cap() -> None:
    cells = {"A1": "xxxxxxxxxx", **{f"A{i}": f"=A{i - 1}&A{i - 1}" for i in range(2, 15)}}
    values = sheet(cells, nrows=20)
    assert len(values["A12"]) == 10 * 2**11 <= MAX_TEXT
    assert values["A13"] == VALUE
    assert values["A14"] == VALUE


# --- functions --------------------------------------------------------------------------------

RANGE_CELLS = {"A1": 1, "A2": 2, "A3": "text", "A4": True, "B1": 3.5, "B2": None, "B3": "",
               "B4": 4}


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("=SUM(A1:B4)", 10.5), ("=AVERAGE(A1:B4)", 2.625), ("=MIN(A1:B4)", 1),
        ("=MAX(A1:B4)", 4), ("=COUNT(A1:B4)", 4), ("=SUM(A1:A4, 10)", 13),
        ("=SUM(A1, A2, A3)", 3), ("=SUM(A3)", 0), ("=COUNT(A3, A4, B2)", 0),
        ("=SUM(1, 2, 3)", 6), ("=SUM(TRUE, 1)", 2), ("=COUNT(1, TRUE, \"x\", 2.5)", 3),
        ("=MIN(3, -1, 2)", -1), ("=MAX(-3, -1)", -1), ("=AVERAGE(1, 2)", 1.5),
        ("=AVERAGE(2, 4)", 3), ("=SUM(C1:C5)", 0), ("=MIN(C1:C5)", 0), ("=MAX(C1:C5)", 0),
        ("=COUNT(C1:C5)", 0), ("=AVERAGE(C1:C5)", DIV0), ("=AVERAGE(A3)", DIV0),
        ('=SUM("a")', VALUE), ('=SUM(1, "2")', VALUE), ('=MAX("a", 1)', VALUE),
        ("=sum(a1:a2)", 3), ("=Sum(A1:A2)", 3), ("=SUM(B4:A1)", 10.5), ("=SUM(A1:A1)", 1),
        ("=SUM(A1:A2)*2", 6), ("=SUM((A1:A2))", 3), ("=SUM(1+1, A1)", 3),
        ("=SUM(IF(TRUE, 5))", 5), ("=SUM(C1)", 0),
    ],
)
def test_aggregates(formula: str, expected: Any) -> None:
    assert same(calc(formula, **RANGE_CELLS), expected), calc(formula, **RANGE_CELLS)


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("=IF(TRUE, 1, 2)", 1), ("=IF(FALSE, 1, 2)", 2), ("=IF(FALSE, 1)", False),
        ("=IF(1, \"y\", \"n\")", "y"), ("=IF(0, \"y\", \"n\")", "n"), ("=IF(-0.5, 1, 2)", 1),
        ("=IF(A1, 1, 2)", 2), ("=IF(A1=0, 0, 1/A1)", 0), ("=IF(TRUE, 1, 1/0)", 1),
        ("=IF(FALSE, 1/0, 2)", 2), ('=IF("TRUE", 1, 2)', 1), ('=IF("false", 1, 2)', 2),
        ('=IF("yes", 1, 2)', VALUE), ("=IF(1/0, 1, 2)", DIV0), ("=IF(TRUE, A1)", 0),
        ("=IF(1>2, 1, IF(2>1, 3, 4))", 3), ("=if(true, 1, 2)", 1), ("=IF(TRUE, A1:A2)", VALUE),
        ("=IF(A1:A2, 1, 2)", VALUE),
    ],
)
def test_if(formula: str, expected: Any) -> None:
    assert same(calc(formula), expected), calc(formula)


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("=ROUND(2.5, 0)", 3), ("=ROUND(3.5, 0)", 4), ("=ROUND(-2.5, 0)", -3),
        ("=ROUND(0.5, 0)", 1), ("=ROUND(1.25, 1)", 1.3), ("=ROUND(-1.25, 1)", -1.3),
        ("=ROUND(2.675, 2)", 2.68), ("=ROUND(1.005, 2)", 1.01), ("=ROUND(3.14159, 3)", 3.142),
        ("=ROUND(1234.5678, -2)", 1200), ("=ROUND(1250, -2)", 1300), ("=ROUND(-1250, -2)", -1300),
        ("=ROUND(5, 2)", 5), ("=ROUND(15, -1)", 20), ("=ROUND(2.5, 0.9)", 3),
        ("=ROUND(1.55, 1.9)", 1.6), ("=ROUND(1e300, 400)", 1e300), ("=ROUND(1e300, -400)", 0),
        ("=ROUND(A1, 1)", 0), ('=ROUND("a", 1)', VALUE), ("=ROUND(1, 1/0)", DIV0),
        ("=round(2.5, 0)", 3), ("=ROUND(TRUE, 0)", 1),
        ("=ABS(-3)", 3), ("=ABS(3)", 3), ("=ABS(-2.5)", 2.5), ("=ABS(A1)", 0),
        ('=ABS("x")', VALUE), ("=ABS(1/0)", DIV0), ("=abs(-1)", 1), ("=ABS(A1:A2)", VALUE),
    ],
)
def test_round_abs(formula: str, expected: Any) -> None:
    assert same(calc(formula), expected), calc(formula)


@pytest.mark.parametrize(
    "formula", ["=SUM()", "=AVERAGE()", "=IF(1)", "=IF(1,2,3,4)", "=ROUND(1)", "=ROUND(1,2,3)",
                "=ABS()", "=ABS(1,2)", "=MIN()", "=COUNT()"])
def test_wrong_arity_is_parse_error(formula: str) -> None:
    ast = parse(formula)
    assert isinstance(ast, Error) and "argument" in ast.detail
    assert calc(formula) == ERROR


@pytest.mark.parametrize(
    "formula", ["=FOO(1)", "=foo()", "=VLOOKUP(A1, A1:B2, 2)", "=abc", "=A0", "=my_name",
                "=ABCD1", "=FOO(1/0)", "=SUM(foo)"])
def test_name_errors(formula: str) -> None:
    assert calc(formula) == NAME


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "formula",
    ["=", "=1+", "=(1", "=1)", "=1 2", '="abc', "=SUM(1,,2)", "=SUM(1,)", "=A1:", "=A1:1",
     "=A1:B2:C3", "=*1", "=1**2", "=#N/A", "=@A1", "=1;2", "=SUM (1)", "=A$$1", "=$A",
     "=FOO$(1)", "=A1:foo", "==1", "=1e999", "=%", "=()", '="a""', "=1=<2"])
def test_parse_errors(formula: str) -> None:
    ast = parse(formula)
    assert isinstance(ast, Error) and ast.code == "#ERROR!" and ast.detail
    assert evaluate(ast, lambda r, c: None) == ERROR
    assert calc(formula) == ERROR


def test_parse_non_string() -> None:
    assert evaluate(parse(123), lambda r, c: None) == ERROR  # type: ignore[arg-type]


@given(st.text(alphabet='=+-*/^&<>%(),:"$.#!?; ABCDIFSUMROUNDabc0123456789eE', max_size=40))
@settings(max_examples=300, deadline=None)
def test_parse_and_evaluate_never_raise(text: str) -> None:
    value = evaluate(parse(text), lambda r, c: 1 if (r + c) % 2 else "x")
    assert value is not None


def test_ref_outside_sheet() -> None:
    assert sheet({"A1": "=K1"}, nrows=10, ncols=10)["A1"] == REF
    assert sheet({"A1": "=A11"}, nrows=10, ncols=10)["A1"] == REF
    assert sheet({"A1": "=J10+1"}, nrows=10, ncols=10)["A1"] == 1
    assert sheet({"A1": "=SUM(B1:B11)"}, nrows=10)["A1"] == REF
    assert sheet({"A1": "=SUM(B1:K1)"}, ncols=10)["A1"] == REF
    assert sheet({"A1": "=COUNT(B1:B11)"}, nrows=10)["A1"] == REF
    assert sheet({"A1": "=SUM(A2:XFD1000000)"}, nrows=10)["A1"] == REF  # no huge walk
    assert sheet({"A1": "=IF(TRUE, 1, Z99)"})["A1"] == 1


def test_get_may_raise_or_return_ref() -> None:
    def raising(r: int, c: int) -> Any:
        raise ERRORS["#REF!"]

    def lookup(r: int, c: int) -> Any:
        raise IndexError(r)

    assert evaluate(parse("=A1+1"), raising) == REF
    assert evaluate(parse("=A1+1"), lookup) == REF
    assert evaluate(parse("=A1+1"), lambda r, c: REF) == REF
    assert evaluate(parse("=SUM(A1:B2)"), lookup) == REF
    assert ERRORS["#REF!"].__traceback__ is None


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("=1/0+1", DIV0), ("=1+1/0", DIV0), ("=-(1/0)", DIV0), ("=(1/0)%", DIV0),
        ("=1/0&\"x\"", DIV0), ("=1/0=1", DIV0), ("=1/0+#REF!", DIV0), ("=#REF!+1/0", REF),
        ('="a"+1/0', VALUE), ("=SUM(1, 1/0)", DIV0), ("=SUM(A1:A3)", DIV0),
        ("=COUNT(A1:A3)", 1), ("=COUNT(1/0, 2)", 1), ("=MAX(A1:A3)", DIV0),
        ("=AVERAGE(A1:A3)", DIV0), ("=ABS(A2)", DIV0), ("=ROUND(A2, 0)", DIV0),
        ("=IF(A2, 1, 2)", DIV0), ("=IF(TRUE, A2, 2)", DIV0), ("=A2", DIV0), ("=A3+1", NAME),
        ("=SUM(A3, A2)", NAME), ("=FOO(1)+1/0", NAME), ("=abc&1/0", NAME),
        ("=#VALUE!", VALUE), ("=1+#CYCLE!", CYCLE), ("=(1+)", ERROR), ("=1/(1-1)", DIV0),
        ("=0/0", DIV0), ("=AVERAGE(A1, A2)", DIV0),
    ],
)
def test_error_propagation(formula: str, expected: Any) -> None:
    cells = {"A1": 1, "A2": "=1/0", "A3": "=nope"}
    assert calc(formula, **cells) == expected


# --- references and ranges --------------------------------------------------------------------

def test_absolute_and_case_insensitive_refs() -> None:
    cells = {"B2": 5}
    for ref in ["B2", "$B$2", "B$2", "$B2", "b2", "$b$2"]:
        assert calc(f"={ref}*2", **cells) == 10
    ast = parse("=$B2+B$2+$B$2")
    assert isinstance(ast, Chain)
    refs = [ast.first, *(n for _, n in ast.rest)]
    assert refs == [Ref(1, 1, abs_row=False, abs_col=True), Ref(1, 1, abs_row=True, abs_col=False),
                    Ref(1, 1, abs_row=True, abs_col=True)]
    assert refs[0] != Ref(1, 1)  # equality is structural, flags included


def test_parse_shapes() -> None:
    assert parse("=SUM($A$1:b3)") == Func("SUM", (Range(Ref(0, 0, True, True), Ref(2, 1)),))
    assert parse("SUM(A1)") == parse("=sum(a1)")
    assert hash(parse("=1+A1")) == hash(parse("=1+A1"))


def test_references() -> None:
    assert references(parse("=1+2")) == set()
    assert references(parse("=A1+B2")) == {(0, 0), (1, 1)}
    assert references(parse("=SUM(A1:B2)")) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert references(parse("=SUM(B2:A1)")) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert references(parse("=IF(A1, B1, C1)")) == {(0, 0), (0, 1), (0, 2)}
    assert references(parse("=-A1%+FOO(B1)")) == {(0, 0), (0, 1)}
    assert references(parse("=1+")) == set()
    assert references(parse("=SUM(A1:C3)+D9"), nrows=2, ncols=2) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert len(references(parse("=SUM(A1:XFD1048576)"), nrows=3, ncols=4)) == 12


def test_ranges() -> None:
    cells = {"A1": 1, "A2": 2, "B1": 3, "B2": 4, "C1": "=SUM(A1:B2)", "C2": "=SUM($A$1:$B$1)"}
    values = sheet(cells)
    assert values["C1"] == 10
    assert values["C2"] == 4
    assert calc("=A1:B2", **cells) == VALUE
    assert calc("=A1:B2+1", **cells) == VALUE
    assert calc("=-A1:B2", **cells) == VALUE
    assert calc("=A1:A2&\"x\"", **cells) == VALUE


# --- cycles -----------------------------------------------------------------------------------

def test_self_reference() -> None:
    assert sheet({"A1": "=A1"})["A1"] == CYCLE
    assert sheet({"A1": "=A1+1"})["A1"] == CYCLE
    assert sheet({"A1": "=SUM(A1:A3)", "A2": 1})["A1"] == CYCLE


def test_two_and_three_cycles() -> None:
    assert sheet({"A1": "=B1", "B1": "=A1"}) == {"A1": CYCLE, "B1": CYCLE}
    values = sheet({"A1": "=B1+1", "B1": "=C1*2", "C1": "=A1", "D1": 5})
    assert values == {"A1": CYCLE, "B1": CYCLE, "C1": CYCLE, "D1": 5}


def test_cells_depending_on_a_cycle() -> None:
    values = sheet({"A1": "=B1", "B1": "=A1", "C1": "=A1+1", "D1": "=SUM(A1:C1)",
                    "E1": "=COUNT(A1:B1)", "F1": "=IF(TRUE, 1, A1)", "G1": "=C1&\"x\""})
    assert values["C1"] == CYCLE
    assert values["D1"] == CYCLE
    assert values["G1"] == CYCLE
    assert values["E1"] == 0  # COUNT skips error cells
    assert values["F1"] == 1  # the cycle is not read


def test_cycle_detection_is_static() -> None:
    # Both IF branches count, like Excel's circular-reference check.
    values = sheet({"A1": "=IF(TRUE, 1, B1)", "B1": "=A1"})
    assert values == {"A1": CYCLE, "B1": CYCLE}


def test_long_chain_no_recursion_error() -> None:
    n = 5000
    cells = {(0, 0): 1, **{(i, 0): f"=A{i}+1" for i in range(1, n)}}
    values = evaluate_all(cells, n, 1)
    assert values[(n - 1, 0)] == n
    ev = Evaluator(n, 1, cells)
    assert ev.value(n - 1, 0) == n
    changed = ev.set(0, 0, 10)
    assert len(changed) == n
    assert ev.value(n - 1, 0) == n + 9
    ring = {(i, 0): f"=A{(i + 1) % n + 1}" for i in range(n)}
    assert set(evaluate_all(ring, n, 1).values()) == {CYCLE}


@pytest.mark.parametrize(
    ("opening", "middle", "closing"),
    [("(", "1", ")"), ("1+-ABS(-", "1", ")"), ("ROUND(-", "1", ",1)"), ("-(-", "1", "%)%"),
     ("IF(TRUE,-SUM(", "1", "))"), ("1=(1&(1+(1*(1^-(", "1", ")))))")])
def test_deep_nesting_is_bounded(opening: str, middle: str, closing: str) -> None:
    # Nesting is capped so parse + evaluate stay well inside the default recursion limit
    # (about four frames per level), whatever the caller's own stack depth.
    n = 1
    while not isinstance(parse("=" + opening * n + middle + closing * n), Error):
        n += 1
    deepest = "=" + opening * (n - 1) + middle + closing * (n - 1)
    too_deep = "=" + opening * n + middle + closing * n
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 450)
    try:
        assert evaluate(parse(deepest), lambda r, c: None) != ERROR
        assert "deep" in parse(too_deep).detail  # type: ignore[union-attr]
        assert evaluate(parse(too_deep), lambda r, c: None) == ERROR
    finally:
        sys.setrecursionlimit(old)


def test_long_flat_formulas() -> None:
    assert calc("=" + "-" * 10000 + "1") == 1
    assert calc("=" + "+".join(["1"] * 10000)) == 10000
    assert calc("=1" + "%" * 500) == 0.0
    assert calc("=" + "&".join(['"ab"'] * 1000)) == "ab" * 1000
    deep = "=" + "(" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5)
    assert "deep" in parse(deep).detail  # type: ignore[union-attr]


# --- incremental evaluator --------------------------------------------------------------------

def test_evaluator_dependents_recompute() -> None:
    ev = Evaluator(10, 10, {(0, 0): 1, (0, 1): "=A1*2", (0, 2): "=B1+1", (0, 3): "=5"})
    assert [ev.value(0, c) for c in range(4)] == [1, 2, 3, 5]
    changed = ev.set(0, 0, 10)
    assert changed == {(0, 0), (0, 1), (0, 2)}
    assert [ev.value(0, c) for c in range(4)] == [10, 20, 21, 5]
    assert ev.last_recomputed == {(0, 1), (0, 2)}  # D1 untouched
    assert ev.raw(0, 1) == "=A1*2"


def test_evaluator_reports_only_changes() -> None:
    ev = Evaluator(10, 10, {(0, 0): 1, (0, 1): "=A1>0", (0, 2): "=B1&\"!\""})
    assert ev.set(0, 0, 2) == {(0, 0)}  # B1 stays TRUE, so C1 is not reported either
    assert ev.last_recomputed == {(0, 1), (0, 2)}
    assert ev.set(0, 0, 2) == set()
    assert ev.set(0, 0, True) == {(0, 0)}  # 2 -> True is a change even though True == 1


def test_evaluator_formula_edits_and_deletes() -> None:
    ev = Evaluator(10, 10)
    assert ev.set(0, 1, "=A1+1") == {(0, 1)}
    assert ev.value(0, 1) == 1
    assert ev.set(0, 0, 5) == {(0, 0), (0, 1)}
    assert ev.set(0, 1, "=A1*3") == {(0, 1)}
    assert ev.value(0, 1) == 15
    ev.set(0, 2, "=B1")
    assert ev.set(0, 1, "text") == {(0, 1), (0, 2)}
    assert ev.value(0, 2) == "text"
    assert ev.set(0, 0, 6) == {(0, 0)}  # B1 no longer reads A1
    assert ev.last_recomputed == set()
    assert ev.set(0, 1, None) == {(0, 1), (0, 2)}
    assert ev.value(0, 1) is None and ev.value(0, 2) == 0
    assert ev.values() == {(0, 0): 6, (0, 2): 0}


def test_evaluator_cycles_form_and_break() -> None:
    ev = Evaluator(10, 10, {(0, 0): "=B1", (0, 1): 1, (0, 2): "=A1+1"})
    assert ev.value(0, 2) == 2
    assert ev.set(0, 1, "=A1") == {(0, 0), (0, 1), (0, 2)}
    assert ev.value(0, 0) == ev.value(0, 1) == ev.value(0, 2) == CYCLE
    assert ev.set(0, 1, 7) == {(0, 0), (0, 1), (0, 2)}
    assert (ev.value(0, 0), ev.value(0, 2)) == (7, 8)
    assert ev.set(0, 0, "=A1") == {(0, 0), (0, 2)}
    assert ev.value(0, 0) == CYCLE


def test_evaluator_ranges_and_resize() -> None:
    ev = Evaluator(3, 3, {(0, 0): "=SUM(B1:B3)", (2, 2): "=SUM(B1:B4)"})
    assert ev.value(0, 0) == 0 and ev.value(2, 2) == REF
    assert ev.set(1, 1, 4) == {(1, 1), (0, 0)}
    changed = ev.resize(4, 3)
    assert changed == {(2, 2)} and ev.value(2, 2) == 4
    assert ev.set(3, 1, 1) == {(3, 1), (2, 2)}
    assert ev.resize(3, 3) == {(2, 2)}
    assert ev.value(2, 2) == REF
    assert ev.set(3, 1, 2) == {(3, 1)}  # outside the sheet now: nobody reads it


# --- property: incremental == from scratch ------------------------------------------------------

NROWS, NCOLS = 3, 3
_refs = st.builds(lambda r, c, d: ("$" if d else "") + to_a1(r, c),
                  st.integers(0, NROWS), st.integers(0, NCOLS), st.booleans())
_ranges = st.builds(lambda a, b: f"{a}:{b}", _refs, _refs)
_atoms = st.one_of(_refs, st.integers(-3, 3).map(str), st.sampled_from(['"a"', "TRUE", "0.5"]))


def _expr(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(list("+-*/^&=<>")), children).map(
            lambda t: f"({t[0]}{t[1]}{t[2]})"),
        st.tuples(st.sampled_from(["SUM", "COUNT", "MIN", "MAX", "AVERAGE"]),
                  st.lists(st.one_of(_ranges, children), min_size=1, max_size=3)).map(
            lambda t: f"{t[0]}({','.join(t[1])})"),
        st.tuples(children, children, children).map(lambda t: f"IF({t[0]},{t[1]},{t[2]})"),
        children.map(lambda e: f"ROUND({e},1)"), children.map(lambda e: f"-{e}"),
    )


_formulas = st.recursive(_atoms, _expr, max_leaves=6).map(lambda e: "=" + e)
_raws = st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["x", "", "=1+", True]),
                  _formulas)
_edits = st.lists(st.tuples(st.integers(0, NROWS - 1), st.integers(0, NCOLS - 1), _raws),
                  min_size=1, max_size=25)


def _normal(values: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
    return {c: v for c, v in values.items() if v is not None}


def _same_value(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a)))


@given(_edits)
@settings(max_examples=300, deadline=None)
def test_incremental_matches_full(edits: list[tuple[int, int, Any]]) -> None:
    cells: dict[tuple[int, int], Any] = {}
    ev = Evaluator(NROWS, NCOLS)
    for row, col, raw in edits:
        before = ev.values()
        changed = ev.set(row, col, raw)
        if raw is None:
            cells.pop((row, col), None)
        else:
            cells[(row, col)] = raw
        expected = _normal(evaluate_all(cells, NROWS, NCOLS))
        after = ev.values()
        assert after.keys() == expected.keys()
        for cell, value in expected.items():
            assert _same_value(after[cell], value), (cell, after[cell], value)
        diff = {c for c in before.keys() | after.keys()
                if not _same_value(before.get(c), after.get(c))}
        assert changed == diff
    fresh = Evaluator(NROWS, NCOLS, cells).values()
    assert all(_same_value(fresh[c], v) for c, v in ev.values().items())
