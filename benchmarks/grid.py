"""ui.grid at 10,000 rows x 10 columns, in JupyterLab and Debian's Chromium.

The sheet: column A holds numbers, B1:B1000 are formulas reading A1
(``=A1+i``, so 1,000 formulas depend on A1), the other cells numbers:
100,000 cells. One ownkernel kernel, one page. Measured:

* first paint: from running the cell ``ui.grid(s)`` (the kernel already holds
  the sheet) until the page shows cell A1's value (a MutationObserver stamps it);
  also the snapshot's size;
* scrolling: the view scrolled by 240 px (10 rows) every animation frame for
  400 frames: frame intervals (p50, p99, max) and long tasks (> 50 ms);
* edit with 1,000 dependents: A1 typed into its editor and Enter pressed, until
  every dependent in view (B1..B19) shows its new value: p50/p99 over --edits;
* without a browser, as process CPU time: making the widget (which builds the
  sheet's evaluator), the snapshot (and its JSON size), and the 1,000-dependent
  edit (message in -> patches out; and the patch size), and a row inserted at
  the top (the evaluator is rebuilt and every cell compared).

    python benchmarks/grid.py [--edits 30] [--rows 10000]

(``benchmarks/grid_bare.py`` times the front-end alone against RevoGrid.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "browser"), str(REPO / "tests"), str(REPO)]

import lab  # noqa: E402

ROWS, COLS, DEPS = 10_000, 10, 1_000

SETUP = """
from ownkernel import ui
import time
doc = node.new_doc('big')
s = doc.sheet('s')
t = time.perf_counter()
with doc.transaction():
    s.resize({rows}, {cols})
    for r in range({rows}):
        for c in range({cols}):
            if c == 1 and r < {deps}:
                s.set((r, c), f'=A1+{{r}}')
            else:
                s.set((r, c), r * {cols} + c)
print('built in', round(time.perf_counter() - t, 1), 's')
"""

GRID = '[data-own-widget="grid"]'

# Resolves when A1 shows its value; started right before the cell runs.
WATCH_PAINT = """() => new Promise(resolve => {
  const t0 = performance.now();
  const done = () => {
    const e = document.querySelector('[data-own-widget="grid"] [data-own-cell="B2"]');
    if (!e || e.textContent !== '1') return false;
    obs.disconnect();
    resolve(performance.now() - t0);
    return true;
  };
  const obs = new MutationObserver(done);
  obs.observe(document.body, {childList: true, subtree: true, characterData: true});
  window.jupyterapp.commands.execute('notebook:run-cell');
})"""

SCROLL = """(frames) => new Promise(resolve => {
  const view = document.querySelector('[data-own-widget="grid"] .own-grid-view');
  const gaps = []; let long = 0, last = performance.now(), n = 0;
  const po = new PerformanceObserver(l => { long += l.getEntries().length; });
  try { po.observe({type: 'longtask', buffered: false}); } catch (e) {}
  const step = (t) => {
    gaps.push(t - last); last = t;
    view.scrollTop += 240;
    if (++n < frames) requestAnimationFrame(step);
    else { po.disconnect();
      const rows = view.querySelectorAll('[data-own-cell]').length;
      resolve({gaps: gaps.slice(1), long, rows, top: view.scrollTop}); }
  };
  requestAnimationFrame(step);
})"""

# Type v into A1's editor and press Enter; resolve when B1..B19 show A1+i.
EDIT = """([v, n]) => new Promise(resolve => {
  const root = document.querySelector('[data-own-widget="grid"]');
  root.querySelector('[data-own-cell="A1"]').dispatchEvent(new MouseEvent('mousedown',
    {bubbles: true, button: 0, clientX: root.querySelector('[data-own-cell="A1"]')
      .getBoundingClientRect().x + 5, clientY: root.querySelector('[data-own-cell="A1"]')
      .getBoundingClientRect().y + 5}));
  const ed = root.querySelector('[data-own="cell-editor"]');
  ed.value = String(v);
  const ok = () => { for (let i = 0; i < n; i++) {
      const e = root.querySelector(`[data-own-cell="B${i + 1}"]`);
      if (!e || e.textContent !== String(v + i)) return false; } return true; };
  const t0 = performance.now();
  const obs = new MutationObserver(() => {
    if (ok()) { obs.disconnect(); resolve(performance.now() - t0); } });
  obs.observe(root, {childList: true, subtree: true, characterData: true});
  ed.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
})"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def python_side() -> dict[str, Any]:
    """The widget's own work for the 1,000-dependent edit, no browser."""
    from ui_front import Front

    from ownkernel import ui
    from ownkernel.node import Node

    with tempfile.TemporaryDirectory() as d:
        n = Node(Path(d) / "n", name="bench", network=False)
        doc = n.new_doc("big")
        s = doc.sheet("s")
        t = time.perf_counter()
        with doc.transaction():
            s.resize(ROWS, COLS)
            obj = doc.crdt.sheet("s")
            for r in range(ROWS):
                for c in range(COLS):
                    obj.set((r, c), f"=A1+{r}" if c == 1 and r < DEPS else r * COLS + c)
        build = time.perf_counter() - t
        c0 = time.process_time()
        w = ui.grid(s)  # builds the sheet's evaluator (100,000 cells, 1,000 formulas)
        widget_cpu = time.process_time() - c0
        f = Front(w)
        c0, t0 = time.process_time(), time.perf_counter()
        f.deliver({"t": "ready"})
        snap_cpu, snap_wall = time.process_time() - c0, time.perf_counter() - t0
        snap_bytes = len(json.dumps(f.of_type("snapshot")[0]))
        cpu = []
        size = 0
        for v in range(2, 32):
            k = len(f.sent)
            c0 = time.process_time()
            f.deliver({"t": "set", "v": w._version, "cells": [[0, 0, str(v)]]})
            cpu.append((time.process_time() - c0) * 1000)
            patches = [m for _, m in f.sent[k:] if m["t"] == "deltas"]
            size = len(json.dumps(patches[-1]))
            assert sum(len(op["c"]) for m in patches for op in m["ops"]) == DEPS + 1
        # a row inserted at the top: structural delta, evaluator rebuilt, every
        # cell compared with what the page shows (positional references moved)
        k = len(f.sent)
        c0 = time.process_time()
        f.deliver({"t": "rows", "v": w._version, "op": "insert", "at": 0, "n": 1})
        insert_cpu = (time.process_time() - c0) * 1000
        insert_patches = sum(len(op.get("c", ())) for _, m in f.sent[k:]
                             if m["t"] == "deltas" for op in m["ops"])
        w.close()
        n.close()
    return {"build_s": build, "row_insert_cpu_ms": insert_cpu,
            "row_insert_patches": insert_patches, "widget_cpu_ms": widget_cpu * 1000,
            "snapshot_cpu_ms": snap_cpu * 1000,
            "snapshot_wall_ms": snap_wall * 1000, "snapshot_bytes": snap_bytes,
            "edit_cpu_ms_p50": statistics.median(cpu), "edit_cpu_ms_max": max(cpu),
            "patch_bytes": size}


