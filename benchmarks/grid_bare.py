"""The sheet widget's front-end alone vs RevoGrid, in Debian's headless Chromium.

No kernel, no Python: each page gets the very snapshot Python would send
(10 columns; B1:B1000 are ``=A1+i`` and so depend on A1; the rest numbers) and
then the patch of one 1,000-dependent edit (A1 and B1..B1000), and we time:

* first paint: from handing over the snapshot until row 1 is on screen
  (checked every animation frame, the same way for every grid);
* edit: from handing over the 1,001-cell patch until the dependents in view
  (B10, row 10: in view in every grid) shows its new value; p50 / p99 over --edits.

Grids (each bundled by esbuild from widgets/node_modules, as the widget is):

* ``ours``: widgets/src/grid.js, the shipping widget, fed through a stand-in model;
* ``revogrid``: RevoGrid 4.28.1 (the fastest of the three libraries issue #10
  names, by the notes' measurement), bare: computed values, default cells;
* ``revogrid+contract``: RevoGrid with what the widget's contract needs on top:
  a cell template carrying ``data-own-cell="B3"`` and number/error classes.

For RevoGrid an edit is applied the documented way: the row objects changed and
``source`` handed over again (a new array, so the grid sees the change).

Also printed: the minified size of each grid alone, as esbuild bundles it.

    python benchmarks/grid_bare.py [--rows 10000 100000] [--edits 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WIDGETS = REPO / "widgets"
sys.path[:0] = [str(REPO / "tests" / "browser")]

import lab  # noqa: E402

PAGE_JS = r"""
import grid from "./src/grid.js";
import { defineCustomElement } from "@revolist/revogrid/standalone";
import { colName, display } from "./src/gridcells.js";

defineCustomElement();
const COLS = 10, DEPS = 1000;
const frame = () => new Promise((r) => requestAnimationFrame(r));
async function until(test, what) {
  const end = performance.now() + 60000;
  while (performance.now() < end) { if (test()) return; await frame(); }
  throw new Error("never happened: " + what);
}
function snapshot(n) {
  const data = [];
  for (let r = 0; r < n; r++) {
    const row = [];
    for (let c = 0; c < COLS; c++) row.push(c === 1 && r < DEPS ? [`=A1+${r}`, r] : r * COLS + c);
    data.push([r, row]);
  }
  return { t: "snapshot", v: 0, rows: n, cols: COLS, widths: {}, data };
}
function patch(k) {
  const a1 = k * 7, c = [[0, 0, a1]];
  for (let i = 0; i < DEPS; i++) c.push([i, 1, `=A1+${i}`, a1 + i]);
  return c;
}
const host = () => {
  document.body.replaceChildren();
  const el = document.createElement("div");
  el.style.width = "1000px";
  document.body.append(el);
  return el;
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
};

window.runOurs = async (n, edits) => {
  const snap = snapshot(n);
  const handlers = [];
  const model = {
    on(ev, f) { if (ev === "msg:custom") handlers.push(f); }, off() {}, send() {},
    get() { return false; }, set() {}, save_changes() {},
  };
  const el = host();
  const t0 = performance.now();
  grid.render({ model, el });
  for (const f of handlers) f(snap);
  const a1 = () => el.querySelector('[data-own-cell="A1"]');
  await until(() => a1() && a1().textContent === "0", "ours: A1");
  const paint = performance.now() - t0;
  const times = [];
  for (let k = 1; k <= edits; k++) {
    const msg = { t: "deltas", from: k, ops: [{ o: "cells", c: patch(k) }] };
    const want = String(k * 7 + 9);
    const t = performance.now();
    for (const f of handlers) f(msg);
    const b10 = () => el.querySelector('[data-own-cell="B10"]');
    await until(() => b10() && b10().textContent === want, "ours: B10");
    times.push(performance.now() - t);
  }
  return { paint, p50: pct(times, 0.5), p99: pct(times, 0.99) };
};

