"""Collaborative cells and document look-up on top of the Node API.

A shared cell NAME is a document titled NAME whose map root `cell` marks it
as a cell and records who changed it last and when; its source is the text
root `source`. Being an ordinary document means every `%own` command (invite,
export, open) works on it, and sharing a cell is sharing that document.

Storing a new version of the source never replaces the text: the old and new
source are diffed (difflib) into character deletes and inserts, so two
notebooks editing different parts of the same cell concurrently both keep
their edits after merging.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "CELL_ROOT",
    "SOURCE_ROOT",
    "DocNotFound",
    "apply_text_diff",
    "cell_info",
    "doc_id",
    "doc_title",
    "find_cell",
    "find_doc",
    "iter_docs",
    "store_cell",
]

SOURCE_ROOT = "source"
OUTPUT_ROOT = "output"
CELL_ROOT = "cell"
# difflib is quadratic in the worst case; beyond this size fall back to a
# common prefix/suffix diff, still character ops, still merge-friendly.
DIFFLIB_LIMIT = 20_000
MAX_OUTPUT = 100_000


class DocNotFound(LookupError):
    """No document (or more than one) matches a reference; the message says which."""


def _id_text(value: Any) -> str:
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


def doc_id(doc: Any) -> str:
    """The id of a doc handle, an info record or a bare id, as text."""
    for attr in ("id", "doc_id"):
        value = getattr(doc, attr, None)
        if value is None and isinstance(doc, dict):
            value = doc.get(attr)
        if value is not None:
            return _id_text(value)
    return _id_text(doc)


def doc_title(doc: Any) -> str:
    value = getattr(doc, "title", None)
    if value is None and isinstance(doc, dict):
        value = doc.get("title")
    return "" if value is None else str(value)


def iter_docs(node: Any) -> Iterator[Any]:
    docs = node.docs
    yield from (docs() if callable(docs) else docs)


def _open(node: Any, item: Any) -> Any:
    # docs() may yield handles (have .text) or lightweight records/ids.
    if hasattr(item, "text") and hasattr(item, "transaction"):
        return item
    return node.open(getattr(item, "id", None) or (item.get("id") if isinstance(item, dict)
                                                     else item))


def find_doc(node: Any, ref: str) -> Any:
    """Open a doc by full id, unique id prefix (≥ 4 chars), or unique title."""
    items = list(iter_docs(node))
    ref_l = ref.lower()
    exact = [d for d in items if doc_id(d).lower() == ref_l]
    if exact:
        return _open(node, exact[0])
    if len(ref) >= 4:
        by_prefix = [d for d in items if doc_id(d).lower().startswith(ref_l)]
        if len(by_prefix) == 1:
            return _open(node, by_prefix[0])
        if len(by_prefix) > 1:
            raise DocNotFound(f"{ref!r} matches {len(by_prefix)} document ids; give more of it")
    by_title = [d for d in items if doc_title(d) == ref]
    if len(by_title) == 1:
        return _open(node, by_title[0])
    if by_title:
        ids = ", ".join(doc_id(d)[:12] for d in by_title)
        raise DocNotFound(f"{len(by_title)} documents are titled {ref!r} ({ids}); use an id")
    raise DocNotFound(f"no document matches {ref!r} (list them: %own docs, ownkernel status)")


def _map_get(m: Any, key: str, default: Any = None) -> Any:
    try:
        return m.get(key, default)
    except TypeError:  # a map whose get() takes no default
        value = m.get(key)
        return default if value is None else value


def _map_set(m: Any, key: str, value: Any) -> None:
    if hasattr(m, "__setitem__"):
        m[key] = value
    else:
        m.set(key, value)


def is_cell(doc: Any) -> bool:
    try:
        return _map_get(doc.map(CELL_ROOT), "name") is not None
    except Exception:  # noqa: BLE001 - a doc we can't read as a cell is not a cell
        return False


def find_cell(node: Any, name: str) -> Any | None:
    """The shared cell NAME: by id/prefix, else the unique cell doc titled NAME."""
    cells = []
    for item in iter_docs(node):
        if doc_id(item).lower() == name.lower() or doc_title(item) == name:
            doc = _open(node, item)
            if is_cell(doc):
                cells.append(doc)
    if len(cells) > 1:
        ids = ", ".join(doc_id(d)[:12] for d in cells)
        raise DocNotFound(f"{len(cells)} shared cells are named {name!r} ({ids}); use an id")
    if cells:
        return cells[0]
    if len(name) >= 4:
        try:
            doc = find_doc(node, name)
        except DocNotFound:
            return None
        return doc if is_cell(doc) else None
    return None


def apply_text_diff(text: Any, old: str, new: str) -> int:
    """Turn `old` into `new` in the CRDT text root with character deletes and inserts.

    Edits go from the end backwards so earlier positions stay valid. Returns
    the number of characters touched (0 when nothing changed).
    """
    if old == new:
        return 0
    if len(old) + len(new) > DIFFLIB_LIMIT:
        a = 0
        m = min(len(old), len(new))
        while a < m and old[a] == new[a]:
            a += 1
        b = 0
        while b < m - a and old[-1 - b] == new[-1 - b]:
            b += 1
        opcodes = [("replace", a, len(old) - b, a, len(new) - b)]
    else:
        # autojunk=False: the heuristic drops frequent characters (spaces!) in
        # long texts and would turn small edits into large rewrites.
        opcodes = difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
    touched = 0
    for tag, i1, i2, j1, j2 in reversed(opcodes):
        if tag == "equal":
            continue
        if i2 > i1:
            text.delete(i1, i2 - i1)
        if j2 > j1:
            text.insert(i1, new[j1:j2])
        touched += (i2 - i1) + (j2 - j1)
    return touched


def _who(node: Any) -> tuple[str, str]:
    short = getattr(node, "short_id", None) or _id_text(getattr(node, "id", "?"))[:12]
    return _id_text(short), str(getattr(node, "name", "") or "")


def store_cell(node: Any, name: str, source: str, output: str | None = None) -> tuple[Any, bool]:
    """Create or update the shared cell NAME; returns (doc, created)."""
    doc = find_cell(node, name)
    created = doc is None
    if doc is None:
        doc = node.new_doc(title=name)
    text = doc.text(SOURCE_ROOT)
    by, by_name = _who(node)
    # One transaction: one change to store, sign and send, whatever the diff size.
    with doc.transaction():
        changed = apply_text_diff(text, str(text), source)
        meta = doc.map(CELL_ROOT)
        if created:
            _map_set(meta, "name", name)
        if changed or created:
            _map_set(meta, "by", by)
            _map_set(meta, "by_name", by_name)
            _map_set(meta, "at", time.time())
        if output is not None:
            out = doc.text(OUTPUT_ROOT)
            apply_text_diff(out, str(out), output[:MAX_OUTPUT])
            _map_set(meta, "output_by", by)
            _map_set(meta, "output_at", time.time())
    return doc, created


def cell_source(doc: Any) -> str:
    return str(doc.text(SOURCE_ROOT))


def cell_output(doc: Any) -> str | None:
    meta = doc.map(CELL_ROOT)
    if _map_get(meta, "output_at") is None:
        return None
    return str(doc.text(OUTPUT_ROOT))


def cell_info(doc: Any) -> dict[str, Any]:
    meta = doc.map(CELL_ROOT)
    source = cell_source(doc)
    return {
        "name": _map_get(meta, "name") or doc_title(doc),
        "id": doc_id(doc),
        "lines": source.count("\n") + 1 if source else 0,
        "by": _map_get(meta, "by_name") or _map_get(meta, "by"),
        "at": _map_get(meta, "at"),
        "output": _map_get(meta, "output_at") is not None,
    }


def list_cells(node: Any) -> list[dict[str, Any]]:
    out = []
    for item in iter_docs(node):
        doc = _open(node, item)
        if is_cell(doc):
            out.append(cell_info(doc))
    out.sort(key=lambda c: -(c["at"] or 0))
    return out
