// ui.grid(sheet): a virtualised spreadsheet. Python evaluates every formula
// (one engine); this page shows values, edits raw text and draws only the
// rows and columns in view, so 10,000 x 10 costs what 30 x 10 does.
// Protocol: see ownkernel/ui/grid.py. A cell is [raw] (a literal) or
// [formula, value]; a value is a number, text, boolean or {e: "#DIV/0!"}.
import { connect, h, syncingBadge } from "./common.js";
import { colName, display, parseTSV, rawText, toTSV } from "./gridcells.js";

const a1 = (r, c) => colName(c) + (r + 1);

const RH = 24; // row height, px
const HH = 24; // column header height
const RW = 52; // row header width
const CW = 96; // default column width
const MIN_W = 28;
const MAX_W = 4000; // as Python's sheet.MAX_WIDTH
const OVERSCAN = 4;
const MAX_H = 360;
const MIN_ROWS = 10, MIN_COLS = 5; // px of rows shown before the grid scrolls // rows drawn beyond the view, so a fast wheel shows no blank

const CSS = `
.own-grid { font: 13px sans-serif; color: #1a1a1a; background: #fff; border: 1px solid #c8c8c8; border-radius: 4px; outline: none; position: relative; }
.own-grid:focus-within { border-color: #4a90d9; }
.own-grid-bar { display: flex; gap: 4px; align-items: center; padding: 4px; border-bottom: 1px solid #e3e3e3; flex-wrap: wrap; }
.own-grid-ref { min-width: 48px; font: 12px monospace; color: #555; text-align: center; }
.own-grid-fx { flex: 1; min-width: 160px; font: 12px monospace; padding: 3px 5px; border: 1px solid #ccc; border-radius: 3px; }
.own-grid-bar button { font: 11px sans-serif; padding: 2px 6px; border: 1px solid #ccc; background: #f7f7f7; border-radius: 3px; cursor: pointer; }
.own-grid-bar button:hover { background: #ececec; }
.own-grid-body { display: grid; grid-template-columns: ${RW}px 1fr; grid-template-rows: ${HH}px auto; }
.own-grid-corner { background: #f3f3f3; border-right: 1px solid #d8d8d8; border-bottom: 1px solid #d8d8d8; }
.own-grid-ch, .own-grid-rh { overflow: hidden; position: relative; background: #f3f3f3; }
.own-grid-ch { border-bottom: 1px solid #d8d8d8; }
.own-grid-rh { border-right: 1px solid #d8d8d8; }
.own-grid-view { overflow: auto; position: relative; }
.own-grid-hd { position: absolute; box-sizing: border-box; color: #555; font-size: 12px; display: flex; align-items: center; justify-content: center; user-select: none; }
.own-grid-ch .own-grid-hd { top: 0; height: ${HH}px; border-right: 1px solid #d8d8d8; }
.own-grid-rh .own-grid-hd { left: 0; width: ${RW}px; height: ${RH}px; border-bottom: 1px solid #e6e6e6; }
.own-grid-hd.own-on { background: #dde8f6; color: #1a1a1a; }
.own-grid-resize { position: absolute; top: 0; right: -3px; width: 6px; height: 100%; cursor: col-resize; z-index: 2; }
.own-grid-row { position: absolute; left: 0; right: 0; height: ${RH}px; }
.own-grid-c { position: absolute; top: 0; box-sizing: border-box; height: ${RH}px; padding: 0 5px; line-height: ${RH - 1}px; border-right: 1px solid #ececec; border-bottom: 1px solid #ececec; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; cursor: cell; }
.own-grid-c.own-num { text-align: right; font-variant-numeric: tabular-nums; }
.own-grid-c.own-bool { text-align: center; }
.own-grid-c.own-err { color: #c92a2a; font-weight: 600; text-align: center; background: #fff5f5; }
.own-grid-c.own-range { background: #e8f0fb; }
.own-grid-c.own-sel { outline: 2px solid #4a90d9; outline-offset: -2px; z-index: 1; }
.own-grid-edit { position: absolute; box-sizing: border-box; height: ${RH}px; font: 13px sans-serif; padding: 0 4px; border: 2px solid #4a90d9; outline: none; z-index: 3; }
.own-grid-edit.own-conflict { border-color: #e8590c; }
.own-grid-note { position: absolute; z-index: 4; background: #fff4e6; border: 1px solid #e8590c; color: #7a2e00; font-size: 12px; padding: 3px 6px; border-radius: 3px; max-width: 420px; white-space: normal; }
.own-grid-menu { position: absolute; z-index: 5; background: #fff; border: 1px solid #bbb; box-shadow: 0 2px 8px rgba(0,0,0,.15); padding: 3px 0; font-size: 12px; }
.own-grid-menu div { padding: 4px 14px; cursor: pointer; }
.own-grid-menu div:hover { background: #e8f0fb; }
.own-grid-status { font-size: 11px; color: #888; padding: 2px 6px; min-height: 14px; }
`;

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "grid");
  el.setAttribute("data-lm-suppress-shortcuts", "true"); // keys edit cells, not the notebook

  // -- state -------------------------------------------------------------------
  let nrows = 0, ncols = 0, version = -1;
  // Shown: the sheet plus an empty row and column to type into (at least
  // MIN_ROWS x MIN_COLS, so a new sheet is not an empty box). Writing there
  // grows the sheet in Python; structural edits there change nothing.
  const NR = () => Math.max(nrows + 1, MIN_ROWS);
  const NC = () => Math.max(ncols + 1, MIN_COLS);
  let data = []; // data[r][c] = cell tuple or undefined
  let widths = [];
  let sel = { r: 0, c: 0 }, anchor = { r: 0, c: 0 };
  let edit = null; // {r, c, startRaw, conflict, el}
  let frame = 0;
  const rowEls = new Map(); // row index -> its drawn element, while in view
  let colKey = ""; // the columns the drawn rows were built for
  const redraw = { all: true, sel: false, rows: new Set() };

  // -- DOM ---------------------------------------------------------------------
  const ref = h("span", { className: "own-grid-ref" }, "A1");
  ref.setAttribute("data-own", "grid-ref");
  const fx = h("input", { className: "own-grid-fx", placeholder: "value or =formula", spellcheck: false });
  fx.setAttribute("data-own", "formula-bar");
  const btn = (label, action, title) => {
    const b = h("button", { title, type: "button" }, label);
    b.setAttribute("data-own-action", action);
    b.addEventListener("click", () => act(action));
    return b;
  };
  const bar = h("div", { className: "own-grid-bar" }, ref, fx,
    btn("+row↑", "row-above", "insert a row above"), btn("+row↓", "row-below", "insert a row below"),
    btn("−row", "row-delete", "delete the selected rows"),
    btn("+col←", "col-left", "insert a column to the left"), btn("+col→", "col-right", "insert a column to the right"),
    btn("−col", "col-delete", "delete the selected columns"));
  const corner = h("div", { className: "own-grid-corner" });
  const chInner = h("div", { style: { position: "relative", height: HH + "px" } });
  const ch = h("div", { className: "own-grid-ch" }, chInner);
  const rhInner = h("div", { style: { position: "relative" } });
  const rh = h("div", { className: "own-grid-rh" }, rhInner);
  // the editor lives beside the cell layer, never inside it: redrawing the
  // cells must not detach (and so blur) an open editor
  const layer = h("div");
  const sizer = h("div", { style: { position: "relative" } }, layer);
  const view = h("div", { className: "own-grid-view" }, sizer);
  const body = h("div", { className: "own-grid-body" }, corner, ch, rh, view);
  const status = h("div", { className: "own-grid-status" });
  const root = h("div", { className: "own-grid", tabIndex: 0 }, bar, body, status);
  el.append(h("style", {}, CSS), root);

  const width = (c) => widths[c] || CW;
  const left = (c) => { let x = 0; for (let j = 0; j < c; j++) x += width(j); return x; };
  const totalW = () => left(NC());

  // -- drawing: only what is in view -------------------------------------------
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };
  function draw() {
    frame = 0;
    // a short sheet takes the room it needs, a long one scrolls (+ room for a
    // scrollbar); the height is ours, so the rows drawn never depend on a
    // layout that has not happened yet (an output still being attached)
    const vh = Math.min(MAX_H, NR() * RH + 18);
    view.style.height = vh + "px";
    rh.style.height = vh + "px";
    sizer.style.height = NR() * RH + "px";
    sizer.style.width = totalW() + "px";
    const top = view.scrollTop, lx = view.scrollLeft;
    const vw = Math.max(view.clientWidth, 1600); // columns: draw generously, they are few
    const r0 = Math.max(0, Math.floor(top / RH) - OVERSCAN);
    const r1 = Math.min(NR(), Math.ceil((top + vh) / RH) + OVERSCAN);
    let c0 = 0, x0 = 0;
    while (c0 < NC() && x0 + width(c0) < lx) x0 += width(c0++);
    const cols = [];
    for (let c = c0, x = x0; c < NC() && x < lx + vw + CW; x += width(c++)) cols.push([c, x]);
    const r0s = Math.min(sel.r, anchor.r), r1s = Math.max(sel.r, anchor.r);
    const c0s = Math.min(sel.c, anchor.c), c1s = Math.max(sel.c, anchor.c);
    // Rows are kept while in view and rebuilt only when their cells, the
    // selection or the columns change: a scroll step builds the few rows that
    // came into view, not the whole window.
    const key = cols.map(([c, x]) => `${c}:${x}:${width(c)}`).join(",");
    const headers = key !== colKey || redraw.all || redraw.sel;
    if (key !== colKey || redraw.all) {
      layer.replaceChildren();
      rowEls.clear();
      colKey = key;
    } else if (redraw.sel) {
      for (const r of rowEls.keys()) redraw.rows.add(r);
    }
    redraw.all = redraw.sel = false;
    const makeRow = (r) => {
      const el = document.createElement("div");
      el.className = "own-grid-row";
      el.style.top = r * RH + "px";
      const row = data[r];
      for (const [c, x] of cols) {
        const [text, cls] = display(row && row[c]);
        const d = document.createElement("div");
        let k = "own-grid-c";
        if (cls) k += " " + cls;
        if (r >= r0s && r <= r1s && c >= c0s && c <= c1s) k += r === sel.r && c === sel.c ? " own-sel" : " own-range";
        d.className = k;
        d.style.left = x + "px";
        d.style.width = width(c) + "px";
        d.setAttribute("data-own-cell", a1(r, c));
        d.textContent = text;
        el.append(d);
      }
      return el;
    };
    for (const [r, el] of rowEls) {
      if (r < r0 || r >= r1) { el.remove(); rowEls.delete(r); }
    }
    for (const r of redraw.rows) {
      const old = rowEls.get(r);
      if (old) { const el = makeRow(r); old.replaceWith(el); rowEls.set(r, el); }
    }
    redraw.rows.clear();
    const frag = document.createDocumentFragment();
    for (let r = r0; r < r1; r++) {
      if (!rowEls.has(r)) { const el = makeRow(r); rowEls.set(r, el); frag.append(el); }
    }
    layer.append(frag);
    placeEditor();
    // headers, moved with the view (outside it, so they never scroll away)
    if (headers) {
      const hf = document.createDocumentFragment();
      for (const [c, x] of cols) {
        const d = h("div", { className: "own-grid-hd" + (c >= c0s && c <= c1s ? " own-on" : "") }, colName(c));
        d.style.left = x + "px";
        d.style.width = width(c) + "px";
        d.setAttribute("data-own-col", colName(c));
        const grip = h("div", { className: "own-grid-resize" });
        grip.addEventListener("mousedown", (e) => startResize(e, c));
        d.append(grip);
        hf.append(d);
      }
      chInner.replaceChildren(hf);
    }
    chInner.style.transform = `translateX(${-lx}px)`;
    chInner.style.width = totalW() + "px";
    const rf = document.createDocumentFragment();
    for (let r = r0; r < r1; r++) {
      const d = h("div", { className: "own-grid-hd" + (r >= r0s && r <= r1s ? " own-on" : "") }, String(r + 1));
      d.style.top = r * RH + "px";
      d.setAttribute("data-own-row", String(r + 1));
      rf.append(d);
    }
    rhInner.replaceChildren(rf);
    rhInner.style.transform = `translateY(${-top}px)`;
    const cur = data[sel.r] && data[sel.r][sel.c];
    ref.textContent = a1(sel.r, sel.c);
    if (document.activeElement !== fx) fx.value = rawText(cur);
  }
  view.addEventListener("scroll", () => { draw(); }, { passive: true });

  function startResize(e, c) {
    e.preventDefault();
    e.stopPropagation();
    const x = e.clientX, w0 = width(c);
    const move = (m) => { widths[c] = Math.max(MIN_W, w0 + m.clientX - x); schedule(); };
    const up = () => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      // shared through the sheet: Python stores it by column id and echoes
      // every width back as a "widths" delta (to this page and the others)
      const w = widths[c];
      if (w && w !== w0) model.send({ t: "width", v: version, col: c, px: Math.min(MAX_W, Math.round(w)) });
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }

  // -- selection and editing -------------------------------------------------------
  const cellAt = (e) => {
    const box = sizer.getBoundingClientRect();
    const y = e.clientY - box.top, x = e.clientX - box.left;
    const r = Math.floor(y / RH);
    let c = 0, acc = 0;
    while (c < NC() && acc + width(c) <= x) acc += width(c++);
    return r >= 0 && r < NR() && c < NC() ? { r, c } : null;
  };
  function select(r, c, extend = false) {
    sel = { r: Math.max(0, Math.min(NR() - 1, r)), c: Math.max(0, Math.min(NC() - 1, c)) };
    if (!extend) anchor = { ...sel };
    redraw.sel = true;
    const top = sel.r * RH, x = left(sel.c);
    if (top < view.scrollTop) view.scrollTop = top;
    else if (top + RH > view.scrollTop + view.clientHeight) view.scrollTop = top + RH - view.clientHeight;
    if (x < view.scrollLeft) view.scrollLeft = x;
    else if (x + width(sel.c) > view.scrollLeft + view.clientWidth) view.scrollLeft = x + width(sel.c) - view.clientWidth;
    schedule();
  }
  function openEditor(r, c, text) {
    closeEditor();
    const cur = data[r] && data[r][c];
    const input = h("input", { className: "own-grid-edit", spellcheck: false });
    input.setAttribute("data-own", "cell-editor");
    input.value = text === undefined ? rawText(cur) : text;
    edit = { r, c, startRaw: cur ? cur[0] : null, conflict: null, el: input, note: null };
    input.addEventListener("keydown", onEditKey);
    input.addEventListener("input", () => { fx.value = input.value; });
    sizer.append(input);
    placeEditor();
    const focus = () => {
      if (edit && edit.el === input && document.activeElement !== input) {
        input.focus();
        const n = input.value.length;
        input.setSelectionRange(n, n);
      }
    };
    focus();
    setTimeout(focus, 0); // again after whatever else handles this event
    fx.value = input.value;
  }
  function placeEditor() {
    if (!edit) return;
    const s = edit.el.style;
    s.top = edit.r * RH + "px";
    s.left = left(edit.c) + "px";
    s.width = Math.max(width(edit.c), 140) + "px";
    if (edit.note) {
      edit.note.style.top = (edit.r + 1) * RH + 2 + "px";
      edit.note.style.left = left(edit.c) + "px";
    }
  }
  function closeEditor() {
    if (!edit) return;
    const e = edit;
    edit = null;
    e.el.remove();
    if (e.note) e.note.remove();
    schedule();
  }
  function commit(text) {
    if (!edit) return;
    const { r, c, startRaw, conflict } = edit;
    const unchanged = text === rawText(data[r] && data[r][c]) && !conflict;
    closeEditor();
    if (unchanged) return;
    const msg = { t: "set", v: version, cells: [[r, c, text]], expect: startRaw };
    if (conflict) msg.force = true; // the user saw theirs and chose this
    model.send(msg);
  }
  function showConflict(theirs) {
    if (!edit) return;
    edit.conflict = theirs;
    edit.el.classList.add("own-conflict");
    if (!edit.note) {
      edit.note = h("div", { className: "own-grid-note" });
      edit.note.setAttribute("data-own", "grid-conflict");
      sizer.append(edit.note);
    }
    edit.note.textContent = `Changed by a peer meanwhile to “${rawText([theirs])}”. Enter keeps yours, Escape takes theirs.`;
    placeEditor();
  }
  function onEditKey(e) {
    e.stopPropagation(); // arrows and letters belong to the input
    if (e.isComposing) return;
    const { r, c } = edit;
    if (e.key === "Enter") {
      e.preventDefault();
      commit(edit.el.value);
      select(r + (e.shiftKey ? -1 : 1), c);
      root.focus();
    } else if (e.key === "Tab") {
      e.preventDefault();
      commit(edit.el.value);
      select(r, c + (e.shiftKey ? -1 : 1));
      root.focus();
    } else if (e.key === "Escape") {
      e.preventDefault();
      closeEditor();
      root.focus();
    }
  }
  sizer.addEventListener("mousedown", (e) => {
    if (e.button !== 0 || (edit && e.target === edit.el)) return;
    const at = cellAt(e);
    if (!at) return;
    // JupyterLab's notebook focuses itself on mousedown (command mode): keep
    // this one to the grid, or the editor opened here loses its focus at once
    e.preventDefault();
    e.stopPropagation();
    if (edit) commit(edit.el.value);
    if (e.shiftKey) { select(at.r, at.c, true); root.focus(); return; }
    select(at.r, at.c);
    openEditor(at.r, at.c);
  });
  root.addEventListener("keydown", (e) => {
    if (edit || e.target === fx || e.isComposing) return;
    const k = e.key, ext = e.shiftKey;
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[k]) {
      e.preventDefault();
      select(sel.r + moves[k][0], sel.c + moves[k][1], ext);
    } else if (k === "Tab") {
      e.preventDefault();
      select(sel.r, sel.c + (ext ? -1 : 1));
    } else if (k === "Enter" || k === "F2") {
      e.preventDefault();
      openEditor(sel.r, sel.c);
    } else if (k === "Delete" || k === "Backspace") {
      e.preventDefault();
      const cells = [];
      forRange((r, c) => { if (data[r] && data[r][c]) cells.push([r, c, ""]); });
      if (cells.length) model.send({ t: "set", v: version, cells });
    } else if (k.length === 1 && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      openEditor(sel.r, sel.c, k); // typing replaces, as in any spreadsheet
    }
  });
  fx.addEventListener("focus", () => { closeEditor(); });
  fx.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") {
      e.preventDefault();
      const cur = data[sel.r] && data[sel.r][sel.c];
      edit = { r: sel.r, c: sel.c, startRaw: cur ? cur[0] : null, conflict: null, el: h("span"), note: null };
      commit(fx.value);
      root.focus();
    } else if (e.key === "Escape") {
      fx.value = rawText(data[sel.r] && data[sel.r][sel.c]);
      root.focus();
    }
  });

  function forRange(fn) {
    const r0 = Math.min(sel.r, anchor.r), r1 = Math.max(sel.r, anchor.r);
    const c0 = Math.min(sel.c, anchor.c), c1 = Math.max(sel.c, anchor.c);
    for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) fn(r, c);
  }

  // -- clipboard: values for other applications, raw text for this grid ---------
  const rangeRows = (f) => {
    const out = [];
    let row = null, last = -1;
    forRange((r, c) => { if (r !== last) { row = []; out.push(row); last = r; } row.push(f(data[r] && data[r][c])); });
    return out;
  };
  root.addEventListener("copy", (e) => {
    if (edit || e.target === fx) return;
    e.preventDefault();
    e.clipboardData.setData("text/plain", toTSV(rangeRows((cell) => display(cell)[0])));
    e.clipboardData.setData("application/x-ownkernel-grid", toTSV(rangeRows(rawText)));
  });
  root.addEventListener("cut", (e) => {
    if (edit || e.target === fx) return;
    e.preventDefault();
    e.clipboardData.setData("text/plain", toTSV(rangeRows((cell) => display(cell)[0])));
    e.clipboardData.setData("application/x-ownkernel-grid", toTSV(rangeRows(rawText)));
    const cells = [];
    forRange((r, c) => { if (data[r] && data[r][c]) cells.push([r, c, ""]); });
    if (cells.length) model.send({ t: "set", v: version, cells });
  });
  root.addEventListener("paste", (e) => {
    if (edit || e.target === fx) return;
    e.preventDefault();
    pasteText(e.clipboardData.getData("application/x-ownkernel-grid") || e.clipboardData.getData("text/plain"));
  });
  function pasteText(text) {
    const rows = parseTSV(text);
    const r0 = Math.min(sel.r, anchor.r), c0 = Math.min(sel.c, anchor.c);
    const cells = [];
    rows.forEach((row, i) => row.forEach((t, j) => cells.push([r0 + i, c0 + j, t])));
    if (cells.length) model.send({ t: "set", v: version, cells });
  }

  // -- rows and columns: buttons and context menu --------------------------------------
  function act(action) {
    const r0 = Math.min(sel.r, anchor.r), r1 = Math.max(sel.r, anchor.r);
    const c0 = Math.min(sel.c, anchor.c), c1 = Math.max(sel.c, anchor.c);
    const ops = {
      "row-above": ["rows", "insert", r0, 1], "row-below": ["rows", "insert", r1 + 1, 1],
      "row-delete": ["rows", "delete", r0, r1 - r0 + 1],
      "col-left": ["cols", "insert", c0, 1], "col-right": ["cols", "insert", c1 + 1, 1],
      "col-delete": ["cols", "delete", c0, c1 - c0 + 1],
    };
    const o = ops[action];
    if (!o) return;
    closeEditor();
    model.send({ t: o[0], v: version, op: o[1], at: o[2], n: o[3] });
    hideMenu();
  }
  let menu = null;
  const hideMenu = () => { if (menu) { menu.remove(); menu = null; } };
  sizer.addEventListener("contextmenu", (e) => {
    const at = cellAt(e);
    if (!at) return;
    e.preventDefault();
    e.stopPropagation(); // ours, not JupyterLab's notebook menu (Shift+right-click gives that)
    if (edit) commit(edit.el.value);
    const inRange = at.r >= Math.min(sel.r, anchor.r) && at.r <= Math.max(sel.r, anchor.r) &&
      at.c >= Math.min(sel.c, anchor.c) && at.c <= Math.max(sel.c, anchor.c);
    if (!inRange) select(at.r, at.c);
    hideMenu();
    const item = (label, action) => {
      const d = h("div", {}, label);
      d.setAttribute("data-own-action", action);
      d.addEventListener("mousedown", (ev) => { ev.preventDefault(); act(action); });
      return d;
    };
    menu = h("div", { className: "own-grid-menu" },
      item("Insert row above", "row-above"), item("Insert row below", "row-below"), item("Delete row", "row-delete"),
      item("Insert column left", "col-left"), item("Insert column right", "col-right"), item("Delete column", "col-delete"));
    menu.setAttribute("data-own", "grid-menu");
    const box = root.getBoundingClientRect();
    menu.style.left = e.clientX - box.left + "px";
    menu.style.top = e.clientY - box.top + "px";
    root.append(menu);
  });
  const outside = (e) => { if (menu && !menu.contains(e.target)) hideMenu(); };
  document.addEventListener("mousedown", outside);

  // -- the protocol ---------------------------------------------------------------
  function setWidths(o) {
    widths = [];
    for (const [k, w] of Object.entries(o || {})) widths[Number(k)] = w;
    redraw.all = true;
  }
  // Where position p goes through a structural op (-1: deleted). Rows or
  // columns appended at the end fill the empty ones shown there (the user
  // typed into them): they move nothing.
  const mover = (op, size) => (p) => {
    if (!op.del && op.at >= size) return p;
    return p >= op.at + op.del ? p + op.ins - op.del : p >= op.at ? (op.del ? -1 : p + op.ins) : p;
  };
  function apply(op) {
    if (op.o !== "cells") redraw.all = true; // every row below moved
    if (op.o === "rows") {
      const fresh = Array.from({ length: op.ins }, () => []);
      data.splice(op.at, op.del, ...fresh);
      const move = mover(op, nrows);
      nrows += op.ins - op.del;
      if (edit) { edit.r = move(edit.r); if (edit.r < 0) { closeEditor(); status.textContent = "the row you were editing was deleted by a peer"; } }
      sel.r = Math.max(0, Math.min(NR() - 1, move(sel.r) < 0 ? op.at : move(sel.r)));
      anchor.r = Math.max(0, Math.min(NR() - 1, move(anchor.r) < 0 ? op.at : move(anchor.r)));
    } else if (op.o === "cols") {
      for (const row of data) if (row.length > op.at) row.splice(op.at, op.del, ...new Array(op.ins));
      widths.splice(op.at, op.del, ...new Array(op.ins));
      const move = mover(op, ncols);
      ncols += op.ins - op.del;
      if (edit) { edit.c = move(edit.c); if (edit.c < 0) { closeEditor(); status.textContent = "the column you were editing was deleted by a peer"; } }
      sel.c = Math.max(0, Math.min(NC() - 1, move(sel.c) < 0 ? op.at : move(sel.c)));
      anchor.c = Math.max(0, Math.min(NC() - 1, move(anchor.c) < 0 ? op.at : move(anchor.c)));
    } else if (op.o === "widths") {
      setWidths(op.w);
    } else if (op.o === "cells") {
      for (const cell of op.c) {
        const [r, c] = cell;
        const row = data[r] || (data[r] = []);
        row[c] = cell.length > 2 ? cell.slice(2) : undefined;
        redraw.rows.add(r);
        // the cell being edited is not overwritten: its editor keeps the
        // user's text and shows what the peer wrote
        if (edit && edit.r === r && edit.c === c) {
          const theirs = cell.length > 2 ? cell[2] : null;
          if (theirs !== edit.startRaw) showConflict(theirs);
        }
      }
    }
  }

  const stop = connect(model, {
    onSnapshot(msg) {
      version = msg.v;
      nrows = msg.rows;
      ncols = msg.cols;
      data = Array.from({ length: nrows }, () => []);
      for (const [r, row] of msg.data) {
        const out = data[r];
        for (let c = 0; c < row.length; c++) {
          const v = row[c];
          if (v !== null) out[c] = Array.isArray(v) ? v : [v];
        }
      }
      setWidths(msg.widths);
      if (edit && (edit.r >= NR() || edit.c >= NC())) closeEditor();
      sel = { r: Math.min(sel.r, Math.max(0, NR() - 1)), c: Math.min(sel.c, Math.max(0, NC() - 1)) };
      anchor = { ...sel };
      redraw.all = true;
      status.textContent = `${nrows} × ${ncols}`;
      schedule();
    },
    onDeltas(ops, from) {
      for (const op of ops) apply(op);
      version = from + ops.length - 1;
      status.textContent = `${nrows} × ${ncols}`;
      schedule();
    },
    onOther(msg) {
      if (msg.t === "conflict" && msg.cell) {
        // Python found the cell changed before our edit arrived: reopen it
        const [r, c] = msg.cell;
        if (r < nrows && c < ncols) {
          select(r, c);
          openEditor(r, c, msg.mine);
          edit.startRaw = msg.theirs;
          showConflict(msg.theirs);
        }
      } else if (msg.t === "error") {
        status.textContent = msg.error;
      }
    },
  });
  schedule();
  return () => {
    stop();
    document.removeEventListener("mousedown", outside);
    if (frame) cancelAnimationFrame(frame);
  };
}

export default { render };
