"""A million-character text in ownkernel, loro and pycrdt, side by side (issue #15, target 5).

    python benchmarks/scale_text.py [--chars 1000000] [--keys 20000] [--repeat 3]
                                    [--libs ownkernel,loro,pycrdt]

Every library gets the same operations (seeded), each in its own subprocess,
``--repeat`` times; medians are printed. Times are CPU time of the process
(``time.process_time``): on a shared machine wall time mostly measures the
neighbours; all three libraries do their work in the calling thread.

 build     the document is pasted together from 1,000-character paragraphs at
           random positions, one commit per paste, until it holds --chars
 keystroke --keys single keystrokes at random positions (70 % insert one
           character, 30 % delete one), each committed and its update captured
           as a syncing app would (as ``trace.py`` measures local typing): µs each
 remote    the keystrokes' updates applied one by one to a second replica that
           loaded the document as it was before them: µs each
 save      the whole document saved (ownkernel ``save()``, loro snapshot,
           pycrdt full update): ms
 load      that loaded into a fresh document and its text read back: ms
 bytes     size of the saved document
 correct   every replica's final text equals the plain-Python model
 keystroke_gc_us  of the keystroke time, the cyclic GC's collections that
           ran inside the keystroke loop, per keystroke (ownkernel's runs are
           Python objects: a full collection of the 1M-character doc lands
           there)

The libraries' runs alternate (ownkernel, loro, pycrdt, ownkernel, ...), so
a change of machine load during the run reaches all of them alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from typing import Any

PARA = 1000


class GCMeter:
    """CPU time of the cyclic GC's collections while ``on`` (gc.callbacks)."""

    def __init__(self) -> None:
        self.on = False
        self.total = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._t0 = time.process_time()
        else:
            self.total += time.process_time() - self._t0


GC = GCMeter()


def make_ops(chars: int, keys: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]], str]:
    """Paste ops, keystroke ops ((pos, ch) insert or (pos, "") delete) and the
    final text, computed on a plain Python string."""
    rnd = random.Random(15)
    letters = "abcdefghijklmnopqrstuvwxyz     \n"
    pastes = []
    length = 0
    while length < chars:
        para = "".join(rnd.choices(letters, k=min(PARA, chars - length)))
        pastes.append((rnd.randint(0, length), para))
        length += len(para)
    strokes = []
    for _ in range(keys):
        if rnd.random() < 0.7:
            strokes.append((rnd.randint(0, length), rnd.choice(letters)))
            length += 1
        else:
            strokes.append((rnd.randint(0, length - 1), ""))
            length -= 1
    # the model: plain string slicing (a few seconds at 1M characters, untimed)
    text = ""
    for pos, s in pastes:
        text = text[:pos] + s + text[pos:]
    for pos, s in strokes:
        text = text[:pos] + s + text[pos + (0 if s else 1) :]
    return pastes, strokes, text


def run_ownkernel(pastes: list[Any], strokes: list[Any], final: str) -> dict[str, Any]:
    from ownkernel.crdt import Doc

    out: dict[str, Any] = {}
    d = Doc(actor=b"A" * 32)
    t = d.text("body")
    t0 = time.process_time()
    for pos, s in pastes:
        t.insert(pos, s)
        d.commit()
    out["build_s"] = time.process_time() - t0
    before = d.save()
    ins, dele, commit = t.insert, t.delete, d.commit
    changes = []
    push = changes.append
    GC.on = True
    t0 = time.process_time()
    for pos, s in strokes:
        if s:
            ins(pos, s)
        else:
            dele(pos, 1)
        push(commit())
    out["keystroke_us"] = (time.process_time() - t0) / len(strokes) * 1e6
    GC.on = False
    out["keystroke_gc_us"] = GC.total / len(strokes) * 1e6
    ok = [str(t) == final]
    b = Doc.load(before)
    apply = b.apply
    t0 = time.process_time()
    for c in changes:
        apply([c])
    out["remote_us"] = (time.process_time() - t0) / len(strokes) * 1e6
    ok.append(str(b.text("body")) == final)
    t0 = time.process_time()
    saved = d.save()
    out["save_ms"] = (time.process_time() - t0) * 1e3
    t0 = time.process_time()
    e = Doc.load(saved)
    s = str(e.text("body"))
    out["load_ms"] = (time.process_time() - t0) * 1e3
    ok.append(s == final)
    out["bytes"] = len(saved)
    out["correct"] = all(ok)
    return out


