// The comments widget (ownkernel/ui/comments.py): the text with each thread's
// anchor highlighted and the threads in the margin (who, what, replies,
// resolve). Select characters in the text, write, "comment": a new thread.
// Offsets sent to Python are code points (Python's str indices).
import { connect, h, syncingBadge } from "./common.js";

const CSS = `
.own-cmt { font: 13px sans-serif; color: #1a1a1a; background: #fff; border: 1px solid #ddd;
  border-radius: 4px; padding: 8px 10px; display: flex; gap: 12px; align-items: flex-start; }
.own-cmt .own-cmt-text { flex: 3; min-width: 0; }
.own-cmt pre { margin: 0; padding: 6px; background: #fafafa; border: 1px solid #eee; min-height: 40px;
  white-space: pre-wrap; word-break: break-word; font: 12px monospace; max-height: 420px; overflow: auto; }
.own-cmt .anchor { background: #fff1b8; border-bottom: 2px solid #e0b400; cursor: pointer; }
.own-cmt .anchor[data-own-active="true"] { background: #ffd84d; }
.own-cmt .own-cmt-margin { flex: 2; min-width: 200px; display: flex; flex-direction: column; gap: 6px; }
.own-cmt .thread { border: 1px solid #ddd; border-radius: 4px; padding: 4px 6px; background: #fcfcfc; }
.own-cmt .thread[data-own-resolved="true"] { opacity: 0.55; }
.own-cmt .thread[data-own-active="true"] { border-color: #e0b400; box-shadow: 0 0 0 1px #e0b400; }
.own-cmt .quote { color: #777; font-style: italic; font-size: 12px; }
.own-cmt .who { font-weight: bold; }
.own-cmt .dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 3px; }
.own-cmt .reply { margin-left: 10px; border-left: 2px solid #eee; padding-left: 6px; }
.own-cmt input { font: 12px sans-serif; width: 100%; box-sizing: border-box; margin-top: 3px; }
.own-cmt button { font: 12px sans-serif; padding: 1px 6px; border: 1px solid #bbb; border-radius: 3px;
  background: #f6f6f6; cursor: pointer; margin-top: 3px; }
.own-cmt .row { display: flex; gap: 4px; }
`;

