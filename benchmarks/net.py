"""Network benchmarks, all in one run (127.0.0.1 only):

    python benchmarks/net.py            # everything
    python benchmarks/net.py --quick    # fewer samples, a trace prefix
    python benchmarks/net.py --mesh [--long]   # 12 nodes typing into one doc
    python benchmarks/net.py --floods   # an honest pair while an attacker floods
    python benchmarks/net.py --fanout 2 4 8   # one typist, 20 keys/s, to N-1 readers

1. raw pyzmq round trip on loopback, plain and CurveZMQ (the floor);
2. edit on A -> visible on B: two node processes, Curve, signed envelopes,
   durable (fsync) on both sides; p50/p99 (timestamps taken inside the two
   processes with CLOCK_MONOTONIC, which all processes share);
3. changes/s streamed A -> B (one durable change per keystroke);
4. a fresh peer syncing the whole automerge-paper history.

Profiles live under $TMPDIR (disk); 2 and 3 are repeated on /dev/shm (tmpfs)
when it exists, to separate the network from the fsync cost.

--mesh: 12 node processes, fully meshed, 60 keystrokes/s in total into one doc
for 60 s (180 s with --long): propagation p50/p99 (author's keystroke -> visible
at each other node), duplicate envelopes per change per node, RSS growth per
node after a warm-up, CPU of all processes (issue #8 section 4).
--floods: an honest pair (A owner, B typing 10 keystrokes/s) while an attacker
process floods A; A's RSS growth, B -> A p99 during the attack, join time of a
new member (targets: 50 MB, 20 ms, 2 s).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fanout_floor import run as floor_run  # noqa: E402
from fanout_floor import wake_jitter  # noqa: E402
from test_load import build_mesh, pct, run_load  # noqa: E402
from test_net_processes import Child  # noqa: E402

from ownkernel.node import Node  # noqa: E402
from ownkernel.store import Identity  # noqa: E402

TRACE = next((p for p in (ROOT.parent / "shared" / "data" / "editing-traces",
                          ROOT / "tests" / "data" / "editing-traces")
              if p.is_dir()), ROOT / "tests" / "data" / "editing-traces") / \
    "sequential_traces" / "automerge-paper.json.gz"


def ms(x: float) -> str:
    return f"{x * 1e3:6.2f} ms"


# ------------------------------------------------------------------ 1. raw pyzmq
def raw_round_trip(n: int, curve: bool) -> list[float]:
    ctx = zmq.Context()
    srv, cli = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    if curve:
        s, c = Identity.generate(), Identity.generate()
        srv.curve_server = True
        srv.curve_secretkey, srv.curve_publickey = s.curve_secret, s.curve_public
        cli.curve_secretkey, cli.curve_publickey = c.curve_secret, c.curve_public
        cli.curve_serverkey = s.curve_public
    port = srv.bind_to_random_port("tcp://127.0.0.1")
    cli.connect(f"tcp://127.0.0.1:{port}")

    def echo() -> None:
        for _ in range(n + 10):
            srv.send_multipart(srv.recv_multipart())
    t = threading.Thread(target=echo)
    t.start()
    times = []
    payload = b"x" * 100
    for i in range(n + 10):
        t0 = time.perf_counter()
        cli.send(payload)
        cli.recv()
        if i >= 10:
            times.append(time.perf_counter() - t0)
    t.join()
    srv.close(0)
    cli.close(0)
    ctx.term()
    return times


# ------------------------------------------------------------------ 2., 3.
def pair(base: Path) -> tuple[Child, Child, str]:
    a = Child(base, "a", fast=False)
    b = Child(base, "b", fast=False)
    doc = a("new_doc", title="bench")["doc"]
    b("join", token=a("invite", doc=doc)["token"])
    b.wait_text(doc, "")
    a("insert", doc=doc, text="warm")
    b.wait_text(doc, "warm")
    return a, b, doc


def edit_latency(base: Path, n: int) -> tuple[list[float], list[float]]:
    a, b, doc = pair(base)
    try:
        seen = b("changed_at", n=1)["count"]
        lat, commit = [], []
        for i in range(n):
            e = a("edit", doc=doc, ch="abcdefghij"[i % 10])
            at = b("changed_at", n=seen + i + 1)["at"]
            assert at is not None, "edit never arrived"
            lat.append(at - e["t0"])
            commit.append(e["t1"] - e["t0"])
        return lat, commit
    finally:
        a.stop()
        b.stop()


def stream(base: Path, n: int) -> float:
    a, b, doc = pair(base)
    try:
        t0 = time.perf_counter()
        a("insert", doc=doc, text="y" * n, timeout=600)
        b.wait_text(doc, length=4 + n, timeout=600)
        return n / (time.perf_counter() - t0)
    finally:
        a.stop()
        b.stop()


# ------------------------------------------------------------------ 4. trace
def trace_sync(base: Path, per_change: int, limit: int | None) -> dict[str, Any]:
    with gzip.open(TRACE) as f:
        data = json.load(f)
    patches = [p for t in data["txns"] for p in t["patches"]]
    if limit:
        patches = patches[:limit]
    t = time.perf_counter()
    with Node(base / "a", name="a", network=False) as node:
        doc = node.new_doc("automerge-paper")
        text = doc.text("body")
        for i in range(0, len(patches), per_change):
            with doc.transaction():
                for pos, dl, ins in patches[i:i + per_change]:
                    if dl:
                        text.delete(pos, dl)
                    if ins:
                        text.insert(pos, ins)
        final = str(text)
        if not limit:
            assert final == data["endContent"]
        commits = node.stats()["commits"]
        doc_hex = doc.hex
    build = time.perf_counter() - t
    a = Child(base, "a", fast=False)
    b = Child(base, "b", fast=False)
    try:
        token = a("invite", doc=doc_hex)["token"]
        t0 = time.perf_counter()
        b("join", token=token)
        b.wait_text(doc_hex, length=len(final), timeout=300)
        took = time.perf_counter() - t0
        assert b("text", doc=doc_hex)["text"] == final
    finally:
        a.stop()
        b.stop()
    return {"keystrokes": len(patches), "changes": commits, "build_s": build, "sync_s": took,
            "chars": len(final)}


# ------------------------------------------------------------------ --mesh
def mesh(n: int, rate: float, seconds: float, warmup: float) -> None:
    base = Path(tempfile.mkdtemp(prefix="ownk-mesh-"))
    children: list[Child] = []

    def make(name: str, *args: str) -> Child:
        children.append(Child(base, name, *args, fast=False))
        return children[-1]
    try:
        t = time.perf_counter()
        nodes, doc = build_mesh(make, n)
        print(f"{n} nodes meshed, doc joined by all in {time.perf_counter() - t:.1f} s")
        r = run_load(nodes, doc, rate, seconds, warmup=warmup, converge_timeout=120)
    finally:
        for c in children:
            c.kill()
        shutil.rmtree(base, ignore_errors=True)
    growth = r.rss_growth_mb
    cores = os.cpu_count() or 1
    print(f"converged: {len(r.texts) == 1} ({r.converge_s:.1f} s after the last keystroke); "
          f"{r.changes} changes in {r.seconds:.1f} s; (change, node) pairs never seen: "
          f"{r.missing}; load average {os.getloadavg()[0]:.1f}")
    if r.missing or len(r.texts) > 1:
        dump = Path(tempfile.gettempdir()) / "ownk-mesh-texts.json"
        dump.write_text(json.dumps(r.final))
        print(f"timed out: {r.timed_out}; distinct texts {len(r.texts)}, lengths "
              f"{sorted(len(t) for t in r.texts)}; read again later: "
              f"{len(set(r.final.values()))} distinct (written to {dump})")
        print(f"characters of the run held per node: {r.lengths}; never seen: {r.lacking}")
    print(f"{'':34s}{'measured':>14s}{'target':>10s}")
    rows = [("propagation p50 (keystroke)", ms(pct(r.lat_t0, 50)), "10 ms"),
            ("propagation p99 (keystroke)", ms(pct(r.lat_t0, 99)), "50 ms"),
            ("  p50 from durable commit", ms(pct(r.lat_t1, 50)), ""),
            ("  p99 from durable commit", ms(pct(r.lat_t1, 99)), ""),
            ("duplicates / change / node", f"{r.dup_per_change_per_node:.3f}", "1"),
            (f"RSS growth / node after {warmup:.0f} s",
             f"{statistics.mean(growth):.1f} avg {max(growth):.1f} max MB",
             "5 MB/3 min"),
            ("CPU, all node processes", f"{100 * r.cpu_s / r.seconds / cores:.0f}% of {cores}"
             " cores", "")]
    for label, v, target in rows:
        print(f"{label:34s}{v:>14s}{target:>10s}")
    print(f"duplicates per node: {r.dups}; rejected per node: {r.rejected}")
    print(f"RSS per node at end (MB): {[round(x / 1024) for x in r.rss_end_kb]}")


# ------------------------------------------------------------------ --fanout
def fsync_cost(where: Path, n: int = 200) -> tuple[float, float]:
    """p50/p99 seconds of one small SQLite commit with synchronous=FULL in ``where``:
    the author's floor (its own changes are fsynced before they are sent)."""
    import sqlite3
    path = Path(tempfile.mkdtemp(dir=where)) / "probe.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (b BLOB)")
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            db.execute("INSERT INTO t VALUES (?)", (os.urandom(200),))
            out.append(time.perf_counter() - t0)
    finally:
        db.close()
        shutil.rmtree(path.parent, ignore_errors=True)
    return pct(out, 50), pct(out, 99)


