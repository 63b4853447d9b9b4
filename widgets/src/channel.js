// A widget view's road to its kernel's node: the direct channel when it can
// (a WebSocket to the jupyter-server extension, piped to the node's socket,
// see ownkernel/ui/channel.py), else the kernel's comm. Same messages both ways.
//
// link(model, clientID, hooks) returns what connect() in common.js needs of a
// model (send, on/off "msg:custom"). The view says "ready" over the comm with
// its client id and whether it could go direct; the kernel answers with a token
// for this view only ({t: "direct", c, token, kernel}); the view opens
// <base_url>ownkernel/widget/<kernel>, says hello with the token and the version
// it holds, and from then on ignores the comm (the kernel stops posting there
// once no view listens on it). When the WebSocket closes, the view says
// "resync" over the comm and hooks.switched() lets it resend what the kernel
// has not confirmed (the kernel skips what it already has); then it asks for a
// new offer ({t: "direct?"}) after RETRY_MS, at most RETRIES times in a row.

const RETRY_MS = 1000;
const RETRIES = 3;

function pageConfig() {
  const el = typeof document !== "undefined" && document.getElementById("jupyter-config-data");
  if (!el) return null; // not JupyterLab / Notebook 7 (VS Code, a static page)
  try {
    const c = JSON.parse(el.textContent);
    return typeof c.baseUrl === "string" ? c : null;
  } catch {
    return null;
  }
}

export function link(model, clientID, hooks = {}) {
  const config = typeof WebSocket === "function" ? pageConfig() : null;
  const handlers = new Set();
  let ws = null;
  let direct = false; // messages flow over the WebSocket
  let closed = false;
  let retries = 0; // re-attaches tried since the last one that carried a message
  let retryTimer = null;
  const deliver = (msg) => { for (const h of handlers) h(msg); };
  const version = () => (hooks.version ? hooks.version() : -1);
  // the snapshot the view builds on, when it numbers them (the editor): on the
  // resync after leaving the direct road, a kernel whose newer snapshot went down
  // with that road sends it again
  const gen = () => (hooks.gen ? { g: hooks.gen() } : {});

  const fromComm = (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.t === "direct") {
      if (msg.c === clientID && !ws && !closed) open(msg);
      return; // another view's offer, or ours: never for the widget itself
    }
    if (!direct) deliver(msg);
  };
  model.on("msg:custom", fromComm);

  const open = ({ token, kernel }) => {
    let url;
    try {
      url = new URL(`${config.baseUrl.replace(/\/?$/, "/")}ownkernel/widget/${encodeURIComponent(kernel)}`, location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      if (config.token) url.searchParams.set("token", config.token);
    } catch (err) {
      console.warn("ownkernel: no direct channel:", err);
      return;
    }
    const sock = ws = new WebSocket(url);
    sock.onopen = () => {
      if (closed || ws !== sock) return;
      sock.send(JSON.stringify({ t: "hello", token, v: version() }));
      direct = true;
      if (hooks.switched) hooks.switched("direct");
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      retries = 0; // this road works
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      deliver(msg);
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      if (!direct || closed) return;
      direct = false; // back to the comm: catch up from where we are, resend ours
      model.send({ t: "resync", v: version(), c: clientID, ...gen() });
      if (hooks.switched) hooks.switched("comm");
      if (retries < RETRIES) { // a server restart, a dropped connection: try again later
        retries++;
        retryTimer = setTimeout(() => {
          retryTimer = null;
          if (!closed && !ws) model.send({ t: "direct?", c: clientID });
        }, RETRY_MS);
      }
    };
  };

  return {
    get mode() { return direct ? "direct" : "comm"; },
    send(msg) {
      if (direct && ws && ws.readyState === 1) {
        ws.send(JSON.stringify(msg));
      } else if (msg.t === "ready") {
        model.send({ ...msg, c: clientID, direct: !!config });
      } else if (msg.t === "resync") {
        model.send({ ...msg, c: clientID });
      } else {
        model.send(msg);
      }
    },
    on(_ev, h) { handlers.add(h); },
    off(_ev, h) { handlers.delete(h); },
    // for tests: drop the WebSocket as a network failure would
    drop() { if (ws) ws.close(); },
    close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      model.off("msg:custom", fromComm);
      if (ws) { const s = ws; ws = null; s.close(); }
      direct = false;
      try { model.send({ t: "bye", c: clientID }); } catch { /* the comm is gone */ }
    },
  };
}
