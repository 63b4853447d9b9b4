"""`%own` commands about documents and shared cells: docs, new, open, invite, join,
export, cells, pull."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

from ownkernel.kernel import cells
from ownkernel.kernel.display import Message, Table, ago
from ownkernel.kernel.magics_base import JOIN_TIMEOUT, MagicsBase, command_parser, doc_listing

# DOC arguments: `%own open my notes` and `%own open "my notes"` are the same.
_TITLE: tuple[str, dict[str, Any]] = ("doc", {"metavar": "DOC", "nargs": "+"})


class DocCommands(MagicsBase):
    """%own docs, new, open, invite, join, export, cells, pull."""

    def _cmd_docs(self, args: list[str]) -> Table:
        command_parser("docs").parse_args(args)
        node = self._node()
        rows = []
        for d in cells.iter_docs(node):
            rows.append([cells.doc_title(d) or "(untitled)", cells.doc_id(d)[:12]])
        return Table(["title", "id"], rows, title="documents",
                     empty="no documents (%own new TITLE)")

    def _cmd_new(self, args: list[str]) -> Any:
        if not args:
            raise UsageError("%own new: a TITLE is required (usage: %own new TITLE)")
        return self._node().new_doc(title=" ".join(args))

    def _cmd_open(self, args: list[str]) -> Any:
        ns = command_parser("open", _TITLE).parse_args(args)
        return self._doc(" ".join(ns.doc))

    def _cmd_invite(self, args: list[str]) -> Message:
        p = command_parser("invite", _TITLE)
        p.add_argument("--read", action="store_true", help="read-only access")
        ns = p.parse_args(args)
        doc = self._doc(" ".join(ns.doc))
        token = self._node().invite(doc, write=not ns.read)
        return Message(str(token), "invite (read-only): " if ns.read else "invite: ")

    def _cmd_join(self, args: list[str]) -> Any:
        p = command_parser("join", ("token", {"metavar": "TOKEN"}))
        p.add_argument("--timeout", type=float, default=JOIN_TIMEOUT, metavar="S")
        p.add_argument("--no-wait", action="store_true")
        ns = p.parse_args(args)
        node = self._node()
        networked = getattr(node, "network", None) is not None
        try:
            doc = node.join(ns.token, timeout=0)  # records the grant and starts fetching
        except (ValueError, PermissionError) as exc:
            raise UsageError(f"%own join: {' '.join(str(exc).split())}") from None
        if networked and not ns.no_wait and not _has_content(node, doc):
            # Wait for the content so the next cell (`%own pull`, reading the
            # text) sees it; join() again is a no-op that does the waiting.
            try:
                node.join(ns.token, timeout=ns.timeout, strict=True)
            except TimeoutError:
                raise UsageError(
                    f"%own join: joined {cells.doc_id(doc)[:12]} but its content did not "
                    f"arrive within {ns.timeout:g} s (is a peer that has it online?); it will "
                    f"sync in the background: %own open {cells.doc_id(doc)[:12]} later"
                ) from None
        room = _room_of(node, doc)
        if room is not None:
            self._room = room
            return room
        if cells.is_cell(doc):
            name = cells.cell_info(doc)["name"]
            print(f"shared cell {name!r}: `%own pull {shlex.quote(name)}` puts its source "
                  "into the next cell")
        return doc

    def _cmd_export(self, args: list[str]) -> Message:
        p = command_parser("export", _TITLE, ("format", {"metavar": "FORMAT"}),
                    ("path", {"metavar": "PATH"}))
        ns = p.parse_args(args)
        doc = self._doc(" ".join(ns.doc))
        data = doc.export(ns.format)
        path = Path(ns.path).expanduser()
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
            size = len(data.encode("utf-8"))
        else:
            path.write_bytes(bytes(data))
            size = len(data)
        return Message(str(path), f"wrote {size} bytes ({ns.format}) to ")
    def _cmd_cells(self, args: list[str]) -> Table:
        command_parser("cells").parse_args(args)
        rows = [
            [c["name"], c["id"][:12], c["lines"], c["by"], ago(c["at"]),
             "yes" if c["output"] else "no"]
            for c in cells.list_cells(self._node())
        ]
        return Table(["name", "doc", "lines", "last changed by", "when", "output"], rows,
                     title="shared cells", empty="no shared cells (%%shared NAME)")

    def _cmd_pull(self, args: list[str]) -> None:
        ns = command_parser("pull", ("name", {"metavar": "NAME", "nargs": "+"})).parse_args(args)
        ns.name = " ".join(ns.name)
        node = self._node()
        try:
            doc = cells.find_cell(node, ns.name)
        except cells.DocNotFound as exc:
            raise UsageError(doc_listing(node, ns.name, exc, cells_only=True)) from None
        if doc is None:
            raise UsageError(f"%own pull: no shared cell named {ns.name!r} (see %own cells)")
        source = cells.cell_source(doc)
        # The front-end puts this in a new cell below (or replaces the prompt
        # in a terminal); %%shared first, so running it stores edits again.
        header = f"%%shared {shlex.quote(ns.name)}"
        if cells.cell_output(doc) is not None:
            header += " --with-output"
            print(f"shared output of {ns.name}:\n{cells.cell_output(doc)}")
        assert self.shell is not None
        self.shell.set_next_input(f"{header}\n{source}", replace=False)

def _room_of(node: Any, doc: Any) -> Any:
    """The workshop room ``doc`` is, or None (then %own join shows the plain doc)."""
    from ownkernel.apps.workshop import Room, is_room

    return Room(node, doc) if is_room(doc) else None

def _has_content(node: Any, doc: Any) -> bool:
    """True if `doc` holds changes from another node, or is our own (nothing to fetch)."""
    me = getattr(node, "id", None)
    if getattr(doc, "owner", None) == me:
        return True
    try:
        version = getattr(doc, "version", None) or {}
    except PermissionError:  # content we hold no key for: waiting would not help
        return True
    return any(actor != me for actor in version)
