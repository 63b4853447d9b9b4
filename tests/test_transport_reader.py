"""SocketReader (net/reader.py): plain zmq sockets read from the asyncio loop.

Real sockets on inproc/loopback. What must hold: no message sits unread (the
FD is edge-triggered and sends consume its signal), a flood yields to other
callbacks, a closed reader reads nothing more.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zmq

from ownkernel.net.reader import SocketReader


@pytest.fixture
def pair() -> Any:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    for s in (a, b):
        s.setsockopt(zmq.LINGER, 0)
    a.bind("inproc://reader-test")
    b.connect("inproc://reader-test")
    yield a, b
    a.close()
    b.close()
    ctx.term()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.001)


def test_ping_pong_while_sending_on_the_same_socket(pair: Any) -> None:
    """Each message received is answered on the same socket right away (that send may
    swallow the FD's signal of the next message): all 500 round trips finish."""
    a, b = pair
    n = 500

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        got_a: list[bytes] = []
        got_b: list[bytes] = []
        ra: SocketReader | None = None
        rb: SocketReader | None = None

        def on_a(parts: list[bytes]) -> None:
            got_a.append(parts[0])
            if len(got_a) < n:
                a.send(b"ping", zmq.NOBLOCK)
                assert ra is not None
                ra.poke()

        def on_b(parts: list[bytes]) -> None:
            got_b.append(parts[0])
            b.send(b"pong", zmq.NOBLOCK)
            assert rb is not None
            rb.poke()

        ra = SocketReader(loop, a, on_a)
        rb = SocketReader(loop, b, on_b)
        a.send(b"ping")
        ra.poke()
        await _until(lambda: len(got_a) >= n)
        ra.close()
        rb.close()
        return len(got_a), len(got_b)

    assert asyncio.run(main()) == (n, n)


def test_a_flood_yields_to_other_callbacks(pair: Any) -> None:
    a, b = pair

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        seen_at: list[int] = []  # messages read when the other callback ran
        for i in range(100):
            b.send(str(i).encode())
        # a callback queued before the first drain runs after at most `limit` messages
        loop.call_soon(lambda: None)
        rd = SocketReader(loop, a, lambda p: got.append(p[0]), limit=10)

        def other() -> None:
            seen_at.append(len(got))
            if len(got) < 100:
                loop.call_soon(other)
        loop.call_soon(other)
        await _until(lambda: len(got) == 100)
        rd.close()
        assert got == [str(i).encode() for i in range(100)]  # order kept
        return seen_at

    seen_at = asyncio.run(main())
    # between two runs of the other callback the reader read at most 10
    assert all(y - x <= 10 for x, y in zip(seen_at, seen_at[1:]))
    assert seen_at[0] < 100


def test_handler_error_does_not_stop_reading_and_close_stops(pair: Any) -> None:
    a, b = pair

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        def on_msg(parts: list[bytes]) -> None:
            got.append(parts[0])
            if parts[0] == b"bad":
                raise RuntimeError("handler bug")

        rd = SocketReader(loop, a, on_msg)
        for m in (b"one", b"bad", b"two"):
            b.send(m)
        await _until(lambda: len(got) == 3)
        rd.close()
        b.send(b"after close")
        for _ in range(20):
            await asyncio.sleep(0.001)
        return got

    assert asyncio.run(main()) == [b"one", b"bad", b"two"]


def test_multipart_messages_arrive_whole(pair: Any) -> None:
    from ownkernel.net.reader import send_parts

    a, b = pair

    async def main() -> list[list[bytes]]:
        loop = asyncio.get_running_loop()
        got: list[list[bytes]] = []
        rd = SocketReader(loop, a, got.append)
        send_parts(b, [b"1"])
        send_parts(b, [b"a", b"b", b"c"])
        send_parts(b, [b"x", b""])
        await _until(lambda: len(got) == 3)
        rd.close()
        return got

    assert asyncio.run(main()) == [[b"1"], [b"a", b"b", b"c"], [b"x", b""]]
