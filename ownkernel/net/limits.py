"""Session-table policy: who may hold a protocol session, and who makes room.

Pure bookkeeping (no I/O, no clock: callers pass ``now``), so the node's
network thread can ask it on every new connection and tests can drive it
with any sequence of events.

Why it exists: the node keeps one protocol session per connection. A table
capped only in total let 1,100 connections from *one* key fill it so that a
member with a valid invite could not join. Here a connection is admitted
under three limits (per Curve key, per network address, total) and, when one
is reached, room is made by evicting the least valuable sessions:

1. connections still in handshake (no verified hello yet), oldest first;
2. authenticated but unprivileged ones (share nothing with us), oldest first.

Privileged sessions (a member, or a peer sharing a doc with us) are never
evicted to make room for someone else. The one exception is a key's own
sessions: a key over its per-key limit displaces its *own* oldest session,
even a privileged one, because the Curve handshake proved the newcomer holds
that key (a member whose old connections have not timed out yet must be
able to reconnect).

ROUTER peers cannot be kicked at the ZeroMQ level, so "evict" means: the node
forgets the session and ignores that connection's frames until it says hello
again. The table remembers evicted connections for a while (bounded set) so
the node can tell "evicted, drop quietly unless it is a hello" from "new".
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

Conn = Hashable  # the transport's ConnId; any hashable works here

PENDING = "pending"  # admitted, hello not verified yet
PEER = "peer"  # authenticated, shares nothing with us
PRIVILEGED = "privileged"  # authenticated member / shares a doc with us


# stats counter per state of an evicted session (privileged: only by its own key)
_EVICTED = {PENDING: "evicted-handshake", PEER: "evicted-unprivileged",
            PRIVILEGED: "evicted-own-key"}


@dataclass(frozen=True)
class SessionLimits:
    per_key: int = 4
    per_address: int = 64
    total: int = 1024
    evicted_memory: int = 4096  # evicted conns remembered (oldest forgotten first)
    evicted_ttl: float = 300.0  # seconds an eviction is remembered

    def __post_init__(self) -> None:
        for name in ("per_key", "per_address", "total", "evicted_memory"):
            if getattr(self, name) < 1:
                raise ValueError(f"SessionLimits.{name} must be >= 1, got {getattr(self, name)}")
        if self.evicted_ttl < 0:
            raise ValueError(f"SessionLimits.evicted_ttl must be >= 0, got {self.evicted_ttl}")


@dataclass(frozen=True)
class Admission:
    ok: bool  # True: create the session for this conn
    evict: tuple[Conn, ...] = ()  # forget these sessions first (already removed here)
    reason: str = ""  # the limit that was reached ("" if none), refused or resolved


@dataclass
class _Entry:
    key: bytes
    address: str
    since: float
    seq: int  # admission order: ties in `since` still evict the older first
    state: str = PENDING


class SessionTable:
    """Admission and eviction policy for the node's per-connection sessions.

    ``admit`` before creating a session; ``authenticated`` once its hello is
    verified (again whenever privilege changes); ``closed`` when the session
    ends for any other reason. Counters by reason are in ``stats``.
    """

    def __init__(self, limits: SessionLimits | None = None) -> None:
        self.limits = limits or SessionLimits()
        self.stats: Counter[str] = Counter()
        self._entries: dict[Conn, _Entry] = {}
        self._by_key: dict[bytes, set[Conn]] = {}
        self._by_address: dict[str, set[Conn]] = {}
        self._evicted: OrderedDict[Conn, float] = OrderedDict()  # conn -> when
        self._seq = 0

    # ------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, conn: object) -> bool:
        return conn in self._entries

    def state(self, conn: Conn) -> str | None:
        e = self._entries.get(conn)
        return e.state if e else None

    def count_key(self, key: bytes) -> int:
        return len(self._by_key.get(key, ()))

    def count_address(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def was_evicted(self, conn: Conn, now: float) -> bool:
        """True if ``conn`` lost its session to eviction recently (drop its frames unless hello)."""
        self._expire(now)
        return conn in self._evicted

    # ------------------------------------------------------------ events
    def admit(self, conn: Conn, key: bytes, address: str, now: float) -> Admission:
        """May ``conn`` (authenticated Curve ``key``, from ``address``) get a session?

        On ``ok`` the conn is in the table (state pending) and every conn in
        ``evict`` has been removed: the caller must drop their sessions.
        """
        if not isinstance(key, bytes):
            raise TypeError(f"SessionTable.admit: key must be bytes, got {type(key).__name__}")
        if not isinstance(address, str):
            raise TypeError(
                f"SessionTable.admit: address must be str, got {type(address).__name__}")
        if conn in self._entries:
            return Admission(True)
        self._expire(now)
        lim = self.limits
        plan: list[Conn] = []  # evictions chosen so far (applied only if admitted)

        def live(group: set[Conn] | None) -> list[Conn]:
            return [c for c in (group or ()) if c not in plan]

        reason = ""
        same_key = live(self._by_key.get(key))
        if len(same_key) >= lim.per_key:
            reason = "too-many-per-key"
            victim = self._pick(same_key, own_key=True)
            if victim is None:  # cannot happen (own key may displace any), kept for safety
                return self._refuse(reason)
            plan.append(victim)
        same_addr = live(self._by_address.get(address))
        if len(same_addr) >= lim.per_address:
            reason = reason or "too-many-per-address"
            victim = self._pick(same_addr)
            if victim is None:
                return self._refuse("too-many-per-address")
            plan.append(victim)
        if len(self._entries) - len(plan) >= lim.total:
            reason = reason or "table-full"
            victim = self._pick(live(set(self._entries)))
            if victim is None:
                return self._refuse("table-full")
            plan.append(victim)
        if reason:
            self.stats[reason] += 1
        for victim in plan:
            self.stats[_EVICTED[self._entries[victim].state]] += 1
            self._remove(victim)
            self._remember(victim, now)
        self._seq += 1
        self._entries[conn] = _Entry(key, address, now, self._seq)
        self._by_key.setdefault(key, set()).add(conn)
        self._by_address.setdefault(address, set()).add(conn)
        self._evicted.pop(conn, None)  # it is back (said hello again)
        self.stats["admitted"] += 1
        return Admission(True, tuple(plan), reason)

    def authenticated(self, conn: Conn, privileged: bool) -> None:
        """The conn's hello was verified; ``privileged``: member / shares a doc with us."""
        e = self._entries.get(conn)
        if e is None:
            return  # evicted or closed meanwhile: nothing to upgrade
        e.state = PRIVILEGED if privileged else PEER

    def closed(self, conn: Conn, gone: bool = False) -> None:
        """The session ended (timeout, bye, eviction applied): free its slot.

        An eviction mark survives this (the node may call ``closed`` for the
        sessions it drops on our advice); ``gone=True`` (the connection itself
        is closed, it can never send again) forgets the mark too.
        """
        if conn in self._entries:
            self._remove(conn)
        if gone:
            self._evicted.pop(conn, None)

    # ------------------------------------------------------------ internals
    def _pick(self, candidates: list[Conn], own_key: bool = False) -> Conn | None:
        """Oldest pending, else oldest unprivileged; privileged only among a key's own."""
        order = (PENDING, PEER, PRIVILEGED) if own_key else (PENDING, PEER)
        for state in order:
            pool = [c for c in candidates if self._entries[c].state == state]
            if pool:
                return min(pool, key=lambda c: self._entries[c].seq)
        return None

    def _refuse(self, reason: str) -> Admission:
        self.stats[reason] += 1
        self.stats["refused"] += 1
        return Admission(False, (), reason)

    def _remove(self, conn: Conn) -> None:
        e = self._entries.pop(conn)
        for index, k in ((self._by_key, e.key), (self._by_address, e.address)):
            group = index[k]  # type: ignore[index]
            group.discard(conn)
            if not group:
                del index[k]  # type: ignore[arg-type]

    def _remember(self, conn: Conn, now: float) -> None:
        self._evicted.pop(conn, None)
        self._evicted[conn] = now
        while len(self._evicted) > self.limits.evicted_memory:
            self._evicted.popitem(last=False)

    def _expire(self, now: float) -> None:
        ttl = self.limits.evicted_ttl
        while self._evicted:
            conn, when = next(iter(self._evicted.items()))
            if now - when < ttl:
                break
            self._evicted.popitem(last=False)


