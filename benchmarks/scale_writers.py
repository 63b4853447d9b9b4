"""Many writers on one text: 100 actors editing, every edit merged everywhere.

    python benchmarks/scale_writers.py [--actors 100] [--rounds 10] [--libs ownkernel,pycrdt,loro]

Every actor holds its own replica (ownkernel actors are 32-byte ids, like a
node's key). In each round every actor makes one local edit on its replica
(insert 1-4 characters at a random position, or one time in five delete one
character) and produces the update a syncing application sends; then every
replica integrates the other actors' updates of that round one by one, as
they would arrive live. Each library runs in its own subprocess on the same
seeded edit script. Printed, per library:

 - change_after_merge_B: mean bytes of the update an actor produces for its
   first edit after it merged the others' (every edit after round 1 is one)
 - vv_B: bytes of one replica's encoded version vector at the end
   (ownkernel: cbor2 of ``Doc.version``; pycrdt: its encoded state vector;
   loro: its encoded oplog version vector)
 - merge_us_per_change: integrating one remote update
 - local_edit_us: mean time of one local edit including producing its update
 - gc_in_edits_us: of that, the cyclic GC's collections that ran inside the
   timed edits (per edit; gc_runs_in_edits: how many, by generation 0/1/2)
 - gc_tracked_objects: ``len(gc.get_objects())`` of the child at the end
   (the 100 replicas plus the interpreter's own, ~14,000)
 - converged: every replica ends with the same text

Times are CPU time of the child process (``time.process_time``), so other
work on the machine does not inflate them. All 100 replicas live in one
process, a heap 100 times what any real node holds for one document, so
Python's cyclic GC runs full collections over all of them in the middle of
timed edits; ``--no-gc`` disables it in the child (for every library) to
show the cost of the edits themselves.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

SEED = 15


def script(actors: int, rounds: int) -> Callable[[int], tuple[str, float, str]]:
    """The edit each actor makes, drawn from a seeded generator: ('ins', fraction, text)
    or ('del', fraction, ''); fraction is the position relative to the current length."""
    rng = random.Random(SEED)
    moves = []
    for _ in range(actors * rounds):
        if rng.random() < 0.2:
            moves.append(("del", rng.random(), ""))
        else:
            moves.append(("ins", rng.random(), "abcd"[: rng.randint(1, 4)]))
    return moves.__getitem__


def run(lib: str, actors: int, rounds: int) -> dict[str, Any]:
    move = script(actors, rounds)
    make, edit, apply_one, vv_bytes, text_of = ADAPTERS[lib]()
    reps = [make(i) for i in range(actors)]
    local_t = merge_t = 0.0
    # CPU time of the cyclic GC's collections that ran inside timed local
    # edits, by generation: where a collection lands moves the mean edit time
    gc_in_edit = [0.0, 0.0, 0.0]
    gc_runs = [0, 0, 0]
    in_edit = False
    gc_t0 = 0.0

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        nonlocal gc_t0
        if not in_edit:
            return
        if phase == "start":
            gc_t0 = time.process_time()
        else:
            g = info["generation"]
            gc_in_edit[g] += time.process_time() - gc_t0
            gc_runs[g] += 1

    gc.callbacks.append(on_gc)
    merges = 0
    after_merge: list[int] = []
    for r in range(rounds):
        blobs = []
        for i, rep in enumerate(reps):
            kind, frac, s = move(r * actors + i)
            in_edit = True
            t0 = time.process_time()
            blob = edit(rep, kind, frac, s)
            local_t += time.process_time() - t0
            in_edit = False
            blobs.append(blob)
            if r > 0:
                after_merge.append(len(blob))
        for i, rep in enumerate(reps):
            t0 = time.process_time()
            for j, blob in enumerate(blobs):
                if j != i:
                    apply_one(rep, blob)
            merge_t += time.process_time() - t0
            merges += len(blobs) - 1
    gc.callbacks.remove(on_gc)
    texts = {text_of(rep) for rep in reps}
    gc.collect()
    return {
        "change_after_merge_B": sum(after_merge) / len(after_merge),
        "change_after_merge_max_B": max(after_merge),
        "vv_B": vv_bytes(reps[0]),
        "merge_us_per_change": merge_t / merges * 1e6,
        "local_edit_us": local_t / (actors * rounds) * 1e6,
        "gc_in_edits_us": sum(gc_in_edit) / (actors * rounds) * 1e6,
        "gc_runs_in_edits": "/".join(map(str, gc_runs)),
        "gc_tracked_objects": len(gc.get_objects()),
        "converged": len(texts) == 1,
        "text_len": len(texts.pop()),
    }


def _pos(frac: float, n: int) -> int:
    return min(n, int(frac * (n + 1)))


def ownkernel_adapter() -> tuple[Callable[..., Any], ...]:
    import cbor2

    from ownkernel.crdt import Doc

    rng = random.Random(SEED + 1)

    def make(i: int) -> Any:
        d = Doc(bytes(rng.getrandbits(8) for _ in range(32)))
        return d, d.text("body")

    def edit(rep: Any, kind: str, frac: float, s: str) -> bytes:
        d, t = rep
        n = len(t)
        if kind == "del" and n:
            t.delete(_pos(frac, n - 1), 1)
        else:
            t.insert(_pos(frac, n), s or "x")
        return d.commit()

    def apply_one(rep: Any, blob: bytes) -> None:
        rep[0].apply([blob])

    return (
        make,
        edit,
        apply_one,
        lambda rep: len(cbor2.dumps(rep[0].version)),
        lambda rep: str(rep[1]),
    )


def pycrdt_adapter() -> tuple[Callable[..., Any], ...]:
    import pycrdt

    def make(i: int) -> Any:
        d = pycrdt.Doc()
        out: list[bytes] = []
        d.observe(lambda ev: out.append(ev.update))
        return d, d.get("body", type=pycrdt.Text), out

    def edit(rep: Any, kind: str, frac: float, s: str) -> bytes:
        d, t, out = rep
        n = len(t)
        if kind == "del" and n:
            p = _pos(frac, n - 1)
            del t[p : p + 1]
        else:
            t.insert(_pos(frac, n), s or "x")
        return out.pop()

    def apply_one(rep: Any, blob: bytes) -> None:
        rep[0].apply_update(blob)
        rep[2].clear()  # remote transactions are observed too

    return (
        make,
        edit,
        apply_one,
        lambda rep: len(rep[0].get_state()),
        lambda rep: str(rep[1]),
    )


def loro_adapter() -> tuple[Callable[..., Any], ...]:
    import loro

    def make(i: int) -> Any:
        d = loro.LoroDoc()
        out: list[bytes] = []

        def on_update(b: bytes) -> bool:
            out.append(b)
            return True

        sub = d.subscribe_local_update(on_update)
        return d, d.get_text("body"), out, sub

    def edit(rep: Any, kind: str, frac: float, s: str) -> bytes:
        d, t, out, _ = rep
        n = t.len_unicode
        if kind == "del" and n:
            t.delete(_pos(frac, n - 1), 1)
        else:
            t.insert(_pos(frac, n), s or "x")
        d.commit()
        return out.pop()

    def apply_one(rep: Any, blob: bytes) -> None:
        rep[0].import_(blob)

    return (
        make,
        edit,
        apply_one,
        lambda rep: len(rep[0].oplog_vv.encode()),
        lambda rep: rep[1].to_string(),
    )


ADAPTERS = {"ownkernel": ownkernel_adapter, "pycrdt": pycrdt_adapter, "loro": loro_adapter}
KEYS = [
    "change_after_merge_B",
    "change_after_merge_max_B",
    "vv_B",
    "merge_us_per_change",
    "local_edit_us",
    "gc_in_edits_us",
    "gc_runs_in_edits",
    "gc_tracked_objects",
    "converged",
    "text_len",
]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--actors", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--libs", default="ownkernel,pycrdt,loro")
    ap.add_argument("--no-gc", action="store_true", help="disable the cyclic GC in each child")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.no_gc:
            gc.disable()
        print(json.dumps(run(args.child, args.actors, args.rounds)))
        return
    print(
        f"actors={args.actors} rounds={args.rounds} gc={'off' if args.no_gc else 'on'} "
        f"python={platform.python_version()} "
        f"machine={platform.machine()} cpus={os.cpu_count()} date={time.strftime('%Y-%m-%d')}"
    )
    results = {}
    for lib in [x for x in args.libs.split(",") if x]:
        cmd = [sys.executable, __file__, "--child", lib]
        cmd += ["--actors", str(args.actors), "--rounds", str(args.rounds)]
        cmd += ["--no-gc"] if args.no_gc else []
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            print(f"{lib}: failed: {p.stderr.strip().splitlines()[-1:]}")
            continue
        results[lib] = json.loads(p.stdout)
    print(f"{'metric':26s}" + "".join(f"{lib:>12s}" for lib in results))
    for k in KEYS:
        row = f"{k:26s}"
        for lib in results:
            v = results[lib][k]
            row += f"{v!s:>12s}" if isinstance(v, (bool, int, str)) else f"{v:12.1f}"
        print(row)


if __name__ == "__main__":
    main()
