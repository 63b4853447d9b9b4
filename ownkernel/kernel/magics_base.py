"""What every `%own` command group shares: the command table (the single source for
help), argument parsing that fails with one UsageError line, and the node lookup.

The groups are mixins of :class:`ownkernel.kernel.magics.OwnMagics`:
``magics_node`` (node, peers, devices), ``magics_docs`` (documents, shared cells),
``magics_workshop`` (workshop rooms, classmates) and ``magics_shared`` (``%%shared``).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from IPython.core.error import UsageError

from ownkernel.kernel import cells
from ownkernel.kernel.nodehost import NodeHost, NodeUnavailable

# Seconds a cell waits for the network before answering. Bounded, so a cell
# never hangs on an unreachable peer; both keep going in the background.
CONNECT_TIMEOUT = 5.0
JOIN_TIMEOUT = 15.0

# (usage, one-line description) per subcommand; the single source for help.
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("", "node state, profile, id, address, peers and docs at a glance"),
    "whoami": ("", "this node's id, name and profile"),
    "peers": ("", "known peers: name, id, addresses, online, latency, last seen, route"),
    "connect": ("ADDR|TOKEN [--timeout S]",
                "connect to a peer's address (tcp://host:port#id) or an invite's inviter"),
    "docs": ("", "documents in this node"),
    "new": ("TITLE", "create a document (returns it)"),
    "open": ("DOC", "open a document by id, id prefix or title (returns it)"),
    "invite": ("DOC [--read]", "an invite token for DOC (write access unless --read)"),
    "join": ("TOKEN [--timeout S | --no-wait]",
             "join a document (or a workshop room) from an invite token and fetch it"),
    "export": ("DOC FORMAT PATH", "write DOC to PATH as md, txt, csv or json"),
    "log": ("[N]", "the last N (default 20) events: peers joining and leaving, remote edits"),
    "cells": ("", "shared cells: who changed them last and when"),
    "pull": ("NAME", "put the latest source of shared cell NAME into the next cell"),
    "name": ("[NAME] [--color #RRGGBB]", "show or set this node's display name (and colour)"),
    # -- users and devices (ownkernel/node/pairing.py, docs/auth.md) --
    "pair": ("[TOKEN]", "a one-time pairing token for another device; with TOKEN: become "
             "a device of that token's user"),
    "devices": ("", "the devices of this node's user: id, name, last seen, revoked"),
    "help": ("[COMMAND]", "this help, or one command's"),
    # -- workshop mode and simulated classmates (ownkernel/apps) --
    "workshop": ("[TITLE] [--classmates N] [--seed S]",
                 "a workshop room (chat, notes, sheet, slides): join token, QR code, widgets"),
    "classmates": ("N [--doc DOC] [--seed S] [--speed X] | stop",
                   "N simulated classmates type, chat, add rows (in the room, or DOC)"),
}

HELP = "\n".join(
    [
        "Your node, from the notebook. `node` is the Node object itself.",
        "",
        "Usage: %own COMMAND [ARGS]",
        "",
        *[f"  %own {(k + ' ' + u).strip():<26} {d}" if len(k + u) < 26
          else f"  %own {k} {u}\n  {'':<31} {d}" for k, (u, d) in COMMANDS.items()],
        "",
        "Collaborative cells:",
        "  %%shared NAME [--with-output]   store this cell's source in the shared cell NAME",
        "                                  (its own document; share it with %own invite NAME),",
        "                                  then run it. Output is shared only with --with-output.",
        "",
        "DOC is a document id, a unique id prefix (4+ characters) or a unique title.",
        "Sharing: `%own invite DOC` here, `%own join TOKEN` in the other notebook (a shared",
        "cell is a DOC named like the cell). Peers: `%own connect ADDR`, `%own peers`.",
    ]
)


class ArgParser(argparse.ArgumentParser):
    """argparse that reports errors as one UsageError line instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (usage: {self.format_usage().strip()[7:]})")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message.strip() if message else f"{self.prog}: stopped")


def command_parser(cmd: str, *args: tuple[str, dict[str, Any]]) -> ArgParser:
    p = ArgParser(prog=f"%own {cmd}", add_help=False, description=COMMANDS[cmd][1])
    for name, kw in args:
        p.add_argument(name, **kw)
    return p


class MagicsBase:
    """The state and lookups the command groups share (set up by ``OwnMagics``)."""

    host: NodeHost | None
    shell: Any
    _room: Any  # the workshop room of this kernel (%own workshop / join)
    _classmates: Any  # the running simulated classmates, if any

    def _node(self) -> Any:
        if self.host is None:
            raise UsageError("this kernel has no node (the %own magics need OwnKernel)")
        try:
            return self.host.wait()
        except NodeUnavailable as exc:
            raise UsageError(str(exc)) from None

    def _doc(self, ref: str) -> Any:
        node = self._node()
        try:
            return cells.find_doc(node, ref)
        except cells.DocNotFound as exc:
            raise UsageError(doc_listing(node, ref, exc, cells_only=False)) from None

    def _networked(self, cmd: str) -> Any:
        node = self._node()
        if not hasattr(node, "connect") or getattr(node, "network", None) is None:
            raise UsageError(f"%own {cmd}: this node has no networking (see %own status)")
        return node


def doc_listing(node: Any, ref: str, exc: Exception, cells_only: bool) -> str:
    """The error for a reference that matched several docs: each with id and author."""
    describe = getattr(node, "describe_docs", None)
    same = [d for d in cells.iter_docs(node) if cells.doc_title(d) == ref]
    if cells_only:
        same = [d for d in same if cells.is_cell(cells.find_doc(node, cells.doc_id(d)))]
    if len(same) < 2 or not callable(describe):
        return str(exc)
    ids = [getattr(d, "id", None) for d in same]
    text = str(describe([i for i in ids if isinstance(i, bytes)], ref))
    what = "%own pull" if cells_only else "%own open"
    return text.split(". Open one by id")[0] + f". Use an id: {what} {cells.doc_id(same[0])[:12]}"
