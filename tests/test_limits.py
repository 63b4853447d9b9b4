"""SessionTable: admission limits and eviction order (pure policy, no sockets)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ownkernel.net.limits import (
    PEER,
    PENDING,
    PRIVILEGED,
    SessionLimits,
    SessionTable,
)

K1, K2, K3 = b"k1" * 16, b"k2" * 16, b"k3" * 16


def conn(i: int) -> tuple[str, bytes]:
    return ("in", b"%d" % i)


def test_one_key_cannot_fill_the_table():
    """Hole 7: 1,100 connections from one key, then a member joins at once."""
    t = SessionTable()
    for i in range(1100):
        adm = t.admit(conn(i), K1, "127.0.0.1", now=float(i))
        assert adm.ok
        if i >= 4:  # each newcomer displaces the key's own oldest session
            assert adm.evict == (conn(i - 4),) and adm.reason == "too-many-per-key"
    assert len(t) == 4 and t.count_key(K1) == 4
    member = t.admit(conn(5000), K2, "127.0.0.1", now=2000.0)
    assert member.ok and member.evict == () and member.reason == ""
    assert t.stats["too-many-per-key"] == 1096 and t.stats["evicted-handshake"] == 1096


def test_per_key_prefers_handshake_then_unprivileged_then_own_privileged():
    t = SessionTable(SessionLimits(per_key=3))
    for i in range(3):
        assert t.admit(conn(i), K1, "a", float(i)).ok
    t.authenticated(conn(0), privileged=True)
    t.authenticated(conn(1), privileged=False)
    # conn 2 still in handshake: it goes first although it is the newest
    assert t.admit(conn(3), K1, "a", 3.0).evict == (conn(2),)
    t.authenticated(conn(3), privileged=True)
    # then the unprivileged one
    assert t.admit(conn(4), K1, "a", 4.0).evict == (conn(1),)
    t.authenticated(conn(4), privileged=True)
    # all privileged: the key displaces its own oldest (a member reconnecting)
    adm = t.admit(conn(5), K1, "a", 5.0)
    assert adm.ok and adm.evict == (conn(0),)
    assert t.stats["evicted-own-key"] == 1


def test_privileged_never_evicted_by_others():
    t = SessionTable(SessionLimits(per_key=10, per_address=10, total=3))
    for i, k in enumerate((K1, K2, K3)):
        assert t.admit(conn(i), k, "a", float(i)).ok
        t.authenticated(conn(i), privileged=True)
    adm = t.admit(conn(9), b"x" * 32, "b", 9.0)
    assert not adm.ok and adm.reason == "table-full" and adm.evict == ()
    assert len(t) == 3 and t.stats["refused"] == 1 and t.stats["table-full"] == 1
    assert all(t.state(conn(i)) == PRIVILEGED for i in range(3))


def test_table_full_evicts_handshake_then_unprivileged_oldest_first():
    t = SessionTable(SessionLimits(total=4))
    keys = [bytes([i]) * 32 for i in range(10)]
    for i in range(4):
        assert t.admit(conn(i), keys[i], f"a{i}", float(i)).ok
    t.authenticated(conn(0), privileged=False)
    t.authenticated(conn(1), privileged=True)
    # pending ones (2, 3) go first, oldest first
    assert t.admit(conn(4), keys[4], "x", 4.0).evict == (conn(2),)
    assert t.admit(conn(5), keys[5], "x", 5.0).evict == (conn(3),)
    t.authenticated(conn(4), privileged=True)
    t.authenticated(conn(5), privileged=True)
    # then the authenticated unprivileged one
    adm = t.admit(conn(6), keys[6], "x", 6.0)
    assert adm.evict == (conn(0),) and adm.reason == "table-full"
    assert t.stats["evicted-handshake"] == 2 and t.stats["evicted-unprivileged"] == 1
    assert t.state(conn(6)) == PENDING and t.state(conn(1)) == PRIVILEGED


def test_per_address_limit():
    t = SessionTable(SessionLimits(per_address=2))
    assert t.admit(conn(0), K1, "10.0.0.1", 0.0).ok
    assert t.admit(conn(1), K2, "10.0.0.1", 1.0).ok
    t.authenticated(conn(0), privileged=True)
    t.authenticated(conn(1), privileged=True)
    adm = t.admit(conn(2), K3, "10.0.0.1", 2.0)
    assert not adm.ok and adm.reason == "too-many-per-address"
    assert t.admit(conn(3), K3, "10.0.0.2", 3.0).ok  # another address is fine
    t.authenticated(conn(1), privileged=False)  # lost its last shared doc
    adm = t.admit(conn(4), K3, "10.0.0.1", 4.0)
    assert adm.ok and adm.evict == (conn(1),) and t.count_address("10.0.0.1") == 2


def test_evicted_conns_are_remembered_briefly_and_boundedly():
    t = SessionTable(SessionLimits(per_key=1, evicted_memory=3, evicted_ttl=10.0))
    for i in range(6):
        t.admit(conn(i), K1, "a", float(i))
    # 0..4 were evicted; only the 3 newest are remembered
    assert [t.was_evicted(conn(i), 5.0) for i in range(6)] == [
        False, False, True, True, True, False]
    # conn 2 was evicted at t=3, conn 4 at t=5 (when its successor came)
    assert not t.was_evicted(conn(2), 13.5)  # expired
    assert t.was_evicted(conn(4), 13.5)
    # saying hello again: admitted afresh, no longer marked
    assert t.admit(conn(4), K1, "a", 14.0).evict == (conn(5),)
    assert not t.was_evicted(conn(4), 14.0) and t.was_evicted(conn(5), 14.0)
    t.closed(conn(5))  # the node drops the session we told it to evict: still marked
    assert t.was_evicted(conn(5), 14.0)
    t.closed(conn(5), gone=True)  # its connection closed: nothing left to ignore
    assert not t.was_evicted(conn(5), 14.0)


def test_known_conn_is_idempotent_and_closed_frees_slot():
    t = SessionTable(SessionLimits(total=1))
    assert t.admit(conn(0), K1, "a", 0.0).ok
    t.authenticated(conn(0), privileged=True)
    assert t.admit(conn(0), K1, "a", 1.0) == t.admit(conn(0), K1, "a", 2.0)
    assert not t.admit(conn(1), K2, "a", 3.0).ok
    t.closed(conn(0))
    t.closed(conn(0))  # twice is harmless
    t.authenticated(conn(0), privileged=True)  # after close: ignored
    assert conn(0) not in t and t.admit(conn(1), K2, "a", 4.0).ok


def test_bad_input_is_named():
    t = SessionTable()
    with pytest.raises(TypeError, match="key must be bytes"):
        t.admit(conn(0), "k1", "a", 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address must be str"):
        t.admit(conn(0), K1, None, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_key"):
        SessionLimits(per_key=0)
    assert len(t) == 0


class TableMachine(RuleBasedStateMachine):
    """Random admit/authenticate/close sequences against a model of the invariants."""

    KEYS = [bytes([i]) * 32 for i in range(5)]
    ADDRS = ["a", "b", "c"]

    def __init__(self) -> None:
        super().__init__()
        # small limits so that full tables, full addresses and all-privileged
        # tables are all reached within a few steps
        self.limits = SessionLimits(per_key=2, per_address=3, total=5, evicted_memory=6,
                                    evicted_ttl=50.0)
        self.t = SessionTable(self.limits)
        self.model: dict[object, tuple[bytes, str, str]] = {}  # conn -> key, addr, state
        self.now = 0.0
        self.next = 0

    @rule(k=st.integers(0, 4), a=st.integers(0, 2))
    def admit(self, k: int, a: int) -> None:
        self.now += 1.0
        self.next += 1
        c, key, addr = conn(self.next), self.KEYS[k], self.ADDRS[a]
        before = dict(self.model)
        adm = self.t.admit(c, key, addr, self.now)
        if not adm.ok:
            assert adm.evict == () and adm.reason
            assert c not in self.t
            # refused only when every candidate it could displace is privileged
            return
        for v in adm.evict:
            vkey, vaddr, vstate = before[v]
            # privileged sessions are displaced only by a newcomer with their own key
            assert vstate != PRIVILEGED or vkey == key
            assert v not in self.t and self.t.was_evicted(v, self.now)
            del self.model[v]
        assert len(adm.evict) <= 3
        self.model[c] = (key, addr, PENDING)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), privileged=st.booleans())
    def authenticate(self, data: st.DataObject, privileged: bool) -> None:
        c = data.draw(st.sampled_from(sorted(self.model)))
        self.t.authenticated(c, privileged)
        key, addr, _ = self.model[c]
        self.model[c] = (key, addr, PRIVILEGED if privileged else PEER)

    @rule()
    def everyone_privileged(self) -> None:
        for c, (key, addr, _) in list(self.model.items()):
            self.t.authenticated(c, privileged=True)
            self.model[c] = (key, addr, PRIVILEGED)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from(sorted(self.model)))
        self.t.closed(c)
        del self.model[c]

    @invariant()
    def within_limits_and_matches_model(self) -> None:
        assert len(self.t) == len(self.model) <= self.limits.total
        keys = Counter(k for k, _, _ in self.model.values())
        addrs = Counter(a for _, a, _ in self.model.values())
        assert all(n <= self.limits.per_key for n in keys.values())
        assert all(n <= self.limits.per_address for n in addrs.values())
        for c, (_key, _addr, state) in self.model.items():
            assert self.t.state(c) == state
        for k, n in keys.items():
            assert self.t.count_key(k) == n
        assert len(self.t._evicted) <= self.limits.evicted_memory


TableMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=50,
                                          deadline=None, derandomize=True)
test_table_state_machine = TableMachine.TestCase
