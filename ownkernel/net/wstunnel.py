"""ZeroMQ over WebSocket: ``ws://`` and ``wss://`` addresses, as websockify tunnels TCP.

Why a tunnel and not a new transport: the CurveZMQ handshake and the node's
hello already authenticate both ends and encrypt every frame. Piping the
ZMTP/CurveZMQ *byte stream* through a WebSocket keeps all of that end to end;
whatever sits in the middle (jupyter-server, a proxy, Binder's ingress) sees
ciphertext and can add nothing of its own. No cryptography lives here.

- Client side (:class:`TunnelClient`, used by ``Transport.connect``): for each
  ``ws(s)://host[:port]/path`` a loopback TCP listener on ``127.0.0.1:<random>``;
  the DEALER connects there as to any ``tcp://`` peer, and every TCP connection
  it opens (libzmq reconnects by itself) is piped to a fresh WebSocket.
- Server side (``ownkernel/serverext``): a WebSocket handler pipes each
  WebSocket to the relay node's ROUTER on 127.0.0.1 (see :func:`zmtp_signature`
  and :func:`open_upstream`).

Framing: one binary WebSocket message carries any chunk of the byte stream
(≤ :data:`CHUNK` bytes from us); text messages are a protocol error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

log = logging.getLogger(__name__)

__all__ = ["CHUNK", "MAX_MESSAGE", "WS_SCHEMES", "TunnelClient", "is_websocket", "pipe",
           "split_ws_url", "zmtp_signature"]

WS_SCHEMES = ("ws://", "wss://")
CHUNK = 64 * 1024  # bytes read from TCP per WebSocket message
# Largest WebSocket message accepted. Our peers send ≤ CHUNK; the cap bounds what
# one message can make the other side buffer.
MAX_MESSAGE = 256 * 1024
MAX_URL = 300  # as the address book's limit for an address
CONNECT_TIMEOUT = 10.0
# libzmq redials a closed TCP connection every 100 ms, and its connection to our
# listener always succeeds: after a failed WebSocket open, new connections are
# closed at once until this backoff (doubling, capped) has passed, so a relay that
# is down gets a few HTTP requests, not ten a second.
BACKOFF_MIN, BACKOFF_MAX = 0.5, 10.0
MAX_CONNS_PER_URL = 8  # TCP connections from libzmq to one listener (it uses one)
# Listeners (one per ws URL) kept at once: addresses come from peers (address book),
# so their number is bounded; past it, one idle for LISTENER_IDLE s makes room.
MAX_LISTENERS, LISTENER_IDLE = 64, 60.0


def is_websocket(endpoint: str) -> bool:
    return isinstance(endpoint, str) and endpoint.startswith(WS_SCHEMES)


def split_ws_url(url: str) -> str:
    """Check a ``ws(s)://host[:port][/path]`` URL (fragment dropped); ValueError naming the fault.

    A URL with user info or a ``token=`` is refused: credentials must never ride
    in an address that invites and the address book pass around.
    """
    if not is_websocket(url):
        raise ValueError(f"{url!r}: not a ws:// or wss:// address")
    if len(url) > MAX_URL or any(c.isspace() for c in url):
        raise ValueError(f"{url[:60]!r}...: a ws address must be ≤ {MAX_URL} characters "
                         f"without spaces")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: bad port") from None
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: no user or password in an address (it gets shared)")
    if any(k.lower() in ("token", "_xsrf") for k in parse_qs(parts.query)):
        # a Jupyter token is code execution on that server, and addresses travel in
        # invites and the address book; the relay endpoint needs none
        raise ValueError(f"{url.split('?')[0]!r}: no Jupyter token in an address (the relay "
                         f"endpoint needs none, and addresses get shared)")
    del port
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def zmtp_signature(head: bytes) -> bool | None:
    """Do these first bytes start a ZMTP greeting? None: too few bytes to tell yet.

    ZMTP 3 opens with ``%xFF <8 bytes> %x7F`` (RFC 23/37); libzmq sends these 10
    bytes and waits for the peer's before the rest, so a tunnel can check them
    before it opens anything upstream: a client sending anything else gets not a
    single byte back.
    """
    if head[:1] and head[0] != 0xFF:
        return False
    if len(head) < 10:
        return None
    return head[9] == 0x7F


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               ws_read: Callable[[], Awaitable[bytes | str | None]],
               ws_write: Callable[[bytes], Awaitable[None]],
               stats: Counter[str]) -> None:
    """Copy bytes TCP <-> WebSocket until either side ends; then close the TCP side.

    Each direction awaits its write before reading more (``drain`` / the
    WebSocket's write future): a side that does not read holds the other back
    through TCP instead of growing our memory.
    """

    async def up() -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            stats["ws-bytes-out"] += len(data)
            await ws_write(data)

    async def down() -> None:
        while True:
            msg = await ws_read()
            if msg is None:
                return
            if isinstance(msg, str):
                stats["ws-text"] += 1  # not our framing: end the tunnel
                return
            stats["ws-bytes-in"] += len(msg)
            writer.write(msg)
            await writer.drain()

    tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for r in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(r, Exception) and not isinstance(r, (OSError, EOFError)):
                # WebSocketClosedError / StreamClosedError: the other end went away
                stats["ws-closed-" + type(r).__name__] += 1
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class TunnelClient:
    """Loopback listeners ZeroMQ dials instead of ``ws(s)://`` URLs (one per URL).

    Runs on the caller's asyncio loop (the transport's). ``endpoint(url)``
    returns the ``tcp://127.0.0.1:port`` to hand to libzmq.
    """

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT,
                 max_conns: int = MAX_CONNS_PER_URL, stats: Counter[str] | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.max_conns = max_conns
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self._servers: dict[str, tuple[asyncio.AbstractServer, str]] = {}
        self._conns: dict[str, set[asyncio.Task[None]]] = {}
        self._backoff: dict[str, tuple[float, float]] = {}  # url -> (delay, not before)
        self._used: dict[str, float] = {}  # url -> loop time it was last asked for or used
        self._closed = False

    async def endpoint(self, url: str) -> str:
        url = split_ws_url(url)
        if self._closed:
            raise RuntimeError("tunnels closed")
        now = asyncio.get_running_loop().time()
        known = self._servers.get(url)
        if known is not None:
            self._used[url] = now
            return known[1]
        if len(self._servers) >= MAX_LISTENERS:
            self._evict_idle(now)

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._used[url] = asyncio.get_running_loop().time()
            conns = self._conns.setdefault(url, set())
            _delay, not_before = self._backoff.get(url, (0.0, 0.0))
            if asyncio.get_running_loop().time() < not_before:
                self.stats["ws-backoff"] += 1
                writer.close()
                return
            if len(conns) >= self.max_conns:
                self.stats["ws-too-many-local"] += 1
                writer.close()
                return
            task = asyncio.ensure_future(self._serve(url, reader, writer))
            conns.add(task)
            task.add_done_callback(conns.discard)

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ep = f"tcp://127.0.0.1:{port}"
        self._servers[url] = (server, ep)
        self._used[url] = now
        return ep

    def _evict_idle(self, now: float) -> None:
        idle = [u for u in self._servers if not self._conns.get(u)
                and now - self._used.get(u, 0.0) > LISTENER_IDLE]
        if not idle:
            self.stats["ws-too-many-urls"] += 1
            raise ValueError(f"{MAX_LISTENERS} ws addresses in use at once; not dialing more")
        url = min(idle, key=lambda u: self._used.get(u, 0.0))
        server, _ep = self._servers.pop(url)
        server.close()
        for d in (self._conns, self._backoff, self._used):
            d.pop(url, None)  # type: ignore[attr-defined]

    async def _serve(self, url: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        try:
            ws = await asyncio.wait_for(websocket_connect(
                HTTPRequest(url, connect_timeout=self.connect_timeout,
                            request_timeout=self.connect_timeout,
                            headers={"User-Agent": "ownkernel-tunnel"}),
                max_message_size=MAX_MESSAGE), self.connect_timeout + 1)
        except Exception as e:  # unreachable, refused, TLS, HTTP error: libzmq retries
            n = self.stats["ws-connect-failed"]
            self.stats["ws-connect-failed"] += 1
            if n == 0 or n % 100 == 0:  # once, then rarely
                log.info("cannot open %s: %s", url, e)
            delay = min(BACKOFF_MAX, max(BACKOFF_MIN, 2 * self._backoff.get(url, (0, 0))[0]))
            self._backoff[url] = (delay, asyncio.get_running_loop().time() + delay)
            writer.close()
            return
        self._backoff.pop(url, None)
        self.stats["ws-connected"] += 1

        async def ws_write(data: bytes) -> None:
            await ws.write_message(data, binary=True)

        try:
            await pipe(reader, writer, ws.read_message, ws_write, self.stats)
        finally:
            ws.close()

    async def close(self) -> None:
        self._closed = True
        for server, _ep in self._servers.values():
            server.close()
        tasks = [t for conns in self._conns.values() for t in conns]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server, _ep in self._servers.values():
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        self._conns.clear()
