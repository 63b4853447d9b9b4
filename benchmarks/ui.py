"""Keystroke latency of the live editor: a key typed in page A until it is in
page B's DOM, with page A and B two JupyterLab tabs in Debian's Chromium.

ours:   two notebooks on two ownkernel kernels (two nodes syncing over
        127.0.0.1), each showing ``ui.editor(doc.text("body"))`` of one doc.
anchor: JupyterLab's own real-time collaboration (jupyter-collaboration, in
        the ``bench`` extra), two pages on one shared notebook cell.

Both are measured the same way in the same run: page A stamps each keydown
(``performance.timeOrigin + performance.now()``, one clock for both pages of
one browser), page B's MutationObserver stamps the moment its editor first
holds the first n characters. Typing is at ``--rate`` keys/s (default 20, a
fast typist), ``--keys`` keys (default 300, the first 20 not counted).

    python benchmarks/ui.py [--keys 300] [--rate 20] [--skip-anchor]
        [--sustain 60] [--burst 10000] [--trace]

--trace: where a key's time goes (ours only): in-page stamps (keydown, push
sent, update shown) and kernel stamps ($OWNKERNEL_UI_TRACE, editor.py: push
received, taken by the node thread, applied, committed; in kernel B: drained,
posted), matched by the text's length, one wall clock for all.
--nodelay: the Jupyter server sets TCP_NODELAY on its sockets (lab_nodelay.py),
for both rows: jupyter_server leaves Nagle's algorithm on for its WebSockets.
--rename N (no browser): two nodes on 127.0.0.1; node A renames itself N
times; the time until node B's chat and peer-list widgets send the new name
to their (stand-in) page.
--burst N: after the rest, node B makes N random one-character edits (in
commits of --burst-batch) into the text page A shows; page A's main-thread
long tasks (PerformanceObserver "longtask") are recorded until both equal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LAB_ARGS: list[str] = []  # extra JupyterLab arguments for both rows (--nodelay)
LAB_ENV: dict[str, str] = {}
sys.path[:0] = [str(REPO / "tests" / "browser"), str(REPO / "tests"), str(REPO)]

import lab  # noqa: E402

WARMUP = 20
MODES: list[str] = []  # the editors' road to their kernel in the run (page A, page B)
CHANNEL_MODE = """(() => { const e = document.querySelector('[data-own-widget="editor"]');
  return e && e.ownChannel ? e.ownChannel.mode : 'comm (old bundle)'; })()"""
OURS = "ownkernel ui.editor (2 kernels, 2 nodes)"
ANCHOR = "jupyter-collaboration (1 shared cell)"
ALPHABET = "abcdefghijklmnopqrstuvwxyz"

# Page A: stamp keydowns on the editor.
STAMP_KEYS = """(sel) => {
  window.__down = [];
  if (window.__stamping) return;  // one listener, however often we start over
  window.__stamping = true;
  document.querySelector(sel).addEventListener('keydown',
    () => window.__down.push(performance.timeOrigin + performance.now()), true);
}"""
# Page B: stamp when the editor first shows n typed characters (after the prefix).
WATCH = """([sel, prefix]) => {
  window.__seen = [];
  const root = document.querySelector(sel);
  const text = () => [...root.querySelectorAll('.cm-line')].map(l => {
      const x = l.cloneNode(true);
      x.querySelectorAll('.cm-own-caret, .cm-widgetBuffer, .jp-remote-cursor, ' +
                         '.jp-remote-userInfo').forEach(e => e.remove());
      return x.textContent; }).join('\\n');
  const check = () => {
    const now = performance.timeOrigin + performance.now();
    const t = text();
    let n = t.startsWith(prefix) ? t.length - prefix.length : 0;
    while (window.__seen.length < n) window.__seen.push(now);
  };
  if (window.__obs) window.__obs.disconnect();
  window.__obs = new MutationObserver(check);
  window.__obs.observe(root, {childList: true, subtree: true, characterData: true});
}"""


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# CPU time of this benchmark's own processes while page A types, per key: a figure
# the other jobs on a shared machine disturb much less than the latencies.
CPU_PER_KEY: dict[str, dict[str, float]] = {}  # row -> process kind -> CPU ms per key


def cpu_by_kind() -> dict[str, float]:
    """CPU seconds used so far by the processes this benchmark started, by kind."""
    import psutil
    out: dict[str, float] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            with p.oneshot():
                t = p.cpu_times()
                cmd = " ".join(p.cmdline())
        except psutil.Error:  # gone meanwhile
            continue
        if "ipykernel" in cmd or "ownkernel.kernel" in cmd:
            kind = "kernels"
        elif "jupyterlab" in cmd or "jupyter-lab" in cmd:
            kind = "jupyter-server"
        elif "--type=renderer" in cmd:
            kind = "pages"  # Chromium's renderer processes
        elif "--type=gpu-process" in cmd:
            kind = "GPU"  # Chromium's compositing and raster (in software here)
        elif "chrom" in cmd or "headless_shell" in cmd:
            kind = "browser"  # Chromium's main process and its helpers
        else:
            kind = "other"  # the Playwright driver
        out[kind] = out.get(kind, 0.0) + t.user + t.system
    return out


def measure(a: Any, b: Any, sel_a: str, sel_b: str, keys: int, rate: float,
            cpu_row: str | None = None) -> list[float]:
    a.click(sel_a)
    a.keyboard.press("Control+End")
    prefix = a.evaluate(f"() => ({lab.EDITOR_TEXT.replace(lab.EDITOR_SEL, sel_a)})()") or ""
    b.wait_for_function(
        f"() => ({lab.EDITOR_TEXT.replace(lab.EDITOR_SEL, sel_b)})() === {json.dumps(prefix)}",
        timeout=60_000)
    a.evaluate(STAMP_KEYS, sel_a)
    b.evaluate(WATCH, [sel_b, prefix])
    text = "".join(ALPHABET[i % 26] for i in range(keys))
    cpu0 = cpu_by_kind()
    start = time.monotonic()
    for i, ch in enumerate(text):
        # pace by the clock, not by sleeps that add up
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        a.keyboard.type(ch)
    b.wait_for_function(f"() => window.__seen.length >= {keys}", timeout=120_000)
    if cpu_row:
        cpu1 = cpu_by_kind()
        CPU_PER_KEY[cpu_row] = {k: (v - cpu0.get(k, 0.0)) * 1000 / keys
                                for k, v in cpu1.items()}
    down = a.evaluate("() => window.__down")
    seen = b.evaluate("() => window.__seen")
    assert len(down) == keys, (len(down), keys)
    return [seen[i] - down[i] for i in range(WARMUP, keys)]


# Sustained typing: count one page's own letter in the other page's editor.
WATCH_CHAR = """([sel, ch]) => {
  window.__seen = [];
  const root = document.querySelector(sel);
  const check = () => {
    const now = performance.timeOrigin + performance.now();
    let n = 0;
    for (const l of root.querySelectorAll('.cm-line')) {
      for (const c of l.textContent) if (c === ch) n++;
    }
    while (window.__seen.length < n) window.__seen.push(now);
  };
  if (window.__obs) window.__obs.disconnect();
  window.__obs = new MutationObserver(check);
  window.__obs.observe(root, {childList: true, subtree: true, characterData: true});
}"""


def sustain_trace(root: Path, pages: list[Any], since: float) -> list[str]:
    """Both typing: per page, push -> received by its kernel (matched by the
    text length the push leaves, unique while nobody deletes), received ->
    taken by the node thread, taken -> committed."""
    kernels = []
    for f in sorted(root.glob("trace.*")):
        recs = [(st, int(n), float(t)) for st, n, t in
                (ln.split() for ln in f.read_text().splitlines() if ln.strip())]
        kernels.append([r for r in recs if r[2] >= since])
    out = ["where the time goes while both type (median / p90 ms):",
           "| page | push -> kernel | kernel -> node thread | node thread -> committed |",
           "|---|---|---|---|"]
    for name, page in zip("AB", pages):
        pushes = [(n, t) for st, n, t in page.evaluate("() => window.__ownTrace || []")
                  if st == "push" and t >= since]
        lens = {n for n, _ in pushes}
        k = max(kernels, key=lambda recs: sum(1 for r in recs if r[0] == "recv" and r[1] in lens))
        recv = {n: t for st, n, t in k if st == "recv"}
        takes = sorted(t for st, _, t in k if st == "take")
        commits = sorted(t for st, _, t in k if st == "commit")
        hop, wait, txn = [], [], []
        for n, t in pushes:
            if n not in recv:
                continue
            r = recv[n]
            hop.append(r - t)
            tk = next((x for x in takes if x >= r), None)
            if tk is None:
                continue
            wait.append(tk - r)
            cm = next((x for x in commits if x >= tk), None)
            if cm is not None:
                txn.append(cm - tk)

        def fmt(xs: list[float]) -> str:
            return f"{statistics.median(xs):.1f} / {percentile(xs, 90):.1f}" if xs else "-"
        out.append(f"| {name} ({len(hop)} pushes) | {fmt(hop)} | {fmt(wait)} | {fmt(txn)} |")
    for name, k in zip("12", kernels):
        sends = sorted(n / 1000 for st, n, _ in k if st == "send_us")
        if sends:
            out.append(f"kernel {name}: {len(sends)} comm sends from the node thread took "
                       f"median {statistics.median(sends):.2f} ms, p99 {percentile(sends, 99):.1f}"
                       f" ms, max {sends[-1]:.1f} ms")
    return out


def sustained(a: Any, b: Any, sel: str, seconds: float, rate: float,
              trace_root: Path | None = None) -> dict[str, Any]:
    """Both pages type at ``rate`` keys/s each for ``seconds``: A appends 'X' at
    the end, B inserts 'Y' at the start (letters the first part never typed).
    Latency of each key in the other page."""
    for page, key, ch in ((a, "Control+End", "Y"), (b, "Control+Home", "X")):
        page.click(sel)
        page.keyboard.press(key)
        page.evaluate(STAMP_KEYS, sel)
        page.evaluate(WATCH_CHAR, [sel, ch])
    n = int(seconds * rate)
    if trace_root is not None:
        for page in (a, b):
            page.evaluate(TRACE_ON)
    since = time.time() * 1000
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        a.keyboard.type("X")
        b.keyboard.type("Y")
    for page in (a, b):
        page.wait_for_function(f"() => window.__seen.length >= {n}", timeout=120_000)
    lat = []  # (seconds since start, ms)
    for src, dst in ((a, b), (b, a)):
        down = src.evaluate("() => window.__down")
        seen = dst.evaluate("() => window.__seen")
        lat += [((down[i] - down[0]) / 1000, seen[i] - down[i]) for i in range(n)]
    ta = a.evaluate(f"() => ({lab.EDITOR_TEXT.replace(lab.EDITOR_SEL, sel)})()")
    tb = b.wait_for_function(
        f"() => ({lab.EDITOR_TEXT.replace(lab.EDITOR_SEL, sel)})() === {json.dumps(ta)}",
        timeout=60_000)
    first = [ms for t, ms in lat if t < 10]
    last = [ms for t, ms in lat if t >= seconds - 10]
    out = {"keys": 2 * n, "first_p99": percentile(first, 99), "last_p99": percentile(last, 99),
           "p50": statistics.median(ms for _, ms in lat), "equal": bool(tb)}
    if trace_root is not None:
        out["trace"] = sustain_trace(trace_root, [a, b], since)
    return out


TRACE_ON = "() => { window.__ownTrace = []; }"
STAGES = ["keydown", "push", "recv", "take", "applied", "commit", "drain", "post", "shown",
          "seen"]


def trace_report(root: Path, a: Any, b: Any, prefix16: int, keys: int) -> list[str]:
    """Median time between consecutive stages of the keys (after the warm-up)."""
    kernels = []
    for f in sorted(root.glob("trace.*")):
        recs = [(st, int(n), float(t)) for st, n, t in
                (ln.split() for ln in f.read_text().splitlines() if ln.strip())]
        kernels.append(recs)
    ka = next((k for k in kernels if any(r[0] == "recv" for r in k)), [])
    kb = next((k for k in kernels if k is not ka and any(r[0] == "drain" for r in k)), [])
    ja = a.evaluate("() => window.__ownTrace || []")
    jb = b.evaluate("() => window.__ownTrace || []")
    down = a.evaluate("() => window.__down")
    seen = b.evaluate("() => window.__seen")

    def first(recs: list[Any], stage: str, n: int, after: float) -> float | None:
        ts = [t for st, m, t in recs if st == stage and m >= n and t >= after - 0.5]
        return min(ts) if ts else None
    deltas: dict[str, list[float]] = {s: [] for s in STAGES[1:]}
    totals = []
    for i in range(WARMUP, keys):
        n = prefix16 + i + 1
        t = {"keydown": down[i], "seen": seen[i]}
        t["push"] = first(ja, "push", n, down[i])
        for st in ("recv", "take", "applied", "commit"):
            t[st] = first(ka, st, n if st != "take" else n - 1, t.get("push") or down[i])
        for st in ("drain", "post"):
            t[st] = first(kb, st, n, t.get("commit") or down[i])
        t["shown"] = first(jb, "shown", n, t.get("post") or down[i])
        prev = t["keydown"]
        for st in STAGES[1:]:
            if t.get(st) is None:
                continue
            deltas[st].append(t[st] - prev)
            prev = t[st]
        totals.append(seen[i] - down[i])
    out = [f"where the time goes ({len(totals)} keys; median ms from the previous stage):",
           "| stage | " + " | ".join(STAGES[1:]) + " |", "|---" * len(STAGES) + "|",
           "| median | " + " | ".join(
               f"{statistics.median(v):.1f}" if v else "-" for v in deltas.values()) + " |",
           "| p90 | " + " | ".join(
               f"{percentile(v, 90):.1f}" if v else "-" for v in deltas.values()) + " |"]
    return out


LONGTASKS = """() => {
  window.__long = [];
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) window.__long.push(e.duration);
  }).observe({ type: "longtask" });
}"""


def burst(a: Any, b: Any, sel: str, n: int, batch: int, lines: bool = True) -> dict[str, Any]:
    """Node B makes ``n`` random edits; page A shows them. Long tasks in page A."""
    a.evaluate(LONGTASKS)
    # text with lines, as documents have (--burst-lines 0: one line of N characters)
    chars = "abcdefghij" + "\n" * (1 if lines else 0)
    code = (f"import random as _r\n_t = doc.text('body'); _g = _r.Random(5); _n = len(str(_t))\n"
            f"for _k in range({n} // {batch}):\n"
            f"    with doc.transaction():\n"
            f"        for _ in range({batch}):\n"
            f"            if _n and _g.random() < 0.2:\n"
            f"                _t.delete(_g.randrange(_n), 1); _n -= 1\n"
            f"            else:\n"
            f"                _t.insert(_g.randint(0, _n), {chars!r}[_g.randrange({len(chars)})])\n"
            f"                _n += 1\n")
    t0 = time.monotonic()
    b.evaluate("""async (code) => {
      const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      await k.requestExecute({ code }).done; }""", code)
    made = time.monotonic() - t0
    # the editors' whole texts (the DOM holds only the lines in view)
    text = "() => document.querySelector('[data-own-widget=\"editor\"]').ownText()"
    tb = b.evaluate(text)
    a.wait_for_function(f"() => ({text})() === {json.dumps(tb)}", timeout=300_000)
    equal_after = time.monotonic() - t0
    long = a.evaluate("() => window.__long")
    # the page still answers: a key typed now shows in page B
    a.click(sel)
    a.keyboard.press("Control+End")
    a.keyboard.type("Z")
    b.wait_for_function(f"() => ({text})().endsWith('Z')", timeout=60_000)
    return {"edits": n, "batch": batch, "lines": lines, "made_s": made, "equal_s": equal_after,
            "longtasks": len(long), "longest_ms": max(long, default=0.0),
            "over_100ms": sum(1 for x in long if x > 100)}


def run_ours(root: Path, pw: Any, keys: int, rate: float, sustain: float = 0.0,
             trace: bool = False, burst_n: int = 0,
             burst_batch: int = 100,
             burst_lines: bool = True) -> tuple[list[float], dict[str, Any] | None]:
    import pytest  # kernel_sandbox uses pytest's MonkeyPatch
    from conftest import kernel_sandbox
    del pytest
    with kernel_sandbox(root / "sandbox"):
        os.environ["OWNKERNEL_LISTEN"] = "tcp://127.0.0.1:0"
        if trace:
            os.environ["OWNKERNEL_UI_TRACE"] = str(root / "trace")
        work = root / "ours"
        work.mkdir()
        lab.notebook(work / "A.ipynb", [
            "from ownkernel import ui\nimport pathlib\ndoc = node.new_doc('bench')\n"
            "doc.text('body')\npathlib.Path('invite.txt').write_text(node.invite(doc));",
            "ui.editor(doc.text('body'))"])
        lab.notebook(work / "B.ipynb", [
            "from ownkernel import ui\nimport pathlib\n"
            "doc = node.join(pathlib.Path('invite.txt').read_text(), timeout=60)",
            "ui.editor(doc.text('body'))"])
        server = lab.Lab(work, ["--YDocExtension.disable_rtc=True", *LAB_ARGS], env=LAB_ENV)
        try:
            browser = lab.launch(pw)
            a, b = (browser.new_context().new_page() for _ in range(2))
            sel = '[data-own-widget="editor"] .cm-content'
            lab.open_and_run(a, server.url("a", "A.ipynb"))
            a.wait_for_selector(sel, timeout=60_000)
            lab.open_and_run(b, server.url("b", "B.ipynb"))
            b.wait_for_selector(sel, timeout=60_000)
            for page in (a, b):  # the direct channel attaches a moment after the snapshot
                with contextlib.suppress(Exception):
                    page.wait_for_function(CHANNEL_MODE + " === 'direct'", timeout=5_000)
            MODES[:] = [a.evaluate(CHANNEL_MODE), b.evaluate(CHANNEL_MODE)]
            if trace:
                a.evaluate(TRACE_ON)
                b.evaluate(TRACE_ON)
                prefix16 = a.evaluate(f"() => ({lab.EDITOR_TEXT})().length")
            out = measure(a, b, sel, sel, keys, rate, cpu_row=OURS)
            extra: dict[str, Any] = {}
            if trace:
                extra["trace"] = trace_report(root, a, b, prefix16, keys)
                a.evaluate("() => { window.__ownTrace = null; }")
                b.evaluate("() => { window.__ownTrace = null; }")
            if sustain:
                extra["sustain"] = sustained(a, b, sel, sustain, rate,
                                             root if trace else None)
                a.evaluate("() => { window.__ownTrace = null; }")
                b.evaluate("() => { window.__ownTrace = null; }")
            if burst_n:
                extra["burst"] = burst(a, b, sel, burst_n, burst_batch, burst_lines)
            browser.close()
            return out, extra
        finally:
            server.stop()
            os.environ.pop("OWNKERNEL_LISTEN", None)
            os.environ.pop("OWNKERNEL_UI_TRACE", None)


def run_anchor(root: Path, pw: Any, keys: int, rate: float) -> list[float]:
    work = root / "anchor"
    work.mkdir()
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "shared",
                     "metadata": {}, "outputs": [], "source": "x = 1"}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    (work / "C.ipynb").write_text(json.dumps(nb))
    server = lab.Lab(work, LAB_ARGS, env=LAB_ENV)
    try:
        browser = lab.launch(pw)
        a, b = (browser.new_context().new_page() for _ in range(2))
        sel = ".jp-Notebook .jp-Cell .cm-content"
        for page, ws in ((a, "a"), (b, "b")):
            page.goto(server.url(ws, "C.ipynb"))
            page.wait_for_selector(sel, timeout=90_000)
        out = measure(a, b, sel, sel, keys, rate, cpu_row=ANCHOR)
        browser.close()
        return out
    finally:
        server.stop()


def row(name: str, xs: list[float]) -> str:
    return (f"| {name} | {len(xs)} | {statistics.median(xs):.1f} | {percentile(xs, 99):.1f} "
            f"| {max(xs):.1f} |")


def renames(n: int) -> list[float]:
    """Seconds from ``a.name = ...`` to B's peer list and chat showing it."""
    from ui_front import Front, until

    from ownkernel import ui
    from ownkernel.node import Node

    root = Path(tempfile.mkdtemp(prefix="ownkernel-ui-rename-"))
    a = Node(root / "a", name="a0", listen="tcp://127.0.0.1:0")
    b = Node(root / "b", name="b", listen="tcp://127.0.0.1:0")
    try:
        da = a.new_doc("d")
        db = b.join(a.invite(da), timeout=30)
        ea, cb, pb = ui.editor(da.text("body")), ui.chat(db.log("chat")), ui.peers(b)
        fronts = [Front(w) for w in (ea, cb, pb)]
        for f in fronts:
            f.deliver({"t": "ready"})
        ui.chat(da.log("chat")).send_message("hello")
        until(lambda: len(db.log("chat")) == 1, 30, "message at B")
        out = []
        for i in range(1, n + 1):
            name = f"a{i}"
            t0 = time.monotonic()
            a.name = name

            def shown(name: str = name) -> bool:
                with fronts[2].lock:
                    peers = [m for _, m in fronts[2].sent[-5:]]
                with fronts[1].lock:
                    chat = [m for _, m in fronts[1].sent[-3:]]
                rows = [r for m in peers for op in m.get("ops", [m]) for r in op.get("peers", [])]
                msgs = [x for m in chat for x in m.get("messages", [])]
                return (any(r["name"] == name for r in rows)
                        and any(x["author"] == name for x in msgs))
            until(shown, 30, f"rename {i} shown")
            out.append(time.monotonic() - t0)
        return out
    finally:
        b.close()
        a.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--skip-anchor", action="store_true")
    ap.add_argument("--sustain", type=float, default=0.0, metavar="SECONDS",
                    help="then both pages type at --rate keys/s each for SECONDS (e.g. 60)")
    ap.add_argument("--trace", action="store_true", help="where a key's time goes (ours)")
    ap.add_argument("--rename", type=int, default=0, metavar="N",
                    help="only: N renames of node A until B's widgets show them (no browser)")
    ap.add_argument("--nodelay", action="store_true",
                    help="TCP_NODELAY on the Jupyter server's sockets (both rows)")
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="then N remote edits into page A's open editor (e.g. 10000)")
    ap.add_argument("--burst-batch", type=int, default=100, metavar="K",
                    help="edits per commit in the burst (default 100)")
    ap.add_argument("--burst-lines", type=int, default=1, choices=[0, 1],
                    help="1 (default): 1 insert in 11 is a newline; 0: no newlines")
    ap.add_argument("--comm", action="store_true",
                    help="ours over the kernel's comm only (no direct channel), as before")
    args = ap.parse_args()
    if args.comm:
        LAB_ENV["OWNKERNEL_UI_DIRECT"] = "0"
    if args.rename:
        xs = renames(args.rename)
        print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        print(f"rename shown in the other node's peer list and chat, {len(xs)} renames: "
              f"p50 {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms")
        return
    if args.nodelay:
        LAB_ARGS.append('--ServerApp.jpserver_extensions={"lab_nodelay": True}')
        path = os.environ.get("PYTHONPATH", "")
        LAB_ENV["PYTHONPATH"] = str(REPO / "benchmarks") + (os.pathsep + path if path else "")
    why = lab.missing()
    if why:
        sys.exit(f"cannot run: {why}")
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="ownkernel-ui-bench-"))
    results = {}
    with sync_playwright() as pw:
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        ours, extra = run_ours(root, pw, args.keys, args.rate, args.sustain, args.trace,
                               args.burst, args.burst_batch, bool(args.burst_lines))
        results[OURS] = ours
        if not args.skip_anchor:
            try:
                import jupyter_server_ydoc  # noqa: F401
            except ImportError:
                print("anchor skipped: jupyter-collaboration is not installed "
                      "(pip install -e '.[bench]')")
            else:
                results[ANCHOR] = run_anchor(
                    root, pw, args.keys, args.rate)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"TCP_NODELAY on the server's sockets: {'yes' if args.nodelay else 'no (default)'}")
    print(f"ours: page A and B's editors talk to their kernels over: {' / '.join(MODES)}")
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}")
    print(f"keystroke page A -> visible in page B, {args.keys - WARMUP} keys at "
          f"{args.rate:g} keys/s (ms)")
    print("| editor | keys | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for name, xs in results.items():
        print(row(name, xs))
    if CPU_PER_KEY:
        kinds = ["pages", "GPU", "browser", "jupyter-server", "kernels", "other"]
        print("\nCPU time per key while page A typed (ms; all processes of the row)")
        print(f"| editor | {' | '.join(kinds)} | total |")
        print("|---|" + "---|" * (len(kinds) + 1))
        for name, use in CPU_PER_KEY.items():
            print(f"| {name} | " + " | ".join(f"{use.get(k, 0.0):.2f}" for k in kinds)
                  + f" | {sum(use.values()):.2f} |")
    if "trace" in extra:
        print("\n" + "\n".join(extra["trace"]))
    both = extra.get("sustain")
    if both:
        print(f"\nsustained: both pages at {args.rate:g} keys/s for {args.sustain:g} s "
              f"({both['keys']} keys): p50 {both['p50']:.1f} ms, p99 first 10 s "
              f"{both['first_p99']:.1f} ms, last 10 s {both['last_p99']:.1f} ms; "
              f"editors equal at the end: {both['equal']}")
        if "trace" in both:
            print("\n".join(both["trace"]))


    bu = extra.get("burst")
    if bu:
        print(f"\nburst: {bu['edits']} remote edits in commits of {bu['batch']}, "
              f"{'with' if bu['lines'] else 'without'} newlines "
              f"(made in {bu['made_s']:.1f} s): page A equal after {bu['equal_s']:.1f} s; "
              f"long tasks {bu['longtasks']}, longest {bu['longest_ms']:.0f} ms, "
              f"over 100 ms: {bu['over_100ms']}; a key typed afterwards reached page B")


if __name__ == "__main__":
    main()
