// The doc view's header (ownkernel/ui/docview.py): title, roots (a click opens
// the root's widget below, in the same output), peers present, access list.
import { connect, h, syncingBadge } from "./common.js";

const CSS = `
.own-doc { font: 13px sans-serif; color: #1a1a1a; background: #fff; border: 1px solid #ddd;
  border-radius: 4px; padding: 8px 10px; }
.own-doc h3 { margin: 0 0 6px; font-size: 15px; }
.own-doc .own-doc-meta { color: #777; font-size: 12px; margin-left: 6px; font-weight: normal; }
.own-doc .own-doc-row { margin: 4px 0; display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.own-doc .own-doc-label { color: #666; min-width: 64px; }
.own-doc button { font: 12px sans-serif; padding: 2px 8px; border: 1px solid #bbb; border-radius: 3px;
  background: #f6f6f6; cursor: pointer; }
.own-doc button[disabled] { cursor: default; color: #999; }
.own-doc button[data-own-open="true"] { background: #e3eefc; border-color: #7aa7e0; }
.own-doc .chip { display: inline-flex; align-items: center; gap: 4px; padding: 1px 6px;
  border-radius: 10px; background: #f1f1f1; }
.own-doc .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; }
`;

function person(p, extra) {
  const chip = h("span", { className: "chip", title: p.id },
    h("span", { className: "dot", style: { background: p.color } }),
    p.name + (p.me ? " (you)" : "") + (extra ? ` · ${extra}` : ""));
  return chip;
}

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "doc");
  const box = h("div", { className: "own-doc" });
  el.append(h("style", {}, CSS), box);
  let opened = null;

  const show = (d) => {
    el.setAttribute("data-own-doc", d.id);
    const title = h("h3", { "data-own": "doc-title" }, d.title);
    title.append(h("span", { className: "own-doc-meta" }, `${d.short_id} · you: ${d.role}`));
    const roots = d.roots.map((r) => {
      const b = h("button", { title: r.openable ? `open ${r.kind} ${r.name}` : `${r.kind}: no widget yet` },
        `${r.name} (${r.kind})`);
      b.setAttribute("data-own", "doc-root");
      b.setAttribute("data-own-root", r.name);
      b.setAttribute("data-own-open", String(r.name === opened));
      if (!r.openable) b.disabled = true;
      b.addEventListener("click", () => {
        opened = r.name;
        model.send({ t: "open", root: r.name });
        for (const x of box.querySelectorAll('[data-own="doc-root"]')) {
          x.setAttribute("data-own-open", String(x.getAttribute("data-own-root") === opened));
        }
      });
      return b;
    });
    const present = d.present.map((p) => {
      const c = person(p);
      c.setAttribute("data-own", "doc-present");
      return c;
    });
    const access = d.access.map((p) => {
      const c = person(p, p.role);
      c.setAttribute("data-own", "doc-access");
      c.setAttribute("data-own-role", p.role);
      return c;
    });
    if (d.invites) {
      access.push(h("span", { className: "own-doc-meta" },
        `${d.invites} invite${d.invites === 1 ? "" : "s"} issued` + (d.revoked ? `, ${d.revoked} revoked` : "")));
    }
    const row = (label, items, empty) => h("div", { className: "own-doc-row" },
      h("span", { className: "own-doc-label" }, label),
      ...(items.length ? items : [h("span", { className: "own-doc-meta" }, empty)]));
    box.replaceChildren(title, row("roots", roots, "none yet"), row("here now", present, "nobody"),
      row("access", access, "-"));
  };
  return connect(model, {
    onSnapshot: (msg) => show(msg.doc),
    onDeltas: (ops) => show(ops[ops.length - 1].doc), // each delta is the whole state
    onOther: (msg) => { if (msg.t === "error") console.warn("ownkernel:", msg.error); },
  });
}

export default { render };
