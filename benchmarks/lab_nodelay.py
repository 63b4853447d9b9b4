"""A Jupyter server extension used by ``benchmarks/ui.py --nodelay``: sets
TCP_NODELAY on every socket the server accepts.

jupyter_server never calls tornado's ``set_nodelay`` on its WebSockets, so a
small message written while the previous one waits for its ACK sits in the
kernel's buffer (Nagle) until the browser's delayed ACK comes, up to ~40 ms on
Linux. The benchmark measures both ways; this module is not part of ownkernel.
"""

from __future__ import annotations

import socket
from typing import Any

import tornado.iostream

_orig_init = tornado.iostream.IOStream.__init__


def _init(self: Any, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (a unix socket)
        pass
    _orig_init(self, sock, *args, **kwargs)


def _load_jupyter_server_extension(_app: Any) -> None:
    tornado.iostream.IOStream.__init__ = _init  # type: ignore[method-assign]
