"""A node in its own OS process, driven by tests/test_net_processes.py and benchmarks/net.py.

Commands arrive as JSON lines on stdin; each gets one JSON line on stdout. The
first line out is ``{"ready": true, "id": ..., "address": ...}``. Networking is on
127.0.0.1 only. ``--fast`` shortens timers so faults are noticed within seconds.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from child_harness import serve  # noqa: E402

from ownkernel.node import Node  # noqa: E402
from ownkernel.node.gate import Credentials  # noqa: E402
from ownkernel.node.network import NetConfig, NodeNetwork  # noqa: E402
from ownkernel.store import DB_FILE  # noqa: E402


def config(args: argparse.Namespace) -> NetConfig:
    cfg = NetConfig(listen=[] if args.no_listen else args.listen or ["tcp://127.0.0.1:0"],
                    bootstrap=args.bootstrap,
                    relay=args.relay)
    if args.discovery:  # LAN beacons: only ever inside a test's network namespace
        cfg.discovery = {"interface": args.discovery, "port": args.beacon_port,
                         "interval": 0.2, "expiry": 3.0}
    if args.allow:
        cfg.allow = {bytes.fromhex(x) for x in args.allow}
    if args.fast:
        cfg.ping_interval, cfg.peer_timeout, cfg.anti_entropy = 0.5, 3.0, 2.0
        cfg.backoff_min, cfg.backoff_max, cfg.connect_timeout = 0.1, 1.0, 1.5
    return cfg


def open_node(args: argparse.Namespace) -> tuple[Node, NodeNetwork]:
    node = Node(args.profile, name=args.name, network=config(args))
    assert node.network is not None
    return node, node.network


def wait(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return bool(pred())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", required=True)
    ap.add_argument("--name", default="child")
    ap.add_argument("--listen", action="append", default=[])
    ap.add_argument("--bootstrap", action="append", default=[])
    ap.add_argument("--allow", action="append", default=[])
    ap.add_argument("--relay", action="store_true")
    ap.add_argument("--no-listen", action="store_true", help="dial out only (listen=none)")
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--discovery", default=None, help="interface address for ZRE beacons")
    ap.add_argument("--beacon-port", type=int, default=5670)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.name} %(name)s %(message)s")
    node, net = open_node(args)
    changed: list[float] = []
    seen = Seen(node)

    def on_changed(doc: bytes, src: bytes | None) -> None:
        changed.append(time.perf_counter())
        seen.record(doc)
    net.on("doc_changed", on_changed)

    def answer(cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["op"] in LOAD_OPS:
            return load_op(node, seen, cmd)
        return handle(node, net, args, changed, cmd)

    serve(answer, {"id": node.id.hex(),
                   "address": net.addresses[0] if net.addresses else None})


class Seen:
    """Per watched doc and (author, seq): the perf_counter time it first became visible.

    Fed from ``doc_changed`` on the network thread: the version vector read there
    (the node lock is free then: ingest has returned) tells which seqs just arrived.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.docs: dict[bytes, dict[bytes, list[float]]] = {}  # doc -> author -> [t of seq 1..]

    def watch(self, doc: bytes) -> None:
        """From now on (network thread only); seqs already here are marked 0.0."""
        self.docs[doc] = {a: [0.0] * s for a, s in self.node.open(doc).version.items()}

    def record(self, doc: bytes) -> None:
        times = self.docs.get(doc)
        if times is None:
            return
        now = time.perf_counter()
        for actor, seq in self.node.open(doc).version.items():
            got = times.setdefault(actor, [])
            if seq > len(got):  # seq s is at index s-1
                got.extend([now] * (seq - len(got)))


class Typist:
    """Types ``n`` keystrokes at ``rate``/s from perf_counter time ``at``: one durable change
    each; records (seq, time before the keystroke, time it was durably stored)."""

    def __init__(self, node: Node, doc: bytes, n: int, rate: float, at: float,
                 chars: str) -> None:
        self.node, self.doc, self.n, self.rate, self.at, self.chars = (node, doc, n, rate,
                                                                         at, chars)
        self.done: list[tuple[int, float, float]] = []
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            h = self.node.open(self.doc)
            t = h.text("body")
            for i in range(self.n):
                delay = self.at + i / self.rate - time.perf_counter()
                if delay > 0:  # absolute schedule: a slow keystroke does not shift the rest
                    time.sleep(delay)
                t0 = time.perf_counter()
                t.insert(len(t), self.chars[i % len(self.chars)])
                t1 = time.perf_counter()
                self.done.append((h.version[self.node.id], t0, t1))
        except Exception as e:  # report through the `typed` op
            self.error = f"{type(e).__name__}: {e}"


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


LOAD_OPS = ("type", "typed", "seen", "rss", "seed")
_typists: dict[bytes, Typist] = {}


