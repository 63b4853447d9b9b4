"""Whole-history integration: the RGA order of a complete set of elements at once.

Integrating elements one at a time scans past concurrent siblings; when a
whole history arrives (a fresh peer, a large merge) the order can instead be
computed directly as the depth-first walk of the origin tree, siblings in
descending id order — exactly what one-at-a-time integration yields.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from .rga import HEAD, MAX_RUNS, RUN_CAP, Block, Run, Sequence


def build(
    seq: Sequence,
    inserts: list[tuple[int, int, int, int, Any]],
    deleted: dict[int, list[tuple[int, int]]],
    sort_key: Callable[[int], bytes],
) -> None:
    """Fill an empty ``seq`` from a whole history at once.

    ``inserts``: (act, lam, olam, oact, content) with implicit origins inside
    content; ``deleted``: per actor, sorted disjoint [lo, hi) lamport ranges.
    Computes the RGA order as the depth-first walk of the origin tree with
    children in descending id order, which is what one-at-a-time
    integration yields, without any scanning.
    """
    # 1. entries per actor, sorted by start
    per: dict[int, list[tuple[int, int, int, Any]]] = {}
    for act, lam, olam, oact, content in inserts:
        per.setdefault(act, []).append((lam, olam, oact, content))
    starts: dict[int, list[int]] = {}
    for act, lst in per.items():
        lst.sort(key=lambda e: e[0])
        starts[act] = [e[0] for e in lst]
    # 2. cut points: after every origin, and at delete boundaries
    cuts: dict[tuple[int, int], set[int]] = {}

    def cut(act: int, lam: int) -> None:
        # ids were validated by the caller; a bound outside any entry needs no cut
        st = starts.get(act)
        i = bisect_right(st, lam) - 1 if st else -1
        if i < 0:
            return
        e = per[act][i]
        if e[0] < lam < e[0] + len(e[3]):
            cuts.setdefault((act, i), set()).add(lam - e[0])

    for lst in per.values():
        for _lam, olam, oact, _c in lst:
            if oact >= 0:
                cut(oact, olam + 1)
    for act, ranges in deleted.items():
        for lo, hi in ranges:
            cut(act, lo)
            cut(act, hi)
    # 3. fragments; children lists keyed by the id of the origin element
    children: dict[tuple[int, int], list[Run]] = {}
    firsts_by_act: dict[int, list[Run]] = {}
    for act, lst in per.items():
        dl = deleted.get(act, [])
        dstarts = [d[0] for d in dl]
        firsts = firsts_by_act[act] = []
        for i, (lam, olam, oact, content) in enumerate(lst):
            offs = sorted(cuts.get((act, i), ()))
            bounds = [0, *offs, len(content)]
            prev: Run | None = None
            for a, b in zip(bounds, bounds[1:]):
                flam = lam + a
                j = bisect_right(dstarts, flam) - 1
                dead = j >= 0 and dl[j][1] > flam
                if a == 0:
                    r = Run(flam, act, content[a:b], olam, oact, dead)
                    firsts.append(r)
                    children.setdefault((olam, oact), []).append(r)
                else:
                    r = Run(flam, act, content[a:b], flam - 1, act, dead)
                    prev.nxt = r  # type: ignore[union-attr]
                    children.setdefault((flam - 1, act), []).append(r)
                prev = r
    # 4. depth-first walk, siblings in descending id order
    order: list[Run] = []
    stack: list[Run] = []

    def push_children(key: tuple[int, int]) -> None:
        ch = children.get(key)
        if ch:
            if len(ch) > 1:
                ch.sort(key=lambda r: (r.lam, sort_key(r.act)))
            stack.extend(ch)  # ascending, so the greatest id is popped first

    push_children(HEAD)
    while stack:
        r = stack.pop()
        # fuse with the previous fragment when it is the same entry, adjacent
        if order:
            p = order[-1]
            if p.nxt is r and p.dead == r.dead and p.n + r.n <= RUN_CAP:
                p.content = p.content + r.content
                p.n += r.n
                p.nxt = r.nxt
                push_children((r.lam + r.n - 1, r.act))
                continue
        order.append(r)
        push_children((r.lam + r.n - 1, r.act))
    # 5. blocks and index
    half = MAX_RUNS // 2
    seq._set_blocks([Block(order[i : i + half], i // half) for i in range(0, len(order), half)])
    seq.entries = {act: ([r.lam for r in fs], fs) for act, fs in firsts_by_act.items()}