window.runRevo = async (n, edits, contract) => {
  const snap = snapshot(n);
  const el = host();
  const t0 = performance.now();
  // the snapshot as RevoGrid's row objects (part of what the widget would do)
  const rows = new Array(snap.rows);
  for (const [r, row] of snap.data) {
    const o = {};
    for (let c = 0; c < row.length; c++) {
      const v = row[c];
      if (v === null) continue;
      o[c] = contract ? (Array.isArray(v) ? v : [v]) : (Array.isArray(v) ? v[1] : v);
    }
    rows[r] = o;
  }
  const columns = [];
  for (let c = 0; c < snap.cols; c++) {
    const col = { prop: c, name: colName(c), size: 96 };
    if (contract) {
      col.cellTemplate = (h, p) => {
        const [text, cls] = display(p.value);
        const ref = colName(c) + (p.rowIndex + 1);
        return h("span", { "data-own-cell": ref, class: cls || "" }, text);
      };
    }
    columns.push(col);
  }
  const g = document.createElement("revo-grid");
  g.style.height = "360px";
  g.columns = columns;
  g.source = rows;
  el.append(g);
  const cellText = (r, c) => {
    const e = contract ? g.querySelector(`[data-own-cell="${colName(c)}${r + 1}"]`)
      : g.querySelector(`.rgCell[data-rgrow="${r}"][data-rgcol="${c}"]`);
    return e && e.textContent;
  };
  await until(() => cellText(0, 0) === "0", "revogrid: A1");
  const paint = performance.now() - t0;
  const times = [];
  for (let k = 1; k <= edits; k++) {
    const cells = patch(k);
    const want = String(k * 7 + 9);
    const t = performance.now();
    for (const [r, c, ...cell] of cells) rows[r][c] = contract ? cell : cell[cell.length - 1];
    g.source = rows.slice();
    await until(() => cellText(9, 1) === want, "revogrid: B10");
    times.push(performance.now() - t);
  }
  return { paint, p50: pct(times, 0.5), p99: pct(times, 0.99) };
};
"""

HTML = "<!doctype html><meta charset=utf-8><body style='margin:0'></body>"


def bundle(out: Path, source: str = PAGE_JS, name: str = "page.js") -> str:
    """A script bundled with the widget's own esbuild and node_modules."""
    esbuild = WIDGETS / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        sys.exit("run `npm ci` in widgets/ first")
    js = out / name
    # error level: Stencil's lazy loader has a glob import esbuild warns about
    # (unused here: the standalone build defines every component itself)
    subprocess.run([str(esbuild), "--bundle", "--format=esm", "--minify", "--target=es2020",
                    f"--sourcefile={name}", f"--outfile={js}", "--log-level=error"],
                   input=source.encode(), cwd=WIDGETS, check=True)
    return js.read_text()


def sizes(out: Path) -> None:
    ours = bundle(out, 'import g from "./src/grid.js"; window.g = g;', "ours.js")
    revo = bundle(out, 'import { defineCustomElement as d } from "@revolist/revogrid/standalone";'
                  ' d();', "revo.js")
    print(f"minified: ours {len(ours.encode()) / 1000:.1f} kB, "
          f"RevoGrid {len(revo.encode()) / 1000:.1f} kB")


def load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="fresh page per run; medians reported")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    kinds: list[tuple[str, str]] = [("ours", "runOurs(n, e)"),
                                    ("revogrid", "runRevo(n, e, false)"),
                                    ("revogrid+contract", "runRevo(n, e, true)")]
    with tempfile.TemporaryDirectory() as tmp:
        script = bundle(Path(tmp))
        sizes(Path(tmp))
        print(f"load before: {load()}")
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        with sync_playwright() as pw:
            browser = lab.launch(pw)
            for _ in range(args.runs):
                for n in args.rows:
                    for name, call in kinds:
                        page = browser.new_page(viewport={"width": 1100, "height": 800})
                        page.set_content(HTML)
                        page.add_script_tag(content=script, type="module")
                        page.wait_for_function("() => !!window.runRevo")
                        r = page.evaluate(f"async ([n, e]) => await {call}", [n, args.edits])
                        results.setdefault((name, n), []).append(r)
                        print(name, n, {k: round(v) for k, v in r.items()}, flush=True)
                        page.close()
            browser.close()
        print(f"load after: {load()}")
    print(f"\n| grid | rows | first paint (median of {args.runs}) | edit p50 | edit p99 |")
    print("|---|---|---|---|---|")
    for (name, n), rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("paint", "p50", "p99")}
        print(f"| {name} | {n:,} | {med['paint']:.0f} ms | {med['p50']:.0f} ms "
              f"| {med['p99']:.0f} ms |")
    print("\nraw:", json.dumps({f"{k[0]}@{k[1]}": v for k, v in results.items()}))


if __name__ == "__main__":
    main()
