// ui.editor(text): CodeMirror 6 bound to a text root through @codemirror/collab,
// with the kernel as the authority (see ownkernel/ui/editor.py).
import { ChangeSet, EditorSelection, EditorState, StateEffect, StateField } from "@codemirror/state";
import { Decoration, EditorView, WidgetType, drawSelection, keymap } from "@codemirror/view";
import { collab, getSyncedVersion, receiveUpdates, sendableUpdates } from "@codemirror/collab";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { defaultHighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { markdown } from "@codemirror/lang-markdown";
import { connect, h, syncingBadge } from "./common.js";
import { link } from "./channel.js";

const setCursors = StateEffect.define();
const setBlame = StateEffect.define();

class Caret extends WidgetType {
  constructor(name, color) {
    super();
    this.name = name;
    this.color = color;
  }
  eq(o) {
    return o.name === this.name && o.color === this.color;
  }
  toDOM() {
    const caret = document.createElement("span");
    caret.className = "cm-own-caret";
    caret.setAttribute("data-own", "remote-cursor");
    caret.style.borderLeft = `2px solid ${this.color}`;
    const label = document.createElement("span");
    label.className = "cm-own-caret-label";
    label.textContent = this.name;
    label.style.background = this.color;
    caret.append(label);
    return caret;
  }
  ignoreEvent() {
    return true;
  }
}

// Remote cursors stay where they were as the text changes: map them.
const cursorField = StateField.define({
  create: () => Decoration.none,
  update(deco, tr) {
    deco = deco.map(tr.changes);
    for (const e of tr.effects) if (e.is(setCursors)) deco = e.value;
    return deco;
  },
  provide: (f) => EditorView.decorations.from(f),
});

function cursorDecorations(list, len) {
  const ranges = [];
  for (const c of list || []) {
    const a = Math.min(c.anchor, len), head = Math.min(c.head, len);
    if (a !== head) {
      ranges.push(Decoration.mark({
        class: "cm-own-remote-selection",
        attributes: { style: `background-color: ${c.color}33` },
      }).range(Math.min(a, head), Math.max(a, head)));
    }
    ranges.push(Decoration.widget({ widget: new Caret(c.name, c.color), side: 1 }).range(head));
  }
  return Decoration.set(ranges, true);
}

// Blame: who wrote each character, as marks (issue #12 §2). Like the cursors,
// mapped through later edits until the kernel sends the next ranges.
const blameField = StateField.define({
  create: () => Decoration.none,
  update(deco, tr) {
    deco = deco.map(tr.changes);
    for (const e of tr.effects) if (e.is(setBlame)) deco = e.value;
    return deco;
  },
  provide: (f) => EditorView.decorations.from(f),
});

// Comment anchors (issue #12 §3), mapped through edits like the blame marks.
const setComments = StateEffect.define();
const commentField = StateField.define({
  create: () => Decoration.none,
  update(deco, tr) {
    deco = deco.map(tr.changes);
    for (const e of tr.effects) if (e.is(setComments)) deco = e.value;
    return deco;
  },
  provide: (f) => EditorView.decorations.from(f),
});

function commentDecorations(threads, len) {
  const marks = [];
  for (const t of threads || []) {
    if (t.resolved || t.from == null || t.to == null) continue;
    const a = Math.min(t.from, len), b = Math.min(t.to, len);
    if (a >= b) continue;
    marks.push(Decoration.mark({
      class: "cm-own-comment",
      attributes: { "data-own-comment": t.id, title: `${t.name}: ${t.text}` },
    }).range(a, b));
  }
  return Decoration.set(marks, true);
}

function blameDecorations(ranges, len) {
  if (!ranges) return Decoration.none;
  const marks = [];
  for (const [from, to, color, name] of ranges) {
    const a = Math.min(from, len), b = Math.min(to, len);
    if (a >= b) continue;
    marks.push(Decoration.mark({
      class: "cm-own-blame",
      attributes: { style: `background-color: ${color}26; border-bottom: 2px solid ${color}`,
        "data-own-blame": name, title: name },
    }).range(a, b));
  }
  return Decoration.set(marks, true);
}

// Only "\n" separates lines, so a position means the same on both sides; a
// pasted "\r\n" or "\r" becomes "\n" before it enters the document.
const normaliseLineEnds = EditorState.transactionFilter.of((tr) => {
  if (!tr.docChanged) return tr;
  let crlf = false;
  tr.changes.iterChanges((_fa, _ta, _fb, _tb, ins) => {
    if (ins.toString().includes("\r")) crlf = true;
  });
  if (!crlf) return tr;
  const changes = [];
  tr.changes.iterChanges((fa, ta, _fb, _tb, ins) => {
    changes.push({ from: fa, to: ta, insert: ins.toString().replace(/\r\n?/g, "\n") });
  });
  const cs = ChangeSet.of(changes, tr.startState.doc.length, "\n");
  return {
    changes: cs,
    selection: EditorSelection.cursor(cs.mapPos(tr.startState.selection.main.head, 1)),
    userEvent: "input.paste",
  };
});

const theme = EditorView.theme({
  "&": { fontSize: "14px", background: "#fff" },
  // room above the first line for a remote caret's name label
  ".cm-content": { minHeight: "3.5em", paddingTop: "1.1em", fontFamily: "ui-monospace, monospace", color: "#1a1a1a" },
  ".cm-own-blame": { paddingBottom: "1px" },
  ".cm-own-comment": { backgroundColor: "#ffe58f88", borderBottom: "2px dotted #d4a017" },
  ".cm-own-caret": { position: "relative", marginLeft: "-1px", marginRight: "-1px" },
  ".cm-own-caret-label": {
    position: "absolute", top: "-1.35em", left: "-2px", fontSize: "10px", color: "#fff",
    padding: "0 3px", borderRadius: "3px", whiteSpace: "nowrap", fontFamily: "sans-serif",
    pointerEvents: "none",
  },
});

function render({ model, el }) {
  syncingBadge(model, el);
  el.setAttribute("data-own-widget", "editor");
  el.setAttribute("data-lm-suppress-shortcuts", "true"); // keys are ours, not JupyterLab's
  el.setAttribute("data-own-root", model.get("root"));
  // the frame is on our element: JupyterLab's styles reset borders of .cm-editor
  Object.assign(el.style, { border: "1px solid #c8c8c8", borderRadius: "4px", overflow: "hidden" });
  let view = null;
  let selTimer = null;
  // blame ranges wait here until the view has the version they describe
  let pendingBlame = null;
  const blameBtn = h("button", {
    className: "own-editor-blame", title: "colour the text by who wrote it",
    style: { font: "11px sans-serif", padding: "1px 8px", cursor: "pointer", border: "1px solid #c8c8c8", borderRadius: "3px" },
  }, "blame");
  blameBtn.setAttribute("data-own", "editor-blame");
  const showPressed = () => {
    const on = !!model.get("blame");
    blameBtn.setAttribute("aria-pressed", String(on));
    blameBtn.style.background = on ? "#dde8f7" : "#fff";
  };
  showPressed();
  model.on("change:blame", showPressed);
  blameBtn.addEventListener("click", () => model.send({ t: "blame", on: !model.get("blame") }));
  el.append(h("div", {
    className: "own-editor-bar",
    style: { display: "flex", justifyContent: "flex-end", padding: "2px 4px", background: "#f7f7f7", borderBottom: "1px solid #e4e4e4" },
  }, blameBtn));
  // the margin: the text's comment threads (replies and resolving are in ui.comments)
  const margin = h("div", {
    className: "own-editor-margin",
    style: { width: "34%", maxWidth: "280px", borderLeft: "1px solid #e4e4e4", background: "#fafafa",
      font: "12px sans-serif", color: "#1a1a1a", overflowY: "auto", display: "none" },
  });
  margin.setAttribute("data-own", "editor-margin");
  const main = h("div", { style: { flex: "1", minWidth: "0" } });
  el.append(h("div", { style: { display: "flex", alignItems: "stretch" } }, main, margin));
  let pendingComments = null;
  const showThreads = (threads) => {
    margin.replaceChildren(...threads.map((t) => {
      const head = h("div", {}, h("b", { style: { color: t.color } }, t.name), ": ", t.text);
      const quote = h("div", { style: { color: "#666", fontStyle: "italic" } }, t.quote ? `“${t.quote}”` : "(text deleted)");
      const box = h("div", {
        style: { padding: "4px 6px", borderBottom: "1px solid #eee", opacity: t.resolved ? "0.5" : "1", cursor: "pointer" },
      }, quote, head, ...t.replies.map((r) => h("div", { style: { paddingLeft: "8px" } },
        h("b", { style: { color: r.color } }, r.name), ": ", r.text)));
      box.setAttribute("data-own", "editor-thread");
      box.setAttribute("data-own-thread", t.id);
      box.setAttribute("data-own-resolved", String(!!t.resolved));
      box.addEventListener("click", () => { // select the commented text
        if (!view) return;
        const m = view.contentDOM.querySelector(`[data-own-comment="${CSS.escape(t.id)}"]`);
        if (m) view.dispatch({ selection: { anchor: view.posAtDOM(m, 0) }, scrollIntoView: true });
      });
      return box;
    }));
    margin.style.display = threads.length ? "block" : "none";
  };
  const applyComments = () => {
    if (!view || !pendingComments || getSyncedVersion(view.state) !== pendingComments.v) return;
    view.dispatch({ effects: setComments.of(commentDecorations(pendingComments.threads, view.state.doc.length)) });
    showThreads(pendingComments.threads);
    pendingComments = null;
  };
  const applyBlame = () => {
    if (!view || !pendingBlame || getSyncedVersion(view.state) !== pendingBlame.v) return;
    view.dispatch({ effects: setBlame.of(blameDecorations(pendingBlame.ranges, view.state.doc.length)) });
    el.setAttribute("data-own-blame-on", pendingBlame.ranges ? "true" : "false");
    pendingBlame = null;
  };
  // for tests and benchmarks: the whole text (the DOM holds only what is in view)
  el.ownText = () => (view ? view.state.doc.toString() : null);
  const clientID = Math.random().toString(36).slice(2, 10);

  // Pushes are pipelined: each local update is sent at once, without waiting
  // for the kernel to confirm the previous one. A push names the version we
  // had received (v), the snapshot we built on (g) and the number of its first
  // update (n); the kernel maps it through its replay of this client (its
  // "bridge", see ownkernel/ui/editor.py) over whatever it accepted meanwhile,
  // so it is never refused and we never resend. `pushed` counts our
  // unconfirmed updates already sent.
  let pushed = 0;
  let seq = 0;
  let gen = 0;
  // the road to the kernel: direct when it can, else the comm (channel.js). On a
  // switch, whatever the kernel has not confirmed goes again from its first
  // number: it may have been lost with the old road; the kernel skips copies.
  const chan = link(model, clientID, {
    version: () => (view ? getSyncedVersion(view.state) : -1),
    gen: () => gen,
    switched: () => {
      seq -= pushed;
      pushed = 0;
      push();
    },
  });
  el.ownChannel = chan; // for tests: its mode, and drop() to fail it
  const push = () => {
    if (!view) return;
    const ups = sendableUpdates(view.state);
    if (ups.length <= pushed) return;
    chan.send({
      t: "push",
      v: getSyncedVersion(view.state),
      c: clientID,
      g: gen,
      n: seq,
      updates: ups.slice(pushed).map((u) => ({ c: u.clientID, ch: u.changes.toJSON() })),
    });
    seq += ups.length - pushed;
    pushed = ups.length;
    // latency tracing (benchmarks/ui.py --trace): when the push left the page
    if (window.__ownTrace) window.__ownTrace.push(["push", view.state.doc.length, performance.timeOrigin + performance.now()]);
  };
  const sendSelection = () => {
    selTimer = null;
    if (!view) return;
    if (sendableUpdates(view.state).length) { // positions the kernel can't place yet
      selTimer = setTimeout(sendSelection, 100);
      return;
    }
    const { anchor, head } = view.state.selection.main;
    chan.send({ t: "sel", v: getSyncedVersion(view.state), anchor, head });
  };

  const makeState = (text, version) => EditorState.create({
    doc: text,
    extensions: [
      EditorState.lineSeparator.of("\n"),
      normaliseLineEnds,
      collab({ startVersion: version, clientID }),
      history(),
      drawSelection(),
      keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      model.get("language") === "markdown" ? markdown() : [],
      EditorView.lineWrapping,
      cursorField,
      blameField,
      commentField,
      theme,
      EditorView.updateListener.of((u) => {
        if (u.docChanged) push(); // a no-op when nothing of ours is unconfirmed
        if ((u.selectionSet || u.docChanged) && u.view.hasFocus) {
          // once typing pauses: peers map our caret through our edits meanwhile
          if (selTimer) clearTimeout(selTimer);
          selTimer = setTimeout(sendSelection, 150);
        }
      }),
    ],
  });

  const fail = (err) => {
    console.error("ownkernel editor:", err);
    chan.send({ t: "resync", v: -1 }); // start over from a snapshot
  };

  const stop = connect(chan, {
    onSnapshot(msg) {
      const state = makeState(msg.text, msg.v);
      if (view) {
        const head = Math.min(view.state.selection.main.head, state.doc.length);
        view.setState(state);
        view.dispatch({ selection: { anchor: head } });
      } else {
        view = new EditorView({ state, parent: main });
      }
      view.dispatch({ effects: setCursors.of(cursorDecorations(msg.cursors, view.state.doc.length)) });
      gen = msg.g;
      seq = 0;
      pushed = 0;
      applyBlame();
      applyComments();
    },
    onDeltas: Object.assign((ops, _from, msg) => {
      try {
        // One receiveUpdates per update, chained, then one dispatch: the
        // kernel's bridge replays exactly this (composing a batch first can
        // order two inserts at one place differently), and the view still
        // redraws once per message.
        let state = view.state;
        const trs = [];
        for (const o of ops) {
          const tr = receiveUpdates(state, [{ changes: ChangeSet.fromJSON(o.ch), clientID: o.c }]);
          trs.push(tr);
          state = tr.state;
          if (o.c === clientID && pushed > 0) pushed--;
        }
        view.dispatch(trs);
        applyBlame();
        applyComments();
        if (window.__ownTrace) window.__ownTrace.push(["shown", view.state.doc.length, performance.timeOrigin + performance.now()]);
        // nothing of ours pending: the text must be as long as the kernel's
        if (typeof msg.n16 === "number" && !sendableUpdates(view.state).length
            && view.state.doc.length !== msg.n16) {
          throw new Error(`text is ${view.state.doc.length} units, the kernel has ${msg.n16}`);
        }
      } catch (err) {
        fail(err);
        return;
      }
      push();
    }, { version: () => (view ? getSyncedVersion(view.state) : -1) }),
    onOther(msg) {
      if (msg.t === "blame") {
        pendingBlame = msg;
        applyBlame();
      } else if (msg.t === "comments") {
        pendingComments = msg;
        applyComments();
      } else if (msg.t === "cursors" && view) {
        view.dispatch({ effects: setCursors.of(cursorDecorations(msg.cursors, view.state.doc.length)) });
      } else if (msg.t === "error") {
        console.warn("ownkernel:", msg.error);
      }
    },
  });
  return () => {
    stop();
    chan.close();
    if (selTimer) clearTimeout(selTimer);
    if (view) view.destroy();
  };
}

export default { render };
