"""Many writers on one text (issue #15, target 4).

A change names only the actors its ops refer to, and declares deps only for
them; receivers still wait for what a change refers to, refuse references
to what its author never declared, regenerate every change byte for byte,
and converge. Also: the crdt modules form a tree (roots do not import Doc)
and import no other module's private name.
"""

from __future__ import annotations

import ast
import gc
import random
from pathlib import Path

import cbor2
import pytest

from ownkernel.crdt import Doc, InvalidChangeError, change_info, codec, history

CRDT = Path(__file__).resolve().parents[1] / "ownkernel" / "crdt"


def actor(i: int) -> bytes:
    return bytes([i + 1]) * 32  # 32-byte ids, like a node's key


def writers(n: int, rounds: int, seed: int = 1) -> tuple[list[Doc], list[bytes]]:
    """``n`` replicas editing one text at random positions, every round's
    changes merged everywhere; returns the replicas and every change."""
    rng = random.Random(seed)
    docs = [Doc(actor(i)) for i in range(n)]
    every: list[bytes] = []
    for _ in range(rounds):
        blobs = []
        for d in docs:
            t = d.text("t")
            if len(t) and rng.random() < 0.25:
                t.delete(rng.randrange(len(t)), 1)
            else:
                t.insert(rng.randint(0, len(t)), rng.choice(["a", "bc", "def"]))
            b = d.commit()
            assert b is not None
            blobs.append(b)
        for i, d in enumerate(docs):
            d.apply([b for j, b in enumerate(blobs) if j != i])
        every += blobs
    return docs, every


def test_change_after_merging_100_writers_is_small() -> None:
    docs, _ = writers(100, 2)
    d = docs[0]
    assert len(d.version) == 100
    t = d.text("t")
    # typing after an element of another writer: that one writer is named
    other = next(r for r in t._seq.runs() if r.act != 0 and not r.dead)
    pos = sum(len(x.content) for x in _visible_before(t, other)) + 1
    t.insert(pos, "x")
    blob = d.commit()
    assert blob is not None
    c = codec.decode(blob)
    assert len(blob) <= 300
    assert c.actors == [d.actor, d._actors[other.act]]
    assert c.deps == [(1, d.version[d._actors[other.act]])]
    # the next keystroke continues its own insert: no one named, no deps
    t.insert(pos + 1, "y")
    blob2 = d.commit()
    assert blob2 is not None
    c2 = codec.decode(blob2)
    assert c2.actors == [d.actor] and c2.deps == []
    assert len(blob2) < 80
    # a change on a map refers to no one at all, however many were merged
    d.map("m").set("k", 1)
    assert codec.decode(d.commit()).actors == [d.actor]  # type: ignore[arg-type]


def _visible_before(t: object, run: object) -> list[object]:
    out = []
    for r in t._seq.runs():  # type: ignore[attr-defined]
        if r is run:
            break
        if not r.dead:
            out.append(r)
    return out


