"""Records: list items with fields, reorderable, built from a List and a Map.

A to-do list needs two things a plain List lacks: editing one field of an item
(its text, its done mark) without rewriting the item, and moving an item.

* Fields live in a Map root ``_records:<name>`` under ``"<item id>.<field>"``:
  every field is its own last-writer-wins register, so concurrent edits to
  different fields of one item both survive (same field: the later write, by
  op id, wins as for any map key).
* The order is the List root ``<name>``: each element is ``{"id": ID, "at":
  [n, actor hex]}``, a *placement* of item ID. Moving deletes the placements
  the mover sees and inserts a new one with a stamp greater than every stamp
  it saw. Concurrent moves of one item leave one placement each; readers show
  the item once, at the placement with the greatest stamp (ties impossible:
  the actor breaks them). A move can only add a placement and deletes only
  placements it has seen, so an item with a placement never loses all of
  them to a concurrent move: no item is duplicated or lost.
* Deleting an item deletes its placements and sets its ``gone`` field, so a
  concurrent move (which re-inserts a placement) does not bring it back.

Elements of the list that are not placements (``doc.list("todo").append("milk")``
from before) show as items with their value as text and ids ``~<element
index>``; editing or moving one turns it into a record in place.

Pure like the rest of ``ownkernel.crdt``: callers pass ``by`` and ``when``
(the CRDT reads no clock); only new item ids come from ``os.urandom``. A
method's ops go into whatever change is open; group them with the node's
``handle.transaction()`` (or ``Doc.transaction()`` on a bare doc) — never
commit here, the node must see every commit.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .doc import Doc

__all__ = ["Records", "FIELDS"]

FIELDS = ("text", "done", "by", "when")  # what a widget shows; others may be stored too
MAX_FIELD = 64  # characters of a field name


def _placement(v: Any) -> tuple[str, list[Any]] | None:
    """(item id, stamp) of a list element that is a placement, else None."""
    if isinstance(v, dict) and isinstance(v.get("id"), str) and isinstance(v.get("at"), list):
        at = v["at"]
        if (len(at) == 2 and isinstance(at[0], int) and not isinstance(at[0], bool)
                and isinstance(at[1], str)):
            return v["id"], at
    return None


class Records:
    """Items of a to-do or any list of records, over ``doc.list(name)``."""

    def __init__(self, doc: Doc, name: str) -> None:
        self._doc = doc
        self.name = name
        self.order = doc.list(name)
        self.fields = doc.map("_records:" + name)

    # ------------------------------------------------------------------ reading
    def _layout(self) -> tuple[list[str], dict[str, int], dict[str, list[int]], int]:
        """Visible ids in order, each id's element position, every placement of
        each id, and the greatest stamp counter seen."""
        best: dict[str, tuple[list[Any], int]] = {}
        places: dict[str, list[int]] = {}
        top = 0
        gone = self._gone()
        for i, v in enumerate(self.order.to_list()):
            p = _placement(v)
            if p is None:
                iid = f"~{i}"
                best[iid] = ([-1, ""], i)
                places[iid] = [i]
                continue
            iid, at = p
            top = max(top, at[0])
            places.setdefault(iid, []).append(i)
            if iid not in best or at > best[iid][0]:
                best[iid] = (at, i)
        shown = sorted((pos, iid) for iid, (_, pos) in best.items() if iid not in gone)
        return [iid for _, iid in shown], {iid: pos for iid, (_, pos) in best.items()}, places, top

    def _gone(self) -> set[str]:
        return {k[:-5] for k, v in self.fields.items() if k.endswith(".gone") and v}

    def ids(self) -> list[str]:
        return self._layout()[0]

    def get(self, iid: str) -> dict[str, Any]:
        """The fields of one item (text, done, by, when, and any others)."""
        if iid.startswith("~"):
            v = self._legacy_value(iid)
            return {"text": v if isinstance(v, str) else repr(v), "done": False}
        prefix = iid + "."
        out: dict[str, Any] = {"text": "", "done": False}
        for k, v in self.fields.items():
            if k.startswith(prefix) and k != prefix + "gone":
                out[k[len(prefix):]] = v
        return out

    def items(self) -> list[dict[str, Any]]:
        """Every visible item in order: ``{"id": ..., "text": ..., "done": ..., ...}``."""
        ids = self._layout()[0]
        by_item: dict[str, dict[str, Any]] = {}
        for k, v in self.fields.items():
            iid, _, field = k.rpartition(".")
            if field != "gone":
                by_item.setdefault(iid, {})[field] = v
        out = []
        for iid in ids:
            if iid.startswith("~"):
                out.append({"id": iid, **self.get(iid)})
            else:
                out.append({"id": iid, "text": "", "done": False, **by_item.get(iid, {})})
        return out

    def __len__(self) -> int:
        return len(self._layout()[0])

    # ------------------------------------------------------------------ writing
    def _stamp(self, top: int) -> list[Any]:
        return [top + 1, self._doc.actor.hex()]

    def add(self, text: str, index: int | None = None, by: str | None = None,
            when: float | None = None, done: bool = False) -> str:
        """A new item at visible ``index`` (default: the end); returns its id."""
        if not isinstance(text, str):
            raise TypeError(f"an item's text is a str, not {type(text).__name__}")
        ids, pos, _, top = self._layout()
        iid = os.urandom(8).hex()
        at = self._position(ids, pos, len(ids) if index is None else index)
        self.order.insert(at, {"id": iid, "at": self._stamp(top)})
        self.fields.set(iid + ".text", text)
        self.fields.set(iid + ".done", bool(done))
        if by is not None:
            self.fields.set(iid + ".by", by)
        if when is not None:
            self.fields.set(iid + ".when", when)
        return iid

    def _position(self, ids: list[str], pos: dict[str, int], index: int) -> int:
        """The list position that puts an item at visible ``index``."""
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise IndexError(f"item position must be an int >= 0, not {index!r}")
        return pos[ids[index]] if index < len(ids) else len(self.order)

    def set(self, iid: str, field: str, value: Any) -> str:
        """Write one field of an item; returns its id (a legacy item gets a real one)."""
        if not isinstance(field, str) or not field or "." in field or len(field) > MAX_FIELD:
            raise ValueError(f"bad field name {field!r} (1-{MAX_FIELD} characters, no '.')")
        if field == "gone":
            raise ValueError("use delete() to delete an item")
        iid = self._require(iid)
        self.fields.set(f"{iid}.{field}", value)
        return iid

    def move(self, iid: str, index: int) -> str:
        """Move an item to visible ``index`` (counted without the item itself)."""
        iid = self._require(iid)
        ids, pos, places, top = self._layout()
        for p in sorted(places.get(iid, []), reverse=True):
            self.order.delete(p)
        ids, pos, _, _ = self._layout()
        at = self._position(ids, pos, min(index, len(ids)))
        self.order.insert(at, {"id": iid, "at": self._stamp(top)})
        return iid

    def delete(self, iid: str) -> None:
        iid = self._require(iid)
        _, _, places, _ = self._layout()
        for p in sorted(places.get(iid, []), reverse=True):
            self.order.delete(p)
        self.fields.set(iid + ".gone", True)

    def _require(self, iid: str) -> str:
        """The id of a visible item (a legacy element becomes a record in place)."""
        ids, pos, _, top = self._layout()
        if isinstance(iid, str) and iid in self._gone():
            raise KeyError(f"item {iid!r} of list {self.name!r} was deleted")
        if not isinstance(iid, str) or iid not in pos:
            raise KeyError(f"no item {iid!r} in list {self.name!r}")
        if not iid.startswith("~"):
            return iid
        v = self._legacy_value(iid)
        p = pos[iid]
        new = os.urandom(8).hex()
        self.order.delete(p)
        self.order.insert(p, {"id": new, "at": self._stamp(top)})
        self.fields.set(new + ".text", v if isinstance(v, str) else repr(v))
        self.fields.set(new + ".done", False)
        return new

    def _legacy_value(self, iid: str) -> Any:
        try:
            i = int(iid[1:])
            v = self.order[i]
        except (ValueError, IndexError):
            raise KeyError(f"no item {iid!r} in list {self.name!r}") from None
        if _placement(v) is not None:
            raise KeyError(f"no item {iid!r} in list {self.name!r}")
        return v
