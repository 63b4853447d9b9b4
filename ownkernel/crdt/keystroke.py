"""The live fast path of ``apply()``: one keystroke of a writer at a time.

Most changes a live peer receives are one insert or one delete, the next
of their author, referring at most to one other writer. :class:`Keystrokes`
integrates those straight from the decoded CBOR array, skipping the general
path's units, planning and validation (:mod:`.integrate`) while checking
the same rules; anything else is left to that path untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2

from . import codec
from .codec import CHANGE, DEL, INS, MAX_INT
from .errors import CRDTError, InvalidChangeError
from .history import DEP_SHIFT, log_delete
from .text import Delta
from .values import values_are_trees

_loads = cbor2.loads


class Keystrokes:
    """Mixin of :class:`~ownkernel.crdt.doc.Doc` (through :class:`.integrate.Integrator`)."""

    _actors: list[bytes]
    _aidx: dict[bytes, int]
    _vv: list[int]
    _end: list[int]
    _starts: list[Any]
    _deps: dict[int, Any]  # history.dep_key
    _oplog: list[list[list[Any]]]
    _objs: dict[str, Any]
    _ctx: list[dict[int, int]]
    _lamport: int
    _observers: list[Callable[..., None]]
    _actor_index: Callable[[bytes], int]
    _forget_actors_from: Callable[[int], None]
    _notify: Callable[[bool, set[str]], None]

    def _apply_keystroke(self, blob: bytes) -> bool:
        """Fast path for the live case: the next change of an actor, one
        insert or delete, referring at most to one other actor (whose change
        it declares as its only dep, or had declared before). Returns False,
        having changed nothing, when the change is anything else (the general
        path then decides)."""
        try:
            c, actors, seq, lam, deps, k, key, x, y, z = _loads(blob)
        except Exception:  # not 10 fields, not CBOR, not bytes: the general path decides
            return False
        if (
            c != CHANGE
            or type(seq) is not int
            or type(lam) is not int
            or not 0 < lam < MAX_INT
            or type(x) is not int
            or type(z) is int
            and not 0 < z < MAX_INT - lam
        ):
            return False
        dep = 0
        if type(actors) is bytes:
            if deps != 0:
                return False
            a = self._aidx.get(actors)
            if a is None:
                if seq != 1 or not 0 < len(actors) <= codec.MAX_ACTOR:
                    return False
                # a writer's first change: its actor is added here, and
                # forgotten again if the change is not taken
                n = len(self._actors)
                try:
                    if self._keystroke(self._actor_index(actors), -1, 0, seq, lam, k, key, x, y, z):
                        return True
                except CRDTError:
                    self._forget_actors_from(n)
                    raise
                self._forget_actors_from(n)
                return False
            other = -1
        elif type(actors) is list and len(actors) == 2 and type(actors[1]) is bytes:
            a = self._aidx.get(actors[0]) if type(actors[0]) is bytes else None
            o = self._aidx.get(actors[1])
            if a is None or o is None or o == a:
                return False
            other = o
            if deps != 0:
                # the one dep such a change can have: the other actor's version
                if type(deps) is not list or len(deps) != 2 or deps[0] != 1:
                    return False
                dep = deps[1]
                if type(dep) is not int or not 0 < dep < MAX_INT or self._vv[other] < dep:
                    return False  # malformed, or waiting for that version: general path
        else:
            return False
        return self._keystroke(a, other, dep, seq, lam, k, key, x, y, z)

    def _keystroke(
        self,
        a: int,
        other: int,
        dep: int,
        seq: int,
        lam: int,
        k: Any,
        key: Any,
        x: int,
        y: Any,
        z: Any,
    ) -> bool:
        """The body of :meth:`_apply_keystroke` once the actors are known
        (``other``: index of the second actor of the table, or -1)."""
        if seq != self._vv[a] + 1 or lam < self._end[a]:
            return False
        root = self._objs.get(key) if type(key) is str else None
        if root is None or key[0] not in "tl":
            return False
        seq_ = root._seq
        if k == INS and type(z) is (str if key[0] == "t" else list) and z:
            if y == -1 and x == 0:
                oact = -1
            elif 0 < x < lam and y == 0:
                oact = a
            elif 0 < x < lam and y == 1 and other >= 0 and self._seen_by(a, other, x, dep):
                oact = other
            else:
                return False
            if key[0] == "l" and not values_are_trees(z):
                return False  # the general path names the problem
            try:
                pos = seq_.integrate(lam, a, x, oact, z)
            except KeyError:
                raise InvalidChangeError(f"insert after unknown element {x} in {key}") from None
            if pos is not None and root._observers:
                root._emit(Delta(pos[0], 0, z, False))
            end = lam + len(z)
        elif k == DEL and type(y) is int and y > 0 and type(z) is int and z > 0:
            if x == 0:
                tact = a
            elif x == 1 and other >= 0 and self._seen_by(a, other, y + z - 1, dep):
                tact = other
            else:
                return False
            # one element: remote_delete finds it before touching anything
            if z > 1 and not seq_.covers(tact, y, z):
                raise InvalidChangeError(f"delete of unknown elements in {key}")
            try:
                spans = seq_.remote_delete(tact, y, z)
            except KeyError:
                raise InvalidChangeError(f"delete of unknown elements in {key}") from None
            for p, m in spans:
                if root._observers:
                    root._emit(Delta(p, m, seq_.empty, False))
            log_delete(self._oplog[a], [DEL, key, lam, tact, y, z, 1])
            end = lam + z
        else:
            return False
        if dep:
            self._deps[a << DEP_SHIFT | seq] = other << DEP_SHIFT | dep  # ints: history.dep_key
            ctx = self._ctx[a]
            if dep > ctx.get(other, 0):
                ctx[other] = dep
        st = self._starts[a]
        st.buf.append(lam)
        if len(st.buf) >= 1024:
            st.fold()
        self._end[a] = end
        self._vv[a] = seq
        if end - 1 > self._lamport:
            self._lamport = end - 1
        if self._observers:
            self._notify(False, {key})
        return True

    def _seen_by(self, a: int, x: int, lam: int, dep: int = 0) -> bool:
        """Had actor ``a`` declared (through its deps, ``dep`` being the one
        of the change at hand) the change of ``x`` holding element ``lam``?
        (See the check in :meth:`_validate`.)"""
        return self._starts[x].count_le(lam) <= max(dep, self._ctx[a].get(x, 0))
