// The history widget (ownkernel/ui/history.py): a timeline of steps by author
// with a slider; the doc as it was at the chosen step (texts with what the
// step inserted and deleted marked, blame colours on request, sheets as
// values); "restore this version". Every state arrives whole.
import { connect, h, syncingBadge } from "./common.js";

const CSS = `
.own-hist { font: 13px sans-serif; color: #1a1a1a; background: #fff; border: 1px solid #ddd;
  border-radius: 4px; padding: 8px 10px; }
.own-hist .own-hist-bar { display: flex; gap: 8px; align-items: center; margin-bottom: 6px; }
.own-hist input[type=range] { flex: 1; }
.own-hist button { font: 12px sans-serif; padding: 2px 8px; border: 1px solid #bbb; border-radius: 3px;
  background: #f6f6f6; cursor: pointer; }
.own-hist button[disabled] { cursor: default; color: #999; }
.own-hist button[aria-pressed="true"] { background: #e3eefc; border-color: #7aa7e0; }
.own-hist .own-hist-ticks { display: flex; height: 8px; margin: 0 0 6px; border-radius: 2px; overflow: hidden; }
.own-hist .own-hist-ticks span { flex: 1; min-width: 1px; cursor: pointer; }
.own-hist .own-hist-ticks span[data-sel="true"] { outline: 2px solid #222; z-index: 1; }
.own-hist .own-hist-info { color: #444; margin-bottom: 6px; }
.own-hist .own-hist-info .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%;
  margin-right: 4px; }
.own-hist .own-hist-root { margin: 6px 0; }
.own-hist .own-hist-root h4 { margin: 0 0 2px; font-size: 12px; color: #666; font-weight: normal; }
.own-hist pre { margin: 0; padding: 6px; background: #fafafa; border: 1px solid #eee;
  white-space: pre-wrap; word-break: break-word; font: 12px monospace; max-height: 320px; overflow: auto; }
.own-hist .seg-ins { background: #d9f5d9; text-decoration: underline #2a8a2a; }
.own-hist .seg-del { background: #fbdcdc; text-decoration: line-through #b22; color: #8a2020; }
.own-hist table { border-collapse: collapse; font: 12px monospace; }
.own-hist td { border: 1px solid #ddd; padding: 1px 6px; min-width: 30px; }
.own-hist td[data-changed="true"] { background: #d9f5d9; }
.own-hist .legend { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 4px; color: #555; }
`;

function when(t) {
  if (t === null || t === undefined) return "time unknown";
  const d = new Date(t * 1000);
  return d.toLocaleString();
}

function textRoot(r, st) {
  const pre = h("pre", { "data-own": "history-text" });
  pre.setAttribute("data-own-root", r.name);
  for (const [kind, text, who] of r.segs) {
    const a = st.authors[who];
    const span = h("span", {}, text);
    span.setAttribute("data-own-seg", kind === "+" ? "ins" : kind === "-" ? "del" : "same");
    if (a) {
      span.setAttribute("data-own-author", a.name);
      span.title = a.name;
    }
    if (kind === "+") span.className = "seg-ins";
    else if (kind === "-") span.className = "seg-del";
    if (st.blame && a && kind !== "-") {
      span.style.background = a.color + "33";
      span.style.borderBottom = `2px solid ${a.color}`;
    }
    pre.append(span);
  }
  return pre;
}

