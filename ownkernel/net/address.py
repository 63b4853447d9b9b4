"""A peer's address: ``<endpoint>#<node id hex>``, e.g. ``tcp://host:port#ab12…``.

A Curve client must know the server's key before it connects, so an address
names the node as well as where it listens; the endpoint may also be a
``ws(s)://`` relay URL (net/wstunnel.py). Dialing, invites and calls parse
addresses here; the transport connects to what they name.
"""

from __future__ import annotations

from .wstunnel import is_websocket, split_ws_url

__all__ = ["endpoint_host", "format_address", "parse_address"]


def format_address(endpoint: str, node_id: bytes) -> str:
    """``tcp://host:port#<node id hex>``: Curve clients must know the server key."""
    return f"{endpoint}#{node_id.hex()}"


def parse_address(address: str) -> tuple[str, bytes | None]:
    """(endpoint, node id or None); ValueError naming the fault if malformed."""
    endpoint, _, key = address.partition("#")
    if is_websocket(endpoint):
        split_ws_url(endpoint)  # a bad ws URL is refused here, naming the fault
    if not key:
        return endpoint, None
    node_id = bytes.fromhex(key)
    if len(node_id) != 32:
        raise ValueError("node id must be 32 bytes")
    return endpoint, node_id


def endpoint_host(endpoint: str) -> str:
    """``tcp://[::1]:5555`` -> ``::1``; ``tcp://127.0.0.1:5`` -> ``127.0.0.1``."""
    return endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
