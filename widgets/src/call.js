// ui.call(doc): a WebRTC mesh (up to 4) among the people of a doc. The kernel
// only relays the set-up over the node (ownkernel/ui/call.py); media flows
// browser to browser. Full SDP, no trickle: we wait for ICE gathering to end
// before sending an offer or answer, so one message each way sets a pair up.
import { connect, h } from "./common.js";

const CSS = `
.own-call { border: 1px solid #c8c8c8; border-radius: 4px; font: 13px sans-serif; background: #fff; color: #1a1a1a; padding: 6px; }
.own-call-bar { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; margin-bottom: 6px; }
.own-call-bar button { font: inherit; padding: 2px 8px; }
.own-call-bar button[aria-pressed="false"] { text-decoration: line-through; color: #888; }
.own-call-status { color: #555; }
.own-call-status[data-own-error] { color: #b00020; }
.own-call-tiles { display: flex; gap: 6px; flex-wrap: wrap; }
.own-call-tile { width: 200px; border: 3px solid #ccc; border-radius: 4px; background: #111; color: #fff; position: relative; }
.own-call-tile video { width: 100%; height: 150px; display: block; background: #222; object-fit: cover; }
.own-call-name { padding: 2px 4px; font-size: 12px; display: flex; justify-content: space-between; background: #000a; }
.own-call-state { color: #bbb; }
.own-call-tile[data-own-media="failed"] .own-call-state { color: #ff8a80; }
`;

const GATHER_WAIT = 10000; // ms: then send what we have (no trickle afterwards)

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_WAIT);
  });
}

