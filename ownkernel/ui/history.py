"""The history widget (``ui.history(doc)``, issue #12 §2).

A timeline of a document's changes by author with a slider: moving it shows
the document as it was at that step — texts with what that step inserted
and deleted marked, sheets as values, other roots as plain values — and
"restore this version" makes ONE new change that brings that content back
(``DocHandle.restore``; nothing is rewritten, undo takes it back). "Blame"
colours the text by who wrote each character (author name and colour).

A step is one change, or a run of consecutive changes by one author within
``GROUP_SPAN`` seconds of the step's first (typing makes one change per
keystroke: nobody wants to walk a thousand steps). Changes without a time
(a bare Doc's) are grouped by count instead, so that there are at most
about ``MAX_STEPS`` steps. Everything the page shows is
computed here from ``handle.history()`` / ``handle.at()``; each state is
sent whole (numbered like any delta of base.py) since it replaces the last.

Browser -> Python: ``{"t": "select", "i": n}``, ``{"t": "restore", "i": n}``,
``{"t": "blame", "on": bool}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from difflib import SequenceMatcher
from typing import Any

import traitlets

from ownkernel.crdt.history import summarize
from ownkernel.ui.base import STATIC, LiveWidget, colour_of
from ownkernel.ui.docview import _names

__all__ = ["History", "history_steps", "step_view"]

GROUP_SPAN = 60.0  # seconds of one author's consecutive changes shown as one step
MAX_STEPS = 2000  # changes without times are grouped by count down to about this
DIFF_LIMIT = 20_000  # characters: above, the diff is one changed region (linear)
REFRESH_DELAY = 0.3  # seconds: a burst of edits (typing) costs one refresh, and
REFRESH_SHARE = 0.2  # at most about this share of a core goes to refreshing a big history
VIEW_CACHE = 4  # views at() kept per widget


def history_steps(handle: Any) -> list[dict[str, Any]]:
    """The timeline: ``[{"author", "time", "summary", "version", "changes"}]``, oldest first."""
    crdt = handle.crdt
    steps: list[dict[str, Any]] = []
    ops_of: list[list[Any]] = []
    hist = handle.history()
    per_step = -(-len(hist) // MAX_STEPS)  # for changes without a time
    for e in hist:
        a = crdt._aidx[e.actor]
        lo, hi = crdt._change_range(a, e.seq)
        ops = crdt._ops_in(a, lo, hi)
        last = steps[-1] if steps else None
        marked = e.summary.startswith(("undo:", "redo:"))
        if last is None or marked or last["marked"] or last["author"] != e.actor:
            same = False
        elif e.time is not None and last["start"] is not None:
            same = e.time - last["start"] < GROUP_SPAN
        else:
            same = e.time is None and last["start"] is None and last["changes"] < per_step
        if same:
            last.update(time=e.time, version=e.version, changes=last["changes"] + 1)
            ops_of[-1].extend(ops)
            continue
        steps.append({"author": e.actor, "time": e.time, "start": e.time, "version": e.version,
                      "changes": 1, "marked": marked, "summary": e.summary})
        ops_of.append(list(ops))
    for s, ops in zip(steps, ops_of):
        if s["changes"] > 1:
            s["summary"] = summarize(ops)
        del s["marked"], s["start"]
    return steps


def _jsonable(v: Any) -> Any:
    """Values as JSON can carry them (bytes shown as hex, keys as text)."""
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _opcodes(a: str, b: str) -> list[tuple[str, int, int, int, int]]:
    if len(a) + len(b) <= DIFF_LIMIT:
        return SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    p = 0  # long texts: the common prefix and suffix, one region between
    m = min(len(a), len(b))
    while p < m and a[p] == b[p]:
        p += 1
    s = 0
    while s < m - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    out = [("equal", 0, p, 0, p)] if p else []
    if p < len(a) - s or p < len(b) - s:
        out.append(("replace", p, len(a) - s, p, len(b) - s))
    if s:
        out.append(("equal", len(a) - s, len(a), len(b) - s, len(b)))
    return out


def _authors(blame: list[tuple[int, int, bytes]], lo: int, hi: int) -> list[tuple[int, int, str]]:
    """The blame spans cut to [lo, hi), actors as hex."""
    out = []
    for s, e, actor in blame:
        a, b = max(s, lo), min(e, hi)
        if a < b:
            out.append((a, b, actor.hex()))
    return out or [(lo, hi, "")]


def text_segments(before: Any, after: Any, name: str) -> list[list[Any]]:
    """``[[kind, text, author hex], ...]`` of text ``name`` from view ``before`` to
    ``after``: kind "=" kept, "+" inserted, "-" deleted (author: who wrote it)."""
    old, new = before.text(name), after.text(name)
    bo = before._d.text(name).blame() if before._has("t:" + name) else []
    bn = after._d.text(name).blame() if after._has("t:" + name) else []
    segs: list[list[Any]] = []
    for tag, i1, i2, j1, j2 in _opcodes(old, new):
        if tag in ("replace", "delete"):
            segs += [["-", old[a:b], who] for a, b, who in _authors(bo, i1, i2)]
        if tag in ("replace", "insert", "equal"):
            kind = "=" if tag == "equal" else "+"
            segs += [[kind, new[a:b], who] for a, b, who in _authors(bn, j1, j2)]
    return [s for s in segs if s[1]]


def step_view(handle: Any, steps: list[dict[str, Any]], i: int,
              cache: dict[Any, Any] | None = None) -> dict[str, Any]:
    """What step ``i`` shows: every user root as it was, texts with marks.
    ``cache`` (a dict the caller keeps) holds the last few views: moving the
    slider by one step, or a new step arriving, then costs one replay, not two."""

    def at(version: dict[bytes, int]) -> Any:
        if cache is None:
            return handle.at(version)
        key = frozenset(version.items())
        v = cache.pop(key, None)
        if v is None:
            v = handle.at(version)
        cache[key] = v  # most recent last
        while len(cache) > VIEW_CACHE:
            del cache[next(iter(cache))]
        return v

    after = at(steps[i]["version"])
    before = at(steps[i - 1]["version"] if i else {})
    roots = []
    for key in sorted(set(after._d.roots()) | set(before._d.roots())):
        kind, name = key[0], key[2:]
        if name.startswith("_"):
            continue  # the access list and the history marks are no content
        r: dict[str, Any] = {"name": name, "kind": {"t": "text", "l": "list", "m": "map",
                             "n": "counter", "g": "log", "s": "sheet"}[kind]}
        if kind == "t":
            r["segs"] = text_segments(before, after, name)
        elif kind == "s":
            r["rows"] = _jsonable(after.sheet_values(name))
            r["was"] = _jsonable(before.sheet_values(name))
        else:
            read = {"l": after.list, "m": after.map, "n": after.counter, "g": after.log}[kind]
            r["value"] = json.dumps(_jsonable(read(name)), ensure_ascii=False)
        roots.append(r)
    return {"i": i, "roots": roots}


class History(LiveWidget):
    """Timeline, slider, the doc at the chosen step, blame and restore; live."""

    _esm = STATIC / "history.js"
    doc_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, handle: Any) -> None:
        if not hasattr(handle, "history") or not hasattr(handle, "restore"):
            raise TypeError(f"ui.history needs a DocHandle, not {type(handle).__name__}")
        super().__init__(handle.node, kind="history", doc_id=handle.id.hex())
        self._handle = handle
        self._steps: list[dict[str, Any]] = []
        self._sel: int | None = None  # None: follow the latest step
        self._blame = False
        self._due = False
        self._cost = 0.0  # CPU seconds of the last state computed
        self._views: dict[Any, Any] = {}
        self._off: list[Any] = []
        try:
            self._off.append(handle.node.on("doc_changed", self._changed))
        except RuntimeError:  # no network: refreshed on every message instead
            pass

    def _state(self) -> dict[str, Any]:
        t0 = time.process_time()
        try:
            return self._compute()
        finally:
            self._cost = time.process_time() - t0

    def _compute(self) -> dict[str, Any]:
        h = self._handle
        with h.node.lock:
            self._steps = steps = history_steps(h)
            names = _names(h.node)
            authors = {}
            for s in steps:
                a = s["author"]
                if a.hex() not in authors:
                    name, colour = names.get(a, (a.hex()[:8], colour_of(a)))
                    authors[a.hex()] = {"name": name, "color": colour, "me": a == h.node.id}
            n = len(steps)
            sel = n - 1 if self._sel is None or self._sel >= n else self._sel
            view = step_view(h, steps, sel, self._views) if n else {"i": -1, "roots": []}
            can_write = h.role in ("owner", "admin", "writer")
        entries = [{"author": s["author"].hex(), "time": s["time"], "summary": s["summary"],
                    "changes": s["changes"]} for s in steps]
        return {"entries": entries, "authors": authors, "sel": sel, "latest": self._sel is None,
                "view": view, "blame": self._blame, "can_write": can_write}

    def _snapshot(self) -> dict[str, Any]:
        return {"state": self._state()}

    def _changed(self, doc_id: bytes = b"", *_: Any) -> None:
        # each refresh replays the doc twice: coalesce a burst into one
        if (doc_id and doc_id != self._handle.id) or self._due:
            return
        self._due = True
        try:
            # a history of 100,000s of changes takes seconds to walk: wait
            # long enough that refreshing takes at most REFRESH_SHARE of a core
            delay = max(REFRESH_DELAY, self._cost / REFRESH_SHARE)
            asyncio.get_running_loop().call_later(delay, self._refresh)
        except RuntimeError:
            self._refresh()

    def _refresh(self) -> None:
        self._due = False
        if self._ready and not self._closed:
            self._push({"state": self._state()})

    def _step(self, content: dict[str, Any]) -> int:
        i = content.get("i")
        if type(i) is not int or not 0 <= i < len(self._steps):
            raise ValueError(f"no step {i!r:.20} in this history ({len(self._steps)} steps)")
        return i

    def _on_message(self, t: str, content: dict[str, Any]) -> None:
        if t == "select":
            i = self._step(content)
            self._sel = None if i == len(self._steps) - 1 else i
        elif t == "blame":
            self._blame = bool(content.get("on"))
        elif t == "restore":
            i = self._step(content)
            self._handle.restore(self._steps[i]["version"])
            self._sel = None  # show the new latest step: the restore itself
        else:
            raise ValueError(f"unknown message type {t!r}")
        self._push({"state": self._state()})

    def select(self, i: int) -> None:
        """Show step ``i`` (negative: from the end), as moving the slider does."""
        n = len(history_steps(self._handle))
        self._node.call_soon(self._receive, {"t": "select", "i": i % n if n else 0})

