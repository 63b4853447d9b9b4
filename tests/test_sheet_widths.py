"""Shared column widths of a sheet (``Sheet.set_col_width`` / ``col_widths``):
kept per column id, so they follow columns through concurrent inserts and
deletes, converge between replicas, survive save/load, and bad input is refused
without writing anything."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownkernel.crdt import Doc

A, B, C = b"\x01alice", b"\x02bob", b"\x03carol"


def sync(*docs: Doc) -> None:
    for x in docs:
        for y in docs:
            if x is not y:
                y.apply(x.changes(since=y.version))


def test_width_follows_its_column_through_inserts_and_deletes() -> None:
    a = Doc(A)
    s = a.sheet("s")
    s.resize(2, 4)
    s.set_col_width(2, 150)
    assert s.col_widths() == {2: 150}
    s.insert_cols(0, 2)
    assert s.col_widths() == {4: 150}
    s.delete_cols(0, 3)
    assert s.col_widths() == {1: 150}
    s.delete_cols(1)
    assert s.col_widths() == {}
    assert "m:_layout:s" in a.roots()  # where it is kept, as documented


def test_a_sheet_nobody_resized_adds_no_root() -> None:
    a = Doc(A)
    a.sheet("s").set("B2", 1)
    assert a.sheet("s").col_widths() == {}
    assert set(a.roots()) == {"s:s"}


def test_widths_reach_a_peer_and_survive_a_concurrent_column_insert() -> None:
    a, b = Doc(A), Doc(B)
    a.sheet("s").resize(1, 3)
    sync(a, b)
    a.sheet("s").set_col_width(1, 200)  # B's column
    b.sheet("s").insert_cols(0, 1)  # concurrently, a column before it
    sync(a, b)
    assert a.sheet("s").col_widths() == b.sheet("s").col_widths() == {2: 200}


def test_concurrent_resizes_of_one_column_converge_and_reset_works() -> None:
    a, b = Doc(A), Doc(B)
    a.sheet("s").resize(1, 2)
    sync(a, b)
    a.sheet("s").set_col_width(0, 80)
    b.sheet("s").set_col_width(0, 300)
    sync(a, b)
    w = a.sheet("s").col_widths()
    assert w == b.sheet("s").col_widths() and w[0] in (80, 300)
    b.sheet("s").set_col_width(0, None)
    sync(a, b)
    assert a.sheet("s").col_widths() == b.sheet("s").col_widths() == {}


def test_widths_survive_save_and_load() -> None:
    a = Doc(A)
    s = a.sheet("s")
    s.resize(1, 3)
    s.set_col_width(2, 64)
    a.commit()
    back = Doc.load(a.save())
    assert back.sheet("s").col_widths() == {2: 64}


def test_bad_widths_are_refused_and_write_nothing() -> None:
    a = Doc(A)
    s = a.sheet("s")
    s.resize(1, 2)
    for bad in (0, 15, 4001, 12.5, True, "100"):
        with pytest.raises(ValueError, match="column width"):
            s.set_col_width(0, bad)  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="no column 2"):
        s.set_col_width(2, 100)
    assert s.col_widths() == {}
    # an entry that is not a width (written into the map by hand) is ignored
    a.map("_layout:s").set("note", "hello")
    a.map("_layout:s").set("w1.zz", 100)
    s.set_col_width(1, 90)
    assert s.col_widths() == {1: 90}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["ins", "del", "w"]),
                          st.integers(0, 9), st.integers(16, 400)), max_size=14),
       st.randoms(use_true_random=False))
def test_replicas_converge_on_widths_under_random_edits(ops, rnd) -> None:
    docs = [Doc(A), Doc(B), Doc(C)]
    docs[0].sheet("s").resize(1, 4)
    sync(*docs)
    for who, kind, at, px in ops:
        s = docs[who].sheet("s")
        if kind == "ins":
            s.insert_cols(min(at, s.ncols))
        elif kind == "del" and s.ncols > 1:
            s.delete_cols(at % s.ncols)
        elif kind == "w" and s.ncols:
            s.set_col_width(at % s.ncols, px)
        if rnd.random() < 0.3:  # sometimes two of them meet midway
            x, y = rnd.sample(docs, 2)
            sync(x, y)
    sync(*docs)
    sync(*docs)
    first = docs[0].sheet("s").col_widths()
    assert all(d.sheet("s").col_widths() == first for d in docs)
    assert all(0 <= c < docs[0].sheet("s").ncols for c in first)
