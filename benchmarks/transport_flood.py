"""Transport under a peer that never reads, and its cost for honest peers (issue #8, hole 6).

    python benchmarks/transport_flood.py [--baseline /work/main] [--frames 300]

Runs the same measurements in a child process for this checkout ("ours") and,
with ``--baseline``, for another checkout (e.g. main before the byte budgets),
and prints a markdown table:

- RSS growth (peak) of a node sending fresh 1 MiB frames every 2 ms to a
  Curve peer (its own process) that connected, said one frame and never reads;
- 100-byte frames/s to an honest reading peer (Curve, loopback, one process);
- 1 MiB frames to an honest reader sent back to back, and paced by
  ``congested()`` (ours only): MiB/s delivered and frames refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SLOW_READER = r"""
import sys, time, zmq
pub, sec, server = (bytes.fromhex(a) for a in sys.argv[1:4])
d = zmq.Context().socket(zmq.DEALER)
d.linger = 0
d.rcvhwm = 1
d.curve_publickey, d.curve_secretkey, d.curve_serverkey = pub, sec, server
d.connect(sys.argv[4])
d.send(b"hello, then I never read")
time.sleep(600)
"""


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def config(**kw):  # type: ignore[no-untyped-def]
    from ownkernel.net.transport import TransportConfig
    return TransportConfig(listen=("tcp://127.0.0.1:0",), **kw)


async def never_reader(frames: int) -> dict[str, float]:
    from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519
    from nacl.signing import SigningKey

    from ownkernel.net.protocol import curve_key_of
    from ownkernel.net.transport import Transport

    ka, kr = SigningKey.generate(), SigningKey.generate()
    rid = kr.verify_key.encode()
    r_pub, r_sec = curve_key_of(rid), crypto_sign_ed25519_sk_to_curve25519(bytes(kr) + rid)
    async with Transport(ka, config()) as server:
        child = subprocess.Popen([sys.executable, "-c", SLOW_READER, r_pub.hex(), r_sec.hex(),
                                  server.curve_public.hex(), server.endpoints[0]])
        try:
            slow = (await asyncio.wait_for(server.recv(), 15)).conn
            before, peak, sent = rss(), 0, 0
            t0 = time.perf_counter()
            for _ in range(frames):
                sent += bool(await server.send(slow, os.urandom(1 << 20)))
                await asyncio.sleep(0.002)
                peak = max(peak, rss() - before)
            return {"rss_peak_mb": peak / 2**20, "sent": sent, "refused": frames - sent,
                    "seconds": time.perf_counter() - t0}
        finally:
            child.kill()
            child.wait()


async def honest(n_small: int, n_big: int) -> dict[str, float]:
    from nacl.signing import SigningKey

    from ownkernel.net.transport import Transport

    out: dict[str, float] = {}
    fast = {"rate": 1e9, "burst": 1e9, "queue_size": 1_000_000}
    async with Transport(SigningKey.generate(), config(**fast)) as server, \
            Transport(SigningKey.generate(), config(**fast)) as client:
        conn = await client.connect(server.addresses[0], timeout=5)
        await client.send(conn, b"hi")
        back = (await server.recv()).conn

        async def burst(n: int, size: int, paced: bool) -> tuple[float, int]:
            frame = b"x" * size
            ok = 0
            t0 = time.perf_counter()
            for _ in range(n):
                if paced:
                    while server.congested(back):
                        await asyncio.sleep(0.0005)
                ok += bool(await server.send(back, frame))
            for _ in range(ok):
                await asyncio.wait_for(client.recv(), 10)
            return time.perf_counter() - t0, ok

        dt, ok = await burst(n_small, 100, paced=False)
        out["small_per_s"] = ok / dt
        out["small_refused"] = n_small - ok
        dt, ok = await burst(n_big, 1 << 20, paced=False)
        out["big_mib_s"], out["big_refused"] = ok / dt, n_big - ok
        if hasattr(server, "congested"):
            dt, ok = await burst(n_big, 1 << 20, paced=True)
            out["paced_mib_s"], out["paced_refused"] = ok / dt, n_big - ok
    return out


def child(frames: int) -> None:
    res = asyncio.run(never_reader(frames))
    res.update(asyncio.run(honest(20_000, 200)))
    print(json.dumps(res))


def run_in(path: Path, frames: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(path))
    p = subprocess.run([sys.executable, __file__, "--child", "--frames", str(frames)],
                       env=env, capture_output=True, text=True, timeout=600, cwd=path)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=Path, help="another checkout to compare with")
    ap.add_argument("--frames", type=int, default=300, help="1 MiB frames to the non-reader")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.frames)
        return
    runs = {"ours": run_in(Path(__file__).resolve().parent.parent, a.frames)}
    if a.baseline:
        runs["baseline"] = run_in(a.baseline.resolve(), a.frames)
    names = list(runs)
    print("| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))

    def row(label: str, fmt: str, *keys: str) -> None:
        cells = []
        for n in names:
            r = runs[n]
            cells.append(fmt.format(*(r[k] for k in keys)) if all(k in r for k in keys)
                         else "n/a")
        print(f"| {label} | " + " | ".join(cells) + " |")

    row(f"peer never reads, {a.frames} × 1 MiB offered: RSS growth (peak)", "{:.1f} MB",
        "rss_peak_mb")
    row("… frames handed to libzmq / refused", "{:.0f} / {:.0f}", "sent", "refused")
    row("honest reader, 100 B frames/s (refused)", "{:,.0f} ({:.0f})", "small_per_s",
        "small_refused")
    row("honest reader, 200 × 1 MiB back to back: MiB/s (refused)", "{:.0f} ({:.0f})",
        "big_mib_s", "big_refused")
    row("same, paced by congested(): MiB/s (refused)", "{:.0f} ({:.0f})",
        "paced_mib_s", "paced_refused")


if __name__ == "__main__":
    main()
