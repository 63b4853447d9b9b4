"""A shared budget on a sheet: categories, planned vs spent, who paid what and
who owes whom, with a live chart.

    from ownkernel.apps import budget
    b = budget(doc, categories=["Food", "Rent"], people=["ann", "ben"])
    b.add_expense("2026-11-30", "groceries", "Food", 42.5, paid_by="ann")
    b.grid()      # the sheet itself, editable by everyone (ui.grid)
    b.chart()     # bars by category, remaining budget over time, who owes whom

Everything lives in one sheet root, so any peer can edit any number in the grid
and every total follows: the totals are formulas, evaluated by the sheet. The
formula language has no SUMIF, so each expense row carries one helper cell per
category and per person (``=IF(C12=A2,D12,0)``: its amount if it belongs
there, else 0) and the totals sum those columns. Helper formulas compare with
the category or person *cell*, so renaming a category in the grid keeps its
expenses. Expense rows are pre-filled with helpers in blocks of ``BLOCK``;
``add_expense`` grows the block (and rewrites the totals' ranges) when full.

Layout (K categories, P people; rows 1-based as the grid shows them):
  1            Category | Planned | Spent | Left
  2..K+1       one row per category
  K+2          Total
  K+4          Person | Paid | Share | Balance     (balance > 0: is owed)
  K+5..K+4+P   one row per person; shares are equal
  K+P+6        Date | What | Category | Amount | Paid by | helpers...
  below        the expenses, one per row

References are positional (docs/crdt.md): insert rows only at the end of the
expenses, or the totals read other cells (``add_expense`` does this right).
"""

from __future__ import annotations

import math
from typing import Any

import traitlets

from ownkernel.crdt.formula import FormulaError, to_a1
from ownkernel.ui.base import STATIC, LiveWidget

__all__ = ["Budget", "BudgetChart", "budget", "settle"]

BLOCK = 50  # expense rows pre-filled with helper formulas at a time
ECOLS = 5  # Date, What, Category, Amount, Paid by


def settle(balances: dict[str, float]) -> list[tuple[str, str, float]]:
    """Transfers (debtor, creditor, amount) that bring every balance to zero:
    the largest debtor pays the largest creditor first, so at most P-1 transfers.
    Amounts are rounded to cents; balances within half a cent count as settled."""
    # largest first, ties by name: every peer computes the same transfers
    debt = sorted(((-v, k) for k, v in balances.items() if v < -0.005),
                  key=lambda t: (-t[0], t[1]))
    cred = sorted(((v, k) for k, v in balances.items() if v > 0.005),
                  key=lambda t: (-t[0], t[1]))
    out = []
    i = j = 0
    debt_l = [[a, k] for a, k in debt]
    cred_l = [[a, k] for a, k in cred]
    while i < len(debt_l) and j < len(cred_l):
        pay = min(debt_l[i][0], cred_l[j][0])
        if round(pay, 2) > 0:
            out.append((debt_l[i][1], cred_l[j][1], round(pay, 2)))
        debt_l[i][0] -= pay
        cred_l[j][0] -= pay
        if debt_l[i][0] <= 0.005:
            i += 1
        if cred_l[j][0] <= 0.005:
            j += 1
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


