"""Run one ownkernel ZreDiscovery and report its events as JSON lines on stdout.

Only ever started by tests/test_zre.py inside a throw-away network namespace that has
nothing but ``lo``: it sends UDP beacons. Reads commands on stdin: ``stop`` (or EOF)
makes it leave cleanly and print ``{"event": "stopped"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel.net.zre import PeerEntered, PeerEvent, PeerExited, ZreDiscovery  # noqa: E402


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def on_peer(event: PeerEvent) -> None:
    if isinstance(event, PeerEntered):
        emit(event="enter", uuid=str(event.uuid), name=event.name, endpoint=event.endpoint,
             headers=dict(event.headers))
    else:
        emit(event="exit", uuid=str(event.uuid), name=event.name)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def selftest(port: int, rounds: int) -> None:
    """Two in-process instances find each other through events(), then stop; repeated
    to show that stop() leaves no socket, transport or task behind."""
    baseline = open_fds()
    for i in range(rounds):
        a = ZreDiscovery("self-a", {"K": "a"}, "127.0.0.1", beacon_port=port,
                         beacon_interval=0.1, peer_expiry=2.0)
        b = ZreDiscovery("self-b", {"K": "b"}, "127.0.0.1", beacon_port=port,
                         beacon_interval=0.1, peer_expiry=2.0)
        async with a, b:
            seen = await asyncio.wait_for(anext_event(a.events()), 5.0)
            assert isinstance(seen, PeerEntered) and seen.uuid == b.uuid, seen
            assert seen.headers == {"K": "b"}, seen
            ev_b = b.events()
            seen = await asyncio.wait_for(anext_event(ev_b), 5.0)
            assert seen.uuid == a.uuid and seen.name == "self-a", seen
            await a.stop()
            left = await asyncio.wait_for(anext_event(ev_b), 5.0)
            assert isinstance(left, PeerExited) and left.uuid == a.uuid, left
        await asyncio.sleep(0)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        fds = open_fds()
        emit(event="round", round=i, fds=fds, baseline=baseline, tasks=len(tasks))
    # A failing start() (address not on any interface here) must clean up after itself.
    bad = ZreDiscovery("bad", {}, "192.0.2.1/24", beacon_port=port)
    try:
        await bad.start()
    except Exception as exc:  # zmq.ZMQError (EADDRNOTAVAIL) from the ROUTER bind
        emit(event="start_failed", error=type(exc).__name__, fds=open_fds(), baseline=baseline)


async def anext_event(it: AsyncIterator[PeerEvent]) -> PeerEvent:
    return await it.__anext__()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--beacon-address", default=None)
    parser.add_argument("--port", type=int, default=5670)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--expiry", type=float, default=3.0)
    parser.add_argument("--header", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--verbose", action="store_true", help="debug log on stderr")
    parser.add_argument("--selftest", type=int, default=0, help="rounds of the in-process test")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    if args.selftest:
        await selftest(args.port, args.selftest)
        return
    headers = dict(h.split("=", 1) for h in args.header)
    disc = ZreDiscovery(
        args.name, headers, args.interface, beacon_port=args.port,
        beacon_interval=args.interval, peer_expiry=args.expiry, on_peer=on_peer,
        beacon_address=args.beacon_address,
    )
    await disc.start()
    emit(event="ready", uuid=str(disc.uuid), endpoint=disc.endpoint)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "stop":
            break
    await disc.stop()
    emit(event="stopped")


if __name__ == "__main__":
    asyncio.run(main())