def load_op(node: Node, seen: Seen, cmd: dict[str, Any]) -> dict[str, Any]:
    """The load-test ops (tests/test_load.py, benchmarks/net.py --mesh/--floods)."""
    op = cmd["op"]
    if op == "type":  # starts typing in the background; `typed` collects
        doc = bytes.fromhex(cmd["doc"])
        if doc in _typists and _typists[doc].thread.is_alive():
            return {"error": "already typing into this doc"}
        _typists[doc] = Typist(node, doc, int(cmd["n"]), float(cmd["rate"]),
                               float(cmd.get("at") or time.perf_counter()),
                               cmd.get("chars", "abcdefghij"))
        return {"ok": True}
    if op == "typed":  # waits for the typist to finish; returns [[seq, t0, t1], ...]
        ty = _typists.get(bytes.fromhex(cmd["doc"]))
        if ty is None:
            return {"error": "not typing into this doc"}
        ty.thread.join(cmd.get("timeout", 600.0))
        return {"done": ty.done, "finished": not ty.thread.is_alive(), "failed": ty.error}
    if op == "seen":  # "start": watch the doc from now; else the times per author
        doc = bytes.fromhex(cmd["doc"])
        if cmd.get("start"):
            node.network._call(seen.watch, doc)  # type: ignore[union-attr]
            return {"ok": True}
        out = node.network._call(lambda: {a.hex(): list(t) for a, t in  # type: ignore
                                          seen.docs.get(doc, {}).items()})
        return {"seen": out}
    if op == "rss":  # memory and CPU time of this process, without the network thread
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"rss_kb": rss_kb(), "cpu_s": ru.ru_utime + ru.ru_stime, "t": time.perf_counter()}
    if op == "seed":  # this node's signing seed (and its grant for a doc): an attacker
        # process may then speak as this member
        out = {"seed": bytes(node.identity._sk).hex()}
        if cmd.get("doc"):
            row = node.store.document(bytes.fromhex(cmd["doc"]))
            grant = Credentials.from_bytes(row.token).grant if row is not None else None
            out["grant"] = grant.hex() if grant else None
        return out
    return {"error": f"unknown op {op}"}


def text(node: Node, doc: str, root: str = "body") -> str:
    return str(node.open(doc).text(root))


def handle(node: Node, net: Any, args: argparse.Namespace, changed: list[float],
           cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "quit":
        t = time.monotonic()
        net.close()
        node.close()
        return {"ok": True, "close_s": time.monotonic() - t}
    if op == "new_doc":
        h = node.new_doc(cmd.get("title", ""), encrypted=cmd.get("encrypted", False))
        h.text("body")
        return {"doc": h.hex}
    if op == "invite":
        return {"token": node.invite(cmd["doc"], write=cmd.get("write", True),
                                     addresses=cmd.get("addresses"))}
    if op == "join":
        return {"doc": node.join(cmd["token"]).hex}
    if op == "connect":
        net.connect(cmd["address"], timeout=None)
        return {"ok": True}
    if op == "insert":
        t = node.open(cmd["doc"]).text(cmd.get("root", "body"))
        for ch in cmd["text"]:  # one durable change per character, like typing
            t.insert(len(t) if cmd.get("pos", -1) < 0 else cmd["pos"], ch)
        return {"ok": True}
    if op == "text":
        return {"text": text(node, cmd["doc"])}
    if op == "wait_text":
        def ok() -> bool:
            try:
                s = text(node, cmd["doc"])
            except (KeyError, PermissionError):
                return False
            return all(x in s for x in cmd.get("contains", [])) and (
                "length" not in cmd or len(s) == cmd["length"])
        good = wait(ok, cmd.get("timeout", 10.0))
        try:
            return {"ok": good, "text": text(node, cmd["doc"])}
        except (KeyError, PermissionError) as e:
            return {"ok": False, "error": str(e)}
    if op == "wait_peers":
        good = wait(lambda: sum(p.online for p in net.peers()) >= cmd["n"],
                    cmd.get("timeout", 10.0))
        return {"ok": good, "peers": [[p.id.hex(), p.name, p.online] for p in net.peers()]}
    if op == "stats":  # the node's counters, and this process's memory and CPU time
        ru = resource.getrusage(resource.RUSAGE_SELF)
        st = node.stats()
        return {"node": st, "net": st.get("net", {}), "rss_kb": rss_kb(),
                "cpu_s": ru.ru_utime + ru.ru_stime, "t": time.perf_counter()}
    if op == "db_contains":
        data = b"".join(p.read_bytes() for p in Path(args.profile).glob(DB_FILE + "*"))
        return {"found": cmd["needle"].encode() in data}
    if op == "readable":
        try:
            text(node, cmd["doc"])
            return {"readable": True}
        except PermissionError:
            return {"readable": False}
    if op == "edit":  # one keystroke; returns when it is durably stored here
        t = node.open(cmd["doc"]).text("body")
        t0 = time.perf_counter()
        t.insert(len(t), cmd["ch"])
        return {"t0": t0, "t1": time.perf_counter()}
    if op == "changed_at":  # perf_counter of the n-th doc_changed event (same host clock)
        n = cmd["n"]
        wait(lambda: len(changed) >= n, cmd.get("timeout", 10.0))
        return {"at": changed[n - 1] if len(changed) >= n else None, "count": len(changed)}
    return {"error": f"unknown op {op}"}


if __name__ == "__main__":
    main()
