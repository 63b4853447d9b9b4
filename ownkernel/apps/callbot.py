"""An aiortc participant in a call (issue #14): synthetic audio and video, signalled
through a node like a browser page is. For tests, benchmarks and simulated classmates.

    from ownkernel.apps.callbot import CallBot
    bot = CallBot(node, doc).start()      # joins the call of ``doc``
    bot.frames                            # {peer id: video frames decoded from it}
    bot.close()                           # leaves

Or as a process (JSON lines on stdout, one a second; stops when stdin closes)::

    python -m ownkernel.apps.callbot --home DIR --invite-file invite.txt [--name bot]

aiortc is in the ``test`` extra. Like the widget, it sends full SDP with every
candidate (no trickle) and uses ``OWNKERNEL_ICE_SERVERS`` (docs/calls.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import sys
import threading
import time
from typing import Any

from ownkernel.node.calls import Deliver, Hangup, MakeOffer, Roster, calls_of, ice_servers

__all__ = ["CallBot", "ice_servers"]

WIDTH, HEIGHT, FPS = 320, 240, 15  # small: a bot's video costs a 2-core machine little


def _tracks() -> list[Any]:
    """A moving grey ramp and a 440 Hz tone, made here (no camera, no microphone)."""
    import av
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    class Video(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        async def recv(self) -> Any:
            pts, base = await self.next_timestamp()
            f = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            self.n += 1
            shade = (self.n * 4) % 220 + 16
            y = f.planes[0]
            y.update(bytes([shade]) * y.buffer_size)  # the picture changes every frame
            for p in f.planes[1:]:
                p.update(bytes([128]) * p.buffer_size)
            f.pts, f.time_base = pts, base
            return f

    class Tone(AudioStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.t = 0

        async def recv(self) -> Any:
            import math
            frame = await super().recv()  # silence with the right timing
            n = frame.samples
            samples = bytearray()
            for i in range(n):
                v = int(3000 * math.sin(2 * math.pi * 440 * (self.t + i) / frame.sample_rate))
                samples += v.to_bytes(2, "little", signed=True)
            self.t += n
            frame.planes[0].update(bytes(samples))
            frame.time_base = fractions.Fraction(1, frame.sample_rate)
            return frame

    return [Tone(), Video()]


class CallBot:
    """Joins the call of ``doc`` on ``node``; its aiortc loop runs in its own thread."""

    def __init__(self, node: Any, doc: Any, *, video: bool = True, audio: bool = True) -> None:
        self.node = node
        self.doc = doc
        self.doc_id: bytes = getattr(doc, "id", doc)
        self.video, self.audio = video, audio
        self.pcs: dict[bytes, Any] = {}
        self.frames: dict[bytes, int] = {}  # video frames decoded, per peer
        self.audio_frames: dict[bytes, int] = {}
        self.states: dict[bytes, str] = {}  # ICE/connection state per peer
        self.members: tuple[bytes, ...] = ()
        self.signals_sent = 0
        self.first_frame_at: dict[bytes, float] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="ownkernel-callbot")
        self._ice = ice_servers()
        self.joined_at: float | None = None

    # -- life ------------------------------------------------------------------------
    def start(self) -> CallBot:
        self._thread.start()
        self._set_presence(True)
        self.joined_at = time.monotonic()
        calls_of(self.node).join(self.doc_id, self._on_action)
        return self

    def close(self) -> None:
        if self._thread.ident is None:  # never started
            self._loop.close()
            return
        with contextlib.suppress(RuntimeError):  # a closed node: nobody left to tell
            calls_of(self.node).leave(self.doc_id)
        self._set_presence(False)
        fut = asyncio.run_coroutine_threadsafe(self._close_all(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def _set_presence(self, joined: bool) -> None:
        state = {"name": self.node.name, "color": getattr(self.node, "color", "") or "",
                 "call": {"joined": True, "bot": True}} if joined else None
        with contextlib.suppress(RuntimeError):
            self.node.set_presence(self.doc_id, state)

    async def _close_all(self) -> None:
        for peer in list(self.pcs):
            await self._hangup(peer)
        # aiortc leaves tasks behind (ICE consent checks, RTP loops): end them here,
        # so stopping the loop destroys nothing still pending
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # -- signals (network thread -> our loop) --------------------------------------------
    def _on_action(self, a: Any) -> None:
        if isinstance(a, Roster):
            self.members = a.members
            return
        asyncio.run_coroutine_threadsafe(self._act(a), self._loop)

    async def _act(self, a: Any) -> None:
        try:
            if isinstance(a, MakeOffer):
                pc = await self._pc(a.peer)
                await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate
                self._send(a.peer, "offer", pc.localDescription.sdp)
            elif isinstance(a, Deliver) and a.kind == "offer":
                from aiortc import RTCSessionDescription
                pc = await self._pc(a.peer)
                await pc.setRemoteDescription(RTCSessionDescription(a.data, "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                self._send(a.peer, "answer", pc.localDescription.sdp)
            elif isinstance(a, Deliver) and a.kind == "answer":
                from aiortc import RTCSessionDescription
                pc = self.pcs.get(a.peer)
                if pc is not None:
                    await pc.setRemoteDescription(RTCSessionDescription(a.data, "answer"))
            elif isinstance(a, Hangup):
                await self._hangup(a.peer)
        except Exception as e:  # one bad peer must not stop the bot
            self.states[getattr(a, "peer", b"")] = f"error: {e}"

    def _send(self, peer: bytes, kind: str, sdp: str) -> None:
        self.signals_sent += 1
        # off our loop: the call waits for the node thread
        threading.Thread(target=calls_of(self.node).signal,
                         args=(self.doc_id, peer, kind, sdp), daemon=True).start()

    async def _pc(self, peer: bytes) -> Any:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

        await self._hangup(peer)  # a fresh connection per (re)join
        servers = [RTCIceServer(**s) for s in self._ice]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pcs[peer] = pc
        self.states[peer] = "new"
        audio, video = _tracks()
        if self.audio:
            pc.addTrack(audio)
        if self.video:
            pc.addTrack(video)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            self.states[peer] = pc.connectionState

        @pc.on("track")
        def _track(track: Any) -> None:
            asyncio.ensure_future(self._consume(peer, track))
        return pc

    async def _consume(self, peer: bytes, track: Any) -> None:
        counts = self.frames if track.kind == "video" else self.audio_frames
        while True:
            try:
                await track.recv()
            except Exception:  # MediaStreamError: the track ended
                return
            counts[peer] = counts.get(peer, 0) + 1
            if track.kind == "video" and peer not in self.first_frame_at:
                self.first_frame_at[peer] = time.monotonic()

    async def _hangup(self, peer: bytes) -> None:
        pc = self.pcs.pop(peer, None)
        if pc is not None:
            self.states[peer] = "closed"
            await pc.close()

    def status(self) -> dict[str, Any]:
        return {"members": [m.hex() for m in self.members],
                "frames": {p.hex(): n for p, n in self.frames.items()},
                "audio_frames": {p.hex(): n for p, n in self.audio_frames.items()},
                "states": {p.hex(): s for p, s in self.states.items() if p},
                "signals_sent": self.signals_sent}


def main(argv: list[str] | None = None) -> None:
    from pathlib import Path

    from ownkernel.node import Node
    from ownkernel.node.config import NetConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, help="directory of the bot's own node")
    ap.add_argument("--invite-file", required=True, help="a file holding an invite token")
    ap.add_argument("--name", default="callbot")
    ap.add_argument("--listen", default="tcp://127.0.0.1:0")
    ap.add_argument("--seconds", type=float, default=0.0, help="leave after this (0: at EOF)")
    args = ap.parse_args(argv)
    node = Node(Path(args.home), name=args.name, network=NetConfig(listen=[args.listen]))
    bot = None
    try:
        doc = node.join(Path(args.invite_file).read_text().strip(), timeout=60)
        bot = CallBot(node, doc).start()
        print(json.dumps({"ready": True, "id": node.id.hex()}), flush=True)
        stop = threading.Event()
        if not args.seconds:
            threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        end = time.monotonic() + args.seconds if args.seconds else float("inf")
        while not stop.wait(1.0) and time.monotonic() < end:
            print(json.dumps(bot.status()), flush=True)
    finally:
        if bot is not None:
            bot.close()
        node.close()


if __name__ == "__main__":
    main()
