"""Calls (issue #14): time from "join" to the first decoded frame on the other side,
signalling messages per set-up, CPU of a 3-party call.

Everything runs inside a network namespace the script makes (as the browser test
does: tests/browser/test_call_browser.py), so it needs root and iproute2; the
browser part also needs Chromium, Playwright and JupyterLab.

    PYTHONPATH=$PWD python benchmarks/call.py [--runs 5] [--seconds 20] [--no-browser]

Figures:
- aiortc ↔ aiortc through two ownkernel nodes (CallBot), and the same two aiortc
  peers exchanging their SDP directly in one process (the anchor: what WebRTC
  costs without our signalling);
- Chromium page ↔ page (two kernels in one JupyterLab): click "Join" on B (A is in
  the call) → A's tile has a decoded frame;
- signals sent per pair set-up (node counters);
- CPU of a 3-party call (2 pages + 1 bot, or 3 bots): CPU seconds of every process
  in the namespace over a window, as % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "browser"),
                str(HERE.parent)]

import test_call_browser as tcb  # noqa: E402  (the namespace and pages helpers)


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def ns_cpu() -> dict[str, float]:
    """CPU seconds so far of every process in our network namespace, by kind."""
    mine = os.readlink("/proc/thread-self/ns/net")
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != mine:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if "chromium" in cmd or "chrome" in cmd:
            kind = "chromium"
        elif "callbot" in cmd:
            kind = "bot"
        elif "ownkernel.kernel" in cmd or "ipykernel" in cmd:
            kind = "kernels"
        elif "jupyterlab" in cmd or "jupyter" in cmd:
            kind = "jupyterlab"
        elif int(pid) == os.getpid():
            kind = "this process"
        else:
            kind = "other"
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def cpu_window(seconds: float) -> dict[str, float]:
    before = ns_cpu()
    time.sleep(seconds)
    after = ns_cpu()
    return {k: round(100 * (after.get(k, 0) - before.get(k, 0)) / seconds, 1)
            for k in sorted(set(after) | set(before))}


# ------------------------------------------------------------------ aiortc
def bots_once(root: Path) -> dict[str, float]:
    from ownkernel.apps.callbot import CallBot
    from ownkernel.node import Node
    from ownkernel.node.config import NetConfig

    a = Node(root / "a", name="a", network=NetConfig(listen=["tcp://127.0.0.1:0"]))
    b = Node(root / "b", name="b", network=NetConfig(listen=["tcp://127.0.0.1:0"]))
    try:
        doc = a.new_doc("call")
        b.join(a.invite(doc), timeout=30)
        ba = CallBot(a, doc).start()
        time.sleep(0.5)  # a is in the call, alone
        s0 = a.network.stats().get("signals_out", 0) + b.network.stats().get("signals_out", 0)
        t0 = time.monotonic()
        bb = CallBot(b, doc.id).start()
        tcb.until(lambda: a.id in bb.first_frame_at and b.id in ba.first_frame_at, 60, "frames")
        t_first = min(bb.first_frame_at[a.id], ba.first_frame_at[b.id]) - t0
        t_both = max(bb.first_frame_at[a.id], ba.first_frame_at[b.id]) - t0
        s1 = a.network.stats().get("signals_out", 0) + b.network.stats().get("signals_out", 0)
        bb.close()
        ba.close()
        return {"first": t_first, "both": t_both, "signals": s1 - s0}
    finally:
        a.close()
        b.close()


async def direct_once() -> float:
    """Two aiortc peers in one process, SDP handed over directly: the anchor."""
    from aiortc import RTCPeerConnection

    from ownkernel.apps.callbot import _tracks

    x, y = RTCPeerConnection(), RTCPeerConnection()
    for pc in (x, y):
        for t in _tracks():
            pc.addTrack(t)
    got = asyncio.get_running_loop().create_future()

    @y.on("track")
    def _on(track: Any) -> None:
        async def first() -> None:
            await track.recv()
            if not got.done():
                got.set_result(time.monotonic())
        if track.kind == "video":
            asyncio.ensure_future(first())
    t0 = time.monotonic()
    await x.setLocalDescription(await x.createOffer())
    await y.setRemoteDescription(x.localDescription)
    await y.setLocalDescription(await y.createAnswer())
    await x.setRemoteDescription(y.localDescription)
    t1 = await asyncio.wait_for(got, 60)
    await x.close()
    await y.close()
    return t1 - t0


def three_bots_cpu(root: Path, seconds: float) -> dict[str, Any]:
    from ownkernel.apps.callbot import CallBot
    from ownkernel.node import Node
    from ownkernel.node.config import NetConfig

    nodes = [Node(root / n, name=n, network=NetConfig(listen=["tcp://127.0.0.1:0"]))
             for n in "xyz"]
    bots: list[Any] = []
    try:
        doc = nodes[0].new_doc("call")
        for n in nodes[1:]:
            n.join(nodes[0].invite(doc), timeout=30)
        bots = [CallBot(n, doc.id).start() for n in nodes]
        tcb.until(lambda: all(len(b.frames) == 2 for b in bots), 90, "3-party mesh")
        time.sleep(2)
        t = os.times()
        t0 = time.monotonic()
        time.sleep(seconds)
        t2 = os.times()
        wall = time.monotonic() - t0
        cpu = (t2.user - t.user) + (t2.system - t.system)
        frames = {b.node.name: sum(b.frames.values()) for b in bots}
        return {"cpu_pct": round(100 * cpu / wall, 1), "frames": frames}
    finally:
        for b in bots:
            b.close()
        for n in nodes:
            n.close()


# ------------------------------------------------------------------ Chromium
def pages_run(root: Path, runs: int, seconds: float) -> dict[str, Any]:
    with tcb.CallPages(root) as cp:
        a, b = cp.pages["A"], cp.pages["B"]
        cp.join("A")
        times = []
        for i in range(runs):
            t0 = time.monotonic()
            cp.join("B")
            a.wait_for_function(tcb.connected(1), timeout=tcb.WAIT, polling=10)
            times.append(time.monotonic() - t0)
            b.wait_for_function(tcb.connected(1), timeout=tcb.WAIT)
            if i < runs - 1:
                b.click(f"{tcb.CALL} [data-own='call-leave']")
                a.wait_for_function(f"() => Object.keys(({tcb.TILES})()).length === 0",
                                    timeout=tcb.WAIT)
        # 3 parties: the bot joins; CPU over a window once every tile plays
        bot = cp.bot()
        try:
            tcb.read_status(bot, lambda s: s.get("ready"), 120, "bot ready")
            a.wait_for_function(tcb.connected(2), timeout=tcb.WAIT)
            b.wait_for_function(tcb.connected(2), timeout=tcb.WAIT)
            time.sleep(2)
            cpu = cpu_window(seconds)
        finally:
            if bot.stdin is not None:
                bot.stdin.close()
            bot.wait(30)
    return {"join_to_frame": times, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    if tcb._no_ns:
        sys.exit(f"cannot run: {tcb._no_ns}")
    root = Path(tempfile.mkdtemp(prefix="ownkernel-bench-call-"))
    print(f"load average at start: {load()}")
    with tcb.namespace():
        bots = [bots_once(root / f"r{i}") for i in range(args.runs)]
        direct = [asyncio.run(direct_once()) for _ in range(args.runs)]
        med = statistics.median
        print(f"aiortc<->aiortc through nodes: join -> first frame median "
              f"{med([b['first'] for b in bots]) * 1000:.0f} ms, "
              f"both ways {med([b['both'] for b in bots]) * 1000:.0f} ms "
              f"(runs {[round(b['first'] * 1000) for b in bots]}), "
              f"signals per set-up {sorted({b['signals'] for b in bots})}  load {load()}")
        print(f"aiortc<->aiortc direct (anchor): offer -> first frame median "
              f"{med(direct) * 1000:.0f} ms (runs {[round(d * 1000) for d in direct]})  "
              f"load {load()}")
        three = three_bots_cpu(root / "three", args.seconds)
        print(f"3 bots, 3-party mesh: {three['cpu_pct']}% of one core for all three "
              f"(frames in {args.seconds:.0f} s: {three['frames']})  load {load()}")
    if not args.no_browser and tcb._no_browser is None:
        res = pages_run(root / "pages", args.runs, args.seconds)
        ms = [round(t * 1000) for t in res["join_to_frame"]]
        print(f"Chromium page<->page: click Join on B -> frame decoded on A: median "
              f"{statistics.median(ms)} ms (runs {ms})  load {load()}")
        total = round(sum(res["cpu"].values()), 1)
        print(f"3-party call (2 pages + 1 bot), CPU % of one core over {args.seconds:.0f} s: "
              f"{res['cpu']} total {total}  load {load()}")


if __name__ == "__main__":
    main()
