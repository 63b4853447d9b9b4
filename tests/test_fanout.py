"""Sharing's announce decision (node/sharing.py lacking_upto), checked against the
per-change rule of Sharing.forward it replaces for others' changes."""
from __future__ import annotations

import random

from ownkernel.node.sharing import lacking_from_marks, lacking_upto


def per_change(changes: list[tuple[bytes, int]], mark: dict[bytes, int]) -> dict[bytes, int]:
    """The rule as forward states it, change by change: the changes the peer lacks,
    the last of each actor, kept where the first lacked one joins what it holds."""
    def has(a: bytes, q: int) -> bool:
        return mark.get(a, 0) >= q
    lack = [(a, q) for a, q in changes if not has(a, q)]
    upto: dict[bytes, int] = {}
    first: dict[bytes, int] = {}
    for a, q in lack:
        upto[a] = max(upto.get(a, 0), q)
        first[a] = min(first.get(a, q), q)
    return {a: q for a, q in upto.items() if first[a] <= 1 or has(a, first[a] - 1)}


def fast(changes: list[tuple[bytes, int]], mark: dict[bytes, int]) -> dict[bytes, int]:
    seqs: dict[bytes, list[int]] = {}
    for a, q in changes:
        seqs.setdefault(a, []).append(q)
    for qs in seqs.values():
        qs.sort()
    return lacking_upto(seqs, lambda a, q: mark.get(a, 0) >= q)


def test_next_change_of_a_known_peer_is_announced() -> None:
    assert fast([(b"a", 5)], {b"a": 4}) == {b"a": 5}
    assert fast([(b"a", 1)], {}) == {b"a": 1}


def test_held_changes_and_gaps_are_not_announced() -> None:
    assert fast([(b"a", 5)], {b"a": 5}) == {}  # it holds it
    assert fast([(b"a", 5)], {b"a": 2}) == {}  # 3..4 unknown to it: a gap
    assert fast([(b"a", 5)], {}) == {}
    # a burst joining its mark is announced up to its last change
    assert fast([(b"a", 3), (b"a", 4), (b"a", 5)], {b"a": 2}) == {b"a": 5}
    # per actor: one joins, one does not
    assert fast([(b"a", 3), (b"b", 9)], {b"a": 2, b"b": 3}) == {b"a": 3}


def test_matches_the_per_change_rule_on_random_bursts() -> None:
    rng = random.Random(15)
    actors = [b"a", b"b", b"c"]
    for _ in range(5000):
        changes = list({(rng.choice(actors), rng.randint(1, 12))
                        for _ in range(rng.randint(1, 8))})
        rng.shuffle(changes)
        mark = {a: rng.randint(0, 12) for a in actors if rng.random() < 0.8}
        assert fast(changes, mark) == per_change(changes, mark), (changes, mark)


def test_marks_give_the_same_decision() -> None:
    """The announce path asks one mark per actor (PeerSession.peer_mark) instead of
    has() per seq: the same decision on random bursts."""
    rng = random.Random(6)
    actors = [b"a", b"b", b"c"]
    for _ in range(5000):
        changes = list({(rng.choice(actors), rng.randint(1, 12))
                        for _ in range(rng.randint(1, 8))})
        mark = {a: rng.randint(0, 12) for a in actors if rng.random() < 0.8}
        seqs: dict[bytes, list[int]] = {}
        for a, q in changes:
            seqs.setdefault(a, []).append(q)
        for qs in seqs.values():
            qs.sort()
        assert lacking_from_marks(seqs, lambda a, m=mark: m.get(a, 0)) == fast(changes, mark)


def test_peer_mark_agrees_with_peer_has() -> None:
    from test_protocol_sync import A_ID, B_ID, connect

    from ownkernel.net.sim import DOC, SetHost

    ha, hb = SetHost(A_ID), SetHost(B_ID)
    w = connect(ha, hb)
    x, y = b"x" * 8, b"y" * 8
    w.b.send_have(DOC, {x: 3, y: 1}, partial=True)  # what a hears (said)
    w.pump()
    for _ in range(2):
        ha.make_change()
    w.a.send_changes(DOC, [b"?"], upto={ha.actor: 2, y: 4})  # what a sent
    mark = w.a.peer_mark(DOC)
    for actor in (x, y, ha.actor, b"z" * 8):
        for q in range(1, 6):
            assert (mark(actor) >= q) == w.a.peer_has(DOC, actor, q), (actor, q)
    assert w.a.peer_mark(b"other doc")(x) == 0


