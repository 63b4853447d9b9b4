// ui.items(list): a shared to-do list. Each item [data-own="item"] has a done
// checkbox, its text (click to edit: Enter saves, Escape cancels), who added
// it and when, a delete button, and drags to a new place. Protocol: see
// ownkernel/ui/items.py (every snapshot and delta carries the whole list).
import { connect, h, syncingBadge } from "./common.js";

const CSS = `
.own-items { border: 1px solid #c8c8c8; border-radius: 4px; font: 13px sans-serif; background: #fff; color: #1a1a1a; max-width: 640px; }
.own-items-list { list-style: none; margin: 0; padding: 4px 0; max-height: 360px; overflow-y: auto; }
.own-item { display: flex; align-items: center; gap: 8px; padding: 3px 8px; border-bottom: 1px solid #f0f0f0; }
.own-item.own-dragging { opacity: .4; }
.own-item.own-drop-before { box-shadow: inset 0 2px 0 #4a90d9; }
.own-item.own-drop-after { box-shadow: inset 0 -2px 0 #4a90d9; }
.own-item-grip { cursor: grab; color: #aaa; user-select: none; }
.own-item-text { flex: 1; cursor: text; white-space: pre-wrap; word-break: break-word; min-height: 1.2em; }
.own-item[data-own-done="true"] .own-item-text { text-decoration: line-through; color: #888; }
.own-item-meta { color: #999; font-size: 11px; white-space: nowrap; }
.own-item-del { border: none; background: none; color: #bbb; cursor: pointer; font-size: 14px; }
.own-item-del:hover { color: #c92a2a; }
.own-item-edit { flex: 1; font: inherit; padding: 1px 3px; }
.own-items-foot { display: flex; gap: 6px; padding: 6px 8px; border-top: 1px solid #eee; }
.own-items-input { flex: 1; font: inherit; padding: 3px 5px; }
.own-items-status { font-size: 11px; color: #888; padding: 0 8px 4px; min-height: 1em; }
`;

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "items");
  el.setAttribute("data-lm-suppress-shortcuts", "true"); // typing edits items, not the notebook
  const list = h("ul", { className: "own-items-list" });
  const input = h("input", { className: "own-items-input", placeholder: "Add an item (Enter)" });
  input.setAttribute("data-own", "item-input");
  const status = h("div", { className: "own-items-status" });
  el.append(h("style", {}, CSS), h("div", { className: "own-items" }, list,
    h("div", { className: "own-items-foot" }, input), status));
  let items = [];
  let editing = null; // {id, el}: an open editor survives remote updates
  let dragId = null;
  let redrawing = false; // moving the open editor into the new rows must not save it

  input.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter" && !e.isComposing && input.value.trim()) {
      e.preventDefault();
      model.send({ t: "add", text: input.value });
      input.value = "";
    }
  });

  const row = (it, index) => {
    const li = h("li", { className: "own-item", draggable: true });
    li.setAttribute("data-own", "item");
    li.setAttribute("data-own-id", it.id);
    li.setAttribute("data-own-done", String(it.done));
    const box = h("input", { type: "checkbox", checked: it.done, title: "done" });
    box.setAttribute("data-own", "item-done");
    box.addEventListener("change", () => model.send({ t: "set", id: it.id, field: "done", value: box.checked }));
    const text = h("span", { className: "own-item-text", title: "click to edit" }, it.text);
    text.setAttribute("data-own", "item-text");
    text.addEventListener("click", () => startEdit(it, text));
    const when = it.when ? new Date(it.when * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "";
    const meta = h("span", { className: "own-item-meta" }, [it.by, when].filter(Boolean).join(" · "));
    const del = h("button", { className: "own-item-del", title: "delete", type: "button" }, "✕");
    del.setAttribute("data-own", "item-delete");
    del.addEventListener("click", () => model.send({ t: "delete", id: it.id }));
    const grip = h("span", { className: "own-item-grip", title: "drag to move" }, "⋮⋮");
    li.append(grip, box, text, meta, del);
    // drag and drop: the target index counts the items without the dragged one
    li.addEventListener("dragstart", (e) => {
      dragId = it.id;
      li.classList.add("own-dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", it.text);
    });
    li.addEventListener("dragend", () => { dragId = null; li.classList.remove("own-dragging"); clearMarks(); });
    li.addEventListener("dragover", (e) => {
      if (!dragId) return;
      e.preventDefault();
      clearMarks();
      li.classList.add(after(e, li) ? "own-drop-after" : "own-drop-before");
    });
    li.addEventListener("drop", (e) => {
      if (!dragId) return;
      e.preventDefault();
      const from = items.findIndex((x) => x.id === dragId);
      let to = index + (after(e, li) ? 1 : 0);
      if (from >= 0 && from < to) to -= 1;
      if (from !== to) model.send({ t: "move", id: dragId, to });
      clearMarks();
    });
    return li;
  };
  const after = (e, li) => { const b = li.getBoundingClientRect(); return e.clientY > b.top + b.height / 2; };
  const clearMarks = () => list.querySelectorAll(".own-drop-before, .own-drop-after")
    .forEach((x) => x.classList.remove("own-drop-before", "own-drop-after"));

  function startEdit(it, span) {
    if (editing) return;
    const ed = h("input", { className: "own-item-edit", value: it.text });
    ed.setAttribute("data-own", "item-editor");
    editing = { id: it.id, el: ed };
    span.replaceWith(ed);
    ed.focus();
    const done = (save) => {
      if (!editing || editing.el !== ed) return;
      editing = null;
      if (save && ed.value !== it.text) model.send({ t: "set", id: it.id, field: "text", value: ed.value });
      draw();
    };
    ed.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter" && !e.isComposing) { e.preventDefault(); done(true); }
      else if (e.key === "Escape") { e.preventDefault(); done(false); }
    });
    ed.addEventListener("blur", () => { if (!redrawing) done(true); });
  }

  function draw() {
    const keep = editing;
    redrawing = true;
    list.replaceChildren(...items.map((it, i) => {
      const li = row(it, i);
      if (keep && keep.id === it.id) li.querySelector("[data-own=item-text]").replaceWith(keep.el);
      return li;
    }));
    if (keep && !items.some((it) => it.id === keep.id)) editing = null; // deleted by a peer
    if (keep && editing) keep.el.focus();
    redrawing = false;
    const open = items.filter((x) => !x.done).length;
    status.textContent = items.length ? `${open} of ${items.length} open` : "no items yet";
  }

  return connect(model, {
    onSnapshot(msg) { items = msg.items; draw(); },
    onDeltas(ops) { items = ops[ops.length - 1].items; draw(); },
    onOther(msg) { if (msg.t === "error") status.textContent = msg.error; },
  });
}

export default { render };