def run_loro(pastes: list[Any], strokes: list[Any], final: str) -> dict[str, Any]:
    import loro

    out: dict[str, Any] = {}
    d = loro.LoroDoc()
    t = d.get_text("body")
    t0 = time.process_time()
    for pos, s in pastes:
        t.insert(pos, s)
        d.commit()
    out["build_s"] = time.process_time() - t0
    before = d.export(loro.ExportMode.Snapshot())
    updates: list[bytes] = []

    def on_update(u: bytes) -> bool:
        updates.append(u)
        return True

    sub = d.subscribe_local_update(on_update)
    ins, dele, commit = t.insert, t.delete, d.commit
    GC.on = True
    t0 = time.process_time()
    for pos, s in strokes:
        if s:
            ins(pos, s)
        else:
            dele(pos, 1)
        commit()
    out["keystroke_us"] = (time.process_time() - t0) / len(strokes) * 1e6
    GC.on = False
    out["keystroke_gc_us"] = GC.total / len(strokes) * 1e6
    del sub
    ok = [t.to_string() == final, len(updates) == len(strokes)]
    b = loro.LoroDoc()
    b.import_(before)
    t0 = time.process_time()
    for u in updates:
        b.import_(u)
    out["remote_us"] = (time.process_time() - t0) / len(strokes) * 1e6
    ok.append(b.get_text("body").to_string() == final)
    t0 = time.process_time()
    snap = d.export(loro.ExportMode.Snapshot())
    out["save_ms"] = (time.process_time() - t0) * 1e3
    t0 = time.process_time()
    e = loro.LoroDoc()
    e.import_(snap)
    s = e.get_text("body").to_string()
    out["load_ms"] = (time.process_time() - t0) * 1e3
    ok.append(s == final)
    out["bytes"] = len(snap)
    out["correct"] = all(ok)
    return out


def run_pycrdt(pastes: list[Any], strokes: list[Any], final: str) -> dict[str, Any]:
    import pycrdt

    out: dict[str, Any] = {}
    d = pycrdt.Doc()
    t = d.get("body", type=pycrdt.Text)
    t0 = time.process_time()
    for pos, s in pastes:
        with d.transaction():
            t.insert(pos, s)
    out["build_s"] = time.process_time() - t0
    before = d.get_update()
    updates: list[bytes] = []
    d.observe(lambda ev: updates.append(ev.update))
    GC.on = True
    t0 = time.process_time()
    for pos, s in strokes:
        with d.transaction():
            if s:
                t.insert(pos, s)
            else:
                del t[pos : pos + 1]
    out["keystroke_us"] = (time.process_time() - t0) / len(strokes) * 1e6
    GC.on = False
    out["keystroke_gc_us"] = GC.total / len(strokes) * 1e6
    ok = [str(t) == final, len(updates) == len(strokes)]
    b = pycrdt.Doc()
    tb = b.get("body", type=pycrdt.Text)
    b.apply_update(before)
    t0 = time.process_time()
    for u in updates:
        b.apply_update(u)
    out["remote_us"] = (time.process_time() - t0) / len(strokes) * 1e6
    ok.append(str(tb) == final)
    t0 = time.process_time()
    full = d.get_update()
    out["save_ms"] = (time.process_time() - t0) * 1e3
    t0 = time.process_time()
    e = pycrdt.Doc()
    e.apply_update(full)
    s = str(e.get("body", type=pycrdt.Text))
    out["load_ms"] = (time.process_time() - t0) * 1e3
    ok.append(s == final)
    out["bytes"] = len(full)
    out["correct"] = all(ok)
    return out


RUNNERS = {"ownkernel": run_ownkernel, "loro": run_loro, "pycrdt": run_pycrdt}
KEYS = [
    "build_s", "keystroke_us", "keystroke_gc_us", "remote_us", "save_ms", "load_ms", "bytes",
    "correct",
]


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--chars", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--libs", default="ownkernel,loro,pycrdt")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        pastes, strokes, final = make_ops(args.chars, args.keys)
        print(json.dumps(RUNNERS[args.child](pastes, strokes, final)))
        return
    print(
        f"chars={args.chars:,} keys={args.keys:,} repeat={args.repeat} "
        f"python={platform.python_version()} machine={platform.machine()} "
        f"cpus={os.cpu_count()} date={time.strftime('%Y-%m-%d')}"
    )
    libs = [x for x in args.libs.split(",") if x]
    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    for _ in range(args.repeat):
        for lib in libs:  # alternated: load changes during the run reach every library
            if lib not in runs:
                continue
            p = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    lib,
                    "--chars",
                    str(args.chars),
                    "--keys",
                    str(args.keys),
                ],
                capture_output=True,
                text=True,
            )
            if p.returncode:
                print(f"{lib}: failed: {p.stderr.strip().splitlines()[-1:]}")
                del runs[lib]
                continue
            runs[lib].append(json.loads(p.stdout))
            r = runs[lib][-1]
            print(f"  {lib}: keystroke {r['keystroke_us']:.2f} us (GC {r['keystroke_gc_us']:.2f}), "
                  f"save {r['save_ms']:.1f} ms, load {r['load_ms']:.1f} ms, "
                  f"load average {_loadavg()}", flush=True)
    results: dict[str, dict[str, Any]] = {
        lib: {
            k: all(r[k] for r in rs) if k == "correct" else statistics.median(r[k] for r in rs)
            for k in KEYS
        }
        for lib, rs in runs.items()
    }
    print(f"{'metric (median)':16s}" + "".join(f"{lib:>12s}" for lib in results))
    for k in KEYS:
        row = f"{k:16s}"
        for lib in results:
            v = results[lib][k]
            if isinstance(v, bool):
                row += f"{v!s:>12s}"
            elif k == "bytes":
                row += f"{v:12,.0f}"
            else:
                row += f"{v:12.2f}"
        print(row)
    if "ownkernel" in results and "loro" in results:
        ratio = results["ownkernel"]["keystroke_us"] / results["loro"]["keystroke_us"]
        print(f"keystroke ownkernel/loro = {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
