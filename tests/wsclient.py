"""A raw WebSocket client for the tests that attack or probe jupyter-server
endpoints (the relay, the widget endpoint): send some frames, collect what comes
back until the server closes or ``wait`` runs out."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field


@dataclass
class Exchange:
    """What one connection got: the frames received (text or bytes as they came),
    whether the server closed it, and the HTTP status if the upgrade was refused."""

    frames: list[str | bytes] = field(default_factory=list)
    closed: bool = False
    status: int | None = None

    @property
    def data(self) -> bytes:
        """All frames received, as bytes, in order."""
        return b"".join(f if isinstance(f, bytes) else f.encode() for f in self.frames)


async def exchange_async(url: str, sends: list[str | bytes], wait: float) -> Exchange:
    from tornado.httpclient import HTTPClientError
    from tornado.websocket import websocket_connect

    try:
        ws = await websocket_connect(url)
    except HTTPClientError as e:
        return Exchange(closed=True, status=e.code)
    for m in sends:
        await ws.write_message(m, binary=isinstance(m, bytes))
    got = Exchange()
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    while loop.time() < end:
        try:
            msg = await asyncio.wait_for(ws.read_message(), max(0.01, end - loop.time()))
        except asyncio.TimeoutError:
            break
        if msg is None:
            got.closed = True
            return got
        got.frames.append(msg)
    ws.close()
    return got


def exchange(url: str, sends: list[str | bytes], wait: float) -> Exchange:
    """:func:`exchange_async` on a loop of its own thread (callable from a thread
    that already runs one, such as Playwright's sync API)."""
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, exchange_async(url, sends, wait)).result()
