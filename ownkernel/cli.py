"""The `ownkernel` command: install the kernel, run a headless node, demo, status, doctor
(the commands themselves: cli_tools, cli_node, cli_contact, cli_demo; what they share:
cli_common).

Errors are one line on stderr (`ownkernel: error: …`) with a non-zero exit
code: 2 for bad usage, 1 when the command itself fails. Nothing here prints a
traceback unless `OWNKERNEL_DEBUG=1`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ownkernel import cli_contact, cli_demo, cli_node, cli_tools
from ownkernel.cli_common import CliError
from ownkernel.cli_tools import body_decoders

__all__ = ["CliError", "body_decoders", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep stderr.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- parser ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ownkernel import __version__

    p = _Parser(prog="ownkernel", description="A local-first peer-to-peer node in your "
                "Jupyter kernel.")
    p.add_argument("--version", action="version", version=f"ownkernel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for commands in (cli_tools, cli_node, cli_contact, cli_demo):
        commands.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "command", None) == "lab":
        args.extra = unknown  # JupyterLab's own options
    elif unknown:
        parser.parse_args(argv)  # the usual one-line "unrecognized arguments" error
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