// UTF-16 offset of (node, off) within `root`, then as a code point index
function cpOffset(root, node, off, text) {
  let n = 0;
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let t = walk.nextNode(); t; t = walk.nextNode()) {
    if (t === node) { n += off; break; }
    n += t.data.length;
  }
  if (node === root) n = [...root.childNodes].slice(0, off).reduce((s, c) => s + c.textContent.length, 0);
  return Array.from(text.slice(0, n)).length;
}

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "comments");
  const box = h("div", { className: "own-cmt" });
  el.append(h("style", {}, CSS), box);
  const pre = h("pre", {});
  pre.setAttribute("data-own", "comments-text");
  const input = h("input", { placeholder: "select text above, then write a comment" });
  input.setAttribute("data-own", "comment-input");
  const add = h("button", {}, "comment");
  add.setAttribute("data-own", "comment-add");
  const left = h("div", { className: "own-cmt-text" }, pre, h("div", { className: "row" }, input, add));
  const margin = h("div", { className: "own-cmt-margin" });
  margin.setAttribute("data-own", "comments-margin");
  box.append(left, margin);
  let st = null;
  let active = null;
  let sel = null; // [start, end) in code points, the last selection inside the text

  document.addEventListener("selectionchange", () => {
    const s = window.getSelection();
    if (!st || !s || s.rangeCount === 0 || s.isCollapsed) return;
    const r = s.getRangeAt(0);
    if (!pre.contains(r.startContainer) || !pre.contains(r.endContainer)) return;
    const a = cpOffset(pre, r.startContainer, r.startOffset, st.text);
    const b = cpOffset(pre, r.endContainer, r.endOffset, st.text);
    if (b > a) {
      sel = [a, b];
      el.setAttribute("data-own-selection", `${a}-${b}`); // what "comment" will anchor to
    }
  });
  add.addEventListener("click", () => {
    if (!sel || !input.value.trim()) return;
    model.send({ t: "add", start: sel[0], end: sel[1], text: input.value });
    input.value = "";
    sel = null;
  });

  const person = (hex) => st.authors[hex] || { name: hex.slice(0, 8), color: "#999" };
  const said = (hex, text) => {
    const p = person(hex);
    return h("div", {}, h("span", { className: "dot", style: { background: p.color } }),
      h("span", { className: "who" }, p.name + (p.me ? " (you)" : "")), ": " + text);
  };
  const highlight = () => {
    for (const x of box.querySelectorAll("[data-own-active]")) {
      const ids = (x.getAttribute("data-own-anchor") || x.getAttribute("data-own-thread") || "").split(" ");
      x.setAttribute("data-own-active", String(active !== null && ids.includes(active)));
    }
  };

  const show = (s) => {
    st = s;
    const cps = Array.from(s.text);
    // cut the text at every anchor boundary; each piece lists the open threads on it
    const open = s.threads.filter((t) => !t.resolved && t.start !== null && t.end > t.start);
    const cuts = new Set([0, cps.length]);
    for (const t of open) { cuts.add(t.start); cuts.add(t.end); }
    const bounds = [...cuts].sort((x, y) => x - y);
    const spans = [];
    for (let i = 0; i + 1 < bounds.length; i++) {
      const [a, b] = [bounds[i], bounds[i + 1]];
      const on = open.filter((t) => t.start <= a && b <= t.end).map((t) => t.id);
      const span = h("span", {}, cps.slice(a, b).join(""));
      if (on.length) {
        span.className = "anchor";
        span.setAttribute("data-own-anchor", on.join(" "));
        span.setAttribute("data-own-active", "false");
        span.addEventListener("click", () => { active = on[0]; highlight(); });
      }
      spans.push(span);
    }
    pre.replaceChildren(...spans);
    input.disabled = add.disabled = !s.can_write;
    el.setAttribute("data-own-threads", String(s.threads.length));
    margin.replaceChildren(...s.threads.map((t) => {
      const div = h("div", { className: "thread" });
      div.setAttribute("data-own", "thread");
      div.setAttribute("data-own-thread", t.id);
      div.setAttribute("data-own-resolved", String(t.resolved));
      div.setAttribute("data-own-active", "false");
      div.addEventListener("click", () => { active = t.id; highlight(); });
      const quote = h("div", { className: "quote" }, t.quote ? `“${t.quote}”` : "(its text was deleted)");
      const replies = t.replies.map((r) => {
        const d = said(r.author, r.text);
        d.className = "reply";
        d.setAttribute("data-own", "reply");
        return d;
      });
      const rin = h("input", { placeholder: "reply" });
      rin.setAttribute("data-own", "reply-input");
      const rb = h("button", {}, "reply");
      rb.setAttribute("data-own", "reply-send");
      rb.addEventListener("click", () => {
        if (rin.value.trim()) model.send({ t: "reply", id: t.id, text: rin.value });
      });
      const res = h("button", {}, t.resolved ? "reopen" : "resolve");
      res.setAttribute("data-own", "thread-resolve");
      res.addEventListener("click", () => model.send({ t: "resolve", id: t.id, on: !t.resolved }));
      for (const x of [rin, rb, res]) x.disabled = !s.can_write;
      div.append(quote, said(t.author, t.text), ...replies, rin, h("div", { className: "row" }, rb, res));
      return div;
    }));
    highlight();
  };
  return connect(model, {
    onSnapshot: (msg) => show(msg.state),
    onDeltas: (ops) => show(ops[ops.length - 1].state),
    onOther: (msg) => { if (msg.t === "error") console.warn("ownkernel:", msg.error); },
  });
}

export default { render };