function sheetRoot(r) {
  const table = h("table", { "data-own": "history-sheet" });
  table.setAttribute("data-own-root", r.name);
  r.rows.forEach((row, i) => {
    const tr = h("tr");
    row.forEach((v, j) => {
      const was = r.was[i] ? r.was[i][j] : null;
      const td = h("td", {}, v === null || v === undefined ? "" : String(v));
      td.setAttribute("data-changed", String(JSON.stringify(was) !== JSON.stringify(v)));
      tr.append(td);
    });
    table.append(tr);
  });
  return table;
}

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "history");
  const box = h("div", { className: "own-hist" });
  el.append(h("style", {}, CSS), box);
  let st = null;
  let dragging = null; // the slider value while the user drags, before Python answers

  const slider = h("input", { type: "range", min: "0", max: "0", step: "1" });
  slider.setAttribute("data-own", "history-slider");
  slider.addEventListener("input", () => {
    dragging = Number(slider.value);
    model.send({ t: "select", i: dragging });
  });
  slider.addEventListener("change", () => { dragging = null; });
  const blame = h("button", { title: "colour the text by who wrote it" }, "blame");
  blame.setAttribute("data-own", "history-blame");
  blame.addEventListener("click", () => model.send({ t: "blame", on: !(st && st.blame) }));
  const restore = h("button", { title: "make a new change that brings this version back" },
    "restore this version");
  restore.setAttribute("data-own", "history-restore");
  restore.addEventListener("click", () => {
    if (st && st.sel >= 0) model.send({ t: "restore", i: st.sel });
  });
  const ticks = h("div", { className: "own-hist-ticks" });
  const info = h("div", { className: "own-hist-info" });
  info.setAttribute("data-own", "history-info");
  const view = h("div", {});
  view.setAttribute("data-own", "history-view");
  const legend = h("div", { className: "legend" });
  box.append(h("div", { className: "own-hist-bar" }, slider, blame, restore), ticks, info, view,
    legend);

  const show = (s) => {
    st = s;
    const n = s.entries.length;
    slider.max = String(Math.max(0, n - 1));
    if (dragging === null) slider.value = String(Math.max(0, s.sel));
    slider.disabled = n === 0;
    el.setAttribute("data-own-step", String(s.sel));
    el.setAttribute("data-own-steps", String(n));
    blame.setAttribute("aria-pressed", String(!!s.blame));
    restore.disabled = !s.can_write || n === 0 || s.sel === n - 1;
    ticks.replaceChildren(...s.entries.map((e, i) => {
      const a = s.authors[e.author] || { name: e.author.slice(0, 8), color: "#999" };
      const t = h("span", { title: `${a.name}: ${e.summary}`, style: { background: a.color } });
      t.setAttribute("data-sel", String(i === s.sel));
      t.addEventListener("click", () => model.send({ t: "select", i }));
      return t;
    }));
    if (n === 0) {
      info.replaceChildren("no changes yet");
      view.replaceChildren();
      legend.replaceChildren();
      return;
    }
    const e = s.entries[s.sel];
    const a = s.authors[e.author] || { name: e.author.slice(0, 8), color: "#999" };
    info.replaceChildren(
      h("span", { className: "dot", style: { background: a.color } }),
      h("b", {}, a.name + (a.me ? " (you)" : "")),
      ` · ${when(e.time)} · step ${s.sel + 1} of ${n}` +
      (e.changes > 1 ? ` (${e.changes} changes)` : "") + ` · ${e.summary}`);
    view.replaceChildren(...s.view.roots.map((r) => {
      let body;
      if (r.kind === "text") body = textRoot(r, s);
      else if (r.kind === "sheet") body = sheetRoot(r);
      else body = h("pre", {}, r.value);
      const div = h("div", { className: "own-hist-root" }, h("h4", {}, `${r.name} (${r.kind})`), body);
      return div;
    }));
    legend.replaceChildren(...(s.blame ? Object.values(s.authors).map((p) =>
      h("span", {}, h("span", { className: "dot", style: { display: "inline-block", width: "9px",
        height: "9px", borderRadius: "50%", background: p.color, marginRight: "3px" } }), p.name))
      : []));
  };
  return connect(model, {
    onSnapshot: (msg) => show(msg.state),
    onDeltas: (ops) => show(ops[ops.length - 1].state),
    onOther: (msg) => { if (msg.t === "error") console.warn("ownkernel:", msg.error); },
  });
}

export default { render };
