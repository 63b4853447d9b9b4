"""Big texts: the positional index over blocks (issue #15, target 5).

Every test compares against a plain Python string edited the same way. Blocks
are made tiny (``MAX_RUNS`` patched) so that a few hundred edits already give
hundreds of blocks, block splits, index growth and edits at block boundaries.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownkernel.crdt import Doc, blocks, rga, snapshot
from ownkernel.crdt.errors import DecodeError
from ownkernel.crdt.snapshot import zstd


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "MAX_RUNS", 4)


def check_index(seq: rga.Sequence) -> None:
    """The lazily synced index equals one built from scratch, every block sits
    in its slot (slots increase along the blocks, free slots between them),
    lengths add up, and position <-> id round-trips."""
    assert [b for b in seq._slots if b is not None] == seq.blocks
    assert all(seq._slots[b.idx] is b for b in seq.blocks)
    assert len(seq._slots) == seq._size
    assert all(b.vis == sum(r.n for r in b.runs if not r.dead) for b in seq.blocks)
    assert seq.length == sum(b.vis for b in seq.blocks)
    if seq._tree is not None:
        synced = list(seq._index())
        assert synced == list(seq._build_index())
    pos = 0
    for b in seq.blocks:
        assert seq._block_start(b.idx) == pos
        pos += b.vis
    for p in range(0, seq.length, max(1, seq.length // 50)):
        lam, act = seq.element_id(p)
        assert seq.position_of_id(lam, act) == p


def edit(t, model: str, rnd: random.Random) -> str:
    if model and rnd.random() < 0.35:
        p = rnd.randrange(len(model))
        n = min(rnd.randint(1, 4), len(model) - p)
        t.delete(p, n)
        return model[:p] + model[p + n :]
    p = rnd.randint(0, len(model))
    s = "".join(rnd.choices("abcdefgh", k=rnd.randint(1, 3)))
    t.insert(p, s)
    return model[:p] + s + model[p:]


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_match_a_string(tiny_blocks: None, seed: int) -> None:
    rnd = random.Random(seed)
    d = Doc(actor=b"A")
    t = d.text("t")
    model = ""
    for step in range(1500):
        model = edit(t, model, rnd)
        if step % 7 == 0:
            d.commit()
        if step % 100 == 0:
            assert str(t) == model
            check_index(t._seq)
            for _ in range(20):
                if model:
                    i = rnd.randrange(len(model))
                    assert t[i] == model[i]
    assert str(t) == model
    assert len(t._seq.blocks) > 50  # the index really spans many blocks
    check_index(t._seq)


def test_edits_at_every_block_boundary(tiny_blocks: None) -> None:
    rnd = random.Random(7)
    d = Doc(actor=b"A")
    t = d.text("t")
    model = ""
    for _ in range(400):
        model = edit(t, model, rnd)
    d.commit()
    seq = t._seq
    starts = []
    pos = 0
    for b in seq.blocks:
        starts.append(pos)
        pos += b.vis
    # from the end, so that earlier boundaries stay where they were measured
    for p in sorted(set(starts), reverse=True):
        for q in (p, p - 1, p + 1):
            if 0 <= q < len(model):
                assert t[q] == model[q]
        if 0 < p < len(model):
            t.delete(p - 1, 2)  # straddles the boundary
            model = model[: p - 1] + model[p + 1 :]
        if p <= len(model):
            t.insert(p, "|")
            model = model[:p] + "|" + model[p:]
    d.commit()
    assert str(t) == model
    check_index(seq)


@pytest.mark.parametrize("seed", range(3))
def test_remote_replica_and_observer_positions(tiny_blocks: None, seed: int) -> None:
    """Remote inserts/deletes at random positions land where the author put
    them, and the positions reported to observers (from the index) rebuild
    the same string."""
    rnd = random.Random(100 + seed)
    a = Doc(actor=b"A")
    b = Doc(actor=b"B")
    ta = a.text("t")
    tb = b.text("t")
    seen: list[str] = [""]

    def on_delta(dl) -> None:  # noqa: ANN001 - Delta
        s = seen[0]
        s = s[: dl.pos] + s[dl.pos + dl.deleted :]
        seen[0] = s[: dl.pos] + dl.inserted + s[dl.pos :]

    tb.observe(on_delta)
    model = ""
    for step in range(800):
        model = edit(ta, model, rnd)
        if step % 3 == 0:
            b.apply([a.commit()])
    b.apply([a.commit()])
    assert str(ta) == model
    assert str(tb) == model
    assert seen[0] == model
    check_index(tb._seq)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.floats(0, 1),
            st.text(alphabet="xyz", min_size=1, max_size=4),
            st.integers(1, 5),
        ),
        max_size=120,
    )
)
def test_hypothesis_ops_match_a_string(ops: list[tuple[bool, float, str, int]]) -> None:
    old = blocks.MAX_RUNS
    blocks.MAX_RUNS = 3
    try:
        d = Doc(actor=b"A")
        r = Doc(actor=b"R")
        t = d.text("t")
        model = ""
        for i, (ins, frac, s, n) in enumerate(ops):
            if ins or not model:
                p = int(frac * len(model))
                t.insert(p, s)
                model = model[:p] + s + model[p:]
            else:
                p = min(int(frac * len(model)), len(model) - 1)
                n = min(n, len(model) - p)
                t.delete(p, n)
                model = model[:p] + model[p + n :]
            if i % 5 == 4:
                r.apply([c for c in [d.commit()] if c])
        r.apply([c for c in [d.commit()] if c])
        assert str(t) == model
        assert str(r.text("t")) == model
        check_index(t._seq)
        check_index(r.text("t")._seq)
        e = Doc.load(d.save())
        assert str(e.text("t")) == model
        check_index(e.text("t")._seq)
    finally:
        blocks.MAX_RUNS = old


@pytest.mark.parametrize("seed", range(3))
def test_save_load_round_trip_then_keep_editing(tiny_blocks: None, seed: int) -> None:
    rnd = random.Random(200 + seed)
    a = Doc(actor=b"A")
    b = Doc(actor=b"B")
    ta, tb = a.text("t"), b.text("t")
    model = ""
    for _ in range(300):
        model = edit(ta, model, rnd)
    b.apply(a.changes())
    for _ in range(100):  # concurrent edits by B, merged into A
        edit(tb, str(tb), rnd)
    a.apply([b.commit()])
    model = str(ta)
    assert str(b.text("t")) == model
    e = Doc.load(a.save(), actor=b"A")
    te = e.text("t")
    assert str(te) == model
    assert e.version == a.version
    check_index(te._seq)
    # the loaded copy keeps editing at random positions, and a peer follows
    for _ in range(300):
        model = edit(te, model, rnd)
    assert str(te) == model
    b.apply([e.commit()])
    assert str(b.text("t")) == model
    check_index(te._seq)
    # saving again gives a document equal in text and history
    f = Doc.load(e.save())
    assert str(f.text("t")) == model
    assert f.version == e.version


def test_big_text_saves_at_the_fast_level_and_round_trips() -> None:
    rnd = random.Random(5)
    d = Doc(actor=b"A")
    t = d.text("t")
    para = "".join(rnd.choices("abcdefghij \n", k=2000))
    model = ""
    for _ in range(400):  # 800k characters pasted at random positions
        p = rnd.randint(0, len(model))
        t.insert(p, para)
        model = model[:p] + para + model[p:]
    d.commit()
    for _ in range(500):
        model = edit(t, model, rnd)
    saved = d.save()
    assert len(zstd.decompress(saved)) > snapshot.SMALL_BODY
    e = Doc.load(saved)
    assert str(e.text("t")) == model
    assert e.changes() and len(e.changes()) == len(d.changes())
    check_index(e.text("t")._seq)


def test_loading_reads_the_text_without_building_its_runs() -> None:
    """A loaded text is built at its first edit or merge, not at load: reading it
    back, its length and a save of it need no runs (issue #15 target 5)."""
    rnd = random.Random(8)
    a = Doc(actor=b"A")
    t = a.text("t")
    model = ""
    for _ in range(400):
        model = edit(t, model, rnd)
    a.commit()
    e = Doc.load(a.save(), actor=b"A")
    te = e.text("t")
    assert "_lazy" in vars(te._seq)
    assert str(te) == model and len(te) == len(model)
    assert "_lazy" in vars(te._seq)  # reading did not build it
    b = Doc(actor=b"B")  # a peer's edit merged into the unbuilt copy
    b.apply(a.changes())
    b.text("t").insert(3, "peer")
    e.apply([b.commit()])
    model = str(b.text("t"))
    assert "_lazy" not in vars(te._seq) and str(te) == model
    check_index(te._seq)
    te.insert(0, "me")  # and a local edit after it
    assert str(te) == "me" + model


def test_text_saved_as_one_string_by_earlier_releases_still_loads() -> None:
    """Earlier saves kept a text's runs as one string in run order (deleted runs
    included); now visible and deleted text are two strings. Both load."""
    rnd = random.Random(11)
    d = Doc(actor=b"A")
    t = d.text("t")
    model = ""
    for _ in range(300):
        model = edit(t, model, rnd)
    body = _unpacked(cbor2.loads(zstd.decompress(d.save())))
    cols = body[3]["t:t"]
    vis, gone = cols[6]
    assert vis == model and type(gone) is str
    cols[6] = "".join(snapshot._run_contents(cols[6], cols[4], cols[5], True))
    for pack in (zstd.compress, zlib.compress):
        e = Doc.load(pack(cbor2.dumps(body)), actor=b"A")
        assert str(e.text("t")) == model
        e.text("t").insert(0, "x")  # and it builds its runs from that string too
        assert str(e.text("t")) == "x" + model


def test_overlapping_saved_runs_are_a_clear_error_at_first_use() -> None:
    """The runs are built lazily, so the check that needs them (an actor's runs
    may not overlap) raises DecodeError at first use, every time, not another error."""
    d = Doc(actor=b"A")
    t = d.text("t")
    t.insert(0, "hello")
    t.insert(2, "XY")
    body = cbor2.loads(zstd.decompress(d.save()))
    cols = body[3]["t:t"]
    dlams = list(snapshot._unpack(cols[1], "lamport"))
    dlams[1] = 0  # the second run starts where the first does: they overlap
    cols[1] = snapshot._pack(dlams)
    e = Doc.load(zstd.compress(cbor2.dumps(body)))
    for _ in range(2):
        with pytest.raises(DecodeError, match="overlapping"):
            e.text("t").insert(0, "x")


def test_list_round_trip_with_many_blocks(tiny_blocks: None) -> None:
    rnd = random.Random(9)
    d = Doc(actor=b"A")
    lst = d.list("l")
    model: list[int] = []
    for i in range(500):
        if model and rnd.random() < 0.3:
            p = rnd.randrange(len(model))
            del lst[p]
            del model[p]
        else:
            p = rnd.randint(0, len(model))
            lst.insert(p, i)
            model.insert(p, i)
    assert lst.to_list() == model
    e = Doc.load(d.save())
    assert e.list("l").to_list() == model
    check_index(e.list("l")._seq)


PACKED = (1, 2, 3, 5)  # a saved sequence's packed int columns (snapshot._pack)


def _unpacked(body: list[Any]) -> list[Any]:
    """A saved body with every packed int column turned back into a CBOR
    array of ints: the form saves made before packing hold."""
    for cols in body[3].values():
        for i in PACKED:
            cols[i] = list(snapshot._unpack(cols[i], "test"))
    for h in body[2]:
        if h is not None:
            h[4][1:8] = [list(snapshot._unpack(c, "test")) for c in h[4][1:8]]
    return body


def _tamper(saved: bytes, column: int, value: object) -> bytes:
    body = cbor2.loads(zstd.decompress(saved))
    cols = body[3]["t:t"]
    packed = column in PACKED
    col = list(snapshot._unpack(cols[column], "test") if packed else cols[column])
    col[0] = value
    # a byte-string column (acts, dead) stays one where the value fits a byte
    fits = isinstance(cols[column], bytes) and type(value) is int and 0 <= value < 256
    cols[column] = snapshot._pack(col) if packed else bytes(col) if fits else col
    return zstd.compress(cbor2.dumps(body))


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [(0, 7, "actor index"), (3, 99, "actor index"), (5, 0, "run"), (0, -2, "actor index")],
)
def test_corrupt_columns_are_a_clear_error(column: int, value: object, what: str) -> None:
    d = Doc(actor=b"A")
    t = d.text("t")
    t.insert(0, "hello")
    t.insert(2, "XY")
    saved = d.save()
    with pytest.raises(DecodeError, match=what):
        Doc.load(_tamper(saved, column, value))
    assert str(Doc.load(saved).text("t")) == "heXYllo"  # the good bytes still load


