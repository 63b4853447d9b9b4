"""Wire format of the sync protocol: CBOR frames, hardened decoding, field checks.

Split out of ``protocol`` so the state machine reads on its own. Everything
here is pure. ``decode`` raises ``Bad(reason, detail)``; the session turns
that into a counted ``ProtocolError`` event.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Union

import cbor2

DocId = Union[str, bytes]
VersionVector = dict[bytes, int]

# 2: cursor-answered `have`, partial haves (announce/pull), digest anti-entropy,
# `batch` frames, grants/carry, opaque presence. 1 is not spoken any more.
PROTOCOL_VERSIONS: tuple[int, ...] = (2,)
DEFAULT_MAX_FRAME = 4 * 1024 * 1024

MAX_DOC_ID = 256
MAX_ACTOR = 64
MAX_NAME = 256
MAX_ADDRS = 16
MAX_ADDR = 512
MAX_PEERS = 1000
MAX_TTL = 3600.0
MAX_SEQ = 2**63 - 1
MAX_DIGEST = 32  # bytes of a version digest or a shared-docs digest
MAX_DIGESTS = 8192  # [doc, digest] rows in one `digests` message
MAX_BATCH = 65536  # messages in one `batch` frame
MAX_GRANT = 4096
MAX_GRANTS = 256  # per `grants` message
MAX_CARRY = 1000  # doc ids per `carry` message
MAX_PRESENCE = 16 * 1024  # opaque presence state (a signed blob the host verifies)
MAX_VV_ACTORS = 100_000
_MAX_DEPTH = 32
# Framing overhead allowance when splitting blobs into several `changes` frames.
FRAME_OVERHEAD = 512


class Bad(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _reject_semantic(decoder: Any) -> Any:
    raise Bad("bad-cbor", "CBOR tags are not allowed")


def _decoder_kwargs() -> dict[str, Any]:
    # cbor2 >= 6 can refuse duplicate keys, deep nesting and exotic semantic
    # tags (regex, datetime, shared refs ...) at decode time; 5.x cannot, and
    # there the schema checks below still reject the resulting types.
    kw: dict[str, Any] = {
        "max_depth": _MAX_DEPTH,
        "allow_duplicate_keys": False,
        "strict_hashable_types": True,
    }
    try:
        cbor2.CBORDecoder(io.BytesIO(b"\xa0"), **kw).decode()
    except TypeError:
        return {}
    # Built-in semantic tags bypass tag_hook; override them so none decode.
    tags = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 100, 256, 258, 260, 261, 1004, 55799)
    try:
        sem = {t: _reject_semantic for t in tags}
        cbor2.CBORDecoder(io.BytesIO(b"\xa0"), semantic_decoders=sem, **kw).decode()
        kw["semantic_decoders"] = sem
    except TypeError:
        pass
    return kw


DECODE_KW = _decoder_kwargs()


def _reject_tag(decoder: Any, tag: Any) -> Any:
    raise Bad("bad-cbor", "CBOR tags are not allowed")


def encode(msg: Mapping[str, Any]) -> bytes:
    return cbor2.dumps(dict(msg))


def decode(frame: bytes) -> dict[str, Any]:
    """Decode one frame into a message map (type checked later). Raises Bad."""
    fp = io.BytesIO(frame)
    try:
        msg = cbor2.CBORDecoder(fp, tag_hook=_reject_tag, **DECODE_KW).decode()
    except Bad:
        raise
    except RecursionError:
        raise Bad("bad-cbor", "nesting too deep") from None
    except Exception as e:  # the decoder raises many types on hostile input
        raise Bad("bad-cbor", f"{type(e).__name__}: {e}"[:200]) from None
    if fp.tell() != len(frame):
        raise Bad("bad-cbor", "trailing bytes after the message")
    check_native(msg)
    if not isinstance(msg, dict):
        raise Bad("bad-message", "frame is not a CBOR map")
    return msg


_SCALARS = (str, bytes, int, float, bool, type(None))


def check_native(root: Any) -> None:
    """Only CBOR-native values (no tags, undefined, simple values), bounded depth.

    cbor2 6 refuses most of this while decoding; 5.x does not, so check anyway.
    """
    stack = [(root, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, _SCALARS):
            continue
        if depth >= _MAX_DEPTH:
            raise Bad("bad-cbor", "nesting too deep")
        if isinstance(v, list):
            stack += [(x, depth + 1) for x in v if not isinstance(x, _SCALARS)]
        elif isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, (str, bytes, int)):
                    raise Bad("bad-cbor", "map keys must be str, bytes or int")
                if not isinstance(x, _SCALARS):
                    stack.append((x, depth + 1))
        else:
            raise Bad("bad-cbor", f"non-native CBOR value {type(v).__name__}")


def doc_field(m: dict[str, Any]) -> DocId:
    d = m.get("doc")
    if not isinstance(d, (str, bytes)) or not 0 < len(d) <= MAX_DOC_ID:
        raise Bad("bad-field", "doc must be a non-empty str or bytes")
    return d


def str_field(m: dict[str, Any], key: str, limit: int, *, required: bool = True) -> str:
    v = m.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str) or len(v) > limit:
        raise Bad("bad-field", f"{key} must be a str of at most {limit}")
    return v


def num_field(m: dict[str, Any], key: str) -> float:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Bad("bad-field", f"{key} must be a finite number")
    return float(v)


def int_field(m: dict[str, Any], key: str) -> int:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEQ:
        raise Bad("bad-field", f"{key} must be a non-negative int")
    return v


def addrs_field(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or len(v) > MAX_ADDRS:
        raise Bad("bad-field", "addrs must be a list")
    if not all(isinstance(a, str) and 0 < len(a) <= MAX_ADDR for a in v):
        raise Bad("bad-field", "addrs must hold strings")
    return tuple(v)


def node_id_field(v: Any) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise Bad("bad-field", "node id must be 32 bytes")
    return v


def vv_field(v: Any) -> VersionVector:
    if not isinstance(v, dict):
        raise Bad("bad-field", "vv must be a map")
    for actor, seq in v.items():
        if not isinstance(actor, bytes) or not 0 < len(actor) <= MAX_ACTOR:
            raise Bad("bad-field", "vv actor must be 1..64 bytes")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise Bad("bad-field", "vv seq must be a non-negative int")
    return dict(v)


def digest_field(m: dict[str, Any], key: str) -> bytes:
    v = m.get(key)
    if not isinstance(v, bytes) or not 0 < len(v) <= MAX_DIGEST:
        raise Bad("bad-field", f"{key} must be 1..{MAX_DIGEST} bytes")
    return v


def bytes_list_field(m: dict[str, Any], key: str, max_items: int, max_len: int) -> list[bytes]:
    v = m.get(key)
    if not isinstance(v, list) or len(v) > max_items:
        raise Bad("bad-field", f"{key} must be a list of at most {max_items}")
    if not all(isinstance(b, bytes) and 0 < len(b) <= max_len for b in v):
        raise Bad("bad-field", f"{key} must hold 1..{max_len}-byte strings")
    return v


def flag_field(m: dict[str, Any], key: str) -> bool:
    v = m.get(key, False)
    if not isinstance(v, bool):
        raise Bad("bad-field", f"{key} must be a bool")
    return v


# ------------------------------------------------------------------ digests


def _doc_key(doc: DocId) -> bytes:
    # str and bytes ids must never collide, and sort the same on every node
    return (b"s" + doc.encode()) if isinstance(doc, str) else (b"b" + doc)


def vv_digest(vv: Mapping[bytes, int]) -> bytes:
    """The 16-byte digest of a version vector (zero entries ignored).

    Two replicas of a doc have equal digests exactly when (up to a hash
    collision) their version vectors are equal; hosts use this function for
    ``SyncHost.version_digest`` so both sides of a session agree.
    """
    h = hashlib.blake2b(digest_size=16, person=b"ownkernel-vv")
    for actor, seq in sorted(vv.items()):
        if seq:
            h.update(len(actor).to_bytes(1, "big") + actor + seq.to_bytes(8, "big"))
    return h.digest()


EMPTY_VV_DIGEST = vv_digest({})


def shared_digest(pairs: Iterable[tuple[DocId, bytes]]) -> bytes:
    """The 16-byte digest of a set of (doc, version digest) pairs, order-free."""
    h = hashlib.blake2b(digest_size=16, person=b"ownkernel-docs")
    for key, vd in sorted((_doc_key(d), vd) for d, vd in pairs):
        h.update(len(key).to_bytes(2, "big") + key + len(vd).to_bytes(1, "big") + vd)
    return h.digest()


# ------------------------------------------------------------------ batching

_BATCH_HEAD = b"\xa2" + cbor2.dumps("type") + cbor2.dumps("batch") + cbor2.dumps("msgs")
BATCH_OVERHEAD = len(_BATCH_HEAD) + 9  # the array header is at most 9 bytes


def _array_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x80 + n])
    if n < 256:
        return bytes([0x98, n])
    if n < 65536:
        return b"\x99" + n.to_bytes(2, "big")
    return b"\x9a" + n.to_bytes(4, "big")


def batch_frame(encoded: list[bytes]) -> bytes:
    """One `batch` frame holding already-encoded messages (spliced, not re-encoded)."""
    if len(encoded) == 1:
        return encoded[0]
    return _BATCH_HEAD + _array_head(len(encoded)) + b"".join(encoded)


def pack_frames(outbox: list[tuple[bytes, bool]], limit: int) -> list[bytes]:
    """Encoded messages, in order, into frames ≤ ``limit``: runs of small ones share a
    `batch` frame; a message flagged ``True`` (hello, error) always goes alone."""
    room = limit - BATCH_OVERHEAD
    frames: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    for enc, alone in outbox:
        if cur and (alone or size + len(enc) > room or len(cur) >= MAX_BATCH):
            frames.append(batch_frame(cur))
            cur, size = [], 0
        if alone:
            frames.append(enc)
        else:
            cur.append(enc)
            size += len(enc)
    if cur:
        frames.append(batch_frame(cur))
    return frames


def chunked(items: list[Any], sizes: list[int], max_items: int, limit: int) -> list[list[Any]]:
    """Split ``items`` into runs of at most ``max_items`` whose ``sizes`` sum ≤ ``limit``."""
    out: list[list[Any]] = [[]]
    size = 0
    for it, n in zip(items, sizes):
        if out[-1] and (len(out[-1]) >= max_items or size + n > limit):
            out.append([])
            size = 0
        out[-1].append(it)
        size += n
    return out


# ------------------------------------------------------------------ message schemas


class Hello(NamedTuple):
    node_id: bytes
    name: str
    addrs: tuple[str, ...]
    versions: list[int]
    docs: tuple[DocId, ...] | None
    relay: bool
    max_frame: int


def parse_hello(msg: dict[str, Any]) -> Hello:
    node_id = node_id_field(msg.get("id"))
    name = str_field(msg, "name", MAX_NAME, required=False)
    addrs = addrs_field(msg.get("addrs"))
    versions = msg.get("versions")
    if not isinstance(versions, list) or not versions or len(versions) > 64 or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in versions
    ):
        raise Bad("bad-field", "versions must be a list of ints")
    docs_raw = msg.get("docs")
    docs: tuple[DocId, ...] | None = None
    if docs_raw is not None:
        if not isinstance(docs_raw, list) or len(docs_raw) > 10_000:
            raise Bad("bad-field", "docs must be a list")
        docs = tuple(doc_field({"doc": d}) for d in docs_raw)
    relay = flag_field(msg, "relay")
    max_frame = msg.get("max_frame", DEFAULT_MAX_FRAME)
    if isinstance(max_frame, bool) or not isinstance(max_frame, int) or max_frame < 1024:
        raise Bad("bad-field", "max_frame must be an int >= 1024")
    return Hello(node_id, name, addrs, versions, docs, relay, max_frame)


def parse_peer_rows(msg: dict[str, Any]) -> list[tuple[bytes, str, tuple[str, ...], float]]:
    rows = msg.get("peers")
    if not isinstance(rows, list) or len(rows) > MAX_PEERS:
        raise Bad("bad-field", "peers must be a list")
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 4:
            raise Bad("bad-field", "peer rows are [id, name, addrs, last_seen]")
        nid = node_id_field(row[0])
        name = str_field({"n": row[1]}, "n", MAX_NAME)
        seen = num_field({"s": row[3]}, "s")
        out.append((nid, name, addrs_field(row[2]), seen))
    return out


def parse_digest_rows(msg: dict[str, Any]
                      ) -> list[tuple[DocId, bytes, VersionVector | None]]:
    rows = msg.get("docs")
    if not isinstance(rows, list) or len(rows) > MAX_DIGESTS:
        raise Bad("bad-field", f"docs must be a list of at most {MAX_DIGESTS}")
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) not in (2, 3):
            raise Bad("bad-field", "digest rows are [doc, digest] or [doc, digest, vv]")
        vv = vv_field(row[2]) if len(row) == 3 else None
        out.append((doc_field({"doc": row[0]}), digest_field({"v": row[1]}, "v"), vv))
    return out


def parse_presence(msg: dict[str, Any]) -> tuple[DocId, bytes, float]:
    doc = doc_field(msg)
    ttl = num_field(msg, "ttl")
    if not 0 < ttl <= MAX_TTL:
        raise Bad("bad-field", "ttl out of range")
    state = msg.get("state")
    if not isinstance(state, bytes) or len(state) > MAX_PRESENCE:
        raise Bad("bad-field", f"presence state must be bytes of at most {MAX_PRESENCE}")
    return doc, state, ttl
