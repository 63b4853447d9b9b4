"""Formula references follow the cells they named through row/column inserts and
deletes (``Sheet`` anchors them to row/column ids): unit cases, concurrent edits
of two replicas, and a hypothesis run over 2-3 replicas with random inserts,
deletes, formulas and partial syncs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ownkernel.crdt import Doc
from ownkernel.crdt.formula import FormulaError

A, B, C = b"\x01alice", b"\x02bob", b"\x03carol"


def sync(*docs: Doc) -> None:
    for x in docs:
        for y in docs:
            if x is not y:
                y.apply(x.changes(since=y.version))


def grid(rows: list[list[object]]) -> Doc:
    d = Doc(A)
    s = d.sheet("s")
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if v is not None:
                s.set((r, c), v)
    return d


def test_single_references_move_with_inserts_and_keep_dollars() -> None:
    s = grid([[1, 2], [3, 4], ["=A1+$B$2+B$1", None]]).sheet("s")
    assert s.value("A3") == 1 + 4 + 2
    s.insert_rows(0)
    s.insert_cols(1)
    assert s.raw("A4") == "=A2+$C$3+C$2"
    assert s.value("A4") == 7
    s.delete_rows(0)
    s.delete_cols(1)
    assert s.raw("A3") == "=A1+$B$2+B$1"  # back where it was typed: as typed


def test_a_range_grows_with_rows_inserted_inside_and_shrinks_with_deletes() -> None:
    s = grid([[1], [2], [3], ["=SUM(A1:A3)"]]).sheet("s")
    s.insert_rows(1)
    s.set("A2", 10)
    assert s.raw("A5") == "=SUM(A1:A4)" and s.value("A5") == 16
    s.delete_rows(2)  # the row that held 2, inside the range
    assert s.raw("A4") == "=SUM(A1:A3)" and s.value("A4") == 14
    s.insert_rows(0)  # above it: both corners move
    assert s.raw("A5") == "=SUM(A2:A4)" and s.value("A5") == 14


def test_deleting_a_referenced_cell_or_a_range_corner_gives_ref_error() -> None:
    s = grid([[1, "=A1*2"], [2, "=SUM(A1:A2)"], [3, "=A3+1"]]).sheet("s")
    s.delete_rows(0)
    assert s.raw("B1") == "=SUM(#REF!)" and s.value("B1") == FormulaError("#REF!")
    assert s.raw("B2") == "=A2+1" and s.value("B2") == 4
    s.delete_cols(0)
    assert s.raw("A2") == "=#REF!+1" and s.value("A2") == FormulaError("#REF!")


def test_references_outside_the_sheet_and_text_stay_as_typed() -> None:
    s = grid([[1, '="A1 " & A1', "=Z99"]]).sheet("s")
    s.insert_rows(0)
    s.insert_cols(0)
    assert s.raw("C2") == '="A1 " & B2' and s.value("C2") == "A1 1"  # the string untouched
    assert s.raw("D2") == "=Z99"  # outside the sheet when typed: positional
    s.set("A1", "=not a formula (")  # does not parse: stored as it is
    s.insert_rows(0)
    assert s.raw("A2") == "=not a formula ("


def test_a_formula_typed_while_a_peer_inserts_rows_still_names_its_cell() -> None:
    a = grid([["x"], ["y"], ["z"]])
    b = Doc(B)
    sync(a, b)
    a.sheet("s").insert_rows(0, 2)  # a adds two rows on top
    b.sheet("s").set("B3", "=A3")  # b, concurrently, reads "z"
    b.sheet("s").insert_rows(1)  # and inserts one of its own
    sync(a, b)
    sa, sb = a.sheet("s"), b.sheet("s")
    assert sa.raws() == sb.raws()
    assert sa.raw("B6") == "=A6" and sa.value("B6") == "z" == sb.value("B6")


def test_concurrent_inserts_both_shift_a_formula() -> None:
    a = grid([[5], ["=A1"]])
    b = Doc(B)
    sync(a, b)
    a.sheet("s").insert_rows(0)
    b.sheet("s").insert_rows(0)
    sync(a, b)
    for d in (a, b):
        assert d.sheet("s").raw("A4") == "=A3" and d.sheet("s").value("A4") == 5


def test_anchored_formulas_survive_save_load_and_undo() -> None:
    a = grid([[5], ["=A1*2"]])
    a.commit()
    a.sheet("s").insert_rows(0)
    a.commit()
    back = Doc.load(a.save())
    assert back.sheet("s").raw("A3") == "=A2*2" and back.sheet("s").value("A3") == 10
    a.undo()
    assert a.sheet("s").raw("A2") == "=A1*2" and a.sheet("s").value("A2") == 10


def test_a_users_own_dict_value_is_left_alone() -> None:
    s = Doc(A).sheet("s")
    s.set("A1", {"=f": "=B1", "=a": "not anchors"})
    s.set("A2", {"=f": "=B1"})
    assert s.raw("A1") == {"=f": "=B1", "=a": "not anchors"} and s.raw("A2") == {"=f": "=B1"}


OPS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["ins", "del", "f", "sync"]),
                         st.integers(0, 50), st.integers(0, 50)), max_size=25)


@settings(max_examples=60, deadline=None)
@given(OPS, st.integers(2, 3))
def test_replicas_converge_and_every_formula_reads_the_cell_it_named(ops, n) -> None:
    docs = [Doc(x) for x in (A, B, C)[:n]]
    s0 = docs[0].sheet("s")
    s0.resize(4, 2)  # column B exists before anyone writes there (no concurrent growth)
    for r in range(4):
        s0.set((r, 0), f"r{r}")
    sync(*docs)
    target: dict[str, str] = {}  # row label -> label of the row its formula names
    labels = iter(range(10**6))
    for who, kind, x, y in ops:
        d = docs[who % n]
        s = d.sheet("s")
        if kind == "ins":
            at = x % (s.nrows + 1)
            s.insert_rows(at)
            s.set((at, 0), f"{who}-{next(labels)}")  # only its inserter writes a row
        elif kind == "del" and s.nrows > 1:
            s.delete_rows(x % s.nrows)
        elif kind == "f" and s.nrows:
            # a formula into a row this replica inserted, naming any row's label
            mine = [r for r in range(s.nrows) if str(s.raw((r, 0))).startswith(f"{who}-")]
            if mine:
                r, t = mine[x % len(mine)], y % s.nrows
                s.set((r, 1), f"=A{t + 1}")
                target[s.raw((r, 0))] = s.raw((t, 0))
        elif kind == "sync":
            sync(d, docs[y % n])
    sync(*docs)
    sync(*docs)
    first = docs[0].sheet("s")
    assert all(d.sheet("s").raws() == first.raws() for d in docs)
    labels_now = {first.raw((r, 0)): r for r in range(first.nrows)}
    for row_label, t in target.items():
        if row_label not in labels_now:
            continue
        r = labels_now[row_label]
        if t in labels_now:
            assert first.raw((r, 1)) == f"=A{labels_now[t] + 1}"
            assert first.value((r, 1)) == t
        else:
            assert first.value((r, 1)) == FormulaError("#REF!")
