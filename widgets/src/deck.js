// The deck widget (ownkernel/ui/slides.py): one slide at a time, following
// the presenter until the user navigates away; "follow the presenter" to
// come back; the presenter's speaker view (notes, timer); edit the slide.
// Markdown is rendered here by a small renderer that builds DOM nodes (never
// innerHTML): headings, paragraphs, lists, code blocks, inline code,
// bold/italic, links, images stored in the deck (image:<hash>) and data: images.
import { connect, h, syncingBadge } from "./common.js";

const CSS = `
.own-deck { font: 14px sans-serif; color: #1a1a1a; background: #fff; border: 1px solid #ddd;
  border-radius: 4px; padding: 8px 10px; }
.own-deck .bar { display: flex; gap: 6px; align-items: center; margin-bottom: 6px; flex-wrap: wrap; }
.own-deck .bar .grow { flex: 1; }
.own-deck button { font: 12px sans-serif; padding: 2px 8px; border: 1px solid #bbb; border-radius: 3px;
  background: #f6f6f6; cursor: pointer; }
.own-deck button[disabled] { cursor: default; color: #999; }
.own-deck button.follow { background: #fff4cc; border-color: #e0b400; }
.own-deck .slide { min-height: 220px; border: 1px solid #eee; border-radius: 4px; padding: 16px 24px;
  background: #fcfcfc; overflow: auto; }
.own-deck .slide h1 { font-size: 28px; margin: 0 0 12px; }
.own-deck .slide h2 { font-size: 22px; margin: 0 0 10px; }
.own-deck .slide pre { background: #f3f3f3; padding: 8px; border-radius: 3px; font: 13px monospace; }
.own-deck .slide code { font: 13px monospace; background: #f3f3f3; padding: 0 3px; }
.own-deck .slide img { max-width: 100%; }
.own-deck .banner { font-size: 12px; color: #555; }
.own-deck .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; }
.own-deck .speaker { margin-top: 6px; padding: 6px; border: 1px dashed #bbb; border-radius: 4px;
  font-size: 13px; background: #f8fbff; white-space: pre-wrap; }
.own-deck textarea { width: 100%; box-sizing: border-box; font: 12px monospace; min-height: 120px; }
`;

let IMAGES = {}; // hash -> data: URL of the shown slide's stored images

function inline(text) {
  // `code`, **bold**, *italic*, [link](url), ![alt](data:image/...)
  const out = [];
  const re = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*]+\*)|(!\[[^\]]*\]\([^)]*\))|(\[[^\]]+\]\([^)]*\))/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    const s = m[0];
    if (m[1]) out.push(h("code", {}, s.slice(1, -1)));
    else if (m[2]) out.push(h("strong", {}, ...inline(s.slice(2, -2))));
    else if (m[3]) out.push(h("em", {}, ...inline(s.slice(1, -1))));
    else if (m[4]) {
      const [, alt, src] = /!\[([^\]]*)\]\(([^)]*)\)/.exec(s);
      // only images carried in the slide itself: a deck never loads from elsewhere
      const stored = src.startsWith("image:") ? IMAGES[src.slice(6)] : null;
      if (stored) out.push(h("img", { alt, src: stored }));
      else if (src.startsWith("data:image/")) out.push(h("img", { alt, src }));
      else out.push(document.createTextNode(`[image: ${alt}]`));
    } else {
      const [, label, href] = /\[([^\]]+)\]\(([^)]*)\)/.exec(s);
      const a = h("a", { target: "_blank", rel: "noopener noreferrer" }, label);
      if (/^https?:\/\//.test(href)) a.href = href;
      out.push(a);
    }
    last = m.index + s.length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

