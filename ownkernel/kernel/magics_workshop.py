"""`%own` commands of workshop mode: workshop rooms and simulated classmates
(ownkernel/apps)."""

from __future__ import annotations

from typing import Any

from ownkernel.kernel import cells
from ownkernel.kernel.display import Message
from ownkernel.kernel.magics_base import MagicsBase, command_parser


class WorkshopCommands(MagicsBase):
    """%own workshop, classmates: one room and one group of classmates per kernel."""

    def _cmd_workshop(self, args: list[str]) -> Any:
        from ownkernel.apps.workshop import workshop

        p = command_parser("workshop")
        p.add_argument("title", nargs="*", metavar="TITLE")
        p.add_argument("--classmates", type=int, default=0, metavar="N")
        p.add_argument("--seed", type=int, default=None, metavar="S")
        ns = p.parse_args(args)
        node = self._networked("workshop")
        room = workshop(node, " ".join(ns.title) or "workshop")
        self._room = room
        if ns.classmates:
            self._set_classmates(room.add_classmates(ns.classmates, seed=ns.seed))
        return room

    def _cmd_classmates(self, args: list[str]) -> Any:
        if args == ["stop"]:
            old = self._classmates
            self._set_classmates(None)
            return Message(f"{len(old.members)} classmates left" if old else
                           "no classmates were running", "classmates: ")
        p = command_parser("classmates", ("n", {"type": int, "metavar": "N"}))
        p.add_argument("--doc", default=None, metavar="DOC")
        p.add_argument("--seed", type=int, default=None, metavar="S")
        p.add_argument("--speed", type=float, default=1.0, metavar="X")
        ns = p.parse_args(args)
        node = self._networked("classmates")
        room = self._room
        if ns.doc is None and room is not None and room.is_host:
            self._set_classmates(room.add_classmates(ns.n, seed=ns.seed, speed=ns.speed))
            return self._classmates
        from ownkernel.apps.classmates import classmates

        doc = self._doc(ns.doc) if ns.doc else _doc_titled(node, "classmates")
        self._set_classmates(classmates(node, doc, n=ns.n, seed=ns.seed, speed=ns.speed))
        return self._classmates

    def _set_classmates(self, group: Any) -> None:
        # one group per kernel: starting new ones ends the old (a re-run cell must not
        # pile up processes)
        old = self._classmates
        if old is not None and old is not group:
            old.stop()
        self._classmates = group
def _doc_titled(node: Any, title: str) -> Any:
    """This node's doc titled ``title``, created if there is none (re-runs reuse it)."""
    for d in cells.iter_docs(node):
        if cells.doc_title(d) == title and getattr(d, "owner", None) == node.id:
            return d
    return node.new_doc(title=title)

