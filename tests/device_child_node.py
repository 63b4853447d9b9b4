"""A node in its own OS process for the users/devices tests (test_devices.py,
test_pairing_attacks.py), and ``Proc``, the driver the tests use.

Commands arrive as JSON lines on stdin; each gets one JSON line on stdout (the
first line out is ``{"ready": true, ...}``). Networking on 127.0.0.1 only, with
short timers. Byte values travel as hex.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from child_harness import ChildProcess, serve  # noqa: E402

FAST = dict(ping_interval=0.3, peer_timeout=3.0, anti_entropy=0.5, backoff_min=0.05,
            backoff_max=0.5, connect_timeout=1.0)


def handle(node: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    h = (lambda: node.open(bytes.fromhex(cmd["doc"])))
    if op == "user":
        u = node.user
        return {"id": u.id.hex(), "name": u.name, "colour": u.colour, "node": node.id.hex()}
    if op == "rename":
        node.name = cmd["name"]
        if cmd.get("colour"):
            node.color = cmd["colour"]
        return {"ok": True}
    if op == "pair":
        return {"token": node.pair(**({"ttl": cmd["ttl"]} if "ttl" in cmd else {}))}
    if op == "pair_with":
        try:
            u = node.pair_with(cmd["token"], timeout=cmd.get("wait", 10.0))
        except (PermissionError, TimeoutError, ValueError) as e:
            return {"refused": f"{type(e).__name__}: {e}"}
        return {"id": u.id.hex()}
    if op == "new_doc":
        d = node.new_doc(cmd.get("title", ""), encrypted=cmd.get("encrypted", False))
        d.text().insert(0, cmd.get("text", ""))
        return {"doc": d.id.hex()}
    if op == "append":
        t = h().text()
        try:
            t.insert(len(t), cmd["text"])
        except PermissionError as e:
            return {"refused": str(e)}
        return {"ok": True}
    if op == "text":
        try:
            return {"text": str(h().text())}
        except KeyError:
            return {"text": None}
    if op == "wait_text":  # until the doc exists and its text contains every part
        end = time.monotonic() + cmd["timeout"]
        txt = None
        while time.monotonic() < end:
            try:
                txt = str(h().text())
            except KeyError:
                txt = None
            if txt is not None and all(p in txt for p in cmd["contains"]):
                return {"ok": True, "text": txt}
            time.sleep(0.05)
        return {"ok": False, "text": txt}
    if op == "docs":
        return {"docs": sorted(d.id.hex() for d in node.docs())}
    if op == "devices":
        return {"devices": [[d.id.hex(), d.name, d.last_seen, d.revoked]
                            for d in node.devices()]}
    if op == "unpair":
        node.unpair(bytes.fromhex(cmd["device"]))
        return {"ok": True}
    if op == "connect":
        node.connect(cmd["address"], timeout=cmd.get("wait", 10.0))
        return {"ok": True}
    if op == "invite":
        return {"token": node.invite(bytes.fromhex(cmd["doc"]), write=cmd.get("write", True))}
    if op == "join":
        d = node.join(cmd["token"], timeout=cmd.get("wait", 10.0))
        return {"doc": d.id.hex()}
    if op == "grant":
        node.grant(bytes.fromhex(cmd["doc"]), bytes.fromhex(cmd["actor"]), cmd["role"])
        return {"ok": True}
    if op == "rejected":
        return {"rejected": node.stats()["rejected"]}
    if op == "may_read":
        with node.lock:
            return {"ok": node.gate.may_read(bytes.fromhex(cmd["peer"]),
                                             bytes.fromhex(cmd["doc"]))}
    if op == "quit":
        return {"ok": True}
    return {"error": f"unknown op {op}"}


def main() -> None:
    from ownkernel.node import Node
    from ownkernel.node.config import NetConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", required=True)
    ap.add_argument("--name", default="child")
    ap.add_argument("--bootstrap", action="append", default=[])
    args = ap.parse_args()
    node = Node(args.profile, name=args.name, network=NetConfig(
        **FAST, listen=["tcp://127.0.0.1:0"], bootstrap=args.bootstrap))
    serve(lambda cmd: handle(node, cmd), {"id": node.id.hex(), "address": node.address})
    node.close()


class Proc(ChildProcess):
    """Test side: one device node process (``proc("op", **kw)`` -> its answer)."""

    wait_text_timeout = 20.0

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        super().__init__(tmp, name)
        self.args = list(args)
        self.start()

    def command(self, *extra: str) -> list[str]:
        # each in its own directory: a path profile keeps its own user key
        prof = self.tmp / self.name / "profile"
        prof.parent.mkdir(parents=True, exist_ok=True)
        return [sys.executable, __file__, "--profile", str(prof), "--name", self.name,
                *self.args, *extra]

    def stop(self) -> None:
        self.quit(15)


if __name__ == "__main__":
    main()
