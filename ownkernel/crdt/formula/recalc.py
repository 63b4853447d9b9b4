"""Whole sheets: evaluation order over the reference graph (Tarjan), cycle marking, and the
incremental :class:`Evaluator` that re-evaluates only what an edit can change."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .evaluation import evaluate
from .syntax import Node, parse, references
from .values import CYCLE, REF, Cell


def is_formula(raw: Any) -> bool:
    return isinstance(raw, str) and raw.startswith("=")


def _sccs(nodes: Iterable[Cell], edges: Callable[[Cell], Iterable[Cell]]) -> list[list[Cell]]:
    """Tarjan, iterative (dependency chains can be longer than the recursion limit).
    Components come out dependencies-first, which is exactly evaluation order."""
    index: dict[Cell, int] = {}
    low: dict[Cell, int] = {}
    stack: list[Cell] = []
    on_stack: set[Cell] = set()
    out: list[list[Cell]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges(root)))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(edges(w))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp: list[Cell] = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(comp)
    return out


def _compute(
    nodes: Iterable[Cell],
    asts: Mapping[Cell, Node],
    deps: Mapping[Cell, set[Cell]],
    values: dict[Cell, Any],
    nrows: int,
    ncols: int,
) -> None:
    """Evaluate formula cells ``nodes`` into ``values``; other cells' values must be there."""
    todo = set(nodes)

    def get(row: int, col: int) -> Any:
        if not (0 <= row < nrows and 0 <= col < ncols):
            return REF
        return values.get((row, col))

    for comp in _sccs(sorted(todo), lambda c: [d for d in deps[c] if d in todo]):
        if len(comp) > 1 or comp[0] in deps[comp[0]]:
            for c in comp:
                values[c] = CYCLE
        else:
            values[comp[0]] = evaluate(asts[comp[0]], get)


def evaluate_all(cells: Mapping[Cell, Any], nrows: int, ncols: int) -> dict[Cell, Any]:
    """Value of every cell of ``cells`` (``{(row, col): raw}``) on an nrows x ncols sheet."""
    asts = {c: parse(raw) for c, raw in cells.items() if is_formula(raw)}
    deps = {c: references(ast, nrows, ncols) for c, ast in asts.items()}
    values = {c: raw for c, raw in cells.items() if c not in asts}
    _compute(asts, asts, deps, values, nrows, ncols)
    return values


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and a == b)


class Evaluator:
    """Incremental sheet evaluation.

    Keeps raw cells, parsed formulas, each formula's in-sheet references and the
    reverse index (cell -> formulas reading it). ``set`` re-evaluates the edited
    cell plus its transitive dependents only, in Tarjan order restricted to that
    set; every other cell keeps its cached value, which is still right because
    nothing it reads changed. A cycle through the edited cell lies entirely
    inside that set, so cycle detection there is complete. Resizing re-derives
    everything (which cells exist changes what every range means).
    """

    def __init__(self, nrows: int, ncols: int, cells: Mapping[Cell, Any] | None = None) -> None:
        self.nrows, self.ncols = nrows, ncols
        self._raw: dict[Cell, Any] = {}
        self._ast: dict[Cell, Node] = {}
        self._deps: dict[Cell, set[Cell]] = {}
        self._rdeps: dict[Cell, set[Cell]] = {}
        self._values: dict[Cell, Any] = {}
        self.last_recomputed: set[Cell] = set()  # formula cells evaluated by the last call
        for (row, col), raw in (cells or {}).items():
            self._store((row, col), raw)
        self._recompute(set(self._raw))

    def value(self, row: int, col: int) -> Any:
        return self._values.get((row, col))

    def raw(self, row: int, col: int) -> Any:
        return self._raw.get((row, col))

    def values(self) -> dict[Cell, Any]:
        return dict(self._values)

    def set(self, row: int, col: int, raw: Any) -> set[Cell]:
        """Store ``raw`` (None empties the cell); return the cells whose value changed."""
        cell = (row, col)
        self._store(cell, raw)
        affected = {cell}
        frontier = [cell]
        while frontier:
            for dep in self._rdeps.get(frontier.pop(), ()):
                if dep not in affected:
                    affected.add(dep)
                    frontier.append(dep)
        return self._recompute(affected)

    def resize(self, nrows: int, ncols: int) -> set[Cell]:
        self.nrows, self.ncols = nrows, ncols
        for cell, raw in list(self._raw.items()):
            self._store(cell, raw)
        return self._recompute(set(self._raw) | set(self._values))

    def _store(self, cell: Cell, raw: Any) -> None:
        for dep in self._deps.pop(cell, ()):
            readers = self._rdeps[dep]
            readers.discard(cell)
            if not readers:
                del self._rdeps[dep]
        self._ast.pop(cell, None)
        if raw is None:
            self._raw.pop(cell, None)
            return
        self._raw[cell] = raw
        if is_formula(raw):
            self._ast[cell] = ast = parse(raw)
            self._deps[cell] = deps = references(ast, self.nrows, self.ncols)
            for dep in deps:
                self._rdeps.setdefault(dep, set()).add(cell)

    def _recompute(self, affected: set[Cell]) -> set[Cell]:
        old = {c: self._values.get(c) for c in affected}
        for c in affected:
            if c in self._ast:
                continue
            if c in self._raw:
                self._values[c] = self._raw[c]
            else:
                self._values.pop(c, None)
        formulas = {c for c in affected if c in self._ast}
        _compute(formulas, self._ast, self._deps, self._values, self.nrows, self.ncols)
        self.last_recomputed = formulas
        return {c for c in affected if not _same(old[c], self._values.get(c))}
