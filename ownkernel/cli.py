"""The `ownkernel` command: install the kernel, run a headless node, demo, status.

Errors are one line on stderr (`ownkernel: error: …`) with a non-zero exit
code: 2 for bad usage, 1 when the command itself fails. Nothing here prints a
traceback unless `OWNKERNEL_DEBUG=1`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["CliError", "main"]

log = logging.getLogger("ownkernel")


class CliError(Exception):
    """A failure to report as one line with exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep stderr.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- install --------------------------------------------------------------------
def cmd_install(args: argparse.Namespace) -> int:
    from ownkernel.kernel.install import install

    user, sys_prefix, prefix = args.user, args.sys_prefix, args.prefix
    if not (user or sys_prefix or prefix):
        # In a virtual env the env itself is the natural home; otherwise the user's.
        in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
        sys_prefix, user = in_venv, not in_venv
    try:
        path = install(user=user, sys_prefix=sys_prefix, prefix=prefix, name=args.name,
                       display_name=args.display_name)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot install the kernelspec: {exc}") from None
    print(f"Installed kernelspec {args.name} ({args.display_name}) in {path}")
    return 0


# -- node, status, invite, join: things that open a profile ---------------------
def _settings(args: argparse.Namespace, network: bool) -> Any:
    from ownkernel.kernel.settings import SettingsError, load_settings

    overrides: dict[str, Any] = {"profile": getattr(args, "profile", None)}
    if network:
        overrides.update(name=args.name, listen=args.listen or None,
                         bootstrap=args.bootstrap or None, relay=args.relay or None)
    try:
        settings = load_settings(overrides=overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    if not network:
        from dataclasses import replace

        # One-shot commands never listen or dial out: they read the profile and leave.
        settings = replace(settings, listen=None, bootstrap=[], relay=False)
    return settings


def _open_node(settings: Any, strict: bool = False) -> Any:
    from ownkernel.kernel.nodehost import NodeUnavailable, make_node

    try:
        node, notes = make_node(settings, settings.profile_dir(), strict=strict)
    except ImportError as exc:
        raise CliError(f"the ownkernel Node is not available: {exc}") from None
    except NodeUnavailable as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - store errors already say what to do
        raise CliError(" ".join(str(exc).split()) or type(exc).__name__) from None
    for n in notes:
        log.warning("%s", n)
    return node


def _ident(node: Any) -> str:
    value = getattr(node, "id", "?")
    return value.hex() if isinstance(value, bytes) else str(value)


def cmd_node(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    settings = _settings(args, network=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    # Handlers first: a SIGTERM during startup must still stop us cleanly.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = _open_node(settings, strict=True)
    try:
        addr = getattr(node, "address", None)
        log.info("node %s (%s) on profile %s%s", _ident(node)[:12], getattr(node, "name", ""),
                 settings.profile_dir(), f", listening on {addr}" if addr else "")
        print(f"ready {_ident(node)}", flush=True)  # one stdout line scripts can wait for
        while not stop.wait(0.5):
            pass
    finally:
        t0 = time.monotonic()
        node.close()
        log.info("node closed in %.2f s", time.monotonic() - t0)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args, network=False)
    print(f"profile:     {settings.profile}")
    print(f"profile dir: {settings.profile_dir()}")
    try:
        node = _open_node(settings)
    except CliError as exc:
        if "in use" in str(exc):
            # A running kernel or node owns it: say so, that *is* the status.
            print(f"state:       in use: {exc}")
            return 0
        raise
    with node:
        from ownkernel.kernel import cells

        docs = list(cells.iter_docs(node))
        peers = getattr(node, "peers", None)
        peers = peers() if callable(peers) else peers
        print(f"id:          {_ident(node)}")
        print(f"name:        {getattr(node, 'name', '') or '-'}")
        print(f"docs:        {len(docs)}")
        for d in docs:
            print(f"  {cells.doc_id(d)[:12]}  {cells.doc_title(d) or '(untitled)'}")
        print(f"peers known: {'-' if peers is None else len(peers)}")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from ownkernel.kernel import cells

    with _open_node(_settings(args, network=False)) as node:
        try:
            doc = cells.find_doc(node, args.doc)
        except cells.DocNotFound as exc:
            raise CliError(str(exc)) from None
        print(node.invite(doc, write=not args.read))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from ownkernel.kernel import cells

    with _open_node(_settings(args, network=False)) as node:
        try:
            doc = node.join(args.token)
        except ValueError as exc:
            raise CliError(f"cannot join: {exc}") from None
        print(cells.doc_id(doc))
    return 0


# -- console --------------------------------------------------------------------
def cmd_console(args: argparse.Namespace) -> int:
    from jupyter_client.kernelspec import KernelSpecManager

    if shutil.which("jupyter-console") is None:
        raise CliError("jupyter console is not installed: pip install jupyter-console")
    if args.kernel not in KernelSpecManager().find_kernel_specs():
        raise CliError(f"no kernelspec {args.kernel!r}: run `ownkernel install` first")
    argv = ["jupyter-console", "--kernel", args.kernel, *args.extra]
    os.execvp(argv[0], argv)  # replaces this process; returns only on failure
    return 1  # pragma: no cover


# -- demo -----------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """Two replicas edit the same text at the same time, swap changes, converge."""
    from ownkernel.crdt import Doc

    alice, bob = Doc(actor=b"alice"), Doc(actor=b"bob")
    alice.text("body").insert(0, "Hello world")
    alice.commit()
    bob.apply(alice.changes())
    print(f"both start with:      {str(bob.text('body'))!r}")

    # Concurrent edits: neither has seen the other's.
    alice.text("body").insert(5, ", dear")
    body = bob.text("body")
    body.delete(6, 5)
    body.insert(6, "everyone!")
    alice.counter("edits").increment(1)
    bob.counter("edits").increment(1)
    alice.commit()
    bob.commit()
    print(f"alice, offline, has:  {str(alice.text('body'))!r}")
    print(f"bob, offline, has:    {str(bob.text('body'))!r}")

    # Exchange only what the other lacks, as the network protocol does.
    to_bob = alice.changes(since=bob.version)
    to_alice = bob.changes(since=alice.version)
    bob.apply(to_bob)
    alice.apply(to_alice)
    a, b = str(alice.text("body")), str(bob.text("body"))
    print(f"exchanged {len(to_bob)} + {len(to_alice)} change(s)")
    print(f"alice now has:        {a!r}")
    print(f"bob now has:          {b!r}")
    print(f"edits counted:        {alice.counter('edits').value} and {bob.counter('edits').value}")
    if a != b:
        raise CliError("the replicas did not converge (this is a bug)")
    print("converged: yes")
    return 0


# -- parser ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ownkernel import __version__

    p = _Parser(prog="ownkernel", description="A local-first peer-to-peer node in your "
                "Jupyter kernel.")
    p.add_argument("--version", action="version", version=f"ownkernel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("install", help="install the Jupyter kernelspec",
                       description="Install the 'ownkernel' kernelspec. Default: into the "
                       "active virtual env, else for the current user.")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="into sys.prefix (this env)")
    where.add_argument("--prefix", metavar="P", help="into P/share/jupyter/kernels")
    s.add_argument("--name", default="ownkernel", metavar="N", help="kernelspec name")
    s.add_argument("--display-name", default="ownkernel (Python 3)", metavar="D",
                   help="name shown in Jupyter's launcher")
    s.set_defaults(func=cmd_install)

    s = sub.add_parser("node", help="run a headless node (bootstrap/relay)",
                       description="Run a node without a kernel until SIGINT/SIGTERM. Logs go "
                       "to stderr; stdout gets one 'ready <id>' line once it runs.")
    s.add_argument("--profile", help="profile name or directory (default: OWNKERNEL_PROFILE "
                   "or 'default')")
    s.add_argument("--listen", action="append", metavar="ADDR",
                   help="endpoint to listen on, e.g. tcp://127.0.0.1:7700 (repeatable)")
    s.add_argument("--bootstrap", action="append", metavar="ADDR",
                   help="node to contact first (repeatable)")
    s.add_argument("--relay", action="store_true", help="forward between peers")
    s.add_argument("--name", help="name shown to peers")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    s.set_defaults(func=cmd_node)

    s = sub.add_parser("console", help="jupyter console with the ownkernel kernel",
                       description="Run `jupyter console --kernel ownkernel`; extra arguments "
                       "go to jupyter console.")
    s.add_argument("--kernel", default="ownkernel", help="kernelspec name")
    s.add_argument("extra", nargs=argparse.REMAINDER, help="arguments for jupyter console")
    s.set_defaults(func=cmd_console)

    s = sub.add_parser("status", help="profile, id, docs and peers known",
                       description="Show a profile's node: id, docs and peers known.")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("invite", help="print an invite token for a document",
                       description="Print an invite token for DOC (id, id prefix or title).")
    s.add_argument("doc", metavar="DOC")
    s.add_argument("--read", action="store_true", help="read-only access")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_invite)

    s = sub.add_parser("join", help="join a document from an invite token",
                       description="Join the document of TOKEN; prints its id.")
    s.add_argument("token", metavar="TOKEN")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_join)

    s = sub.add_parser("demo", help="two CRDT replicas edit concurrently and converge",
                       description="A short scripted demo: two documents edit the same text "
                       "concurrently, exchange changes, and converge.")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"ownkernel: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("OWNKERNEL_DEBUG"):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ownkernel: error: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
