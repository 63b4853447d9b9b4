// ui.peers(node): one row per known peer, updated on join and leave.
import { connect, h } from "./common.js";

const CSS = `
.own-peers { border-collapse: collapse; font: 13px sans-serif; color: #1a1a1a; background: #fff; }
.own-peers th, .own-peers td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eee; }
.own-peers .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px; }
.own-peers tr[data-own-state="offline"] { color: #999; }
.own-peers-empty { font: 13px sans-serif; color: #888; padding: 4px; }
`;

function render({ model, el }) {
  el.setAttribute("data-own-widget", "peers");
  const body = h("tbody");
  const table = h("table", { className: "own-peers" },
    h("thead", {}, h("tr", {}, ...["name", "id", "state", "reached via", "rtt", "docs", "in call"].map((c) => h("th", {}, c)))),
    body);
  const empty = h("div", { className: "own-peers-empty" }, "no peers known yet");
  el.append(h("style", {}, CSS), table, empty);

  const show = (rows) => {
    body.replaceChildren(...rows.map((p) => {
      const tr = h("tr", {},
        h("td", {}, h("span", { className: "dot", style: { background: p.color } }), p.name),
        h("td", {}, h("code", {}, p.short_id)),
        h("td", { className: "own-peer-state" }, p.online ? "online" : "offline"),
        h("td", {}, p.via),
        h("td", {}, p.rtt_ms == null ? "-" : `${p.rtt_ms.toFixed(1)} ms`),
        h("td", {}, String(p.docs)),
        h("td", { className: "own-peer-call" }, String(p.call || "-")));
      tr.setAttribute("data-own-call", p.call && p.call !== "-" ? p.call : "");
      tr.setAttribute("data-own", "peer");
      tr.setAttribute("data-own-state", p.online ? "online" : "offline");
      tr.setAttribute("data-own-peer", p.id);
      return tr;
    }));
    empty.style.display = rows.length ? "none" : "block";
  };
  return connect(model, {
    onSnapshot: (msg) => show(msg.peers),
    onDeltas: (ops) => show(ops[ops.length - 1].peers), // each delta is the whole list
  });
}

export default { render };