class Budget:
    """The budget kept in sheet ``name`` of a doc (a node's DocHandle)."""

    def __init__(self, doc: Any, name: str = "budget") -> None:
        self.doc = doc
        self.name = name
        self.sheet = doc.sheet(name)

    # -- layout, read back from the sheet (any peer may have made it) ---------------
    def _layout(self) -> tuple[int, int, int, int]:
        """(K categories, P people, header row of expenses, expense rows with helpers),
        0-based rows."""
        s = self.sheet
        if s.raw((0, 0)) != "Category":
            raise ValueError(f"sheet {self.name!r} is not a budget (A1 is not 'Category')")
        k = 0
        while s.raw((1 + k, 0)) not in (None, "Total"):
            k += 1
        p = 0
        while s.raw((k + 4 + p, 0)) is not None:
            p += 1
        head = k + p + 5
        cap = 0
        while s.raw((head + 1 + cap, ECOLS)) is not None:
            cap += 1
        return k, p, head, cap

    @property
    def categories(self) -> list[str]:
        k = self._layout()[0]
        return [str(self.sheet.value((1 + i, 0))) for i in range(k)]

    @property
    def people(self) -> list[str]:
        k, p, _, _ = self._layout()
        return [str(self.sheet.value((k + 4 + i, 0))) for i in range(p)]

    def _create(self, categories: list[str], people: list[str],
                planned: dict[str, float]) -> None:
        if not categories or not people:
            raise ValueError("a budget needs at least one category and one person")
        for what, names in (("category", categories), ("person", people)):
            if len(set(names)) != len(names) or not all(isinstance(n, str) and n.strip()
                                                        for n in names):
                raise ValueError(f"{what} names must be distinct non-empty strings: {names!r}")
        k, p = len(categories), len(people)
        s = self.sheet
        with self.doc.transaction():
            for c, t in enumerate(("Category", "Planned", "Spent", "Left")):
                s.set((0, c), t)
            for i, cat in enumerate(categories):
                s.set((1 + i, 0), cat)
                s.set((1 + i, 1), planned.get(cat, 0))
                s.set((1 + i, 3), f"=B{i + 2}-C{i + 2}")
            tot = k + 1
            s.set((tot, 0), "Total")
            for c in (1, 2, 3):
                col = "ABCD"[c]
                s.set((tot, c), f"=SUM({col}2:{col}{k + 1})")
            for c, t in enumerate(("Person", "Paid", "Share", "Balance")):
                s.set((k + 3, c), t)
            for i, who in enumerate(people):
                r = k + 4 + i
                s.set((r, 0), who)
                s.set((r, 2), f"=C{tot + 1}/{p}")
                s.set((r, 3), f"=B{r + 1}-C{r + 1}")
            head = k + p + 5
            for c, t in enumerate(("Date", "What", "Category", "Amount", "Paid by")):
                s.set((head, c), t)
            for i in range(k):
                s.set((head, ECOLS + i), f"={to_a1(1 + i, 0)}")  # helper titles follow renames
            for i in range(p):
                s.set((head, ECOLS + k + i), f"={to_a1(k + 4 + i, 0)}")
            self._grow(k, p, head, 0, BLOCK)

    def _grow(self, k: int, p: int, head: int, cap: int, new_cap: int) -> None:
        """Helper formulas for expense rows cap..new_cap-1 and totals over all of them."""
        s = self.sheet
        for i in range(cap, new_cap):
            r = head + 1 + i
            for j in range(k):
                s.set((r, ECOLS + j), f"=IF(C{r + 1}={to_a1(1 + j, 0)},D{r + 1},0)")
            for j in range(p):
                s.set((r, ECOLS + k + j), f"=IF(E{r + 1}={to_a1(k + 4 + j, 0)},D{r + 1},0)")
        first, last = head + 2, head + 1 + new_cap
        for j in range(k):
            col = to_a1(0, ECOLS + j)[:-1]
            s.set((1 + j, 2), f"=SUM({col}{first}:{col}{last})")
        for j in range(p):
            col = to_a1(0, ECOLS + k + j)[:-1]
            s.set((k + 4 + j, 1), f"=SUM({col}{first}:{col}{last})")

    # -- editing ---------------------------------------------------------------------
    def expenses(self) -> list[dict[str, Any]]:
        _, _, head, cap = self._layout()
        s = self.sheet
        out = []
        for i in range(cap):
            r = head + 1 + i
            row = [s.value((r, c)) for c in range(ECOLS)]
            if all(v is None for v in row):
                continue
            out.append(dict(zip(("date", "what", "category", "amount", "paid_by"), row),
                            row=r + 1))
        return out

    def add_expense(self, date: str, what: str, category: str, amount: float,
                    paid_by: str) -> int:
        """Write an expense into the first free row; returns its (1-based) row."""
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) \
                or not math.isfinite(amount):
            raise ValueError(f"an amount is a finite number, not {amount!r}")
        if category not in self.categories:
            raise ValueError(f"unknown category {category!r}: one of {self.categories}")
        if paid_by not in self.people:
            raise ValueError(f"unknown person {paid_by!r}: one of {self.people}")
        with self.doc.transaction():
            k, p, head, cap = self._layout()
            s = self.sheet
            used = [i for i in range(cap)
                    if any(s.raw((head + 1 + i, c)) is not None for c in range(ECOLS))]
            i = (used[-1] + 1) if used else 0
            if i >= cap:
                self._grow(k, p, head, cap, cap + BLOCK)
            r = head + 1 + i
            for c, v in enumerate((date, what, category, amount, paid_by)):
                s.set((r, c), v)
        return r + 1

    def set_planned(self, category: str, amount: float) -> None:
        cats = self.categories
        if category not in cats:
            raise ValueError(f"unknown category {category!r}: one of {cats}")
        self.sheet.set((1 + cats.index(category), 1), amount)

    # -- reading -----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Everything the chart shows: planned vs spent by category, each person's
        paid/share/balance, the transfers that settle up, remaining budget over time."""
        k, p, head, cap = self._layout()
        s = self.sheet
        bars = [{"category": str(s.value((1 + i, 0))), "planned": _num(s.value((1 + i, 1))),
                 "spent": _num(s.value((1 + i, 2)))} for i in range(k)]
        people = [{"name": str(s.value((k + 4 + i, 0))), "paid": _num(s.value((k + 4 + i, 1))),
                   "share": _num(s.value((k + 4 + i, 2))),
                   "balance": _num(s.value((k + 4 + i, 3)))} for i in range(p)]
        planned = _num(s.value((k + 1, 1)))
        by_date: dict[str, float] = {}
        for e in self.expenses():
            day = str(e["date"] or "")
            by_date[day] = by_date.get(day, 0.0) + _num(e["amount"])
        left, line = planned, []
        for d in sorted(by_date):
            left -= by_date[d]
            line.append([d, round(left, 2)])
        errors = [to_a1(r, c) for r in range(k + p + 5) for c in range(4)
                  if isinstance(s.value((r, c)), FormulaError)]
        return {"bars": bars, "people": people, "planned": planned,
                "spent": _num(s.value((k + 1, 2))), "line": line,
                "owes": [list(t) for t in settle({x["name"]: x["balance"] for x in people})],
                "errors": errors}

    def settle(self) -> list[tuple[str, str, float]]:
        return [tuple(t) for t in self.summary()["owes"]]  # type: ignore[misc]

    def to_csv(self) -> str:
        """The sheet as CSV (evaluated values, exact: numbers as Python writes them)."""
        return self.doc.export("csv", root=self.name)

    # -- widgets -----------------------------------------------------------------------
    def grid(self) -> Any:
        from ownkernel import ui
        return ui.grid(self.sheet)

    def chart(self) -> BudgetChart:
        return BudgetChart(self)

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.chart()._repr_mimebundle_(**kw)

    def __repr__(self) -> str:
        s = self.summary()
        lines = [f"budget {self.name!r}: planned {s['planned']:g}, spent {s['spent']:g}"]
        lines += [f"  {b['category']}: {b['spent']:g} of {b['planned']:g}" for b in s["bars"]]
        lines += [f"  {a} owes {b} {x:.2f}" for a, b, x in s["owes"]]
        return "\n".join(lines)


class BudgetChart(LiveWidget):
    """The chart of a budget, live: bars planned vs spent by category, the
    remaining budget over time, and who owes whom. Drawn as SVG by the bundle
    (widgets/src/budget.js; no plotting library, no CDN). Each change of the
    sheet recomputes the summary on the node thread; a delta is the whole
    summary (a few hundred bytes), sent only when it changed."""

    _esm = STATIC / "budget.js"
    root = traitlets.Unicode("").tag(sync=True)

    def __init__(self, b: Budget) -> None:
        super().__init__(b.doc.node, kind="budget", root=b.name)
        self._budget = b
        self._last: dict[str, Any] | None = None
        self._scheduled = False
        with b.doc.transaction():
            obj = b.doc.crdt.sheet(b.name)
            self._off = obj.observe(self._observe)

    def _observe(self) -> None:
        # any thread, under the node lock: only ask the node thread to look
        if not self._scheduled:
            self._scheduled = True
            self._node.call_soon(self._drain)

    def _summary(self) -> dict[str, Any]:
        try:
            return self._budget.summary()
        except ValueError as exc:  # the layout was broken by hand: say so, keep going
            return {"bars": [], "people": [], "line": [], "owes": [], "planned": 0,
                    "spent": 0, "errors": [str(exc)]}

    def _drain(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        summary = self._summary()
        if summary != self._last:
            self._last = summary
            self._push(summary)

    def _snapshot(self) -> dict[str, Any]:
        self._last = self._summary()
        return {"summary": self._last}

    def _detach(self) -> None:
        off, self._off = getattr(self, "_off", None), None
        if off:
            off()


def budget(doc: Any, name: str = "budget", categories: list[str] | None = None,
           people: list[str] | None = None, planned: dict[str, float] | None = None) -> Budget:
    """The budget in sheet ``name`` of ``doc``, made with these categories and
    people (default: this node alone) if the sheet is still empty; a peer who
    joins later calls ``budget(doc)`` once the doc has synced."""
    b = Budget(doc, name)
    if b.sheet.raw((0, 0)) is None:
        # Creating needs the categories said out loud: a peer calling budget(doc)
        # before the doc synced would otherwise lay a second budget over the first.
        if not categories:
            raise ValueError(f"sheet {name!r} holds no budget yet: give categories (and "
                             f"people) to make one, or wait until the doc has synced")
        b._create(list(categories), list(people or [doc.node.name]), dict(planned or {}))
    return b
