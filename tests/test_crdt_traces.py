"""Replay real editing traces through ownkernel.crdt and compare with endContent.

Sequential traces (``sequential_traces/*.json.gz``): one commit per txn on a
local Doc; the commits replayed one by one on a remote Doc; the whole history
merged with one ``changes()`` call; and through ``save()``/``Doc.load()``.
The default run uses a prefix of automerge-paper (expected text from a plain
Python string model); ``-m slow`` replays every trace in full.

Concurrent trace (``concurrent_traces/friendsforever.json.gz``): one Doc per
agent; before txn i its agent's doc is brought to exactly the causal history
named by the txn's parents (the union of the parents' version vectors) by
applying the other agents' commits, then the txn's patches are applied and
committed. At the end everything is merged everywhere.

The data lives beside the repository (``../shared/data/editing-traces``), where
``OWNKERNEL_TRACES`` points, or in the copy under ``tests/data/editing-traces``
(CC BY 4.0, see its PROVENANCE.md), so a bare clone runs these tests too.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ownkernel.crdt import Delta, Doc, change_info


def _traces_dir() -> Path | None:
    here = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "editing-traces"
    if here.is_dir():
        return here
    env = os.environ.get("OWNKERNEL_TRACES")
    if env and Path(env).is_dir():
        return Path(env)
    vendored = Path(__file__).with_name("data") / "editing-traces"  # a copy (PROVENANCE.md)
    return vendored if vendored.is_dir() else None


TRACES = _traces_dir()
SKIP_REASON = (
    "editing traces not found: expected ../shared/data/editing-traces beside the "
    "repository or a directory in $OWNKERNEL_TRACES"
)
SEQUENTIAL = sorted((TRACES / "sequential_traces").glob("*.json.gz")) if TRACES else []
CONCURRENT = TRACES / "concurrent_traces" / "friendsforever.json.gz" if TRACES else None

# txns of automerge-paper replayed in the default run (the whole trace has ~260k)
PREFIX = {"automerge-paper": 30_000}
CONCURRENT_PREFIX = 4_000  # for the shuffled-delivery test in the default run


@cache
def load_trace(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def trace_name(path: Path) -> str:
    return path.name.removesuffix(".json.gz")


def apply_patches(text: Any, patches: list[list[Any]]) -> None:
    for pos, n, ins in patches:
        if n:
            text.delete(pos, n)
        if ins:
            text.insert(pos, ins)


def model(txns: list[dict[str, Any]]) -> str:
    """The text after ``txns``, by a plain Python string."""
    s = ""
    for tx in txns:
        for pos, n, ins in tx["patches"]:
            s = s[:pos] + ins + s[pos + n :]
    return s


# ------------------------------------------------------------- sequential
def sequential_params() -> list[Any]:
    if not SEQUENTIAL:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=SKIP_REASON), id="absent")]
    out = []
    for p in SEQUENTIAL:
        name = trace_name(p)
        if name in PREFIX:
            out.append(pytest.param(p, PREFIX[name], id=f"{name}-prefix"))
            out.append(pytest.param(p, None, id=f"{name}-full", marks=pytest.mark.slow))
        else:
            out.append(pytest.param(p, None, id=f"{name}-full"))
    return out


@pytest.mark.parametrize(("path", "limit"), sequential_params())
def test_sequential_trace(path: Path, limit: int | None) -> None:
    data = load_trace(path)
    txns = data["txns"] if limit is None else data["txns"][:limit]
    want = data["endContent"] if limit is None else model(txns)
    if limit is None:
        assert len(data["txns"]) > 0

    # (a) local typing, one commit per txn
    a = Doc(actor=b"author")
    t = a.text("text")
    blobs = []
    for tx in txns:
        apply_patches(t, tx["patches"])
        blob = a.commit()
        if blob is not None:
            blobs.append(blob)
    assert str(t) == want
    assert len(t) == len(want)
    assert a.version == {b"author": len(blobs)}

    # (b) remote replay, the commits applied one by one (observed deltas too)
    b = Doc(actor=b"remote")
    tb = b.text("text")
    seen = [""]

    def on_delta(x: Delta) -> None:
        s = seen[0]
        seen[0] = s[: x.pos] + x.inserted + s[x.pos + x.deleted :]

    if len(blobs) <= 40_000:  # the string model is quadratic-ish on the full trace
        tb.observe(on_delta)
    for blob in blobs:
        b.apply([blob])
    assert str(tb) == want
    assert b.version == a.version
    if len(blobs) <= 40_000:
        assert seen[0] == want

    # (c) the whole history merged in one apply
    c = Doc(actor=b"merged")
    history = a.changes()
    assert len(history) == 1
    assert change_info(history[0]).nseq == len(blobs)
    c.apply(history)
    assert str(c.text("text")) == want
    assert c.version == a.version

    # (d) through save / load, from the author and from a replica
    for d in (a, b, c):
        loaded = Doc.load(d.save())
        assert str(loaded.text("text")) == want
        assert loaded.version == a.version

    # continuing after a load: the remote's next change reaches the author
    loaded = Doc.load(b.save(), actor=b"remote")
    loaded.text("text").insert(0, "§")
    a.apply([loaded.commit()])
    assert str(a.text("text")) == "§" + want


# ------------------------------------------------------------- concurrent
def replay_concurrent(txns: list[dict[str, Any]], n_agents: int) -> tuple[list[Doc], dict]:
    """One Doc per agent, merging as ``parents`` say. Returns the docs and every
    commit keyed by (actor, seq)."""
    actors = [b"agent-%d" % i for i in range(n_agents)]
    docs = [Doc(actor=x) for x in actors]
    blobs: dict[tuple[bytes, int], bytes] = {}
    vvs: list[dict[bytes, int]] = []  # version vector after each txn
    for i, tx in enumerate(txns):
        need: dict[bytes, int] = {}
        for p in tx["parents"]:
            assert p < i
            for actor, seq in vvs[p].items():
                if seq > need.get(actor, 0):
                    need[actor] = seq
        doc = docs[tx["agent"]]
        have = doc.version
        # an agent's own history is totally ordered: nothing beyond the parents
        assert all(need.get(x, 0) >= s for x, s in have.items()), (i, have, need)
        missing = [
            blobs[(x, s)] for x, v in need.items() for s in range(have.get(x, 0) + 1, v + 1)
        ]
        if missing:
            if i % 2:
                missing.reverse()  # any order: the doc buffers and sorts it out
            doc.apply(missing)
        assert doc.version == need, i
        assert doc.pending_count == 0
        apply_patches(doc.text("text"), tx["patches"])
        blob = doc.commit()
        vv = dict(need)
        if blob is not None:
            me = doc.actor
            vv[me] = doc.version[me]
            blobs[(me, vv[me])] = blob
            info = change_info(blob)
            assert (info.actor, info.seq) == (me, vv[me])
        vvs.append(vv)
    return docs, blobs


def concurrent_or_skip() -> dict[str, Any]:
    if CONCURRENT is None or not CONCURRENT.exists():
        pytest.skip(SKIP_REASON)
    return load_trace(CONCURRENT)


@pytest.fixture(scope="module")
def concurrent_replay() -> tuple[dict[str, Any], list[Doc], dict]:
    data = concurrent_or_skip()
    docs, blobs = replay_concurrent(data["txns"], data["numAgents"])
    return data, docs, blobs


def test_concurrent_trace_merges_to_end_content(concurrent_replay):
    data, docs, blobs = concurrent_replay
    want = data["endContent"]
    everything = list(blobs.values())
    for d in docs:
        d.apply(everything)
        assert d.pending_count == 0
        assert str(d.text("text")) == want
    assert docs[0].version == docs[1].version
    assert sum(docs[0].version.values()) == len(blobs)


def test_concurrent_trace_history_sync_and_save(concurrent_replay):
    data, docs, blobs = concurrent_replay
    want = data["endContent"]
    # a newcomer merges every agent's history in one call
    fresh = Doc(actor=b"newcomer")
    bundles = [x for d in docs for x in d.changes()]
    fresh.apply(bundles)
    assert str(fresh.text("text")) == want
    # agents exchange only what they lack
    for x in docs:
        for y in docs:
            if x is not y:
                y.apply(x.changes(since=y.version))
    for d in (*docs, fresh):
        assert str(d.text("text")) == want
        assert str(Doc.load(d.save()).text("text")) == want


def test_concurrent_trace_one_by_one_in_recorded_order(concurrent_replay):
    data, _docs, blobs = concurrent_replay
    d = Doc(actor=b"observer")
    for blob in blobs.values():  # the order the txns were made: always causal
        d.apply([blob])
        assert d.pending_count == 0
    assert str(d.text("text")) == data["endContent"]


def test_concurrent_trace_prefix_shuffled_delivery():
    data = concurrent_or_skip()
    txns = data["txns"][:CONCURRENT_PREFIX]
    docs, blobs = replay_concurrent(txns, data["numAgents"])
    reference = Doc(actor=b"reference")
    reference.apply(list(blobs.values()))
    want = str(reference.text("text"))
    for d in docs:
        d.apply(list(blobs.values()))
        assert str(d.text("text")) == want
    # the same commits in a random order, in random chunks, with duplicates
    rng = random.Random(7)
    order = list(blobs.values())
    rng.shuffle(order)
    order += rng.sample(order, len(order) // 10)
    late = Doc(actor=b"late")
    i = 0
    while i < len(order):
        k = rng.randint(1, 200)
        late.apply(order[i : i + k])
        i += k
    assert late.pending_count == 0
    assert str(late.text("text")) == want


@pytest.mark.slow
def test_concurrent_trace_shuffled_delivery_full():
    data = concurrent_or_skip()
    docs, blobs = replay_concurrent(data["txns"], data["numAgents"])
    order = list(blobs.values())
    random.Random(3).shuffle(order)
    late = Doc(actor=b"late")
    for i in range(0, len(order), 500):
        late.apply(order[i : i + 500])
    assert late.pending_count == 0
    assert str(late.text("text")) == data["endContent"]
