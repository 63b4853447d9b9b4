"""`%%shared NAME`: a cell whose source (and, on request, output) is stored in a shared
document, so edits made in other notebooks merge."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from ownkernel.kernel import cells
from ownkernel.kernel.magics_base import ArgParser, MagicsBase
from ownkernel.kernel.nodehost import NodeUnavailable


class SharedCells(MagicsBase):
    """%%shared NAME: the cell magic's work, and the input transformer behind it."""

    _pending: dict[int, tuple[str, str]]
    _pending_id: int

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

    def run_shared(self, line: str, cell: str) -> Any:
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

def _shared_parser() -> ArgParser:
    p = _SharedParser(prog="%%shared", add_help=False)
    p.add_argument("name", metavar="NAME", nargs="+")
    p.add_argument("--with-output", action="store_true")
    return p


class _SharedParser(ArgParser):
    """`%%shared my cell` and `%%shared "my cell"` name the same cell."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore
        ns = super().parse_args(args, namespace)
        ns.name = " ".join(ns.name)
        return ns