export function markdown(src) {
  const nodes = [];
  const lines = src.replace(/\r\n?/g, "\n").split("\n");
  let para = [];
  let list = null;
  const flush = () => {
    if (para.length) nodes.push(h("p", {}, ...inline(para.join(" "))));
    para = [];
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^```(\S*)/.exec(line);
    if (fence) {
      flush();
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      const c = h("code", {}, code.join("\n"));
      if (fence[1]) c.setAttribute("data-lang", fence[1]);
      nodes.push(h("pre", {}, c));
      continue;
    }
    const head = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*(?:[-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (head) {
      flush();
      nodes.push(h(`h${head[1].length}`, {}, ...inline(head[2])));
    } else if (item) {
      if (para.length) flush();
      if (!list) {
        list = h(/^\s*\d/.test(line) ? "ol" : "ul");
        nodes.push(list);
      }
      list.append(h("li", {}, ...inline(item[1])));
    } else if (!line.trim()) {
      flush();
    } else {
      list = null;
      para.push(line.trim());
    }
  }
  flush();
  return nodes;
}

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "deck");
  const box = h("div", { className: "own-deck" });
  el.append(h("style", {}, CSS), box);
  let st = null;
  let editing = false;
  const btn = (label, own, fn) => {
    const b = h("button", {}, label);
    b.setAttribute("data-own", own);
    b.addEventListener("click", fn);
    return b;
  };
  const prev = btn("◀", "deck-prev", () => st && st.index > 0 && model.send({ t: "go", i: st.index - 1 }));
  const next = btn("▶", "deck-next", () => st && st.index < st.n - 1 && model.send({ t: "go", i: st.index + 1 }));
  const pos = h("span", {});
  pos.setAttribute("data-own", "deck-position");
  const follow = btn("follow the presenter", "deck-follow", () => model.send({ t: "follow" }));
  follow.className = "follow";
  const present = btn("present", "deck-present", () => model.send({ t: "present" }));
  const stop = btn("stop presenting", "deck-stop", () => model.send({ t: "stop" }));
  const edit = btn("edit", "deck-edit", () => { editing = !editing; show(st); });
  const banner = h("span", { className: "banner" });
  banner.setAttribute("data-own", "deck-presenter");
  const slide = h("div", { className: "slide" });
  slide.setAttribute("data-own", "deck-slide");
  const speaker = h("div", { className: "speaker" });
  speaker.setAttribute("data-own", "deck-speaker");
  const timer = h("span", {});
  timer.setAttribute("data-own", "deck-timer");
  box.append(h("div", { className: "bar" }, prev, pos, next, h("span", { className: "grow" }), banner,
    follow, present, stop, edit), slide, speaker);

  const tick = setInterval(() => {
    if (!st || !st.presenter || !st.presenter.me) return;
    const s = Math.max(0, Math.floor(Date.now() / 1000 - st.presenter.since));
    timer.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }, 500);

  const show = (s) => {
    st = s;
    IMAGES = s.images || {};
    el.setAttribute("data-own-slide", String(s.index));
    el.setAttribute("data-own-following", String(s.following));
    pos.textContent = s.n ? `${s.index + 1} / ${s.n}` : "no slides";
    prev.disabled = s.index <= 0;
    next.disabled = s.index >= s.n - 1;
    const p = s.presenter;
    if (p) {
      banner.replaceChildren(h("span", { className: "dot", style: { background: p.color } }),
        p.me ? "you are presenting" : `${p.name} is presenting (slide ${p.index + 1})`);
    } else banner.replaceChildren("nobody is presenting");
    follow.style.display = p && !p.me && !s.following ? "" : "none";
    present.style.display = p && p.me ? "none" : "";
    stop.style.display = p && p.me ? "" : "none";
    present.disabled = !s.n;
    edit.disabled = !s.can_write || !s.n;
    if (editing && s.can_write) {
      const ta = h("textarea", {}, s.markdown);
      ta.setAttribute("data-own", "deck-editor");
      const save = btn("save", "deck-save", () => {
        editing = false;
        const msg = { t: "edit", i: s.index, markdown: ta.value };
        model.send(msg);
      });
      slide.replaceChildren(ta, save);
    } else {
      slide.replaceChildren(...markdown(s.markdown));
    }
    if (p && p.me) {
      speaker.style.display = "";
      speaker.replaceChildren(h("div", {}, h("b", {}, "speaker view · "), timer),
        h("div", {}, s.notes || "(no notes for this slide)"));
    } else speaker.style.display = "none";
  };
  const off = connect(model, {
    onSnapshot: (msg) => show(msg.state),
    onDeltas: (ops) => show(ops[ops.length - 1].state),
    onOther: (msg) => { if (msg.t === "error") console.warn("ownkernel:", msg.error); },
  });
  return () => { clearInterval(tick); off(); };
}

export default { render };