def fanout(sizes: list[int], rate: float, seconds: float) -> None:
    """One typist, the others only read: CPU of all processes and propagation, per
    size; on the temp dir's disk and on /dev/shm (no fsync cost) when it exists."""
    cores = os.cpu_count() or 1
    places = [Path(tempfile.gettempdir())]
    if Path("/dev/shm").is_dir():
        places.append(Path("/dev/shm"))
    readers: dict[int, float] = {}  # size -> our readers' mean CPU per keystroke (disk)
    for where in places:
        f50, f99 = fsync_cost(where)
        print(f"-- profiles in {where}: one fsynced commit p50 {ms(f50)}, p99 {ms(f99)}")
        for n, per in fanout_in(where, sizes, rate, seconds, cores).items():
            readers.setdefault(n, per)
    fanout_floors(readers, rate, seconds)


def fanout_floors(readers: dict[int, float], rate: float, seconds: float) -> None:
    """The same topology with none of our code (benchmarks/fanout_floor.py), in the same
    run: readers that only wake and read, then readers that also burn as much CPU per
    keystroke as ours took beyond that; and how slow this machine is to wake at all."""
    w50, w99, b50, b99 = wake_jitter()
    print(f"-- floor: ~1 ms of Python right after a 50 ms sleep p50 {ms(w50)}, p99 {ms(w99)}"
          f" (back to back p50 {ms(b50)}, p99 {ms(b99)})")
    print("-- floor: raw CurveZMQ fan-out, same rate, readers drain in an asyncio loop "
          "(fanout_floor.py)")
    print(f"{'nodes':>5s} {'work/msg':>9s} {'p50':>9s} {'p99':>9s} {'CPU all processes':>20s}"
          f" {'load avg':>9s}")
    for n, ours in readers.items():
        bare = floor_run(n, rate, seconds, 0.0)
        work = max(0.0, ours - bare["reader_per_msg"])
        for w, r in ((0.0, bare), (work, floor_run(n, rate, seconds, 1e3 * work))):
            print(f"{n:>5d} {1e3 * w:>6.2f} ms {ms(r['p50']):>9s} {ms(r['p99']):>9s} "
                  f"{100 * r['cpu']:>10.1f}% of a core {os.getloadavg()[0]:>9.1f}")