@pytest.mark.parametrize("seed", range(3))
def test_one_paste_edited_all_over_stays_findable(tiny_blocks: None, seed: int) -> None:
    """One big insert split into hundreds of fragments: remote ops find ids
    through the fragment snapshot (find_id), which goes stale as fragments
    split further and deleted ones merge (backspacing runs)."""
    rnd = random.Random(300 + seed)
    a = Doc(actor=b"A")
    b = Doc(actor=b"B")
    ta = a.text("t")
    model = "".join(rnd.choices("abcdef", k=3000))
    ta.insert(0, model)
    b.apply([a.commit()])
    for step in range(1200):
        if rnd.random() < 0.15 and len(model) > 10:  # a burst of backspaces
            p = rnd.randrange(5, len(model))
            for q in range(p, p - rnd.randint(2, 5), -1):
                ta.delete(q, 1)
                model = model[:q] + model[q + 1 :]
        else:
            model = edit(ta, model, rnd)
        if step % 2 == 0:
            b.apply([a.commit()])
    b.apply([c for c in [a.commit()] if c])
    assert str(ta) == model
    assert str(b.text("t")) == model
    seq = b.text("t")._seq
    assert seq._frags  # the long chain really used the snapshot
    check_index(seq)
    for r in seq.runs():  # every fragment is found by its own first and last id
        assert seq.find_id(r.lam, r.act) is r
        assert seq.find_id(r.lam + r.n - 1, r.act) is r


