"""`%own …` and `%%shared NAME`: the node from inside a notebook.

Every subcommand either returns something that displays well (HTML in a
notebook, aligned text in a terminal) or raises `UsageError` with one line
saying what went wrong — IPython shows that as a single `UsageError: …` line,
never a traceback, and stops a "run all" there.

The commands live in one module per group (see ``magics_base``); this module puts
them together and dispatches ``%own COMMAND`` to ``_cmd_COMMAND``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ownkernel.kernel.display import Message
from ownkernel.kernel.magics_base import COMMANDS, HELP
from ownkernel.kernel.magics_docs import DocCommands
from ownkernel.kernel.magics_node import NodeCommands
from ownkernel.kernel.magics_shared import SharedCells
from ownkernel.kernel.magics_workshop import WorkshopCommands
from ownkernel.kernel.nodehost import NodeHost, NodeUnavailable

__all__ = ["HELP", "OwnMagics"]


@magics_class
class OwnMagics(NodeCommands, DocCommands, WorkshopCommands, SharedCells, Magics):
    def __init__(self, shell: Any = None, host: NodeHost | None = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.host = host
        self._pending: dict[int, tuple[str, str]] = {}
        self._pending_id = 0
        self._room: Any = None  # the workshop room of this kernel (%own workshop / join)
        self._classmates: Any = None  # the running simulated classmates, if any
        if shell is not None:
            shell.input_transformers_cleanup.append(self._make_transformer())

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

    # -- %%shared (the work is in magics_shared) --------------------------------
    @cell_magic
    def shared(self, line: str, cell: str) -> Any:
        return self.run_shared(line, cell)

    shared.__doc__ = SharedCells.run_shared.__doc__
