"""The gossip simulator: deterministic, converges, survives loss and partitions."""

from __future__ import annotations

import math

import cbor2
import pytest

from ownkernel.net.sim import SetHost, Simulation, fanout, idle_cost, partition_heal, spread


def test_same_seed_same_run():
    assert spread(60, seed=7) == spread(60, seed=7)
    assert partition_heal(60, seed=7) == partition_heal(60, seed=7)


@pytest.mark.parametrize("n", [2, 10, 100])
def test_change_reaches_every_node_within_target(n):
    r = spread(n, seed=1)
    assert 1 <= r.rounds <= max(2, 2 * math.log2(n))
    assert r.lost == 0 and r.messages > 0


def test_converges_under_message_loss():
    r = spread(100, seed=3, loss=0.2)
    assert r.lost > 0
    assert r.rounds <= 4 * math.log2(100)


def test_converges_without_peer_exchange_on_static_graph():
    assert spread(100, seed=4, pex=False).rounds <= 4 * math.log2(100)


def test_partition_heals():
    sim = Simulation(80, seed=5)
    for _ in range(3):
        sim.step()
    sim.partition()
    sides = {g: sorted(i for i, s in sim.group.items() if s == g) for g in (0, 1)}
    a, b = sim.nodes[sides[0][0]], sim.nodes[sides[1][0]]
    a.host.make_change()
    b.host.make_change()
    # 25 rounds: with half the views pointing across the cut, spreading inside a
    # side is slower than 2*log2(N) (v1 needed 15 here, 9-18 over seeds 5..24)
    for _ in range(25):
        sim.step()
    # within each side the edit spread; across the cut nothing did
    assert sim.coverage(a.host.actor, 1) == len(sides[0])
    assert sim.coverage(b.host.actor, 1) == len(sides[1])
    assert not sim.converged()
    sim.heal()
    rounds = sim.run_until_converged(max_rounds=50)
    assert rounds <= 2 * math.log2(80)
    assert sim.coverage(a.host.actor, 1) == sim.coverage(b.host.actor, 1) == 80


def test_partition_heal_with_loss():
    r = partition_heal(100, seed=6, loss=0.1)
    assert r.rounds_to_converge <= 4 * math.log2(100)


def test_many_writers_converge():
    sim = Simulation(50, seed=8, loss=0.05)
    for i, node in enumerate(sim.nodes.values()):
        for _ in range(i % 3 + 1):
            node.host.make_change()
    sim.run_until_converged(max_rounds=40)
    vv = next(iter(sim.nodes.values())).host.vv["doc"]
    assert len(vv) == 50 and sum(vv.values()) == sum(i % 3 + 1 for i in range(50))


def test_set_host_keeps_gaps_requested():
    h = SetHost(bytes(32))
    h.ingest("doc", [cbor2.dumps([b"x", 2])], b"")
    assert h.vv["doc"] == {b"x": 0}
    h.ingest("doc", [cbor2.dumps([b"x", 1])], b"")
    assert h.vv["doc"] == {b"x": 2}
    with pytest.raises(ValueError):
        h.ingest("doc", [b"\xff"], b"")


def test_thousand_nodes_within_two_log2_n_rounds():
    r = spread(1000, seed=1)
    assert r.rounds <= 2 * math.log2(1000)
    assert partition_heal(1000, seed=1).rounds_to_converge <= 2 * math.log2(1000)


def test_twelve_node_mesh_receives_each_change_about_once():
    # 12 nodes fully meshed, 60 keystrokes/s in total from random typists: the
    # author pushes, every other node announces, peers pull only what they lack
    r = fanout(12, topology="full", rate=60, seconds=5, seed=1)
    assert r.converged and r.changes == 300
    assert r.dup_per_change_per_node <= 1.0, r
    # relaying every change eagerly instead (peer_has still consulted) floods
    flood = fanout(12, topology="full", rate=60, seconds=5, seed=1, policy="flood")
    assert flood.converged and flood.dup_per_change_per_node > 1.0, flood


def test_changes_reach_everyone_along_a_chain():
    r = fanout(10, topology="chain", rate=20, seconds=3, seed=2)
    assert r.converged and r.changes == 60 and r.duplicates == 0
    # every node stored every change it did not make itself
    assert r.p99_ms > 0


def test_idle_cost_per_peer_is_independent_of_docs():
    one = idle_cost(30, 1, minutes=2)
    many = idle_cost(30, 2000, minutes=2)
    for r in (one, many):
        assert r.frames_per_peer_min <= 100 and r.bytes_per_peer_min <= 10 * 1024
    assert one.frames_per_peer_min == many.frames_per_peer_min


def test_spread_with_many_docs():
    r = spread(100, seed=1, docs=200)
    assert 1 <= r.rounds <= 2 * math.log2(100)