# ---------------------------------------------------------------- timers reported (on_due)
# A node no longer asks every session for next_due() after every frame: a session
# reports each timer it sets (on_due) and the node brings its sleep forward. So any
# step that moves a session's next_due() earlier must have reported that time.


def test_every_earlier_timer_is_reported() -> None:
    from test_protocol_sync import A_ID, B_ID, connect

    from ownkernel.net.sim import DOC, SetHost

    ha, hb = SetHost(A_ID), SetHost(B_ID)
    w = connect(ha, hb, now=0.0, ping_interval=5.0, peer_timeout=15.0,
                anti_entropy_interval=30.0, pull_delay=0.02, announce_delay=0.05,
                digest_min_interval=1.0)
    reported: dict[str, list[float]] = {"a": [], "b": []}
    w.a.on_due = reported["a"].append
    w.b.on_due = reported["b"].append
    sessions = {"a": w.a, "b": w.b}

    def step(fn, *args) -> None:  # type: ignore[no-untyped-def]
        before = {k: s.next_due() for k, s in sessions.items()}
        for r in reported.values():
            r.clear()
        fn(*args)
        for k, s in sessions.items():
            after = s.next_due()
            if after < before[k]:
                assert reported[k] and min(reported[k]) <= after, (k, before[k], after)

    for t in (5.0, 6.0, 6.5):
        ha.make_change()
        w.a._now = t  # (the host's clock: a node gives it with each frame and tick)
        step(w.a.announce, DOC, dict(ha.vv[DOC]))  # held announce_delay
        for dt in (0.05, 0.07, 0.1):  # its flush, the peer's delayed pull, the answer
            step(w.a.tick, t + dt)
            step(w.pump, t + dt)
            step(w.b.tick, t + dt)
            step(w.pump, t + dt)
    assert hb.vv[DOC] == ha.vv[DOC]  # the announces were pulled
    # a differing digest inside digest_min_interval waits: its answer time is reported
    hb.make_change()
    step(w.a.sync_all, 7.0)
    step(w.pump, 7.0)
    hb.make_change()
    step(w.a.sync_all, 7.5)
    step(w.pump, 7.5)
    assert w.b._digest_pending is not None


# ---------------------------------------------------------------- timer rounds (node)


def test_timer_rounds_run_clean_with_quiet_sleeps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two connected nodes for a few address-book rounds (1 s each) and ping rounds:
    no round fails (a failure is caught, counted as tick-error and would skip the
    rest of that round: presence, flushes), and the peers stay connected while the
    timer round sleeps up to QUIET_TICK."""
    import time

    from ownkernel.node import Node
    from ownkernel.node.network import NetConfig

    cfg = dict(ping_interval=0.3, peer_timeout=2.0, anti_entropy=1.0, backoff_min=0.05,
               backoff_max=0.5, connect_timeout=1.0)
    a = Node(tmp_path / "a", name="a", network=NetConfig(**cfg))  # type: ignore[arg-type]
    b = Node(tmp_path / "b", name="b", network=NetConfig(**cfg))  # type: ignore[arg-type]
    try:
        na, nb = a.network, b.network
        assert na is not None and nb is not None
        peer = nb.connect(na.addresses[0], timeout=5)
        assert peer is not None and peer.online
        time.sleep(2.5)  # two book rounds and several pings/anti-entropy rounds
        for net in (na, nb):
            st = net.stats()
            assert st["errors"].get("tick-error", 0) == 0, st["errors"]
            assert st["peers_online"] == 1
            assert not net.timers.dialing_busy()  # so it slept up to QUIET_TICK
        assert all(p.online for p in nb.peers())
    finally:
        for n in (a, b):
            n.close()