def fanout_in(where: Path, sizes: list[int], rate: float, seconds: float,
              cores: int) -> dict[int, float]:
    """Run each size; returns size -> the readers' mean CPU seconds per keystroke."""
    # p50/p99: from the keystroke's start at the typist to a reader seeing it; "after
    # commit": from the typist's durable commit (its own keystroke, fsync included, left out)
    print(f"{'nodes':>5s} {'p50':>9s} {'p99':>9s} {'CPU all processes':>20s} {'load avg':>9s}"
          f"   {'after commit p50 / p99':>22s}")
    readers: dict[int, float] = {}
    for n in sizes:
        base = Path(tempfile.mkdtemp(prefix="ownk-fan-", dir=where))
        children: list[Child] = []

        def make(name: str, *args: str, base: Path = base,
                 children: list[Child] = children) -> Child:
            children.append(Child(base, name, *args, fast=False))
            return children[-1]
        try:
            nodes, doc = build_mesh(make, n)
            r = run_load(nodes, doc, rate, seconds, converge_timeout=60, typists=1)
        finally:
            for c in children:
                c.kill()
            shutil.rmtree(base, ignore_errors=True)
        assert len(r.texts) == 1 and not r.missing, "fan-out run did not converge"
        print(f"{n:>5d} {ms(pct(r.lat_t0, 50)):>9s} {ms(pct(r.lat_t0, 99)):>9s} "
              f"{100 * r.cpu_s / r.seconds:>10.1f}% of a core {os.getloadavg()[0]:>9.1f}"
              f"   {ms(pct(r.lat_t1, 50))} / {ms(pct(r.lat_t1, 99))}"
              f"   ({cores} cores, {r.changes} keystrokes)")
        # CPU per keystroke of each process: the typist's and the readers' (the
        # run's CPU covers typing and convergence; per keystroke it is comparable)
        per = [1e3 * c / r.changes for c in r.cpu_per_node]
        if len(per) > 1:
            print(f"{'':>5s} CPU per keystroke: typist {per[0]:.2f} ms, readers "
                  f"{min(per[1:]):.2f}–{max(per[1:]):.2f} ms")
            readers[n] = sum(per[1:]) / len(per[1:]) / 1e3
    return readers


