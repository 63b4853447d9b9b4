"""`ownkernel docs / new / lab` and the CLI's side of the control socket.

Split from cli.py (same conventions: one-line errors through ``CliError``):
``_control`` asks the node that runs a profile (node/control.py) and returns
None when none does, so every command falls back to opening the profile itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ownkernel.cli import CliError, _open_node, _settings, cmd_install

__all__ = ["add_contact_commands", "cmd_docs", "cmd_lab", "cmd_new", "cmd_pair"]


# -- the CLI beside a running node (control socket), docs, new, lab -------------
def _control(args: argparse.Namespace, op: str, timeout: float = 30.0,
             **kw: Any) -> dict[str, Any] | None:
    """Ask the node running this profile (node/control.py); None when none runs."""
    from ownkernel.node.control import ControlError, ControlUnavailable, request

    profile = _settings(args, network=False).profile_dir()
    try:
        return request(profile, op, timeout=timeout, **kw)
    except ControlUnavailable:
        return None
    except ControlError as exc:
        what = {"join": "cannot join", "invite": "cannot invite"}.get(op, op)
        raise CliError(f"{what}: {exc} (answered by the node running {profile})") from None
    except TimeoutError as exc:
        raise CliError(str(exc)) from None


def _print_live_status(st: dict[str, Any]) -> None:
    peers = st.get("peers") or []
    print(f"state:       running (pid {st.get('pid')}; answered through its control socket)")
    print(f"id:          {st['id']}")
    print(f"name:        {st.get('name') or '-'}")
    print(f"addresses:   {', '.join(st.get('addresses') or []) or '- (not listening)'}")
    print(f"docs:        {len(st.get('docs') or [])}")
    for d in st.get("docs") or []:
        print(f"  {d['id'][:12]}  {d['title'] or '(untitled)'}")
    online = [p for p in peers if p.get("online")]
    print(f"peers:       {len(online)} online, {len(peers)} known")
    for p in peers:
        state = p.get("route") or ("online" if p.get("online") else "offline")
        print(f"  {p['id'][:12]}  {p.get('name') or '-'}  {state}")


def cmd_docs(args: argparse.Namespace) -> int:
    live = _control(args, "docs")
    if live is not None:
        rows = [(d["id"], d["title"], d["owner"], d.get("role") or "-") for d in live["docs"]]
    else:
        with _open_node(_settings(args, network=False), network=False) as node:
            rows = [(h.hex, h.title, h.owner.hex(), h.role or "-") for h in node.docs()]
    for doc_id, title, owner, role in rows:
        print(f"{doc_id[:12]}  {role:<6}  {owner[:8]}  {title or '(untitled)'}")
    if not rows:
        print("no documents (ownkernel new TITLE)", file=sys.stderr)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    title = " ".join(args.title)
    live = _control(args, "new", title=title)
    if live is not None:
        print(live["doc"])
        return 0
    with _open_node(_settings(args, network=False), network=False) as node:
        print(node.new_doc(title=title).hex)
    return 0


def _notebooks_dir() -> Path | None:
    """The course notebooks: beside the package in a source checkout, or installed."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "notebooks",
                 Path(sys.prefix) / "share" / "ownkernel" / "notebooks"):
        if cand.is_dir():
            return cand
    return None


def cmd_lab(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        raise CliError(f"JupyterLab is not installed for {sys.executable}: "
                       f"{sys.executable} -m pip install jupyterlab")
    from jupyter_client.kernelspec import KernelSpecManager

    if "ownkernel" not in KernelSpecManager().find_kernel_specs():
        # First run on a fresh machine: register the kernel where `install` would.
        cmd_install(argparse.Namespace(user=False, sys_prefix=False, prefix=None,
                                       name="ownkernel", display_name="ownkernel (Python 3)"))
    where = Path(args.dir) if args.dir else _notebooks_dir()
    if where is None or not where.is_dir():
        raise CliError(f"no notebooks directory {where or ''}; give one: "
                       f"ownkernel lab --notebooks DIR")
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={where}", *args.extra]
    print(f"ownkernel lab: JupyterLab on {where}", file=sys.stderr, flush=True)
    os.execv(sys.executable, argv)  # replaces this process; returns only on failure
    return 1  # pragma: no cover


# -- users and devices (ownkernel/node/pairing.py) -------------------------------
def cmd_pair(args: argparse.Namespace) -> int:
    """``ownkernel pair [TOKEN]``: with TOKEN this profile becomes a device of the
    token's user; without, the profile's running node prints a pairing token."""
    from ownkernel.cli import CliError

    live = _control(args, "pair", timeout=args.timeout + 30, token=args.token or "",
                    wait=args.timeout)
    if live is None and not args.token:
        raise CliError("a pairing token is only good while its node runs: start the "
                       "profile's node (a kernel, `ownkernel node`) and run this again")
    if live is None:
        with _open_node(_settings(args, network=True)) as node:
            try:
                u = node.pair_with(args.token, timeout=args.timeout)
            except (ValueError, PermissionError, TimeoutError) as exc:
                raise CliError(f"cannot pair: {' '.join(str(exc).split())}") from None
            live = {"user": u.id.hex(), "name": u.name}
    print(live.get("token") or f"paired: now a device of user {live['name']} "
          f"({live['user'][:12]})")
    return 0


def add_contact_commands(sub: Any) -> None:
    s = sub.add_parser("docs", help="list a profile's documents",
                       description="List DOCs: id, your role, owner, title (from the "
                       "running node when one holds the profile).")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_docs)

    s = sub.add_parser("new", help="create a document, print its id",
                       description="Create a document titled TITLE (no quotes needed) and "
                       "print its id; the profile's running node creates it when there is one.")
    s.add_argument("title", metavar="TITLE", nargs="+")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_new)

    s = sub.add_parser("pair", help="pair devices of one user",
                       description="With TOKEN (from `node.pair()`, `%own pair` or "
                       "`ownkernel pair` on the other device): this profile becomes a device "
                       "of that token's user and receives its documents. Without: the "
                       "profile's running node prints a one-time pairing token.")
    s.add_argument("token", metavar="TOKEN", nargs="?")
    s.add_argument("--profile", help="profile name or directory")
    s.add_argument("--timeout", type=float, default=15.0, metavar="S",
                   help="seconds to wait for the other device (default 15)")
    s.set_defaults(func=cmd_pair, name=None, listen=None, bootstrap=None, relay=False)

    s = sub.add_parser("lab", help="JupyterLab on the course notebooks",
                       description="Open JupyterLab on notebooks/ (or --notebooks DIR) with the "
                       "ownkernel "
                       "kernel registered (installed first if missing). Other options "
                       "(--no-browser, --port N, ...) go to JupyterLab.")
    s.add_argument("--notebooks", dest="dir", metavar="DIR",
                   help="directory to open (default: the course in notebooks/)")
    s.set_defaults(func=cmd_lab, extra=[])  # other options go to JupyterLab (main())
