"""The floor under the fan-out figure: the same topology with none of our code.

One typist process sends a small message at ``--rate`` per second to N-1 reader
processes over CurveZMQ on 127.0.0.1 (a DEALER per reader, each reader a ROUTER),
and each reader wakes on the socket's FD in an asyncio loop and drains it with
NOBLOCK reads, as ``net/reader.py`` does. No store, no CRDT, no signatures: the
latency this prints is what the machine, ZeroMQ and waking N processes cost.
``--work-ms`` makes each reader burn that much pure-Python CPU per message (and
the typist as much per send), to see what the readers' own work costs in the
tail on this machine's cores.

    python benchmarks/fanout_floor.py                 # 8 processes, 20/s, 20 s
    python benchmarks/fanout_floor.py --work-ms 0.6   # readers as busy as ours

Figures in BENCHMARKS.md beside ``benchmarks/net.py --fanout 8``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import subprocess
import sys
import time

import zmq

HEADER = struct.Struct("<Id")  # seq, perf_counter at send (one clock for every process)


def burn(ms: float) -> None:
    """About ``ms`` of pure-Python CPU (calibrated loop: no sleeping, no I/O)."""
    end = time.thread_time() + ms / 1e3
    x = 0
    while time.thread_time() < end:
        for i in range(50):
            x += i * i


def wake_jitter(n: int = 400, sleep: float = 0.05) -> tuple[float, float, float, float]:
    """(p50, p99) seconds of the same ~1 ms of Python run right after a ``sleep``, and
    (p50, p99) run back to back: what waking costs this machine, none of it ours
    (a VM's idle vCPU may be slow to get going again)."""
    def timed(pause: float) -> list[float]:
        out = []
        for _ in range(n):
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            x = 0
            for i in range(20000):
                x += i * i
            out.append(time.perf_counter() - t0)
        return out
    woken, warm = timed(sleep), timed(0.0)
    return pct(woken, 50), pct(woken, 99), pct(warm, 50), pct(warm, 99)


def reader(work_ms: float) -> None:
    """A reader: bind, print the port and key, record arrivals until stdin closes."""
    ctx = zmq.Context()
    pub, sec = zmq.curve_keypair()
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_secretkey, sock.curve_publickey = sec, pub
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(json.dumps({"port": port, "key": pub.decode()}), flush=True)
    arrivals: list[tuple[int, float]] = []
    loop = asyncio.new_event_loop()

    def drain() -> None:
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = sock.recv_multipart(zmq.NOBLOCK)
            seq, _ = HEADER.unpack_from(parts[-1])
            arrivals.append((seq, time.perf_counter()))
            if work_ms:
                burn(work_ms)

    loop.add_reader(sock.getsockopt(zmq.FD), drain)
    loop.add_reader(sys.stdin.fileno(), loop.stop)  # the parent closes our stdin: done
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    drain()
    loop.run_forever()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(json.dumps({"arrivals": arrivals, "cpu_s": cpu}), flush=True)
    sock.close(0)
    ctx.term()


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run(n: int, rate: float, seconds: float, work_ms: float) -> dict[str, float]:
    procs = [subprocess.Popen([sys.executable, __file__, "--reader", "--work-ms", str(work_ms)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(n - 1)]
    ctx = zmq.Context()
    pub, sec = zmq.curve_keypair()
    socks = []
    for p in procs:
        assert p.stdout is not None
        info = json.loads(p.stdout.readline())
        s = ctx.socket(zmq.DEALER)
        s.curve_secretkey, s.curve_publickey = sec, pub
        s.curve_serverkey = info["key"].encode()
        s.connect(f"tcp://127.0.0.1:{info['port']}")
        socks.append(s)
    for s in socks:  # wait until every handshake is done: one message each way
        s.send(HEADER.pack(0, time.perf_counter()))
    time.sleep(1.0)
    sent: dict[int, float] = {}
    cpu0 = time.process_time()
    k = int(rate * seconds)
    start = time.perf_counter() + 0.1
    for seq in range(1, k + 1):
        delay = start + (seq - 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        sent[seq] = t0
        if work_ms:
            burn(work_ms)
        frame = HEADER.pack(seq, t0) + b"x" * 120
        for s in socks:
            s.send(frame, zmq.NOBLOCK)
    time.sleep(0.5)
    cpu = sender_cpu = time.process_time() - cpu0
    readers_cpu: list[float] = []
    lat: list[float] = []
    for p in procs:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.close()
        out = json.loads(p.stdout.readline())
        cpu += out["cpu_s"]
        readers_cpu.append(out["cpu_s"] / k)
        got = {seq: t for seq, t in out["arrivals"] if seq}
        assert len(got) == k, f"a reader got {len(got)} of {k}"
        lat.extend(got[seq] - t0 for seq, t0 in sent.items())
        p.wait(10)
    for s in socks:
        s.close(0)
    ctx.term()
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat),
            "cpu": cpu / (k / rate), "sender_per_msg": sender_cpu / k,
            "reader_per_msg": sum(readers_cpu) / len(readers_cpu)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--work-ms", type=float, nargs="*", default=[0.0],
                    help="pure-Python CPU per message in every process (several: one run each)")
    ap.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reader:
        reader(args.work_ms[0])
        return
    w50, w99, b50, b99 = wake_jitter()
    print(f"== waking: ~1 ms of Python after a 50 ms sleep p50 {1e3 * w50:.2f} ms, p99 "
          f"{1e3 * w99:.2f} ms; back to back p50 {1e3 * b50:.2f} ms, p99 {1e3 * b99:.2f} ms")
    print(f"== fan-out floor: 1 sender, {args.nodes - 1} readers, {args.rate:g} messages/s, "
          f"{args.seconds:g} s, CurveZMQ on 127.0.0.1 ({os.cpu_count()} cores)")
    print(f"{'work/msg':>9s} {'p50':>9s} {'p99':>9s} {'max':>9s} {'CPU all processes':>18s}"
          f" {'load avg':>9s}")
    for w in args.work_ms:
        r = run(args.nodes, args.rate, args.seconds, w)
        print(f"{w:>6.2f} ms {1e3 * r['p50']:>6.2f} ms {1e3 * r['p99']:>6.2f} ms "
              f"{1e3 * r['max']:>6.2f} ms {100 * r['cpu']:>9.1f}% of a core "
              f"{os.getloadavg()[0]:>9.1f}")


if __name__ == "__main__":
    main()
