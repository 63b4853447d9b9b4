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
