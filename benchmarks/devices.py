"""Users and devices: what certificates, pairing and the user mapping cost.

    python benchmarks/devices.py            # prints the figures (a few seconds)

- verifying a device certificate (two Ed25519 signatures) and a revocation;
- ``Gate.may_read`` for a sibling device, a user-granted device and a stranger
  (the admission question asked for every offered doc);
- admitting 2,000 changes of a writer named by its device id vs by its user id
  (the user mapping on the ingest path);
- a pairing round trip on 127.0.0.1 (token → certificate), wall and CPU time.

Figures go to benchmarks/results/devices.md (with the load average beside them).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel.node import Node  # noqa: E402
from ownkernel.node.config import NetConfig  # noqa: E402
from ownkernel.node.users import (  # noqa: E402
    Users,
    device_accept,
    make_cert,
    make_revocation,
    parse_record,
)
from ownkernel.store import Identity  # noqa: E402


def per_call_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def records() -> None:
    user, dev = Identity.generate(), Identity.generate()
    cert = make_cert(user, dev.node_id, device_accept(dev, user.node_id), "d", 1.0)
    (rev,) = make_revocation(user, dev.node_id, 2.0, {bytes([i]) * 16: i for i in range(20)})
    us = per_call_us(lambda: parse_record(cert), 300)
    print(f"certificate: {len(cert)} B, verify {us:.0f} us")
    print(f"revocation (20 docs): {len(rev)} B, verify "
          f"{per_call_us(lambda: parse_record(rev), 300):.0f} us")
    reg = Users(dev.node_id, user.node_id)
    print(f"Users.add of a known certificate: {per_call_us(lambda: reg.add(cert), 300):.0f} us")


def admission(tmp: Path) -> None:
    owner = Node(tmp / "owner", network=False)
    writer = Node(tmp / "writer", network=False)
    docs = {}
    for how in ("device", "user"):
        d = owner.new_doc(how)
        who = writer.id if how == "device" else writer.user.id
        owner.grant(d, who, "writer")
        writer._join_local(owner.invite(d, write=False))
        with owner.lock:
            envs = owner.replica.outgoing(d.id, {})
        writer.replica.ingest(d.id, envs)
        docs[how] = d.id
    with owner.lock:
        owner._devices._learn(writer._devices.users.records())
    # may_read
    stranger = Identity.generate().node_id
    with owner.lock:
        g = owner.gate
        for label, peer, doc in (("stranger", stranger, docs["user"]),
                                 ("device named", writer.id, docs["device"]),
                                 ("user named", writer.id, docs["user"])):
            g.changed()
            us = per_call_us(lambda p=peer, d=doc: g.may_read(p, d), 2000)
            print(f"may_read ({label}): {us:.1f} us")
    for how, doc in docs.items():
        t = writer.open(doc).text()
        for i in range(2000):
            t.insert(len(t), "x" if i % 50 else "\n")
        with writer.lock:
            envs = writer.replica.outgoing(doc, owner.replica.version(doc))
        # a batch as one signed run: the grant-less fast path, whole stretches
        c0, t0 = time.process_time(), time.perf_counter()
        got = owner.replica.ingest(doc, envs)
        c1, t1 = time.process_time(), time.perf_counter()
        print(f"ingest 2000 changes, writer named by {how} id: {len(got)} accepted, "
              f"{(t1 - t0) * 1e3:.0f} ms wall, {(c1 - c0) * 1e3:.0f} ms CPU")
    owner.close()
    writer.close()


def pairing(tmp: Path, rounds: int = 5) -> None:
    cfg = NetConfig(listen=["tcp://127.0.0.1:0"])
    issuer = Node(tmp / "issuer", network=cfg, control=False)
    walls, cpus = [], []
    for i in range(rounds):
        dev = Node(tmp / f"dev{i}", network=cfg, control=False)
        token = issuer.pair()
        c0, t0 = time.process_time(), time.perf_counter()
        dev.pair_with(token, timeout=15)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        dev.close()
    issuer.close()
    print(f"pairing round trip (incl. connect), {rounds} runs: median "
          f"{statistics.median(walls) * 1e3:.0f} ms wall, {statistics.median(cpus) * 1e3:.0f} "
          f"ms CPU (both nodes in this process)")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    print(f"load average: {load()}")
    records()
    with tempfile.TemporaryDirectory() as d:
        admission(Path(d))
        pairing(Path(d))
    print(f"load average: {load()}")


if __name__ == "__main__":
    os.environ.pop("OWNKERNEL_BOOTSTRAP", None)
    main()
