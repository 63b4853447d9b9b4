"""Run one zeromq-pyre node and report its events as JSON lines on stdout.

Only ever started by tests/test_zre.py inside a throw-away network namespace that has
nothing but ``lo`` (pyre then falls back to multicast group 225.25.25.25 on loopback).
Reads ``stop`` (or EOF) on stdin to leave cleanly and print ``{"event": "stopped"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import zmq
from pyre import Pyre


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--header", action="append", default=[], help="KEY=VALUE")
    args = parser.parse_args()
    node = Pyre(args.name)
    for item in args.header:
        key, value = item.split("=", 1)
        node.set_header(key, value)
    node.start()
    emit(event="ready", uuid=str(node.uuid()), endpoint=node.endpoint())
    events = node.socket()
    poller = zmq.Poller()
    poller.register(events, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    while True:
        ready = dict(poller.poll(1000))
        if events in ready:
            frames = events.recv_multipart()
            kind = frames[0].decode()
            peer = str(uuid.UUID(bytes=frames[1]))
            if kind == "ENTER":
                emit(event="enter", uuid=peer, name=frames[2].decode(),
                     headers=json.loads(frames[3].decode()), endpoint=frames[4].decode())
            elif kind == "EXIT":
                emit(event="exit", uuid=peer, name=frames[2].decode())
        if sys.stdin.fileno() in ready:
            line = sys.stdin.readline()
            if not line or line.strip() == "stop":
                break
    node.stop()
    emit(event="stopped")


if __name__ == "__main__":
    main()
