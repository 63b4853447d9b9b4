"""Property-based convergence of ownkernel.crdt documents (hypothesis).

2-5 replicas with fixed distinct actors make random ops of every type (text,
list, map, counter, log, sheet), commit at random points, and exchange
changes over a hostile network: random order, duplicates, drops that are
re-delivered late, batches, and ``changes(since=...)`` bundles (sometimes
from an older version, so bundles overlap what the receiver has). At the end
every replica holds the same text, list values, map dicts, counter values,
log messages, evaluated sheet values and version, and ``Doc.load(save())``
of each equals it. Some ops are grouped in ``transaction()`` blocks with
remote changes arriving inside them, and remote changes also arrive while a
replica has uncommitted ops (apply() then closes them into a change of their
own, which the replica sends like any other).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownkernel.crdt import Doc

ACTORS = [b"\x01", b"\x02\x00", b"\x01\xff", b"\xfe" * 32, b"m"]

TEXT_CHUNKS = ["a", "bc", "xyz", "é", "👍", "漢字", "e\u0301", "👩\u200d💻", " ", "\n"]
VALUES = [None, True, 0, -7, 2**40, 1.5, "s", "", b"\x00b", [1, [2]], {"k": [None]}]
MAP_KEYS = ["a", "b", "c", "ü"]
FORMULAS = ["=A1+B1", "=SUM(A1:C4)", "=1/B2", '=A2&"x"', "=C3", "=C1*2", "=IF(A1>1,B1,C1)",
            "=MAX(A1:B3)-MIN(B1:C2)", "=A1/0", "=ZZ9"]

FAST = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=1500)


def state(d: Doc) -> dict[str, Any]:
    """Everything a user can observe of a doc, comparable with == (errors as str).

    Reads the same roots on every replica (reading creates a root locally)."""
    g = d.log("chat")
    s = d.sheet("grid")
    out: dict[str, Any] = {
        "version": d.version,
        "text": str(d.text("body")),
        "list": repr(d.list("items").to_list()),  # repr: -0.0 vs 0.0, True vs 1
        "map": repr(d.map("meta").items()),
        "counter": d.counter("clicks").value,
        "log": repr((g.messages(), g.ids())),
        "sheet": [[str(v) for v in row] for row in s.values()],
        "sheet raw": repr(s.raws()),
        "sheet size": (s.nrows, s.ncols),
    }
    assert set(d.roots()) == {"t:body", "l:items", "m:meta", "n:clicks", "g:chat", "s:grid"}
    return out


# ---------------------------------------------------------------- the ops
def local_op(d: Doc, data: st.DataObject) -> None:
    """One random op of a random type on ``d``."""
    kind = data.draw(
        st.sampled_from(
            ["ti", "ti", "td", "li", "ld", "ms", "md", "n", "g", "gr", "ss", "ss", "sr", "sc",
             "sdr", "sdc"]
        ),
        label="kind",
    )
    pos = data.draw(st.integers(0, 10**6), label="pos")
    cnt = data.draw(st.integers(1, 4), label="count")

    def delete(seq: Any, n: int) -> None:
        if not len(seq):
            return
        p = pos % len(seq)
        seq.delete(p, min(n, len(seq) - p))

    if kind == "ti":
        t = d.text("body")
        t.insert(pos % (len(t) + 1), data.draw(st.sampled_from(TEXT_CHUNKS)) * cnt)
    elif kind == "td":
        delete(d.text("body"), cnt)
    elif kind == "li":
        lst = d.list("items")
        vals = data.draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3))
        lst.insert_many(pos % (len(lst) + 1), vals)
    elif kind == "ld":
        delete(d.list("items"), cnt)
    elif kind == "ms":
        d.map("meta").set(MAP_KEYS[pos % len(MAP_KEYS)], data.draw(st.sampled_from(VALUES)))
    elif kind == "md":
        d.map("meta").delete(MAP_KEYS[pos % len(MAP_KEYS)])
    elif kind == "n":
        d.counter("clicks").increment(data.draw(st.integers(-5, 5)))
    elif kind == "g":
        d.log("chat").append({"who": d.actor.hex(), "n": pos % 100})
    elif kind == "gr":
        lg = d.log("chat")
        if len(lg):
            lg.redact(pos % len(lg))
    else:
        s = d.sheet("grid")
        if kind == "ss":
            v = data.draw(st.one_of(st.integers(-3, 9), st.sampled_from(FORMULAS)))
            s.set((pos % 5, cnt - 1), v)
        elif kind == "sr":
            s.insert_rows(pos % (s.nrows + 1), cnt % 3 + 1)
        elif kind == "sc":
            s.insert_cols(pos % (s.ncols + 1), cnt % 2 + 1)
        elif kind == "sdr":
            if s.nrows:
                p = pos % s.nrows
                s.delete_rows(p, min(cnt % 2 + 1, s.nrows - p))
        elif kind == "sdc" and s.ncols:
            s.delete_cols(pos % s.ncols)


# ----------------------------------------------------------- the network
class Net:
    """In-flight changes per destination; drops are re-delivered at the end."""

    def __init__(self, n: int) -> None:
        self.flight: list[list[bytes]] = [[] for _ in range(n)]
        self.dropped: list[list[bytes]] = [[] for _ in range(n)]

    def send(self, src: int, blob: bytes) -> None:
        for i, q in enumerate(self.flight):
            if i != src:
                q.append(blob)


def run_scenario(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 5), label="replicas")
    docs = [Doc(actor=a) for a in ACTORS[:n]]
    net = Net(n)
    sent = [0] * n  # own changes handed to the network so far

    def flush(i: int) -> None:
        """Send every own change not sent yet: commit() returns one, but
        apply(), changes() and save() also close pending ops into changes."""
        d = docs[i]
        mine = d.version.get(d.actor, 0)
        for seq in range(sent[i] + 1, mine + 1):
            net.send(i, d.change(d.actor, seq))
        sent[i] = max(sent[i], mine)

    def receive(i: int, blobs: list[bytes]) -> None:
        docs[i].apply(blobs)
        flush(i)

    def deliver_one(i: int) -> None:
        q = net.flight[i]
        if q:
            k = data.draw(st.integers(0, len(q) - 1), label="which")
            fate = data.draw(st.sampled_from(["ok", "ok", "dup", "drop"]), label="fate")
            blob = q[k] if fate == "dup" else q.pop(k)
            if fate == "drop":
                net.dropped[i].append(blob)
            else:
                receive(i, [blob])

    steps = data.draw(st.integers(1, 60), label="steps")
    for _ in range(steps):
        i = data.draw(st.integers(0, n - 1), label="replica")
        d = docs[i]
        action = data.draw(
            st.sampled_from(["op", "op", "op", "op", "commit", "deliver", "deliver", "batch",
                             "bundle", "txn"]),
            label="action",
        )
        if action == "op":
            local_op(d, data)
        elif action == "commit":
            d.commit()
            flush(i)
        elif action == "deliver":
            deliver_one(i)
        elif action == "txn":
            # several ops as one change, remote changes arriving in the middle
            with d.transaction():
                for _ in range(data.draw(st.integers(1, 4), label="txn ops")):
                    local_op(d, data)
                    if data.draw(st.booleans(), label="deliver in txn"):
                        deliver_one(i)
            flush(i)
        elif action == "batch":
            q = net.flight[i]
            if q:
                chosen = data.draw(st.lists(st.integers(0, len(q) - 1), max_size=6), label="batch")
                batch = [q[k] for k in chosen]
                for k in sorted(set(chosen), reverse=True):
                    if data.draw(st.booleans(), label="consume"):
                        q.pop(k)
                receive(i, batch)
        else:  # bundle from another replica, maybe from an older version
            j = data.draw(st.integers(0, n - 1), label="src")
            if j != i:
                since = {a: data.draw(st.integers(0, v), label="since")
                         for a, v in d.version.items()}
                if data.draw(st.booleans(), label="exact"):
                    since = d.version
                bundles = docs[j].changes(since=since)
                flush(j)
                receive(i, bundles)
    # the end: commit everything, deliver all late and in-flight changes
    for i, d in enumerate(docs):
        d.commit()
        flush(i)
    for i in range(n):
        rest = net.dropped[i] + net.flight[i]
        net.flight[i] = []
        order = data.draw(st.permutations(range(len(rest))), label="final order")
        for k in order:
            receive(i, [rest[k]])
    for i, d in enumerate(docs):
        for blob in net.flight[i]:  # closed by apply() during the final delivery
            d.apply([blob])
        assert d.pending_count == 0
    states = [state(d) for d in docs]
    for s in states[1:]:
        assert s == states[0]
    # nothing more to exchange
    for x in docs:
        for y in docs:
            assert x.changes(since=y.version) == []
    for d, s in zip(docs, states):
        assert state(Doc.load(d.save())) == s


@FAST
@given(data=st.data())
def test_converges(data):
    run_scenario(data)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_converges_slow(data):
    run_scenario(data)


# --------------------------------------------- two replicas, text only, heavy
SCRIPTS = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 10**6), st.sampled_from(TEXT_CHUNKS),
              st.integers(0, 4)),
    max_size=80,
)


def run_two_replicas(script: list[tuple[int, int, str, int]]) -> None:
    """Concurrent typing, a change delivered to the other replica right after
    some commits (while the receiver may have uncommitted ops); also checks
    each replica against a plain-string model of its own local edits."""
    a, b = Doc(actor=ACTORS[0]), Doc(actor=ACTORS[1])
    docs = [a, b]
    for who, pos, chunk, mode in script:
        d = docs[who]
        t = d.text("t")
        before = str(t)
        if mode == 0 and len(t):
            p = pos % len(t)
            n = 1 + pos % min(3, len(t) - p)
            t.delete(p, n)
            assert str(t) == before[:p] + before[p + n :]
        else:
            p = pos % (len(t) + 1)
            t.insert(p, chunk)
            assert str(t) == before[:p] + chunk + before[p:]
        if mode >= 3:
            c = d.commit()
            docs[1 - who].apply([c])
        elif mode == 2:
            d.commit()
    for d in docs:
        d.commit()
    a.apply(b.changes(since=a.version))
    b.apply(a.changes(since=b.version))
    assert str(a.text("t")) == str(b.text("t"))
    assert a.version == b.version
    assert a.pending_count == b.pending_count == 0


@settings(FAST, max_examples=300)
@given(script=SCRIPTS)
def test_two_replicas_text(script):
    run_two_replicas(script)


@pytest.mark.slow
@settings(FAST, max_examples=5000)
@given(script=SCRIPTS)
def test_two_replicas_text_slow(script):
    run_two_replicas(script)