function render({ model, el }) {
  el.setAttribute("data-own-widget", "call");
  const status = h("span", { className: "own-call-status" });
  status.setAttribute("data-own", "call-status");
  const btn = (label, own, title) => {
    const b = h("button", { title }, label);
    b.setAttribute("data-own", own);
    return b;
  };
  const join = btn("Join call", "call-join", "join the call of this document");
  const leave = btn("Leave", "call-leave", "leave the call");
  const mic = btn("Mic", "call-mic", "microphone on/off");
  const cam = btn("Camera", "call-camera", "camera on/off");
  const screen = btn("Share screen", "call-screen", "show your screen instead of your camera");
  const tiles = h("div", { className: "own-call-tiles" });
  el.append(h("style", {}, CSS), h("div", { className: "own-call" },
    h("div", { className: "own-call-bar" }, join, leave, mic, cam, screen, status), tiles));

  let state = { joined: false, participants: [], me: {}, status: "" };
  let local = null; // our camera + microphone stream (null: receive only)
  let shared = null; // the screen-share video track while sharing
  const pcs = new Map(); // peer hex -> RTCPeerConnection
  const media = new Map(); // peer hex -> {stream, frames, state}
  let note = ""; // a transient line: "<name> left", ICE failures
  let error = "";
  const iceServers = () => { try { return JSON.parse(model.get("ice_servers") || "[]"); } catch { return []; } };

  const say = (text, isError = false) => {
    note = isError ? "" : text;
    error = isError ? text : error;
    draw();
  };
  const nameOf = (hex) => (state.participants.find((p) => p.id === hex) || {}).name || hex.slice(0, 8);

  // -- tiles -------------------------------------------------------------------------
  const tileFor = new Map(); // peer hex (or "self") -> element
  const makeTile = (key, p, isSelf) => {
    const video = h("video", { autoplay: true, playsInline: true, muted: true });
    const audio = h("audio", { autoplay: true });
    const label = h("span", { className: "own-call-label" });
    const st = h("span", { className: "own-call-state" });
    const tile = h("div", { className: "own-call-tile" }, video, audio, h("div", { className: "own-call-name" }, label, st));
    tile.setAttribute("data-own", isSelf ? "self" : "participant");
    tile.setAttribute("data-own-peer", key);
    tile.setAttribute("data-own-frames", "0");
    tile._parts = { video, audio, label, st };
    tileFor.set(key, tile);
    if (!isSelf) watchFrames(key, tile);
    return tile;
  };
  // Count decoded frames (requestVideoFrameCallback): "connected" means
  // pictures are arriving, not only that ICE succeeded.
  const watchFrames = (key, tile) => {
    const v = tile._parts.video;
    if (!v.requestVideoFrameCallback) return;
    const tick = () => {
      const m = media.get(key);
      if (!m || tileFor.get(key) !== tile) return;
      m.frames += 1;
      tile.setAttribute("data-own-frames", String(m.frames));
      if (m.state !== "connected") { m.state = "connected"; draw(); }
      v.requestVideoFrameCallback(tick);
    };
    v.requestVideoFrameCallback(tick);
  };
  const draw = () => {
    join.style.display = state.joined ? "none" : "";
    for (const b of [leave, mic, cam]) b.style.display = state.joined ? "" : "none";
    screen.style.display = state.joined && navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia ? "" : "none";
    const audioOn = !!(local && local.getAudioTracks().some((t) => t.enabled));
    const videoOn = !!(local && local.getVideoTracks().some((t) => t.enabled));
    mic.setAttribute("aria-pressed", String(audioOn));
    cam.setAttribute("aria-pressed", String(videoOn));
    screen.setAttribute("aria-pressed", String(!!shared));
    const n = state.participants.length;
    const text = error || state.status || note ||
      (state.joined ? (n ? `in the call with ${n} other${n > 1 ? "s" : ""}` : "in the call: waiting for others")
        : "not in the call");
    status.textContent = text;
    if (error) status.setAttribute("data-own-error", error.startsWith("no camera") ? "permission" : "error");
    else status.removeAttribute("data-own-error");

    const want = [];
    if (state.joined) want.push(["self", { name: `${state.me.name || "me"} (you)`, color: state.me.color }, true]);
    for (const p of state.participants) want.push([p.id, p, false]);
    const keep = new Set(want.map(([k]) => k));
    for (const [k, t] of tileFor) if (!keep.has(k)) { t.remove(); tileFor.delete(k); }
    for (const [k, p, isSelf] of want) {
      const t = tileFor.get(k) || makeTile(k, p, isSelf);
      t.style.borderColor = p.color || "#ccc";
      t._parts.label.textContent = p.name;
      if (isSelf) {
        if (t._parts.video.srcObject !== local) t._parts.video.srcObject = local;
        t._parts.st.textContent = local ? "" : "no camera";
      } else {
        const m = media.get(k);
        if (m && m.stream && t._parts.video.srcObject !== m.stream) {
          t._parts.video.srcObject = m.stream;
          t._parts.audio.srcObject = m.stream;
          t._parts.audio.play().catch(() => {}); // autoplay may need a click: video shows anyway
        }
        const s = m ? m.state : "waiting";
        t.setAttribute("data-own-media", s === "connected" ? "connected" : s === "failed" ? "failed" : "connecting");
        t._parts.st.textContent = s === "failed" ? "ICE failed: no common network" : s;
      }
      if (t.parentNode !== tiles) tiles.append(t);
    }
  };

  // -- peer connections --------------------------------------------------------------
  const hangup = (peer) => {
    const pc = pcs.get(peer);
    if (pc) { pcs.delete(peer); pc.close(); }
    media.delete(peer);
  };
  const newPc = (peer) => {
    hangup(peer); // a fresh connection per (re)join
    const pc = new RTCPeerConnection({ iceServers: iceServers() });
    pcs.set(peer, pc);
    const m = { stream: null, frames: 0, state: "connecting" };
    media.set(peer, m);
    if (local) for (const t of local.getTracks()) pc.addTrack(shared && t.kind === "video" ? shared : t, local);
    else { pc.addTransceiver("audio", { direction: "recvonly" }); pc.addTransceiver("video", { direction: "recvonly" }); }
    pc.ontrack = (ev) => {
      if (pcs.get(peer) !== pc) return;
      m.stream = ev.streams[0] || m.stream || new MediaStream();
      if (!ev.streams[0]) m.stream.addTrack(ev.track);
      draw();
    };
    pc.onconnectionstatechange = () => {
      if (pcs.get(peer) !== pc) return;
      if (pc.connectionState === "failed") {
        m.state = "failed";
        say(`ICE failed with ${nameOf(peer)}: no common network (set OWNKERNEL_ICE_SERVERS, see docs/calls.md)`, true);
      }
    };
    return pc;
  };
  const send = (to, kind, data) => model.send({ t: "signal", to, kind, data });

  const offerTo = async (peer) => {
    const pc = newPc(peer);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (pcs.get(peer) === pc) send(peer, "offer", pc.localDescription.sdp);
  };
  const onSignal = async (msg) => {
    const peer = msg.from;
    if (msg.kind === "offer") {
      const pc = newPc(peer);
      await pc.setRemoteDescription({ type: "offer", sdp: msg.data });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      if (pcs.get(peer) === pc) send(peer, "answer", pc.localDescription.sdp);
    } else if (msg.kind === "answer") {
      const pc = pcs.get(peer);
      if (pc) await pc.setRemoteDescription({ type: "answer", sdp: msg.data });
    }
  };
  const guard = (p, what) => p.catch((e) => say(`${what}: ${e && e.message ? e.message : e}`, true));

  // -- buttons -----------------------------------------------------------------------
  join.addEventListener("click", async () => {
    error = ""; note = "";
    try {
      local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
    } catch (e) {
      local = null; // join receive-only, and say why
      const why = e && e.name === "NotAllowedError" ? "no camera/microphone permission"
        : e && e.name === "NotFoundError" ? "no camera or microphone found" : `camera unavailable (${e && e.name})`;
      error = why.startsWith("no camera") ? `${why}: you can see and hear others, they cannot see you` : why;
    }
    model.send({ t: "join" });
    draw();
  });
  leave.addEventListener("click", () => {
    for (const p of [...pcs.keys()]) hangup(p);
    if (local) for (const t of local.getTracks()) t.stop();
    if (shared) shared.stop();
    local = null; shared = null; error = ""; note = "";
    model.send({ t: "leave" });
    draw();
  });
  const toggle = (kind) => {
    if (!local) return;
    for (const t of local.getTracks()) if (t.kind === kind) t.enabled = !t.enabled;
    draw();
  };
  mic.addEventListener("click", () => toggle("audio"));
  cam.addEventListener("click", () => toggle("video"));
  const useVideo = (track) => {
    for (const pc of pcs.values())
      for (const s of pc.getSenders()) if (s.track && s.track.kind === "video") s.replaceTrack(track);
  };
  screen.addEventListener("click", async () => {
    if (shared) {
      shared.stop(); shared = null;
      useVideo(local ? local.getVideoTracks()[0] || null : null);
      draw();
      return;
    }
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
      shared = s.getVideoTracks()[0];
      shared.addEventListener("ended", () => { shared = null; useVideo(local ? local.getVideoTracks()[0] || null : null); draw(); });
      useVideo(shared);
    } catch (e) {
      say(`screen share unavailable (${e && e.name})`);
    }
    draw();
  });

  const stop = connect(model, {
    onSnapshot: (msg) => { state = msg; draw(); },
    onDeltas: (ops) => {
      const before = new Map(state.participants.map((p) => [p.id, p.name]));
      state = ops[ops.length - 1]; // each delta is the whole state
      const now = new Set(state.participants.map((p) => p.id));
      for (const [id, name] of before) if (!now.has(id)) { hangup(id); note = `${name} left`; }
      draw();
    },
    onOther: (msg) => {
      if (msg.t === "offer-to") guard(offerTo(msg.peer), "offer");
      else if (msg.t === "signal") guard(onSignal(msg), msg.kind);
      else if (msg.t === "hangup") {
        const who = nameOf(msg.peer);
        hangup(msg.peer);
        note = msg.reason === "rejoined" ? "" : `${who} ${msg.reason === "left" ? "left" : "went away"}`;
        draw();
      } else if (msg.t === "full") {
        for (const p of [...pcs.keys()]) hangup(p);
        if (local) for (const t of local.getTracks()) t.stop();
        local = null;
        draw();
      } else if (msg.t === "error") say(msg.error, true);
    },
  });
  draw();
  return () => {
    stop();
    for (const p of [...pcs.keys()]) hangup(p);
    if (local) for (const t of local.getTracks()) t.stop();
  };
}

export default { render };
