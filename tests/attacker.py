"""An attacker in its own process, with its own key, speaking through the real transport.

    python tests/attacker.py '<json plan>'      -> prints one JSON result line

The plan: ``{"address": node address, "seed": hex Ed25519 seed or null (fresh key),
"steps": [...], "listen": seconds to collect frames after the last step}``.
Steps (bytes as hex strings):

    {"raw": hex}                         any bytes as one frame
    {"hello": true}                      a well-formed hello under our key
    {"have": doc, "vv": {actor: seq}}    ask for a doc
    {"msg": {...}}                       any protocol message (e.g. grants, carry); bytes
                                         fields as {"hex": ...}
    {"change": doc, "text": str, "grant": hex|null, "seq": n}
                                         a change by *our* key inserting ``text`` at 0,
                                         validly signed and chained from seq 1;
                                         ``"bad_sig": true``: the signature is wrong;
                                         ``"as": hex id``: the change claims that author
                                         (a chain we cannot sign: the signature is ours)
                                         ``"only_last": true``: send only the change
                                         of seq ``seq`` (the ones before went already)
    {"flood_have": doc, "n": count}      ``n`` `have {}` frames
    {"held": doc, "n": count, "size": bytes}
                                         ``n`` validly shaped envelopes beyond a gap
                                         (they can never verify: held, then dropped)
    {"cyclic": doc, "grant": hex|null}   a validly signed change (seq 1) setting map "m" key
                                         "k" to a self-referencing CBOR value (tags 28/29)
    {"sleep": seconds}
    {"connections": n}                   open ``n`` extra connections under our key, each
                                         saying hello (session-table exhaustion); they
                                         are opened 100 at a time, 250 per transport,
                                         and held to the end
    {"flood_raw": n, "size": bytes}      ``n`` frames of random bytes (garbage)
    {"repeat": [steps], "seconds": s}    run the steps again and again for ``s`` seconds
                                         (a sustained flood); what comes back meanwhile is
                                         only counted, in "flood_frames"/"flood_bytes"

The result lists what came back: every frame's kind, and for protocol frames
their type and doc; ext frames their type and how many grants they carried.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zmq  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from ownkernel.crdt import Doc  # noqa: E402
from ownkernel.net.protocol import PROTOCOL_VERSIONS, decode, encode  # noqa: E402
from ownkernel.net.transport import Transport, TransportConfig  # noqa: E402
from ownkernel.store import Envelope, encode_envelope  # noqa: E402
from ownkernel.store.auth import ZERO_HASH, chain_hash, head_message  # noqa: E402


def _unhex(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"hex"}:
            return bytes.fromhex(v["hex"])
        return {k: _unhex(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unhex(x) for x in v]
    return v


def _hello(key: SigningKey) -> bytes:
    return encode({"type": "hello", "id": bytes(key.verify_key), "name": "mallory",
                   "addrs": [], "versions": list(PROTOCOL_VERSIONS), "max_frame": 1 << 20})


MARK = bytes.fromhex("6458595a57")  # CBOR "XYZW"
CYCLE = bytes.fromhex("d81c81d81d00")  # shareable [ reference to itself ]


def _cyclic(key: SigningKey, doc: bytes, grant: bytes | None) -> bytes:
    me = bytes(key.verify_key)
    d = Doc(actor=me)
    d.map("m").set("k", "XYZW")
    blob = d.commit()
    assert blob is not None and blob.count(MARK) == 1
    blob = blob.replace(MARK, CYCLE)
    h = chain_hash(ZERO_HASH, doc, me, 1, blob, grant)
    env = encode_envelope(Envelope(doc, me, 1, blob, key.sign(head_message(h)).signature, grant))
    return encode({"type": "changes", "doc": doc, "blobs": [env]})


def _change(key: SigningKey, doc: bytes, text: str, grant: bytes | None, seq: int,
            bad_sig: bool = False, author: bytes | None = None,
            only_last: bool = False) -> bytes:
    me = author or bytes(key.verify_key)
    d = Doc(actor=me)
    prev = ZERO_HASH
    envs = []
    for s in range(1, seq + 1):
        d.text("body").insert(0, text if s == seq else ".")
        blob = d.commit()
        assert blob is not None
        cap = grant if s == 1 else None
        h = chain_hash(prev, doc, me, s, blob, cap)
        prev = h
        sig = key.sign(head_message(h) + (b"!" if bad_sig else b"")).signature \
            if s == seq else None
        envs.append(encode_envelope(Envelope(doc, me, s, blob, sig, cap)))
    return encode({"type": "changes", "doc": doc, "blobs": envs[-1:] if only_last else envs})


def _summary(frame: bytes) -> list[dict[str, Any]]:
    try:
        msg = decode(frame)
    except Exception:
        return [{"kind": "garbage", "len": len(frame)}]
    if msg.get("type") == "batch":  # several messages packed in one frame
        return [_one(m, len(frame)) for m in msg.get("msgs", []) if isinstance(m, dict)]
    return [_one(msg, len(frame))]


def _one(msg: dict[str, Any], size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "proto", "type": msg.get("type"), "len": size}
    if msg.get("type") == "grants":
        out["grants"] = len(msg.get("grants", []))
    if isinstance(msg.get("doc"), bytes):
        out["doc"] = msg["doc"].hex()
    elif isinstance(msg.get("doc"), str):
        out["doc"] = msg["doc"]
    if msg.get("type") == "changes":
        out["blobs"] = len(msg.get("blobs", []))
    return out


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    seed = plan.get("seed")
    key = SigningKey(bytes.fromhex(seed)) if seed else SigningKey.generate()
    got: list[dict[str, Any]] = []
    counts = {"flood_frames": 0, "flood_bytes": 0, "sent": 0, "connect_failed": 0,
              "connected": 0}
    held_seq = [10]  # the next held seq: a repeated held step sends new ones
    extra: list[Transport] = []
    async with Transport(key, TransportConfig(listen=(), max_frame_size=8 << 20)) as t:
        conn = await t.connect(plan["address"], timeout=5)

        async def drain(seconds: float) -> None:
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                try:
                    inc = await asyncio.wait_for(t.recv(), 0.05)
                except asyncio.TimeoutError:
                    continue
                got.extend(_summary(inc.frame))

        async def send(frame: bytes, c: Any = None) -> None:
            await t.send(conn if c is None else c, frame)
            counts["sent"] += 1

        async def hold_session(x: Transport) -> None:
            try:
                c = await x.connect(plan["address"], timeout=10)
                await x.send(c, _hello(key))
            except (TimeoutError, PermissionError, zmq.ZMQError):  # ZMQError: out of sockets
                counts["connect_failed"] += 1
                return
            counts["connected"] += 1
            counts["sent"] += 1

        async def count_incoming() -> None:
            while True:  # non-blocking: only what is already queued
                try:
                    inc = await asyncio.wait_for(t.recv(), 0)
                except asyncio.TimeoutError:
                    return
                counts["flood_frames"] += 1
                counts["flood_bytes"] += len(inc.frame)

        async def do(step: dict[str, Any]) -> None:
            if "raw" in step:
                await send(bytes.fromhex(step["raw"]))
            elif "flood_raw" in step:
                for i in range(step["flood_raw"]):
                    await send(os.urandom(step.get("size", 64)))
                    if i % 16 == 0:
                        await asyncio.sleep(0)
            elif "hello" in step:
                await send(_hello(key))
            elif "have" in step:
                await send(encode({"type": "have", "doc": bytes.fromhex(step["have"]),
                                   "vv": {bytes.fromhex(a): s for a, s in
                                          step.get("vv", {}).items()}}))
            elif "msg" in step:
                await send(encode(_unhex(step["msg"])))
            elif "change" in step:
                grant = bytes.fromhex(step["grant"]) if step.get("grant") else None
                author = bytes.fromhex(step["as"]) if step.get("as") else None
                await send(_change(key, bytes.fromhex(step["change"]), step["text"], grant,
                                   step.get("seq", 1), step.get("bad_sig", False), author,
                                   step.get("only_last", False)))
            elif "cyclic" in step:
                grant = bytes.fromhex(step["grant"]) if step.get("grant") else None
                await send(_cyclic(key, bytes.fromhex(step["cyclic"]), grant))
            elif "flood_have" in step:
                frame = encode({"type": "have", "doc": bytes.fromhex(step["flood_have"]),
                                "vv": {}})
                for _ in range(step["n"]):
                    await send(frame)
                    await asyncio.sleep(0)
            elif "held" in step:
                doc, me = bytes.fromhex(step["held"]), bytes(key.verify_key)
                body = os.urandom(step["size"])
                for i in range(step["n"]):
                    env = encode_envelope(Envelope(doc, me, held_seq[0], body, None, None))
                    held_seq[0] += 1
                    await send(encode({"type": "changes", "doc": doc, "blobs": [env]}))
                    if i % 16 == 0:
                        await asyncio.sleep(0.001)
            elif "connections" in step:
                left = step["connections"]
                while left > 0:
                    # A zmq context holds 1,023 sockets and each connection takes three
                    # (DEALER, monitor, its peer): 250 per transport, 100 at a time.
                    x = Transport(key, TransportConfig(listen=()))
                    await x.start()
                    extra.append(x)
                    room = 250
                    while room > 0 and left > 0:
                        batch = min(100, left, room)
                        await asyncio.gather(*(hold_session(x) for _ in range(batch)))
                        left, room = left - batch, room - batch
            elif "repeat" in step:
                end = asyncio.get_running_loop().time() + step["seconds"]
                while asyncio.get_running_loop().time() < end:
                    for inner in step["repeat"]:
                        await do(inner)
                    await count_incoming()
                    await asyncio.sleep(0)
            elif "sleep" in step:
                await drain(step["sleep"])

        for step in plan["steps"]:
            await do(step)
        await drain(plan.get("listen", 0.5))
        for x in extra:
            await x.close()
    return {"id": bytes(key.verify_key).hex(), "frames": got, **counts}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)
