"""`ownkernel install / console / lab / doctor`: set up Jupyter, and check a profile."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from ownkernel.cli_common import CliError, cli_settings


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


# -- console --------------------------------------------------------------------
def cmd_console(args: argparse.Namespace) -> int:

    from jupyter_client.kernelspec import KernelSpecManager

    # Run the console module with *this* interpreter, not `jupyter-console` from PATH:
    # outside an activated venv PATH has no (or another env's) script.
    if importlib.util.find_spec("jupyter_console") is None:
        raise CliError(f"jupyter console is not installed for {sys.executable}: "
                       f"{sys.executable} -m pip install jupyter-console")
    if args.kernel not in KernelSpecManager().find_kernel_specs():
        raise CliError(f"no kernelspec {args.kernel!r}: run `ownkernel install` first")
    argv = [sys.executable, "-m", "jupyter_console", "--kernel", args.kernel, *args.extra]
    os.execv(sys.executable, argv)  # replaces this process; returns only on failure
    return 1  # pragma: no cover


def _notebooks_dir() -> Path | None:
    """The course notebooks: beside the package in a source checkout, or installed."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "notebooks",
                 Path(sys.prefix) / "share" / "ownkernel" / "notebooks"):
        if cand.is_dir():
            return cand
    return None


def cmd_lab(args: argparse.Namespace) -> int:

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
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args.extra:
        # JupyterLab's own rule, said before it starts rather than after its banner.
        raise CliError("JupyterLab does not run as root unless told to: in a container or "
                       "VM of your own, run `ownkernel lab --allow-root`")
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={where}", *args.extra]
    print(f"ownkernel lab: JupyterLab on {where}", file=sys.stderr, flush=True)
    os.execv(sys.executable, argv)  # replaces this process; returns only on failure
    return 1  # pragma: no cover



# -- doctor ---------------------------------------------------------------------
def body_decoders() -> tuple[Any, Any]:
    """Decode a stored change / snapshot as the node would (after unsealing)."""
    from ownkernel.crdt import Doc
    from ownkernel.crdt.codec import decode
    from ownkernel.store import open_sealed

    def plain(row: Any, data: bytes) -> bytes:
        return open_sealed(row.key, data) if row.encrypted else data

    return (lambda row, data: decode(plain(row, data)),
            lambda row, data: Doc.load(plain(row, data)))


def cmd_doctor(args: argparse.Namespace) -> int:
    from ownkernel.store import DB_FILE, ProfileLock, ProfileLockedError, Store, StoreError
    from ownkernel.store.doctor import audit_store, quarantine

    profile = cli_settings(args, network=False).profile_dir()
    db_path = profile / DB_FILE
    if not db_path.exists():
        raise CliError(f"no database {db_path}: nothing to check (is the profile right? "
                       f"see `ownkernel status --profile ...`)")
    lock = ProfileLock(profile)
    try:
        lock.acquire()
    except ProfileLockedError as exc:
        raise CliError(f"{exc} `ownkernel doctor` needs the profile to itself: stop that "
                       f"node or kernel, then run it again.") from None
    except StoreError as exc:
        raise CliError(str(exc)) from None
    try:
        try:
            store = Store(db_path, check=False)  # doctor runs the full check itself
        except StoreError as exc:
            print(f"database {db_path}: cannot be opened: {' '.join(str(exc).split())}")
            return 1
        with store:
            decode_change, decode_snapshot = body_decoders()
            report = audit_store(store, decode_change=decode_change,
                                 decode_snapshot=decode_snapshot)
            if args.quarantine:
                quarantine(store, report)
            me = store.get_setting("node_id")
        for line in report.lines():
            print(line)
        mine = [d for d in report.docs for p in d.problems
                if p.quarantined and p.what == "change" and p.actor == me]
        if mine:
            print("note: changes made by this node were quarantined; if no peer holds "
                  "them, its next edits reuse their seq numbers and peers that do hold "
                  "them will refuse those edits")
        elif not report.ok and not args.quarantine and any(
                p.pinpointed for d in report.docs for p in d.problems):
            print("run again with --quarantine to set the damaged rows aside (they are "
                  "kept) so the rest loads")
        return 0 if report.ok else 1
    finally:
        lock.release()


def add_commands(sub: Any) -> None:
    """install, console, lab, doctor."""
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

    s = sub.add_parser("console", help="jupyter console with the ownkernel kernel",
                       description="Run `jupyter console --kernel ownkernel`; extra arguments "
                       "go to jupyter console.")
    s.add_argument("--kernel", default="ownkernel", help="kernelspec name")
    s.add_argument("extra", nargs=argparse.REMAINDER, help="arguments for jupyter console")
    s.set_defaults(func=cmd_console)

    s = sub.add_parser("lab", help="JupyterLab on the course notebooks",
                       description="Open JupyterLab on notebooks/ (or --notebooks DIR) with the "
                       "ownkernel "
                       "kernel registered (installed first if missing). Other options "
                       "(--no-browser, --port N, ...) go to JupyterLab.")
    s.add_argument("--notebooks", dest="dir", metavar="DIR",
                   help="directory to open (default: the course in notebooks/)")
    s.set_defaults(func=cmd_lab, extra=[])  # other options go to JupyterLab (main())

    s = sub.add_parser("doctor", help="check a profile's database; set damage aside",
                       description="Check PROFILE's database (not in use by a node): SQLite "
                       "integrity, every document's hash chains and signatures, that every "
                       "stored change and snapshot decodes. Prints a report per document. "
                       "Exit code 0: healthy, 1: problems found (or cannot check).")
    s.add_argument("profile", nargs="?", metavar="PROFILE",
                   help="profile name or directory (default: OWNKERNEL_PROFILE or "
                   "'default')")
    s.add_argument("--quarantine", action="store_true",
                   help="move damaged rows/snapshots into the quarantine table (kept, not "
                   "deleted) so the rest of each document loads")
    s.set_defaults(func=cmd_doctor)
