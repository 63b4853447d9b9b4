"""Load: N node processes, fully meshed, all typing into one doc (issue #8 §3).

Each node is its own OS process (tests/net_child_node.py) on 127.0.0.1. The
harness here is shared with ``benchmarks/net.py --mesh``: the test asserts the
outcome (convergence, duplicates, bounded memory), the benchmark prints the
figures (propagation p50/p99, CPU). Latencies are taken inside the processes
with time.perf_counter() (CLOCK_MONOTONIC, one clock for all processes on Linux).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_net_processes import Child

CHARS = "abcdefghijklmnopqrstuvwxyz"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def wait_length(nd: Child, doc: str, length: int, deadline: float) -> dict[str, Any]:
    """The child's wait_text, asked again until ``deadline`` (each ask waits up to the
    child's default 10 s: Child's ``timeout`` is how long *we* wait for the answer)."""
    while True:
        out = nd("wait_text", doc=doc, length=length, contains=[], timeout=60.0)
        if out.get("ok") or time.monotonic() >= deadline:
            return out


def build_mesh(make: Callable[..., Child], n: int, *args: str,
               timeout: float = 60.0) -> tuple[list[Child], str]:
    """``n`` nodes, each bootstrapped only from the one before it: the address book has
    to make the mesh full. Node 0 owns one doc, every other node joins it by a token
    without addresses, and all see one warm-up keystroke from each node."""
    nodes = [make("n0", *args)]
    for i in range(1, n):
        nodes.append(make(f"n{i}", "--bootstrap", nodes[-1].address, *args))
    deadline = time.monotonic() + timeout
    for nd in nodes:
        while True:  # each ask waits up to the child's default 10 s
            out = nd("wait_peers", n=n - 1, timeout=60.0)
            if out["ok"] or time.monotonic() >= deadline:
                break
        assert out["ok"], (nd.name, "not fully meshed", out["peers"])
    doc = nodes[0]("new_doc", title="load")["doc"]
    for nd in nodes[1:]:
        nd("join", token=nodes[0]("invite", doc=doc, addresses=[])["token"])
    for nd in nodes:
        nd("insert", doc=doc, text="_")
    deadline = time.monotonic() + timeout
    for nd in nodes:
        assert wait_length(nd, doc, n, deadline).get("ok"), (nd.name, "warm-up not seen")
    return nodes, doc


@dataclass
class LoadResult:
    nodes: int
    changes: int  # keystrokes typed in the run, all nodes together
    seconds: float  # wall time of the typing
    texts: set[str]  # the final text at each node (one element when converged)
    lat_t0: list[float]  # keystroke started at the author -> visible at another node
    lat_t1: list[float]  # keystroke durably stored at the author -> visible at another node
    missing: int  # (change, observer) pairs never seen
    lacking: dict[str, dict[str, int]]  # observer -> author -> changes it never saw
    timed_out: list[str]  # nodes that did not hold every keystroke within the timeout
    lengths: list[int]  # characters typed in the run that each node holds at the end
    final: dict[str, str]  # each node's text, read again after the figures were collected
    converge_s: float  # from the last keystroke's commit until all held all (or timeout)
    dups: list[int]  # duplicate envelopes received per node during the run
    rss_warm_kb: list[int]  # RSS per node after the warm-up
    rss_end_kb: list[int]
    cpu_s: float  # CPU seconds of all node processes during the run
    rejected: list[int]  # inputs rejected per node during the run (honest run: 0)
    errors: list[dict[str, int]] = field(default_factory=list)  # net errors per node at end
    cpu_per_node: list[float] = field(default_factory=list)  # CPU seconds of each node

    @property
    def dup_per_change_per_node(self) -> float:
        return statistics.mean(self.dups) / max(1, self.changes)

    @property
    def rss_growth_mb(self) -> list[float]:
        return [(e - w) / 1024 for w, e in zip(self.rss_warm_kb, self.rss_end_kb)]

    def summary(self) -> str:
        ms = 1e3
        return (f"{self.nodes} nodes, {self.changes} changes in {self.seconds:.1f} s: "
                f"propagation p50 {pct(self.lat_t0, 50) * ms:.1f} ms, p99 "
                f"{pct(self.lat_t0, 99) * ms:.1f} ms (from durable commit: p50 "
                f"{pct(self.lat_t1, 50) * ms:.1f}, p99 {pct(self.lat_t1, 99) * ms:.1f} ms); "
                f"dup/change/node {self.dup_per_change_per_node:.3f}; RSS growth max "
                f"{max(self.rss_growth_mb):.1f} MB; CPU {self.cpu_s:.1f} s "
                f"({100 * self.cpu_s / self.seconds:.0f}% of one core); missing {self.missing}; "
                f"converged in {self.converge_s:.1f} s: {len(self.texts) == 1}")


def run_load(nodes: list[Child], doc: str, rate: float, seconds: float,
             warmup: float = 0.0, converge_timeout: float = 60.0,
             typists: int | None = None) -> LoadResult:
    """The first ``typists`` nodes (default: all) type ``rate`` keystrokes/s in total
    for ``seconds``, evenly interleaved; then wait for every node to hold the whole
    text and collect the figures."""
    everyone = nodes
    n = len(nodes) if typists is None else typists
    per_node = rate / n
    k = max(1, int(per_node * seconds))
    start_len = len(nodes[0]("text", doc=doc)["text"])
    for nd in nodes:
        nd("seen", doc=doc, start=True)
    before = [nd("stats") for nd in nodes]
    at = before[-1]["t"] + 0.3  # perf_counter: the same clock in every process
    for i, nd in enumerate(nodes[:n]):
        nd("type", doc=doc, n=k, rate=per_node, at=at + i / rate, chars=CHARS[i % len(CHARS)])
    time.sleep(max(0.0, at + warmup - time.perf_counter()))
    warm = [nd("rss") for nd in nodes] if warmup else before
    typed = []
    for nd in nodes[:n]:
        out = nd("typed", doc=doc, timeout=seconds + 120)
        assert out["finished"] and not out["failed"], (nd.name, out)
        typed.append(out["done"])
    t_end = max(d[-1][2] for d in typed)
    total = n * k
    t_conv = time.perf_counter()
    deadline = time.monotonic() + converge_timeout
    waits = [wait_length(nd, doc, start_len + total, deadline) for nd in nodes]
    converge_s = time.perf_counter() - max(t_conv, t_end)
    texts = {w.get("text", "") for w in waits}
    timed_out = [nd.name for nd, w in zip(nodes, waits) if not w.get("ok")]
    lengths = [len(w.get("text", "")) - start_len for w in waits]
    after = [nd("stats") for nd in nodes]
    final = {nd.name: nd("text", doc=doc)["text"] for nd in nodes}  # read once more, later
    seen = [nd("seen", doc=doc)["seen"] for nd in nodes]
    lat0: list[float] = []
    lat1: list[float] = []
    missing = 0
    lacking: dict[str, dict[str, int]] = {}  # observer -> author -> changes never seen
    for a, author in enumerate(nodes[:n]):
        for o, observer in enumerate(everyone):
            if o == a:
                continue
            got = seen[o].get(author.id, [])
            for seq, t0, t1 in typed[a]:
                if seq > len(got) or got[seq - 1] <= 0.0:
                    missing += 1
                    per = lacking.setdefault(observer.name, {})
                    per[author.name] = per.get(author.name, 0) + 1
                    continue
                lat0.append(got[seq - 1] - t0)
                lat1.append(got[seq - 1] - t1)
    return LoadResult(
        nodes=n, changes=total, seconds=t_end - at, texts=texts, lat_t0=lat0, lat_t1=lat1,
        missing=missing, lacking=lacking, timed_out=timed_out, lengths=lengths,
        converge_s=converge_s, final=final,
        dups=[x["node"]["duplicates"] - b["node"]["duplicates"] for b, x in zip(before, after)],
        rss_warm_kb=[w["rss_kb"] for w in warm], rss_end_kb=[x["rss_kb"] for x in after],
        cpu_s=sum(x["cpu_s"] - b["cpu_s"] for b, x in zip(before, after)),
        rejected=[x["node"]["rejected_total"] - b["node"]["rejected_total"]
                  for b, x in zip(before, after)],
        errors=[x["net"].get("errors", {}) for x in after],
        cpu_per_node=[x["cpu_s"] - b["cpu_s"] for b, x in zip(before, after)])


def check(r: LoadResult) -> None:
    """What must hold whatever the machine's speed."""
    assert not r.timed_out, ("not all keystrokes arrived", r.changes, r.lengths, r.lacking)
    assert len(r.texts) == 1, "all nodes hold all keystrokes, yet their texts differ"
    text = next(iter(r.texts))
    assert all(text.count(CHARS[i % len(CHARS)]) >= r.changes // r.nodes
               for i in range(r.nodes)), "keystrokes lost"
    assert r.missing == 0, f"{r.missing} (change, node) pairs never became visible"
    assert r.dup_per_change_per_node <= 1.0, (r.dups, r.changes)
    assert sum(r.rejected) == 0, r.rejected  # honest nodes: nothing refused


@pytest.fixture
def mesh_spawn(tmp_path: Path):
    children: list[Child] = []

    def make(name: str, *args: str) -> Child:
        c = Child(tmp_path, name, *args, fast=False)
        children.append(c)
        return c
    yield make
    for c in children:
        c.kill()


def test_six_nodes_type_into_one_doc(mesh_spawn):
    nodes, doc = build_mesh(mesh_spawn, 6)
    r = run_load(nodes, doc, rate=20.0, seconds=5.0)
    print(r.summary())
    assert r.changes == 96  # 6 nodes x int(20/6 * 5)
    check(r)
    for nd in nodes:
        assert nd.stop() < 5.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_twelve_nodes_sixty_keystrokes_per_second_for_a_minute(mesh_spawn):
    nodes, doc = build_mesh(mesh_spawn, 12)
    r = run_load(nodes, doc, rate=60.0, seconds=60.0, warmup=15.0, converge_timeout=120.0)
    print(r.summary())
    check(r)
    # the target is 5 MB per node over 3 minutes (benchmarks/net.py --mesh --long);
    # here, over 45 s after warm-up, only a generous bound against a leak
    assert max(r.rss_growth_mb) <= 20.0, r.rss_growth_mb