def test_dead_flags_saved_as_ints_by_earlier_releases_still_load() -> None:
    """Dead flags and actor indices are saved as byte strings now; earlier
    releases wrote arrays of CBOR bools or 0/1 ints. Every form loads."""
    rnd = random.Random(12)
    d = Doc(actor=b"A")
    t = d.text("t")
    model = ""
    for _ in range(300):
        model = edit(t, model, rnd)
    body = cbor2.loads(zstd.decompress(d.save()))
    cols = body[3]["t:t"]
    assert type(cols[0]) is bytes and type(cols[4]) is bytes and 0 < sum(cols[4]) < len(cols[4])
    saved = (bytes(cols[0]), bytes(cols[4]))
    for acts, dead in [
        saved,
        (list(saved[0]), [bool(x) for x in saved[1]]),
        (list(saved[0]), list(saved[1])),
    ]:
        cols[0], cols[4] = acts, dead
        e = Doc.load(zstd.compress(cbor2.dumps(body)), actor=b"A")
        assert str(e.text("t")) == model
        e.text("t").insert(len(model) // 2, "x")
        half = len(model) // 2
        assert str(e.text("t")) == model[:half] + "x" + model[half:]
        check_index(e.text("t")._seq)


def test_a_block_split_moves_few_blocks(tiny_blocks: None) -> None:
    """A block that splits takes a free slot next to it (or moves the few
    blocks up to the nearest one) instead of renumbering every block after it;
    only a crowded neighbourhood spreads all blocks out again."""
    rnd = random.Random(5)
    d = Doc(actor=b"A")
    t = d.text("t")
    model = ""
    for _ in range(600):
        model = edit(t, model, rnd)
    seq = t._seq
    layouts = 0
    for _ in range(200):
        before = {id(b): b.idx for b in seq.blocks}
        n = len(seq.blocks)
        model = edit(t, model, rnd)
        if len(seq.blocks) > n:  # this edit split a block
            moved = sum(1 for b in seq.blocks if before.get(id(b), b.idx) != b.idx)
            if moved > 16:
                layouts += 1
    assert str(t) == model
    check_index(seq)
    assert len(seq.blocks) > 100
    assert layouts < 10  # most splits found room nearby


def test_many_remote_edits_then_local_edits(
    tiny_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica merges a batch touching most blocks (their index leaves are
    refreshed together), then edits locally at positions the index finds."""
    monkeypatch.setattr(blocks, "LINEAR_BLOCKS", 4)  # the tree, not the linear walk
    rnd = random.Random(8)
    a, b = Doc(actor=b"A"), Doc(actor=b"B")
    ta, tb = a.text("t"), b.text("t")
    model = ""
    for _ in range(500):
        model = edit(ta, model, rnd)
    b.apply([a.commit()])
    tb[0]  # b builds and uses its index
    assert len(tb._seq.blocks) > 8
    changes = []
    for _ in range(300):
        model = edit(ta, model, rnd)
        changes.append(a.commit())
    for c in changes:  # one by one, as they arrive live
        b.apply([c])
    assert len(tb._seq._dirty) * 4 > len(tb._seq.blocks)  # the batch path is taken
    for _ in range(50):
        p = rnd.randrange(len(model))
        assert tb[p] == model[p]
        tb.insert(p, "Z")
        model = model[:p] + "Z" + model[p:]
    assert str(tb) == model
    check_index(tb._seq)
