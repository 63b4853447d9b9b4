"""Records (ownkernel.crdt.records): items with fields and moves, converging.

Hypothesis drives 2-5 replicas with fixed distinct actors through random adds,
field edits, checks, moves and deletes, and delivers their changes in random
order with duplicates and late re-deliveries. At the end every replica shows
the same items in the same order, no item twice, every item added and never
deleted present exactly once, and save()/load() keeps it.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownkernel.crdt import Doc
from ownkernel.crdt.records import Records

ACTORS = [b"\x01", b"\x02\x00", b"\x01\xff", b"\xfe" * 32, b"m"]
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def sync(a: Doc, b: Doc) -> None:
    a.apply(b.changes(since=a.version))
    b.apply(a.changes(since=b.version))


def test_add_edit_move_delete_on_one_replica() -> None:
    d = Doc(b"a")
    r = Records(d, "todo")
    x = r.add("milk", by="ann", when=1.0)
    y = r.add("eggs")
    z = r.add("bread", index=0)
    assert [i["text"] for i in r.items()] == ["bread", "milk", "eggs"]
    r.set(x, "done", True)
    r.move(y, 0)
    assert [(i["text"], i["done"]) for i in r.items()] == [
        ("eggs", False), ("bread", False), ("milk", True)]
    assert r.get(x) == {"text": "milk", "done": True, "by": "ann", "when": 1.0}
    r.move(y, 5)  # past the end: last
    r.delete(z)
    assert [i["text"] for i in r.items()] == ["milk", "eggs"]
    with pytest.raises(KeyError, match="was deleted"):
        r.set(z, "text", "x")
    with pytest.raises(KeyError, match="no item"):
        r.move("nope", 0)
    with pytest.raises(ValueError, match="bad field name"):
        r.set(x, "a.b", 1)
    with pytest.raises(IndexError, match="item position"):
        r.add("x", index=-1)
    d2 = Doc.load(d.save())
    assert Records(d2, "todo").items() == r.items()


def test_plain_list_values_show_and_become_records_when_edited() -> None:
    d = Doc(b"a")
    d.list("todo").append("old one")
    d.list("todo").append(42)
    r = Records(d, "todo")
    assert [(i["id"], i["text"]) for i in r.items()] == [("~0", "old one"), ("~1", "42")]
    new = r.set("~0", "done", True)
    assert not new.startswith("~")
    assert [(i["text"], i["done"]) for i in r.items()] == [("old one", True), ("42", False)]


def test_concurrent_edits_to_different_fields_both_survive() -> None:
    a, b = Doc(b"a"), Doc(b"b")
    ra, rb = Records(a, "todo"), Records(b, "todo")
    x = ra.add("buy milk")
    sync(a, b)
    ra.set(x, "text", "buy oat milk")
    rb.set(x, "done", True)
    sync(a, b)
    assert ra.get(x)["text"] == rb.get(x)["text"] == "buy oat milk"
    assert ra.get(x)["done"] is rb.get(x)["done"] is True


def test_concurrent_moves_of_one_item_keep_it_once() -> None:
    a, b = Doc(b"a"), Doc(b"b")
    ra, rb = Records(a, "todo"), Records(b, "todo")
    ids = [ra.add(t) for t in "abcd"]
    sync(a, b)
    ra.move(ids[3], 0)  # d to the top
    rb.move(ids[3], 2)  # d to the middle
    rb.move(ids[0], 3)  # and a to the end
    sync(a, b)
    assert ra.items() == rb.items()
    texts = [i["text"] for i in ra.items()]
    assert sorted(texts) == ["a", "b", "c", "d"]
    # concurrent delete and move: deleted stays deleted
    ra.delete(ids[1])
    rb.move(ids[1], 0)
    sync(a, b)
    assert ra.items() == rb.items() and "b" not in [i["text"] for i in ra.items()]


@st.composite
def scripts(draw: Any) -> tuple[int, list[tuple[Any, ...]], int]:
    n = draw(st.integers(2, 5), label="replicas")
    steps = draw(st.lists(st.tuples(
        st.integers(0, n - 1), st.sampled_from(["add", "add", "text", "done", "move", "move",
                                                "delete", "deliver", "deliver"]),
        st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=40), label="steps")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    return n, steps, seed


@SETTINGS
@given(scripts())
def test_replicas_converge_without_losing_or_duplicating_items(script: Any) -> None:
    n, steps, seed = script
    rnd = random.Random(seed)
    docs = [Doc(ACTORS[i]) for i in range(n)]
    recs = [Records(d, "todo") for d in docs]
    sent: list[bytes] = []  # every change anyone made
    added: set[str] = set()
    deleted: set[str] = set()
    for who, op, x, y in steps:
        r, d = recs[who], docs[who]
        ids = r.ids()
        if op == "add":
            added.add(r.add(f"t{x}", index=x % (len(ids) + 1), by=f"p{who}", when=float(y)))
        elif op == "deliver":
            # a random handful of known changes, shuffled, some twice
            pick = [rnd.choice(sent) for _ in range(min(len(sent), x % 8))] if sent else []
            rnd.shuffle(pick)
            d.apply(pick)
        elif ids:
            iid = ids[x % len(ids)]
            if op == "text":
                r.set(iid, "text", f"e{y}")
            elif op == "done":
                r.set(iid, "done", bool(y % 2))
            elif op == "move":
                r.move(iid, y % len(ids))
            else:
                r.delete(iid)
                deleted.add(iid)
        blob = d.commit()
        if blob:
            sent.append(blob)
    for d in docs:  # everything, in a random order, twice
        everything = sent * 2
        rnd.shuffle(everything)
        d.apply(everything)
    final = [r.items() for r in recs]
    assert all(f == final[0] for f in final[1:])
    got = [i["id"] for i in final[0]]
    assert len(got) == len(set(got)), "an item shows twice"
    assert set(got) == added - deleted, "an item was lost or came back"
    for d, r in zip(docs, recs):
        assert Records(Doc.load(d.save()), "todo").items() == r.items()