# ------------------------------------------------------------------ sending


def wire_size(n: int) -> int:
    """Bytes one n-byte frame takes on a CurveZMQ connection.

    MESSAGE command: "\\x07MESSAGE" (8) + short nonce (8) + box (16 MAC + 1
    flags byte + payload); ZMTP framing: flags byte + 1- or 8-byte length.
    Exact, so accounting against TCP's acked-byte counter does not drift.
    """
    body = n + 33
    return body + (2 if body <= 255 else 9)


class SendAccount:
    """Bytes handed to libzmq for one connection that the peer has not yet acked.

    ``acked`` is the kernel's count of bytes the peer's TCP acknowledged
    (TCP_INFO), when known: then ``in_flight`` = libzmq's queue plus our
    kernel send buffer, exactly. Without it (no probe of the socket), bytes
    are assumed to drain at ``fallback_rate`` bytes/s, an approximation.
    """

    def __init__(self, now: float, acked: int | None = None,
                 fallback_rate: float = 8 * 1024 * 1024) -> None:
        self.handed = 0
        self.base = acked or 0
        self.has_acked = acked is not None
        self.fallback_rate = fallback_rate
        self.stamp = now
        self.in_flight = 0  # last computed value (stale values only overestimate)
        self.read_at = -1.0  # monotonic time of the last update() (see SendBudgets._refresh)

    def rebase(self, acked: int | None, now: float) -> None:
        """A new TCP connection under the same conn (libzmq reconnected)."""
        self.handed, self.in_flight, self.stamp = 0, 0, now
        self.base, self.has_acked = acked or 0, acked is not None
        self.read_at = -1.0

    def update(self, now: float, acked: int | None) -> int:
        self.read_at = now
        if acked is not None and self.has_acked:
            delivered = acked - self.base
            if delivered > self.handed:  # under-counted overhead: never go negative
                self.base = acked - self.handed
                delivered = self.handed
            self.in_flight = self.handed - delivered
        else:
            drained = int((now - self.stamp) * self.fallback_rate)
            self.handed = max(0, self.handed - drained)
            self.stamp = now
            self.in_flight = self.handed
        return self.in_flight

    def add(self, nbytes: int) -> None:
        self.handed += nbytes
        self.in_flight += nbytes


__all__ = ["PEER", "PENDING", "PRIVILEGED", "Admission", "SendAccount", "SessionLimits",
           "SessionTable", "wire_size"]
