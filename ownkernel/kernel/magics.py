"""`%own …` and `%%shared NAME`: the node from inside a notebook.

Every subcommand either returns something that displays well (HTML in a
notebook, aligned text in a terminal) or raises `UsageError` with one line
saying what went wrong — IPython shows that as a single `UsageError: …` line,
never a traceback, and stops a "run all" there.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.utils.capture import capture_output

from ownkernel.kernel import cells
from ownkernel.kernel.display import Fields, Message, Table, ago, fmt
from ownkernel.kernel.nodehost import NetEvent, NodeHost, NodeUnavailable

__all__ = ["HELP", "OwnMagics"]

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


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one UsageError line instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (usage: {self.format_usage().strip()[7:]})")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message.strip() if message else f"{self.prog}: stopped")


class _PairMessage(Message):
    """A pairing token with its QR code (a phone's notebook can scan it)."""

    def _repr_html_(self) -> str:
        import base64

        from ownkernel.apps.workshop import qr_png

        png = qr_png(self.text)
        img = "" if png is None else (
            '<br><img alt="QR code of the pairing token" style="width:220px;'
            'image-rendering:pixelated" src="data:image/png;base64,'
            + base64.b64encode(png).decode() + '">')
        return super()._repr_html_() + img


def _parser(cmd: str, *args: tuple[str, dict[str, Any]]) -> _Parser:
    p = _Parser(prog=f"%own {cmd}", add_help=False, description=COMMANDS[cmd][1])
    for name, kw in args:
        p.add_argument(name, **kw)
    return p


def _field(obj: Any, *names: str) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        value = getattr(obj, n, None)
        if value is not None:
            return value() if callable(value) and n in ("online",) else value
    return None


@magics_class
class OwnMagics(Magics):
    def __init__(self, shell: Any = None, host: NodeHost | None = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.host = host
        self._pending: dict[int, tuple[str, str]] = {}
        self._pending_id = 0
        self._room: Any = None  # the workshop room of this kernel (%own workshop / join)
        self._classmates: Any = None  # the running simulated classmates, if any
        if shell is not None:
            shell.input_transformers_cleanup.append(self._make_transformer())

    # -- helpers ----------------------------------------------------------------
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
            raise UsageError(_listing(node, ref, exc, cells_only=False)) from None

    # -- %own -------------------------------------------------------------------
    @line_magic
    def own(self, line: str) -> Any:
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%own: cannot parse arguments: {exc}") from None
        if not argv:
            return Message(HELP)
        cmd, rest = argv[0], argv[1:]
        if cmd == "--store-pending" and len(rest) == 1:  # written by the %%shared transformer
            return self._store_pending(rest[0])
        handler: Callable[[list[str]], Any] | None = getattr(self, f"_cmd_{cmd}", None)
        if cmd not in COMMANDS or handler is None:
            raise UsageError(f"%own: unknown command {cmd!r}; try %own help")
        try:
            return handler(rest)
        except (UsageError, KeyboardInterrupt):
            raise
        except NodeUnavailable as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - one readable line, not a traceback
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise UsageError(f"%own {cmd}: {text}") from None

    own.__doc__ = HELP

    def _cmd_help(self, args: list[str]) -> Message:
        if args and args[0] in COMMANDS:
            usage, desc = COMMANDS[args[0]]
            return Message(f"%own {args[0]} {usage}".rstrip() + f"\n    {desc}")
        if args:
            raise UsageError(f"%own help: unknown command {args[0]!r}")
        return Message(HELP)

    def _cmd_status(self, args: list[str]) -> Fields:
        _parser("status").parse_args(args)
        host = self.host
        if host is None:
            raise UsageError("this kernel has no node (the %own magics need OwnKernel)")
        s = host.settings
        pairs: list[tuple[str, Any]] = [("state", host.state)]
        if host.error:
            pairs.append(("problem", host.error))
        pairs.append(("profile", host.profile or s.profile))
        pairs.append(("profile dir", host.profile_dir or s.profile_dir()))
        node = host.node
        if node is not None:
            pairs += [("id", _field(node, "id")), ("name", _field(node, "name"))]
            networked = getattr(node, "network", None) is not None
            addrs = list(getattr(node, "addresses", None) or [])
            if not networked:
                pairs.append(("listening", "no (networking off)"))
            else:
                pairs.append(("listening", addrs or "no (dials out only)"))
            try:
                peers = _peer_list(node)
            except (RuntimeError, TimeoutError) as exc:
                # The status panel must show even when the network thread is stuck.
                peers = None
                pairs.append(("peers", f"unavailable: {exc or type(exc).__name__}"))
            if peers is None:
                if not any(k == "peers" for k, _ in pairs):
                    pairs.append(("peers", "networking not available in this version"))
            else:
                online = sum(1 for p in peers if _field(p, "online"))
                # No peers is a normal state, not a problem: say how to get some.
                hint = "" if peers else " (%own connect ADDR, or %own join TOKEN)"
                pairs.append(("peers", f"{online} online, {len(peers)} known{hint}"))
            pairs.append(("docs", sum(1 for _ in cells.iter_docs(node))))
            stats = node.stats() if callable(getattr(node, "stats", None)) else {}
            if stats:
                pairs.append(("changes", f"{stats.get('commits', 0)} committed here, "
                              f"{stats.get('accepted', 0)} accepted, "
                              f"{stats.get('rejected_total', 0)} rejected"))
        if host.ready_at and host.started_at:
            pairs.append(("start time", f"{host.ready_at - host.started_at:.2f} s"))
        if s.bootstrap:
            pairs.append(("bootstrap", s.bootstrap))
        pairs.append(("config", list(s.sources) or "none (defaults and OWNKERNEL_* only)"))
        return Fields(pairs, title="ownkernel node")

    def _cmd_whoami(self, args: list[str]) -> Fields:
        _parser("whoami").parse_args(args)
        node = self._node()
        assert self.host is not None
        return Fields(
            [
                ("id", _field(node, "id")),
                ("short id", _field(node, "short_id")),
                ("name", _field(node, "name")),
                *([("user", f"{u.short_id} (devices: %own devices)")]
                  if (u := getattr(node, "user", None)) is not None else []),
                ("profile", self.host.profile),
            ]
        )

    def _cmd_name(self, args: list[str]) -> Fields:
        """Peers see a new name or colour within a second (widgets/ui docs)."""
        ns = _parser("name", ("name", {"metavar": "NAME", "nargs": "*"}),
                     ("--color", {"metavar": "#RRGGBB"})).parse_args(args)
        node = self._node()
        if ns.name:
            node.name = " ".join(ns.name)
        if ns.color:
            node.color = ns.color
        return Fields([("name", node.name), ("color", getattr(node, "color", None))])

    def _cmd_peers(self, args: list[str]) -> Table:
        _parser("peers").parse_args(args)
        peers = _peer_list(self._node())
        if peers is None:
            raise UsageError("%own peers: networking is not available in this version of Node")
        rows = []
        for p in peers:
            latency = _field(p, "latency")
            rows.append(
                [
                    str(fmt(_field(p, "short_id", "id")))[:12],
                    _field(p, "name"),
                    _field(p, "addresses", "address"),
                    "yes" if _field(p, "online") else "no",
                    f"{latency * 1000:.1f} ms" if isinstance(latency, (int, float)) else "-",
                    ago(_field(p, "last_seen")),
                    _field(p, "route") or "-",  # direct <address> | via relay <name>
                ]
            )
        cols = ["id", "name", "addresses", "online", "latency", "last seen", "route"]
        return Table(cols, rows, title="peers", empty="no peers yet (%own connect ADDR|TOKEN)")

    # -- users and devices (issue #13) ---------------------------------------------
    def _cmd_pair(self, args: list[str]) -> Any:
        ns = _parser("pair", ("token", {"nargs": "?", "metavar": "TOKEN"})).parse_args(args)
        node = self._networked("pair")
        if ns.token:
            u = node.pair_with(ns.token, timeout=JOIN_TIMEOUT)
            return Message(f"{u.name} ({u.short_id}); its documents follow",
                           "this kernel is now a device of user ")
        return _PairMessage(node.pair(), "pairing token (one use, valid 10 min; paste it "
                            "into `%own pair TOKEN` or `ownkernel pair TOKEN` on the new "
                            "device):\n")

    def _cmd_devices(self, args: list[str]) -> Table:
        _parser("devices").parse_args(args)
        node = self._node()
        rows = [[d.id.hex()[:12] + (" (this)" if d.id == node.id else ""), d.name,
                 ago(d.last_seen), "revoked" if d.revoked else "-"] for d in node.devices()]
        return Table(["device", "name", "last seen", "revoked"], rows,
                     title=f"devices of {node.user.name}", empty="no devices")

    def _networked(self, cmd: str) -> Any:
        node = self._node()
        if not hasattr(node, "connect") or getattr(node, "network", None) is None:
            raise UsageError(f"%own {cmd}: this node has no networking (see %own status)")
        return node

    def _cmd_connect(self, args: list[str]) -> Any:
        p = _parser("connect", ("target", {"metavar": "ADDR|TOKEN"}))
        p.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT, metavar="S")
        ns = p.parse_args(args)
        node = self._networked("connect")
        try:
            peer = node.connect(ns.target, timeout=ns.timeout)
        except TimeoutError:
            # Not an error: the node keeps dialing with back-off, and an
            # unreachable peer is a normal offline-first state.
            return Message(f"not reachable within {ns.timeout:g} s; still trying in the "
                           "background (see %own peers, %own log)", "connect: ")
        except ValueError as exc:
            raise UsageError(f"%own connect: {exc}") from None
        if peer is None:
            return Message(ns.target, "connecting in the background to ")
        return peer

    def _cmd_docs(self, args: list[str]) -> Table:
        _parser("docs").parse_args(args)
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
        ns = _parser("open", _TITLE).parse_args(args)
        return self._doc(" ".join(ns.doc))

    def _cmd_invite(self, args: list[str]) -> Message:
        p = _parser("invite", _TITLE)
        p.add_argument("--read", action="store_true", help="read-only access")
        ns = p.parse_args(args)
        doc = self._doc(" ".join(ns.doc))
        token = self._node().invite(doc, write=not ns.read)
        return Message(str(token), "invite (read-only): " if ns.read else "invite: ")

    def _cmd_join(self, args: list[str]) -> Any:
        p = _parser("join", ("token", {"metavar": "TOKEN"}))
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
        p = _parser("export", _TITLE, ("format", {"metavar": "FORMAT"}),
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

    def _cmd_log(self, args: list[str]) -> Table:
        p = _parser("log")
        p.add_argument("n", nargs="?", type=int, default=20, metavar="N")
        ns = p.parse_args(args)
        assert self.host is not None
        notes, net = self.host.recent()
        events = list(notes)
        titles: dict[bytes, str] = {}
        node = self.host.node
        for e in net:
            events.append((e.at, _describe(e, node, titles)))
        events.sort(key=lambda e: e[0])
        rows = [[ago(ts), text] for ts, text in events[-ns.n:]] if ns.n > 0 else []
        return Table(["when", "event"], rows, title="recent events", empty="no events yet")

    def _cmd_cells(self, args: list[str]) -> Table:
        _parser("cells").parse_args(args)
        rows = [
            [c["name"], c["id"][:12], c["lines"], c["by"], ago(c["at"]),
             "yes" if c["output"] else "no"]
            for c in cells.list_cells(self._node())
        ]
        return Table(["name", "doc", "lines", "last changed by", "when", "output"], rows,
                     title="shared cells", empty="no shared cells (%%shared NAME)")

    def _cmd_pull(self, args: list[str]) -> None:
        ns = _parser("pull", ("name", {"metavar": "NAME", "nargs": "+"})).parse_args(args)
        ns.name = " ".join(ns.name)
        node = self._node()
        try:
            doc = cells.find_cell(node, ns.name)
        except cells.DocNotFound as exc:
            raise UsageError(_listing(node, ns.name, exc, cells_only=True)) from None
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

    # -- workshop mode, simulated classmates (ownkernel/apps) --------------------------
    def _cmd_workshop(self, args: list[str]) -> Any:
        from ownkernel.apps.workshop import workshop

        p = _parser("workshop")
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
        p = _parser("classmates", ("n", {"type": int, "metavar": "N"}))
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

    # -- %%shared ---------------------------------------------------------------
    # The common case (no --with-output) does not go through the cell magic at
    # run time: an input transformer rewrites the `%%shared NAME` header line
    # into a call that stores the source, and the body then runs as an
    # ordinary top-level cell: same line numbers in tracebacks, `Out[n]`,
    # error status and "run all" stopping on errors, exactly as without it.
    def _make_transformer(self) -> Callable[[list[str]], list[str]]:
        def transform_shared(lines: list[str]) -> list[str]:
            if not lines or not lines[0].startswith("%%shared"):
                return lines
            try:
                ns = _shared_parser().parse_args(shlex.split(lines[0][len("%%shared"):]))
            except (UsageError, ValueError):
                return lines  # the cell magic below reports the error
            if ns.with_output or len(lines) < 2:
                return lines
            self._pending_id += 1
            self._pending[self._pending_id] = (ns.name, "".join(lines[1:]))
            # Something may transform cells without running them; don't hoard.
            for stale in [k for k in self._pending if k <= self._pending_id - 50]:
                del self._pending[stale]
            call = f"get_ipython().run_line_magic('own', '--store-pending {self._pending_id}')\n"
            return [call, *lines[1:]]

        # Tells IPython's check_complete not to run us (we register state), so
        # a `%%shared` cell still counts as a cell magic while being typed.
        transform_shared.has_side_effects = True  # type: ignore[attr-defined]
        return transform_shared

    def _store_pending(self, key: str) -> None:
        try:
            name, source = self._pending.pop(int(key))
        except (KeyError, ValueError):
            raise UsageError("%%shared: no pending source (internal)") from None
        self._store(name, source)

    @cell_magic
    def shared(self, line: str, cell: str) -> Any:
        """%%shared NAME [--with-output]: store the cell in the shared cell NAME, then run it.

        The source is diffed into character edits of the shared text, so edits
        made concurrently in other notebooks merge. The cell's output is shared
        only with --with-output. Other notebooks get the source with
        `%own pull NAME` once the cell's document is shared (`%own invite NAME`).
        """
        try:
            ns = _shared_parser().parse_args(shlex.split(line))
        except ValueError as exc:
            raise UsageError(f"%%shared: cannot parse arguments: {exc}") from None
        stored = self._store(ns.name, cell)
        assert self.shell is not None
        if not ns.with_output:
            result = self.shell.run_cell(cell, store_history=False)
        else:
            with capture_output() as captured:
                result = self.shell.run_cell(cell, store_history=False)
            captured.show()
            parts = [captured.stdout, captured.stderr]
            parts += [o.data.get("text/plain", "") for o in captured.outputs]
            if result.result is not None:
                parts.append(repr(result.result))
            output = "".join(p if not p or p.endswith("\n") else p + "\n" for p in parts)
            if stored:
                self._store(ns.name, cell, output=output)
        if not result.success:
            # The traceback is already shown; make this cell fail too so a
            # "run all" stops here as it would without %%shared.
            raise UsageError(f"%%shared {ns.name}: the cell raised an error (above)")
        return None

    def _store(self, name: str, source: str, output: str | None = None) -> bool:
        # IPython appends a newline to every cell before transforming it; store
        # the cell as the user typed it, so a pull gives back the same text.
        if source.endswith("\n"):
            source = source[:-1]
        # A node problem must not stop the user's code from running: say it
        # once on stderr and run the cell anyway.
        try:
            cells.store_cell(self._node(), name, source, output)
        except (UsageError, NodeUnavailable, cells.DocNotFound) as exc:
            print(f"%%shared {name}: not stored: {exc}", file=sys.stderr)
            return False
        except Exception as exc:  # noqa: BLE001
            print(f"%%shared {name}: not stored: {type(exc).__name__}: {exc}", file=sys.stderr)
            return False
        return True


def _shared_parser() -> _Parser:
    p = _SharedParser(prog="%%shared", add_help=False)
    p.add_argument("name", metavar="NAME", nargs="+")
    p.add_argument("--with-output", action="store_true")
    return p


class _SharedParser(_Parser):
    """`%%shared my cell` and `%%shared "my cell"` name the same cell."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore
        ns = super().parse_args(args, namespace)
        ns.name = " ".join(ns.name)
        return ns


# DOC arguments: `%own open my notes` and `%own open "my notes"` are the same.
_TITLE: tuple[str, dict[str, Any]] = ("doc", {"metavar": "DOC", "nargs": "+"})


def _listing(node: Any, ref: str, exc: Exception, cells_only: bool) -> str:
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


def _peer_list(node: Any) -> list[Any] | None:
    peers = getattr(node, "peers", None)
    if peers is None:
        return None
    if callable(peers):
        peers = peers()
    return list(peers.values()) if isinstance(peers, dict) else list(peers)


def _describe(e: NetEvent, node: Any, titles: dict[bytes, str]) -> str:
    """One log line for a network event (doc titles resolved here, on the main thread)."""
    short = e.peer.hex()[:8] if e.peer else "?"
    who = f"{e.name} ({short})" if e.name else short
    if e.kind == "peer_joined":
        return f"peer joined: {who}"
    if e.kind == "peer_left":
        return f"peer left: {who}"
    doc = e.doc.hex()[:12] if e.doc else "?"
    if e.doc is not None and node is not None:
        if e.doc not in titles:
            try:
                titles[e.doc] = str(node.open(e.doc).title or "")
            except Exception:  # noqa: BLE001 - a doc we can't open still gets a line
                titles[e.doc] = ""
        if titles[e.doc]:
            doc = f"{titles[e.doc]!r} ({doc})"
    n = f"{e.count} changes" if e.count > 1 else "a change"
    return f"{n} to {doc} from {who}"


def _room_of(node: Any, doc: Any) -> Any:
    """The workshop room ``doc`` is, or None (then %own join shows the plain doc)."""
    from ownkernel.apps.workshop import Room, is_room

    return Room(node, doc) if is_room(doc) else None


def _doc_titled(node: Any, title: str) -> Any:
    """This node's doc titled ``title``, created if there is none (re-runs reuse it)."""
    for d in cells.iter_docs(node):
        if cells.doc_title(d) == title and getattr(d, "owner", None) == node.id:
            return d
    return node.new_doc(title=title)


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