def test_regenerated_changes_are_byte_identical() -> None:
    """The node re-serves stored changes and compares them with change(actor, seq)."""
    docs, every = writers(12, 6, seed=3)
    d = docs[5]
    for blob in every:
        info = change_info(blob)
        assert d.change(info.actor, info.seq) == blob
    # a commit of several ops referring to several writers regenerates too
    t = d.text("t")
    t.delete(0, min(4, len(t)))
    t.insert(len(t) // 2, "mid")
    d.map("m").set("k", [1])
    blob = d.commit()
    assert blob is not None and len(codec.decode(blob).actors) > 2
    assert d.change(d.actor, d.version[d.actor]) == blob
    every.append(blob)
    e = Doc.load(d.save())
    for blob in every:
        info = change_info(blob)
        assert e.change(info.actor, info.seq) == blob


def test_all_replicas_converge_whatever_the_delivery_order() -> None:
    docs, every = writers(15, 5, seed=4)
    want = str(docs[0].text("t"))
    assert all(str(d.text("t")) == want for d in docs)
    for seed in range(4):
        shuffled = every[:]
        random.Random(seed).shuffle(shuffled)
        late = Doc()
        for blob in shuffled:  # one by one: early arrivals wait in the buffer
            late.apply([blob])
        assert late.pending_count == 0
        assert str(late.text("t")) == want
        bulk = Doc()
        bulk.apply(shuffled)
        assert str(bulk.text("t")) == want
        assert Doc.load(bulk.save()).version == docs[0].version


def test_change_waits_for_the_version_it_refers_to() -> None:
    a, b, c = Doc(actor(0)), Doc(actor(1)), Doc(actor(2))
    a.text("t").insert(0, "hello")
    a1 = a.commit()
    a.text("t").insert(5, " world")
    a2 = a.commit()
    b.apply([a1, a2])  # type: ignore[list-item]
    b.text("t").insert(11, "!")  # after a's element: names a, deps on a's seq 2
    b1 = b.commit()
    assert b1 is not None
    assert change_info(b1).deps == {a.actor: 2}
    c.apply([b1])  # a's changes are missing: held, not refused
    assert c.pending_count == 1 and str(c.text("t")) == ""
    c.apply([a1])
    assert c.pending_count == 1  # still needs a's second change
    c.apply([a2])
    assert c.pending_count == 0 and str(c.text("t")) == "hello world!"


def test_reference_to_an_undeclared_writer_is_refused() -> None:
    """A change may refer only to what its author declared: dropping the dep
    from a change that names another writer is refused, on the keystroke
    fast path and on the general path alike, and leaves nothing behind."""
    a, b = Doc(actor(0)), Doc(actor(1))
    a.text("t").insert(0, "abc")
    a1 = a.commit()
    b.apply([a1])  # type: ignore[list-item]
    b.text("t").insert(3, "d")
    b1 = b.commit()
    assert b1 is not None
    v = cbor2.loads(b1)
    assert v[1] == [b.actor, a.actor] and v[4] == [1, 1]
    v[4] = 0
    forged = cbor2.dumps(v)
    for batch in ([forged], [forged, forged]):
        c = Doc(actor(2))
        c.apply([a1])  # type: ignore[list-item]
        before = c.save()
        with pytest.raises(InvalidChangeError):
            c.apply(batch)
        assert c.save() == before and b.actor not in c.version
        assert len(c._actors) == 2  # the refused writer was not kept in the table


def test_writer_first_change_on_the_fast_path_can_be_refused_cleanly() -> None:
    c = Doc(actor(2))
    c.text("t").insert(0, "x")
    c.commit()
    before = c.save()
    # a newcomer's first change deleting an element it never made
    bad = cbor2.dumps([codec.CHANGE, actor(7), 1, 5, 0, codec.DEL, "t:t", 0, 1, 1])
    with pytest.raises(InvalidChangeError):
        c.apply([bad])
    assert c.save() == before and len(c._actors) == 1
    good = cbor2.dumps([codec.CHANGE, actor(7), 1, 5, 0, codec.INS, "t:t", 0, -1, "y"])
    c.apply([good])
    assert c.version[actor(7)] == 1 and str(c.text("t")) in ("xy", "yx")


def test_deps_declared_once_per_version() -> None:
    a, b = Doc(actor(0)), Doc(actor(1))
    a.text("t").insert(0, "aaaa")
    b.apply([a.commit()])  # type: ignore[list-item]
    t = b.text("t")
    t.insert(1, "x")  # refers to a: declares a's seq 1
    assert change_info(b.commit()).deps == {a.actor: 1}  # type: ignore[arg-type]
    t.insert(3, "y")  # refers to a again, nothing new seen of a: no dep
    blob = b.commit()
    assert blob is not None
    assert change_info(blob).deps == {} and codec.decode(blob).actors == [b.actor, a.actor]
    # after reloading, what was declared stays declared
    e = Doc.load(b.save(), b.actor)
    e.text("t").insert(5, "z")
    blob = e.commit()
    assert blob is not None and change_info(blob).deps == {}


@pytest.mark.parametrize(
    "pairs",
    [[(1, 5)], [(0, 1)], [(3, 2**53 - 1)], [(1, 2), (4, 7)], [(1, 2**53)], [(1, -1)], []],
)
def test_deps_values_round_trip(pairs: list[tuple[int, int]]) -> None:
    stored = history.deps_value(pairs)
    assert list(history.dep_pairs(stored)) == pairs
    # one in-range dep is an int (untracked by the GC), anything else a tuple
    one = len(pairs) == 1 and 0 <= pairs[0][1] < 2**53
    assert (type(stored) is int) == one
    assert history.dep_key_split(history.dep_key(7, 2**53 - 1)) == (7, 2**53 - 1)


def _named_deps(d: Doc) -> set[tuple[bytes, int, bytes, int]]:
    """(author, seq, other actor, version) of every dep a replica holds."""
    out = set()
    for k, value in d._deps.items():
        a, s = history.dep_key_split(k)
        for x, v in history.dep_pairs(value):
            out.add((d._actors[a], s, d._actors[x], v))
    return out


def test_merged_keystrokes_leave_no_gc_tracked_deps() -> None:
    """After merging many writers' keystrokes a replica's deps are ints only:
    no tuple per merged change, and no dict the GC must scan."""
    docs, every = writers(6, 5, seed=3)
    union = set().union(*map(_named_deps, docs))
    assert len(union) > 10
    for d in docs:
        assert d._deps and all(type(k) is int and type(v) is int for k, v in d._deps.items())
        assert not gc.is_tracked(d._deps)
        assert _named_deps(d) == union  # every replica knows every change's deps
        e = Doc.load(d.save(), d.actor)  # and they come back from a save
        assert _named_deps(e) == union
        assert e.changes() == d.changes()
    fresh = Doc(actor(9))
    fresh.apply(every)  # the general path: the same deps, the same form
    assert _named_deps(fresh) == union and not gc.is_tracked(fresh._deps)


# -------------------------------------------------------- module structure
def _imports(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.append(((node.level * ".") + (node.module or ""), [a.name for a in node.names]))
    return out


def test_crdt_modules_import_no_private_names() -> None:
    for path in sorted(CRDT.glob("*.py")):
        for mod, names in _imports(path):
            if mod == "__future__":
                continue
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{path.name} imports {private} from {mod}"


@pytest.mark.parametrize("root", ["text", "map", "log", "sheet"])
def test_roots_do_not_import_doc(root: str) -> None:
    mods = [m for m, _ in _imports(CRDT / f"{root}.py")]
    assert ".doc" not in mods and "ownkernel.crdt.doc" not in mods
