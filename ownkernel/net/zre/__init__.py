"""LAN discovery following ZRE (ZeroMQ RFC 36), interoperable with zyre / zeromq-pyre.

Three layers, one module each: :mod:`.wire`, the codecs (22-byte UDP beacon, ZRE v2
messages, our HELLO headers); :mod:`.core`, :class:`ZreCore`, a sans-IO peer table that
turns beacons, messages and clock ticks into actions and events; and :mod:`.discovery`,
:class:`ZreDiscovery`, a thin asyncio runner (zmq.asyncio ROUTER + one DEALER per peer,
asyncio UDP endpoints). Beaconing is never on by default: it only happens when a caller
builds a :class:`ZreDiscovery` with an explicit interface address. Discovery is only a
hint (anyone on the LAN can claim any ``X-OWNKERNEL-ID``), so the node layer must
authenticate peers over its own CurveZMQ transport before trusting them.
"""

from .core import (
    Action,
    Connect,
    Disconnect,
    PeerEntered,
    PeerEvent,
    PeerExited,
    Send,
    ZreCore,
)
from .discovery import ZreDiscovery
from .wire import (
    BEACON_PREFIX,
    BEACON_SIZE,
    BEACON_VERSION,
    HEADER_ENDPOINT,
    HEADER_NODE_ID,
    HELLO,
    JOIN,
    LEAVE,
    LOOPBACK_MULTICAST_GROUP,
    MAX_MESSAGE_SIZE,
    PING,
    PING_OK,
    SHOUT,
    SIGNATURE,
    WHISPER,
    ZRE_DISCOVERY_PORT,
    ZRE_VERSION,
    Beacon,
    BeaconError,
    Hello,
    Join,
    Leave,
    MessageError,
    Ping,
    PingOk,
    Shout,
    Unknown,
    Whisper,
    ZreError,
    ZreMessage,
    decode_beacon,
    decode_message,
    encode_beacon,
    encode_message,
    ownkernel_headers,
    parse_ownkernel_headers,
)

__all__ = [
    "BEACON_PREFIX", "BEACON_SIZE", "BEACON_VERSION", "HEADER_ENDPOINT", "HEADER_NODE_ID",
    "HELLO", "JOIN", "LEAVE", "LOOPBACK_MULTICAST_GROUP", "MAX_MESSAGE_SIZE", "PING", "PING_OK",
    "SHOUT", "SIGNATURE", "WHISPER", "ZRE_DISCOVERY_PORT", "ZRE_VERSION", "Action", "Beacon",
    "BeaconError", "Connect", "Disconnect", "Hello", "Join", "Leave", "MessageError",
    "PeerEntered", "PeerEvent", "PeerExited", "Ping", "PingOk", "Send", "Shout", "Unknown",
    "Whisper", "ZreCore", "ZreDiscovery", "ZreError", "ZreMessage", "decode_beacon",
    "decode_message", "encode_beacon", "encode_message", "ownkernel_headers",
    "parse_ownkernel_headers",
]
