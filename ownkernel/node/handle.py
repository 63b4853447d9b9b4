"""`DocHandle`: a document bound to its node.

The handle hands out thin proxies over the CRDT root objects. Each call on a
proxy runs under the node's lock and, outside ``doc.transaction()``, is
followed by ``node.replica.commit``: the change is stored durably (fsync) before the
call returns and only then announced to listeners. Proxies look the root up
again on every call, so they stay valid when the node reloads the document
(e.g. after a refused local change).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ownkernel.node.access import ACCESS_KEY
from ownkernel.store.identity import short_id

if TYPE_CHECKING:
    from ownkernel.crdt import Doc
    from ownkernel.node.node import Node

__all__ = ["DocHandle", "RootProxy"]

_KINDS = {"t": "text", "l": "list", "m": "map", "n": "counter", "g": "log", "s": "sheet"}
_ORDER = "tslmgn"  # export order: text first, counters last
_READ_ONLY = frozenset({"observe", "keys", "items", "values", "get", "to_dict", "to_list",
                        "messages", "ids", "has", "name", "blame"})


def _wrap(handle: DocHandle, value: Any) -> Any:
    # Sub-objects of the CRDT (anything bound to the doc) get a proxy too, so
    # mutations through them also auto-commit.
    if hasattr(value, "_doc") and type(value).__module__.startswith("ownkernel.crdt"):
        return RootProxy(handle, lambda v=value: v)
    return value


class RootProxy:
    """Forwards to a CRDT object; every method call auto-commits through the node."""

    __slots__ = ("_handle", "_get")

    def __init__(self, handle: DocHandle, get: Callable[[], Any]) -> None:
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_get", get)

    @property
    def handle(self) -> DocHandle:
        """The document this root belongs to (and through ``handle.node``, its node)."""
        return object.__getattribute__(self, "_handle")

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        h = self._handle
        with h._node.lock:
            h._check_open()
            try:
                result = fn(*args, **kw)
            finally:
                h._after_call()
        return _wrap(h, result)

    def __getattr__(self, name: str) -> Any:
        h = self._handle
        with h._node.lock:
            attr = getattr(self._get(), name)
        if not callable(attr) or name.startswith("_") or name in _READ_ONLY:
            return attr

        def method(*args: Any, **kw: Any) -> Any:
            return self._call(lambda: getattr(self._get(), name)(*args, **kw))

        method.__name__ = name
        method.__doc__ = getattr(attr, "__doc__", None)
        return method

    def __setattr__(self, name: str, value: Any) -> None:
        self._call(lambda: setattr(self._get(), name, value))

    # Dunder methods are looked up on the type, so forward them explicitly.
    def __setitem__(self, key: Any, value: Any) -> None:
        self._call(lambda: self._get().__setitem__(key, value))

    def __delitem__(self, key: Any) -> None:
        self._call(lambda: self._get().__delitem__(key))

    def __iadd__(self, other: Any) -> RootProxy:
        obj = self._get()
        if hasattr(obj, "increment"):
            self._call(lambda: self._get().increment(other))
        elif hasattr(obj, "insert") and isinstance(other, str):
            self._call(lambda: self._get().insert(len(self._get()), other))
        else:
            raise TypeError(f"+= is not supported on {type(obj).__name__}")
        return self

    def __isub__(self, other: Any) -> RootProxy:
        self._call(lambda: self._get().decrement(other))
        return self

    def _read(self, fn: Callable[[Any], Any]) -> Any:
        with self._handle._node.lock:
            return fn(self._get())

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._handle, self._read(lambda o: o[key]))

    def __len__(self) -> int:
        return self._read(len)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._read(lambda o: list(iter(o))))

    def __contains__(self, item: Any) -> bool:
        return self._read(lambda o: item in o)

    def __str__(self) -> str:
        return self._read(str)

    def __repr__(self) -> str:
        return self._read(repr)

    def __int__(self) -> int:
        return self._read(int)

    def __float__(self) -> float:
        return self._read(lambda o: float(o.value))

    def __bool__(self) -> bool:
        def b(o: Any) -> bool:
            try:
                return len(o) > 0
            except TypeError:
                return bool(getattr(o, "value", True))
        return self._read(b)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RootProxy):
            other = other._get()
        return self._read(lambda o: o == other)

    __hash__ = None  # type: ignore[assignment]


def _plain(key: str, obj: Any, evaluated: bool = False) -> Any:
    """CBOR-native value of a root (what export writes)."""
    t = key[0]
    if t == "t":
        return str(obj)
    if t == "l":
        return obj.to_list()
    if t == "m":
        return obj.to_dict()
    if t == "n":
        return obj.value
    if t == "g":
        return obj.messages()
    if t == "s":
        return _sheet_rows(obj, evaluated)
    return None


def _sheet_rows(sheet: Any, evaluated: bool) -> list[list[Any]]:
    # raws(): what was typed (formulas as text), for lossless json; values(): what a
    # spreadsheet shows, for csv/md/txt.
    return [list(r) for r in (sheet.values() if evaluated else sheet.raws())]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=_json_default)
    return str(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(v)).decode("ascii")}
    return str(v)


def _message(m: Any) -> str:
    if isinstance(m, dict) and "text" in m:
        who = m.get("author") or m.get("name") or m.get("from")
        return f"{_cell(who)}: {_cell(m['text'])}" if who else _cell(m["text"])
    return _cell(m)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


class DocHandle:
    """A document of a node: ``text/list/map/counter/log/sheet`` roots, auto-committed."""

    def __init__(self, node: Node, doc_id: bytes) -> None:
        self._node = node
        self.id = doc_id

    # -- identity ------------------------------------------------------------
    @property
    def node(self) -> Node:
        """The node that holds this document."""
        return self._node

    @property
    def hex(self) -> str:
        return self.id.hex()

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def title(self) -> str:
        return self._node._doc_title(self.id)

    @title.setter
    def title(self, value: str) -> None:
        self._node._set_title(self.id, value)

    @property
    def encrypted(self) -> bool:
        return self._node.replica.row(self.id).encrypted

    @property
    def owner(self) -> bytes:
        return self._node.replica.row(self.id).owner

    @property
    def received(self) -> bool:
        """Whether anything from another node is here: False for a doc joined a moment
        ago whose first sync has not landed yet (widgets show "syncing…"), True for
        one we own or have caught up with."""
        return self.owner == self._node.id or self._node._has_content(self.id)

    @property
    def role(self) -> str | None:
        """This node's role in the doc: owner, admin, writer, reader (or None)."""
        return self._node._role(self.id, self._node.id)

    @property
    def access(self) -> dict[str, Any]:
        return self._node._access_snapshot(self.id)

    @property
    def version(self) -> dict[bytes, int]:
        with self._node.lock:
            return dict(self._crdt().version)

    # -- history (crdt/undo.py; issue #12) -------------------------------------
    def history(self) -> list[Any]:
        """Every change, oldest first: ``.actor, .seq, .version, .time, .summary``
        (``.time``: the author node's wall clock, to the second, from the ``_time``
        mark a node adds to at most one change per second; None for authors
        whose changes carry none)."""
        with self._node.lock:
            return self._crdt().history()

    def at(self, version: dict[bytes, int]) -> Any:
        """A read-only view of the document as it was at ``version`` (see history())."""
        with self._node.lock:
            return self._crdt().at(version)

    def undo(self) -> bool:
        """Undo this node's latest change not undone yet, as a new change that is
        checked, stored and synced like any edit; others' later edits stay.
        False when there was nothing (left) to undo."""
        return self._invert("undo")

    def redo(self) -> bool:
        """Redo what the latest ``undo()`` undid (False if nothing)."""
        return self._invert("redo")

    def restore(self, version: dict[bytes, int]) -> bool:
        """Bring the content back as it was at ``version`` (see history()), as ONE
        new change checked, stored and synced like any edit: nothing is rewritten,
        and undo() takes it back. Logs and the access list are left as they are.
        False when the content already was like that."""
        from ownkernel.crdt.history import restore

        return self._apply_pending("restore", lambda crdt: restore(crdt, version))

    def comments(self) -> RootProxy:
        """Every comment thread of the doc (texts and sheet cells): ``.threads()``,
        ``.add_cell(sheet, "B2", text)``, ``.reply(tid, text)``, ``.resolve(tid)``;
        each write is a change committed like any edit (docs/history.md)."""
        from ownkernel.crdt.comments import Comments

        return RootProxy(self, lambda: Comments(self._crdt()))

    def can_undo(self) -> bool:
        with self._node.lock:
            return self._crdt().can_undo()

    def can_redo(self) -> bool:
        with self._node.lock:
            return self._crdt().can_redo()

    def _invert(self, which: str) -> bool:
        return self._apply_pending(which, lambda crdt: getattr(crdt, which)(commit=False))

    def _apply_pending(self, which: str, make: Callable[[Doc], Any]) -> bool:
        """Run ``make`` (it leaves its ops pending) and commit them as one change
        through the node's commit path; refused if they would touch the access list."""
        node = self._node
        with node.lock:
            self._check_open()
            od = node.replica.open(self.id)
            crdt = od.require_crdt()
            if od.txn:
                raise RuntimeError(f"{which}() inside a transaction block")
            if crdt.pending_ops:
                node.replica.commit(od)
            try:
                make(crdt)  # the new ops stay pending ...
            except BaseException:
                node.replica.reload(od)  # half-made ops: memory must equal disk
                raise
            if not crdt.pending_ops:
                return False
            if any(op[1] == ACCESS_KEY for op in crdt._pending):
                node.replica.reload(od)  # forget them: memory must equal disk
                raise PermissionError(
                    f"{which}(): the change it would invert edited the access list (a grant, "
                    f"revocation or the doc's creation); undo never changes who may access "
                    f"a document: use node.grant / node.revoke")
            node.replica.commit(od)  # ... and go through the node's commit path
            return True

    @property
    def crdt(self) -> Doc:
        """The underlying CRDT Doc: read from it freely; mutate only through the handle."""
        return self._crdt()

    def _crdt(self) -> Doc:
        return self._node.replica.open(self.id).require_crdt()

    def _check_open(self) -> None:
        self._node._check_open()

    def _after_call(self) -> None:
        od = self._node.replica.open(self.id)
        if od.txn == 0 and od.crdt is not None and od.crdt.pending_ops:
            self._node.replica.commit(od)

    # -- roots ---------------------------------------------------------------
    def _root(self, kind: str, name: str) -> RootProxy:
        if not isinstance(name, str) or not name:
            raise ValueError("root names are non-empty strings")
        with self._node.lock:
            getattr(self._crdt(), kind)(name)  # create now: fail early on bad names
        return RootProxy(self, lambda: getattr(self._crdt(), kind)(name))

    def text(self, name: str = "body") -> RootProxy:
        return self._root("text", name)

    def list(self, name: str) -> RootProxy:
        return self._root("list", name)

    def map(self, name: str) -> RootProxy:
        return self._root("map", name)

    def counter(self, name: str) -> RootProxy:
        return self._root("counter", name)

    def log(self, name: str = "chat") -> RootProxy:
        return self._root("log", name)

    def sheet(self, name: str = "sheet") -> RootProxy:
        return self._root("sheet", name)

    def roots(self) -> dict[str, str]:
        """``{name: kind}`` of the user roots (reserved ``_`` roots left out)."""
        with self._node.lock:
            keys = list(self._crdt().roots())
        return {k[2:]: _KINDS[k[0]] for k in keys if not k[2:].startswith("_")}

    @contextmanager
    def transaction(self) -> Iterator[DocHandle]:
        """All calls inside make one change, stored when the block exits.

        The node's lock is held for the block (other threads wait). If the block
        raises, the ops it made are still committed: the CRDT cannot un-apply
        them, and keeping memory and disk identical matters more.
        """
        node = self._node
        with node.lock:
            node._check_open()
            od = node.replica.open(self.id)
            od.require_crdt()
            od.txn += 1
            try:
                yield self
            finally:
                od.txn -= 1
                if od.txn == 0 and od.crdt is not None and od.crdt.pending_ops:
                    node.replica.commit(od)

    # -- export --------------------------------------------------------------
    def _values(self, evaluated: bool = True) -> list[tuple[str, str, Any]]:
        with self._node.lock:
            roots = self._crdt().roots()
            keys = sorted(roots, key=lambda k: (_ORDER.index(k[0]), k[2:]))
            return [(k[2:], _KINDS[k[0]], _plain(k, roots[k], evaluated)) for k in keys
                    if not k[2:].startswith("_")]

    def export(self, fmt: str = "md", root: str | None = None) -> str:
        """The doc in a plain format: ``md``, ``txt``, ``csv`` (a sheet or list) or ``json``."""
        values = self._values(evaluated=fmt != "json")
        if root is not None:
            values = [v for v in values if v[0] == root]
            if not values:
                raise KeyError(f"no root named {root!r}")
        if fmt == "json":
            return json.dumps(
                {"id": self.hex, "title": self.title,
                 "roots": {n: {"type": k, "value": v} for n, k, v in values}},
                ensure_ascii=False, indent=2, default=_json_default)
        if fmt == "csv":
            return self._csv(values)
        if fmt == "txt":
            parts = []
            for name, kind, v in values:
                body = _txt(kind, name, v)
                parts.append(body if len(values) == 1 else f"== {name} ==\n{body}")
            return "\n\n".join(parts) + ("\n" if parts else "")
        if fmt == "md":
            out = [f"# {self.title or self.short_id}", ""]
            for name, kind, v in values:
                out += [f"## {name}", "", _md(kind, name, v), ""]
            return "\n".join(out)
        raise ValueError(f"unknown export format {fmt!r}: use 'md', 'txt', 'csv' or 'json'")

    def _csv(self, values: list[tuple[str, str, Any]]) -> str:
        pick = ([v for v in values if v[1] == "sheet"]
                or [v for v in values if v[1] == "list"]
                or [v for v in values if v[1] == "map"])
        if not pick:
            raise ValueError("csv export needs a sheet, list or map root")
        _, kind, v = pick[0]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if kind == "map":
            rows: list[list[Any]] = [[k, x] for k, x in v.items()]
        elif kind == "list":
            rows = [list(x.values()) if isinstance(x, dict) else x if isinstance(x, list) else [x]
                    for x in v]
        else:
            rows = v
        for r in rows:
            w.writerow([_cell(c) for c in r])
        return buf.getvalue()

    def __repr__(self) -> str:
        try:
            title = self.title
        except Exception:
            title = "?"
        return f"<DocHandle {self.short_id} {title!r}>"

    def _repr_html_(self) -> str:
        from ownkernel.node.reprs import doc_html

        return doc_html(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DocHandle) and other.id == self.id and other._node is self._node

    def __hash__(self) -> int:
        return hash(self.id)


