// ui.chat(log): messages (author, colour, time), newest at the bottom; Enter
// sends, Shift+Enter adds a line; "<name> is typing…" from presence; an
// unread mark when scrolled away from the bottom.
import { connect, h, syncingBadge } from "./common.js";

const CSS = `
.own-chat { border: 1px solid #c8c8c8; border-radius: 4px; font: 13px sans-serif; background: #fff; color: #1a1a1a; }
.own-chat-list { max-height: 260px; min-height: 60px; overflow-y: auto; padding: 6px; }
.own-chat-msg { margin: 3px 0; white-space: pre-wrap; word-break: break-word; }
.own-chat-author { font-weight: 600; margin-right: 6px; }
.own-chat-time { color: #888; font-size: 11px; margin-right: 6px; }
.own-chat-foot { display: flex; gap: 6px; padding: 6px; border-top: 1px solid #eee; align-items: center; }
.own-chat-input { flex: 1; resize: none; font: inherit; padding: 4px; min-height: 1.6em; }
.own-chat-call { color: #2e7d32; font-size: 12px; padding: 2px 6px; border-bottom: 1px solid #eee; }
.own-chat-typing { color: #888; font-size: 11px; min-height: 1em; padding: 0 6px; }
.own-chat-unread { display: none; color: #fff; background: #d9480f; border-radius: 8px; padding: 0 6px; font-size: 11px; cursor: pointer; }
`;

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "chat");
  el.setAttribute("data-lm-suppress-shortcuts", "true"); // Enter sends, not runs a cell
  const style = h("style", {}, CSS);
  const list = h("div", { className: "own-chat-list" });
  const input = h("textarea", { className: "own-chat-input", rows: 1, placeholder: "Message (Enter sends)" });
  input.setAttribute("data-own", "chat-input");
  const unread = h("span", { className: "own-chat-unread", title: "new messages below" }, "new");
  unread.setAttribute("data-own", "chat-unread");
  const typing = h("div", { className: "own-chat-typing" });
  const callLine = h("div", { className: "own-chat-call" });
  callLine.setAttribute("data-own", "chat-call");
  callLine.style.display = "none";
  const showCall = (who = []) => {
    callLine.textContent = who.length ? `in the call: ${who.join(", ")}` : "";
    callLine.style.display = who.length ? "block" : "none";
  };
  const root = h("div", { className: "own-chat" }, callLine, list, typing, h("div", { className: "own-chat-foot" }, input, unread));
  el.append(style, root);
  let keys = [];

  const atBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 8;
  const toBottom = () => { list.scrollTop = list.scrollHeight; unread.style.display = "none"; };
  list.addEventListener("scroll", () => { if (atBottom()) unread.style.display = "none"; });
  unread.addEventListener("click", toBottom);

  const row = (m) => {
    const when = m.time ? new Date(m.time * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    const div = h("div", { className: "own-chat-msg" },
      h("span", { className: "own-chat-time" }, when),
      h("span", { className: "own-chat-author", style: { color: m.color || "#333" } }, m.author || "?"),
      h("span", { className: "own-chat-text" }, m.text));
    div.setAttribute("data-own", "chat-message");
    return div;
  };
  // Messages carry a sort key (lamport, actor): a late message from a peer can
  // belong above newer ones, and every replica shows the same order.
  const insert = (m) => {
    const key = m.key;
    let i = keys.length;
    while (i > 0 && compare(keys[i - 1], key) > 0) i--;
    if (i < keys.length && compare(keys[i], key) === 0) return;
    const node = row(m);
    list.insertBefore(node, list.children[i] || null);
    keys.splice(i, 0, key);
  };
  const add = (msgs) => {
    const stick = atBottom();
    for (const m of msgs) insert(m);
    if (stick) toBottom();
    else unread.style.display = "inline";
  };

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      const text = input.value;
      if (text.trim()) model.send({ t: "send", text });
      input.value = "";
      model.send({ t: "typing", on: false });
    }
  });
  let typingSent = 0;
  input.addEventListener("input", () => {
    const now = Date.now();
    if (now - typingSent > 2000) { typingSent = now; model.send({ t: "typing", on: true }); }
  });

  const stop = connect(model, {
    onSnapshot(msg) {
      list.replaceChildren();
      keys = [];
      add(msg.messages);
      toBottom();
      typing.textContent = "";
      showCall(msg.call);
    },
    onDeltas(ops) {
      add(ops);
    },
    onOther(msg) {
      if (msg.t === "call") showCall(msg.names);
      if (msg.t === "typing") {
        const who = msg.names || [];
        typing.textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
      }
    },
  });
  return stop;
}

function compare(a, b) {
  if (a[0] !== b[0]) return a[0] - b[0];
  return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

export default { render };
