"""Starts (run-length encoded change starts) behaves like the plain sorted list."""

from __future__ import annotations

from bisect import bisect_right

from hypothesis import given, settings
from hypothesis import strategies as st

from ownkernel.crdt.codec import rle_decode, rle_encode
from ownkernel.crdt.starts import Starts

gaps = st.lists(st.one_of(st.just(1), st.integers(1, 60)), min_size=1, max_size=60)


def _starts(g: list[int]) -> list[int]:
    out, x = [], 0
    for d in g:
        x += d
        out.append(x)
    return out


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(gaps, st.data())
def test_starts_match_the_plain_list(g: list[int], data: st.DataObject) -> None:
    lst = _starts(g)
    s = Starts()
    for x in lst:  # through the append buffer, read before it is folded
        s.append(x)
    assert len(s) == len(lst) and s[-1] == lst[-1] and s.to_rle() == rle_encode(lst)
    s = Starts(lst)
    assert len(s) == len(lst) and list(s) == lst
    assert [s[i] for i in range(len(lst))] == lst and s[-1] == lst[-1]
    for q in range(lst[-1] + 2):
        assert s.count_le(q) == bisect_right(lst, q)
    assert s.to_rle() == rle_encode(lst) and rle_decode(s.to_rle()) == lst
    i = data.draw(st.integers(0, len(lst) - 1))
    j = data.draw(st.integers(i + 1, len(lst)))
    assert s.rle_range(i, j) == rle_encode(lst[i:j])
    t = Starts(lst[:i])
    t.extend_rle(rle_encode(lst[i:]))
    assert list(t) == lst and len(t) == len(lst)


def test_a_typists_history_is_one_run() -> None:
    s = Starts()
    for lam in range(1, 260_001):
        s.append(lam)
        if lam == 5000:
            assert s.count_le(4000) == 4000 and len(s) == 5000
    assert len(s) == 260_000 and s.to_rle() == [1, 1, 259_999] and len(s._runs) == 1
    assert len(s.buf) == 0 and s[123_456] == 123_457