def _txt(kind: str, name: str, v: Any) -> str:
    if kind == "text":
        return v
    if kind == "list":
        return "\n".join(_cell(x) for x in v)
    if kind == "map":
        return "\n".join(f"{k}: {_cell(x)}" for k, x in v.items())
    if kind == "counter":
        return f"{name}: {v}"
    if kind == "log":
        return "\n".join(_message(m) for m in v)
    return "\n".join("\t".join(_cell(c) for c in r) for r in v)


def _md(kind: str, name: str, v: Any) -> str:
    if kind == "text":
        return v
    if kind == "list":
        return "\n".join(f"- {_cell(x)}" for x in v)
    if kind == "map":
        return "\n".join(f"- **{k}**: {_cell(x)}" for k, x in v.items())
    if kind == "counter":
        return f"**{v}**"
    if kind == "log":
        return "\n".join(f"- {_message(m)}" for m in v)
    if not v:
        return ""
    width = max(len(r) for r in v) or 1
    head = "| " + " | ".join(chr(65 + i) if i < 26 else str(i + 1) for i in range(width)) + " |"
    sep = "|" + "---|" * width
    rows = ["| " + " | ".join(_md_escape(_cell(c)) for c in list(r) + [None] * (width - len(r)))
            + " |" for r in v]
    return "\n".join([head, sep, *rows])
