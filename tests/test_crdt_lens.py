"""Every block's visible run lengths (``Block.lens``) stay in step with its runs.

A random mix of local typing, random inserts and deletes, backspaces, remote
edits from several writers (one at a time and in bundles), undo/redo, and
save/load, with the bookkeeping checked against the runs after every step
and the replicas checked for convergence at the end.
"""

from __future__ import annotations

import random

from ownkernel.crdt import Doc
from ownkernel.crdt.blocks import MAX_RUNS, check_lens


def _check(doc: Doc) -> None:
    seq = doc.text("body")._seq
    check_lens(seq)
    assert seq.length == sum(b.vis for b in seq.blocks)
    assert seq.value() == str(doc.text("body"))


def _step(rng: random.Random, doc: Doc) -> list[bytes]:
    """One local edit; returns the changes it committed itself (undo, redo)."""
    t = doc.text("body")
    n = len(t)
    k = rng.random()
    if k < 0.3 and n:
        p = rng.randrange(n + 1)
        for c in "typing"[: rng.randint(1, 6)]:  # typing at one place
            t.insert(p, c)
            p += 1
    elif k < 0.55 or not n:
        t.insert(rng.randrange(n + 1), "xyz"[: rng.randint(1, 3)])
    elif k < 0.75:
        p = rng.randrange(n)
        t.delete(p, min(n - p, rng.randint(1, 5)))
    elif k < 0.9:
        p = rng.randrange(1, n + 1)
        for _ in range(min(p, rng.randint(1, 4))):  # backspaces
            p -= 1
            t.delete(p, 1)
    else:
        out = [doc.commit()]
        out.append(doc.undo() if k < 0.95 else doc.redo())
        return [b for b in out if b is not None]
    return []


def test_lens_follow_every_kind_of_edit() -> None:
    rng = random.Random(7)
    docs = [Doc(bytes([i + 1]) * 32) for i in range(4)]
    for rnd in range(60):
        blobs = []
        for i, d in enumerate(docs):
            for _ in range(rng.randint(1, 3)):
                blobs += [(i, b) for b in _step(rng, d)]
                b = d.commit()
                if b is not None:
                    blobs.append((i, b))
                _check(d)
        for j, d in enumerate(docs):
            for i, b in blobs:
                if i != j:
                    d.apply([b])
                    _check(d)
        if rnd % 20 == 19:  # a reload rebuilds the blocks from the saved runs
            docs[1] = Doc.load(docs[1].save(), docs[1].actor)
            docs[1].text("body").insert(0, "L")
            _check(docs[1])
            b = docs[1].commit()
            for j, d in enumerate(docs):
                if j != 1:
                    d.apply([b])
                    _check(d)
    texts = {str(d.text("body")) for d in docs}
    assert len(texts) == 1
    assert any(len(d.text("body")._seq.blocks) > 1 for d in docs), "blocks never split"
    assert len(next(iter(texts))) > MAX_RUNS