# ------------------------------------------------------------------ --floods
ATTACKER = ROOT / "tests" / "attacker.py"


def flood_plans(doc: str) -> dict[str, tuple[bool, list[dict[str, Any]]]]:
    """name -> (whether the attacker speaks as a member, the steps it repeats)."""
    return {
        "none (baseline)": (False, [{"sleep": 0.1}]),
        "garbage frames, pre-hello": (False, [{"flood_raw": 100, "size": 256}]),
        "have {} from a non-reader": (False, [{"flood_have": doc, "n": 50}]),
        "held envelopes (member)": (True, [{"held": doc, "n": 16, "size": 64 * 1024}]),
        "1,100 sessions from one key": (False, [{"sleep": 0.5}]),
    }


def flood_run(base: Path, name: str, member: bool, steps: list[dict[str, Any]],
              seconds: float) -> dict[str, Any]:
    a = Child(base, "a", fast=False)
    b = Child(base, "b", fast=False)
    kids = [a, b]
    attacker: subprocess.Popen[str] | None = None
    try:
        doc = a("new_doc", title="flood")["doc"]
        a("insert", doc=doc, text="honest")
        b("join", token=a("invite", doc=doc)["token"])
        b.wait_text(doc, "honest")
        seed = grant = None
        if member:  # the attacker holds a write member's key (that member is offline)
            m = Child(base, "m", fast=False)
            kids.append(m)
            m("join", token=a("invite", doc=doc)["token"])
            m.wait_text(doc, "honest")
            got = m("seed", doc=doc)
            seed, grant = got["seed"], got["grant"]
            m.stop()
        c = Child(base, "c", fast=False)  # the newcomer: started now, joins mid-attack
        kids.append(c)
        a("seen", doc=doc, start=True)
        s0 = a("stats")
        pre: list[dict[str, Any]] = [{"hello": True}, {"sleep": 0.3}] if "pre-hello" not in \
            name else []
        if grant:  # a member shows its grant after hello, as its node would
            pre += [{"msg": {"type": "grants", "grants": [{"hex": grant}]}}, {"sleep": 0.3}]
        if "sessions" in name:
            pre = [{"connections": 1100}]
        plan = {"address": a.address, "seed": seed, "listen": 0.2,
                "steps": [*pre, {"repeat": steps, "seconds": seconds}]}
        plan_json = json.dumps(plan).replace('"DOC"', json.dumps(doc))
        attacker = subprocess.Popen([sys.executable, str(ATTACKER), plan_json],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the flood is under way
        end = time.monotonic() + 20.0
        while "sessions" in name and time.monotonic() < end:  # until the table is full
            if a("stats")["net"].get("sessions", 0) >= 1000:
                break
            time.sleep(0.5)
        # a newcomer with a fresh token joins while the flood is at full strength
        sessions = a("stats")["net"].get("sessions", 0)  # how full A's table is now
        t0 = time.perf_counter()
        c("join", token=a("invite", doc=doc)["token"], timeout=60)
        joined = c("wait_text", doc=doc, contains=["honest"], timeout=30.0)["ok"]
        join_s = time.perf_counter() - t0 if joined else float("inf")
        typing = seconds - 4.0  # ends before the attacker's sustained part does
        b("type", doc=doc, n=int(10 * typing), rate=10.0)
        typed = b("typed", doc=doc, timeout=120)["done"]
        s1 = a("stats")  # still under attack
        out, err = attacker.communicate(timeout=120)
        if attacker.returncode != 0:
            raise RuntimeError(f"attacker failed: {err[-2000:]}")
        res = json.loads(out.strip().splitlines()[-1])
        a.wait_text(doc, length=len("honest") + len(typed), timeout=60)
        got = a("seen", doc=doc)["seen"].get(b.id, [])
        lat = [got[q - 1] - t for q, t, _ in typed if q <= len(got) and got[q - 1] > 0]
        s2 = a("stats")
        n0, n2 = s0["node"], s2["node"]
        return {"rss_mb": (max(s1["rss_kb"], s2["rss_kb"]) - s0["rss_kb"]) / 1024,
                "p50": pct(lat, 50), "p99": pct(lat, 99), "n": len(lat), "typed": len(typed),
                "join_s": join_s, "sent": res["sent"], "back_kb": res["flood_bytes"] / 1024,
                "connected": res["connected"], "sessions": sessions,
                "rejected": {k: v - n0["rejected"].get(k, 0) for k, v in n2["rejected"].items()
                             if v != n0["rejected"].get(k, 0)},
                "errors": {k: v - s0["net"]["errors"].get(k, 0) for k, v in
                           s2["net"]["errors"].items() if v != s0["net"]["errors"].get(k, 0)},
                "transport": {k: v - s0["net"]["transport"].get(k, 0) for k, v in
                              s2["net"]["transport"].items()
                              if v != s0["net"]["transport"].get(k, 0)},
                "held_mb": s1["node"]["held_bytes"] / 2**20,
                "cpu_a": (s1["cpu_s"] - s0["cpu_s"]) / (s1["t"] - s0["t"])}
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait(10)
        for k in kids:
            k.kill()


def floods(seconds: float) -> None:
    print(f"== floods: A (owner) and B (member typing 10 keystrokes/s) while an attacker "
          f"process floods A for {seconds:g} s; a new member C joins mid-attack")
    print(f"{'attack':30s}{'A RSS +MB':>10s}{'B->A p50':>10s}{'B->A p99':>10s}{'join s':>8s}"
          f"{'A CPU':>7s}{'sent':>8s}{'back KB':>9s}")
    print(f"{'target':30s}{'50':>10s}{'':>10s}{'20 ms':>10s}{'2':>8s}")
    for name, (member, steps) in flood_plans("DOC").items():
        base = Path(tempfile.mkdtemp(prefix="ownk-flood-"))
        try:
            r = flood_run(base, name, member, steps, seconds)
        except Exception as e:  # report and go on with the next attack
            print(f"{name:30s} failed: {type(e).__name__}: {e}")
            continue
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{name:30s}{r['rss_mb']:10.1f}{r['p50'] * 1e3:10.1f}{r['p99'] * 1e3:10.1f}"
              f"{r['join_s']:8.2f}{100 * r['cpu_a']:6.0f}%{r['sent']:8d}{r['back_kb']:9.0f}")
        print(f"{'':30s}edits seen {r['n']}/{r['typed']}; attacker sessions opened "
              f"{r['connected']}; A's sessions when C joined {r['sessions']}; A rejected "
              f"{r['rejected']}; A net errors {r['errors']}")
        print(f"{'':30s}A's transport counters {r['transport']}; held at the end "
              f"{r['held_mb']:.1f} MB")
    print(f"(load average of the machine at the end: {os.getloadavg()[0]:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--per-change", type=int, default=100,
                    help="trace keystrokes per durable change on the source node")
    ap.add_argument("--mesh", action="store_true", help="only the 12-node load run")
    ap.add_argument("--long", action="store_true", help="--mesh for 3 minutes")
    ap.add_argument("--nodes", type=int, default=12)
    ap.add_argument("--rate", type=float, default=60.0, help="--mesh keystrokes/s in total")
    ap.add_argument("--seconds", type=float, default=0.0, help="--mesh duration override")
    ap.add_argument("--floods", action="store_true", help="only the flood runs")
    ap.add_argument("--fanout", type=int, nargs="*", metavar="N",
                    help="one typist at --rate (default 20/s) to N-1 readers, e.g. 2 4 8")
    args = ap.parse_args()
    if args.fanout is not None:
        rate = args.rate if args.rate != 60.0 else 20.0
        print(f"== fan-out: one typist at {rate:g} keystrokes/s, "
              f"{args.seconds or 30:g} s, fully meshed (127.0.0.1, Curve, signed, durable)")
        fanout(args.fanout or [2, 4, 8], rate, args.seconds or 30.0)
        return
    if args.mesh:
        secs = args.seconds or (180.0 if args.long else 60.0)
        print(f"== mesh: {args.nodes} node processes, {args.rate:g} keystrokes/s in total, "
              f"one doc, {secs:g} s (127.0.0.1, Curve, signed, durable)")
        mesh(args.nodes, args.rate, secs, warmup=min(20.0, secs / 3))
        return
    if args.floods:
        floods(12.0 if args.quick else 20.0)
        return
    n_rt, n_edit, n_stream = (2000, 50, 200) if args.quick else (20000, 300, 1000)
    print("== 1. raw pyzmq round trip, loopback, 100 B (the floor)")
    for curve in (False, True):
        xs = raw_round_trip(n_rt, curve)
        print(f"{'CurveZMQ' if curve else 'plain   '}  p50 {ms(pct(xs, 50))}  "
              f"p99 {ms(pct(xs, 99))}  ({n_rt} round trips)")
    places = [("disk", Path(tempfile.gettempdir()))]
    if Path("/dev/shm").is_dir():
        places.append(("tmpfs", Path("/dev/shm")))
    print("\n== 2. edit on A -> visible on B (2 processes, Curve, signed, durable)")
    for label, where in places:
        base = Path(tempfile.mkdtemp(prefix="ownk-bench-", dir=where))
        try:
            lat, commit = edit_latency(base, n_edit)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{label:5s}  p50 {ms(pct(lat, 50))}  p99 {ms(pct(lat, 99))}  "
              f"mean {ms(statistics.mean(lat))}   (of which A's durable commit: p50 "
              f"{ms(pct(commit, 50))}; {n_edit} edits)")
    print("\n== 3. changes/s streamed A -> B (one durable change per keystroke)")
    for label, where in places:
        base = Path(tempfile.mkdtemp(prefix="ownk-bench-", dir=where))
        try:
            rate = stream(base, n_stream)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{label:5s}  {rate:8.0f} changes/s  ({n_stream} changes, until all stored on B)")
    print("\n== 4. a fresh peer syncs the whole automerge-paper history")
    for label, where in places:
        base = Path(tempfile.mkdtemp(prefix="ownk-bench-", dir=where))
        try:
            r = trace_sync(base, args.per_change, 20000 if args.quick else None)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{label:5s}  {r['keystrokes']} keystrokes in {r['changes']} changes "
              f"({args.per_change} per change), {r['chars']} chars: synced in "
              f"{r['sync_s']:.2f} s (join -> full text on B; source built in "
              f"{r['build_s']:.1f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
