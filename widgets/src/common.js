// The client half of the protocol in ownkernel/ui/base.py: say "ready" once
// rendered, take a snapshot, then apply numbered deltas in order and ask for a
// resync on a gap.
export function connect(model, { onSnapshot, onDeltas, onOther }) {
  let version = -1; // no snapshot yet
  const handler = (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.t === "snapshot") {
      version = msg.v;
      onSnapshot(msg);
    } else if (msg.t === "deltas") {
      if (version < 0) return; // a snapshot is on its way
      const cur = onDeltas.version ? onDeltas.version() : version;
      if (msg.from > cur + 1) {
        model.send({ t: "resync", v: cur });
        return;
      }
      const ops = msg.ops.slice(cur + 1 - msg.from); // skip what we already have
      if (ops.length) {
        onDeltas(ops, cur + 1, msg);
        version = cur + ops.length;
      }
    } else if (onOther) {
      onOther(msg);
    }
  };
  model.on("msg:custom", handler);
  model.send({ t: "ready" });
  return () => model.off("msg:custom", handler);
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("data-")) el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children) el.append(c);
  return el;
}

// "syncing…" while the doc was joined a moment ago and its first sync has not
// landed (the Python side clears the `syncing` trait when it has).
export function syncingBadge(model, el) {
  const badge = h("div", {
    className: "own-syncing",
    title: "waiting for the first sync from a peer that has this document",
    style: { font: "12px sans-serif", color: "#7a5b00", background: "#fff4cc",
             border: "1px solid #e6d38a", borderRadius: "3px", padding: "1px 6px",
             margin: "0 0 4px 0", display: "none" },
  }, "syncing\u2026");
  badge.setAttribute("data-own", "syncing");
  el.prepend(badge);
  const show = () => {
    badge.style.display = model.get("syncing") ? "inline-block" : "none";
  };
  model.on("change:syncing", show);
  show();
}
