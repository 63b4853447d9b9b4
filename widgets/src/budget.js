// The budget chart (ownkernel.apps.budget): bars planned vs spent by category,
// the remaining budget over time, each person's balance and who owes whom.
// Plain SVG drawn here: no plotting library, nothing fetched.
import { connect, h } from "./common.js";

const NS = "http://www.w3.org/2000/svg";
const CSS = `
.own-budget { font: 12px sans-serif; color: #1a1a1a; background: #fff; border: 1px solid #c8c8c8; border-radius: 4px; padding: 8px; max-width: 760px; }
.own-budget-charts { display: flex; flex-wrap: wrap; gap: 12px; }
.own-budget h4 { margin: 0 0 4px; font-size: 12px; color: #555; font-weight: 600; }
.own-budget svg text { font: 11px sans-serif; fill: #444; }
.own-budget table { border-collapse: collapse; margin-top: 8px; }
.own-budget td, .own-budget th { padding: 2px 10px 2px 0; text-align: right; }
.own-budget td:first-child, .own-budget th:first-child { text-align: left; }
.own-budget .own-neg { color: #c92a2a; }
.own-budget .own-pos { color: #2b8a3e; }
.own-budget-owes { margin-top: 6px; }
.own-budget-err { color: #c92a2a; }
`;

const svg = (tag, attrs = {}, ...kids) => {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k);
  return e;
};
const money = (x) => (Math.round(x * 100) / 100).toLocaleString(undefined, { minimumFractionDigits: 0, maximumFractionDigits: 2 });

function bars(data) {
  const W = 360, H = 200, L = 44, B = 34, T = 10;
  const max = Math.max(1, ...data.flatMap((d) => [d.planned, d.spent]));
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  s.setAttribute("data-own", "budget-bars");
  const y = (v) => T + (H - B - T) * (1 - v / max);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    s.append(svg("line", { x1: L, x2: W, y1: y(v), y2: y(v), stroke: "#eee" }),
      svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, money(v)));
  }
  const slot = (W - L) / Math.max(1, data.length);
  const bw = Math.min(26, slot / 3);
  data.forEach((d, i) => {
    const x0 = L + i * slot + slot / 2 - bw;
    for (const [k, v, fill, dx] of [["planned", d.planned, "#c5d6ec", 0], ["spent", d.spent, d.spent > d.planned ? "#e03131" : "#1c7ed6", bw]]) {
      const r = svg("rect", { x: x0 + dx, y: y(Math.max(0, v)), width: bw - 2, height: Math.max(0, H - B - y(Math.max(0, v))), fill });
      r.setAttribute("data-own", "bar");
      r.setAttribute("data-own-cat", d.category);
      r.setAttribute("data-own-kind", k);
      r.setAttribute("data-own-value", String(v));
      r.append(svg("title", {}, `${d.category} ${k}: ${money(v)}`));
      s.append(r);
    }
    s.append(svg("text", { x: x0 + bw, y: H - B + 14, "text-anchor": "middle" }, d.category));
  });
  s.append(svg("rect", { x: L, y: H - 12, width: 10, height: 8, fill: "#c5d6ec" }), svg("text", { x: L + 14, y: H - 4 }, "planned"),
    svg("rect", { x: L + 70, y: H - 12, width: 10, height: 8, fill: "#1c7ed6" }), svg("text", { x: L + 84, y: H - 4 }, "spent"));
  return s;
}

function line(points, planned) {
  const W = 360, H = 200, L = 44, B = 34, T = 10, R = 10;
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  s.setAttribute("data-own", "budget-line");
  const all = [[" ", planned], ...points];
  const vals = all.map((p) => p[1]);
  const lo = Math.min(0, ...vals), hi = Math.max(1, ...vals);
  const y = (v) => T + (H - B - T) * (1 - (v - lo) / (hi - lo || 1));
  const x = (i) => L + ((W - L - R) * i) / Math.max(1, all.length - 1);
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    s.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eee" }),
      svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, money(v)));
  }
  if (lo < 0) s.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: "#e03131", "stroke-dasharray": "3 3" }));
  const path = all.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
  s.append(svg("path", { d: path, fill: "none", stroke: "#1c7ed6", "stroke-width": 2 }));
  all.forEach((p, i) => {
    const c = svg("circle", { cx: x(i), cy: y(p[1]), r: 3, fill: p[1] < 0 ? "#e03131" : "#1c7ed6" });
    c.setAttribute("data-own", "point");
    c.setAttribute("data-own-value", String(p[1]));
    c.append(svg("title", {}, `${p[0]}: ${money(p[1])} left`));
    s.append(c);
  });
  const step = Math.max(1, Math.ceil(points.length / 5));
  points.forEach((p, i) => {
    if (i % step === 0 || i === points.length - 1) {
      const last = i === points.length - 1; // kept inside the chart's right edge
      s.append(svg("text", { x: x(i + 1), y: H - B + 14, "text-anchor": last ? "end" : "middle" }, String(p[0]).slice(5) || p[0]));
    }
  });
  return s;
}

function render({ model, el }) {
  el.setAttribute("data-own-widget", "budget");
  const box = h("div", { className: "own-budget" });
  el.append(h("style", {}, CSS), box);
  const draw = (sm) => {
    const people = h("table", {}, h("tr", {}, ...["person", "paid", "share", "balance"].map((t) => h("th", {}, t))),
      ...sm.people.map((p) => h("tr", {}, h("td", {}, p.name), h("td", {}, money(p.paid)), h("td", {}, money(p.share)),
        h("td", { className: p.balance < -0.005 ? "own-neg" : p.balance > 0.005 ? "own-pos" : "" }, money(p.balance)))));
    const owes = h("div", { className: "own-budget-owes" },
      ...(sm.owes.length ? sm.owes.map(([a, b, x]) => {
        const d = h("div", {}, `${a} owes ${b} ${money(x)}`);
        d.setAttribute("data-own", "owes");
        return d;
      }) : [h("div", {}, "everyone is settled")]));
    const errs = sm.errors && sm.errors.length ? [h("div", { className: "own-budget-err" }, "errors in: " + sm.errors.join(", "))] : [];
    box.replaceChildren(
      h("div", { className: "own-budget-charts" },
        h("div", {}, h("h4", {}, `Planned vs spent (${money(sm.spent)} of ${money(sm.planned)})`), bars(sm.bars)),
        h("div", {}, h("h4", {}, "Remaining budget over time"), line(sm.line, sm.planned))),
      people, owes, ...errs);
  };
  return connect(model, {
    onSnapshot(msg) { draw(msg.summary); },
    onDeltas(ops) { draw(ops[ops.length - 1]); },
  });
}

export default { render };