def browser_side(edits: int) -> dict[str, Any]:
    from conftest import kernel_sandbox
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with kernel_sandbox(root / "sandbox"):
            work = root / "work"
            work.mkdir()
            setup = SETUP.format(rows=ROWS, cols=COLS, deps=DEPS)
            lab.notebook(work / "G.ipynb", [setup, "ui.grid(s)"])
            server = lab.Lab(work, ["--YDocExtension.disable_rtc=True"])
            try:
                with sync_playwright() as pw:
                    browser = lab.launch(pw)
                    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                    page.goto(server.url("g", "G.ipynb"))
                    page.wait_for_function(lab.KERNEL_IDLE, timeout=120_000)
                    # run the setup cell alone, then select the grid cell
                    page.evaluate("() => window.jupyterapp.commands.execute("
                                  "'notebook:run-cell-and-select-next')")
                    page.wait_for_function(
                        "() => document.body.innerText.includes('built in')", timeout=600_000)
                    page.wait_for_function(lab.KERNEL_IDLE, timeout=600_000)
                    paint = page.evaluate(WATCH_PAINT)
                    page.wait_for_timeout(500)
                    scroll = page.evaluate(SCROLL, 400)
                    page.evaluate("() => { document.querySelector("
                                  "'[data-own-widget=\"grid\"] .own-grid-view').scrollTop = 0; }")
                    page.wait_for_timeout(300)
                    lat = [page.evaluate(EDIT, [100 + i, 19]) for i in range(edits)]
                    browser.close()
            finally:
                server.stop()
    gaps = scroll["gaps"]
    return {"first_paint_ms": paint, "scroll_frame_p50_ms": pct(gaps, 50),
            "scroll_frame_p99_ms": pct(gaps, 99), "scroll_frame_max_ms": max(gaps),
            "scroll_long_tasks": scroll["long"], "scroll_end_top_px": scroll["top"],
            "cells_drawn": scroll["rows"], "edit_p50_ms": pct(lat, 50),
            "edit_p99_ms": pct(lat, 99), "edit_max_ms": max(lat), "edits": len(lat)}


def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main() -> None:
    global ROWS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edits", type=int, default=30)
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--rows", type=int, default=ROWS, help="rows of the sheet (10 columns)")
    args = ap.parse_args()
    ROWS = args.rows
    os.environ.setdefault("PYTHONPATH", str(REPO))
    print(f"rows: {ROWS:,}; load average: {loadavg()}")
    py = python_side()
    for k, v in py.items():
        print(f"python  {k:24} {v:,.1f}")
    if not args.skip_browser:
        why = lab.missing()
        if why:
            print("browser part skipped:", why)
        else:
            for k, v in browser_side(args.edits).items():
                print(f"browser {k:24} {v:,.1f}")
    print(f"load average: {loadavg()}")


if __name__ == "__main__":
    main()
