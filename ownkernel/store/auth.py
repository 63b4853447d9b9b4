"""Authenticated changes: per-author hash chains with signed heads.

Every change a node stores or sends travels in an **envelope**::

    [1, doc_id, actor, seq, body, sig | null, cap | null]     (CBOR array)

``body`` is the CRDT change blob (or its SecretBox ciphertext for encrypted
docs); ``actor`` is the author's 32-byte Ed25519 public key; ``cap`` is an
optional capability token the author presents (see invite.py).

Each author's changes in a doc form a chain. The chain hash of change ``seq``::

    h(seq) = BLAKE2b-256(person="ownk-chain-v1",
                         h(seq-1) || len(doc) || doc || actor || seq(8, big endian)
                         || len(cap) (4) || cap || body)           h(0) = 32 zero bytes

A signature is Ed25519 by ``actor`` over ``"ownkernel/head/v1" || h(seq)``. As
h(seq) commits to everything before it, **one signature authenticates the whole
chain up to seq**: a batch of changes needs only its last one signed, and
typing costs a hash per keystroke (about 1 µs) rather than a signature (about
25 µs here, plus 64 bytes). ``h(seq-1)`` is not carried in the envelope: chains
are gap-free, so a receiver always holds the previous link already (it keeps
each author's newest hash, see ``Head``).

A receiver accepts a run of an author's changes only when it ends in a valid
signature; an unsigned tail waits (bounded, in memory) for a later signed head.
This module is pure: it checks chains and signatures over opaque bodies; the
node decides about access and content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cbor2
import nacl.exceptions
import nacl.signing

from ownkernel.store.rows import Head

__all__ = [
    "ZERO_HASH",
    "audit",
    "ChainCheck",
    "Envelope",
    "chain_hash",
    "check_chains",
    "decode_envelope",
    "encode_envelope",
    "head_message",
    "verify_head",
]

ENVELOPE_VERSION = 1
ZERO_HASH = bytes(32)
SIG_DOMAIN = b"ownkernel/head/v1"
MAX_BODY = 16 * 1024 * 1024


class Envelope(NamedTuple):
    doc: bytes
    actor: bytes
    seq: int
    body: bytes
    sig: bytes | None = None
    cap: bytes | None = None


class EnvelopeError(ValueError):
    """Bytes that are not a well-formed envelope."""


def encode_envelope(env: Envelope) -> bytes:
    return cbor2.dumps([ENVELOPE_VERSION, env.doc, env.actor, env.seq, env.body, env.sig,
                        env.cap])


def decode_envelope(data: bytes) -> Envelope:
    """Parse and shape-check an envelope; raises EnvelopeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > MAX_BODY + 4096:
        raise EnvelopeError("envelope must be bytes of bounded size")
    try:
        v = cbor2.loads(data)
    except Exception as e:  # cbor2 raises many types on garbage
        raise EnvelopeError(f"not CBOR: {e}") from None
    if not isinstance(v, list) or len(v) != 7 or v[0] != ENVELOPE_VERSION:
        raise EnvelopeError("not an ownkernel envelope (v1)")
    _, doc, actor, seq, body, sig, cap = v
    if not isinstance(doc, bytes) or not 1 <= len(doc) <= 64:
        raise EnvelopeError("bad doc id")
    if not isinstance(actor, bytes) or len(actor) != 32:
        raise EnvelopeError("actor must be a 32-byte public key")
    if type(seq) is not int or not 1 <= seq < 2**62:
        raise EnvelopeError("bad seq")
    if not isinstance(body, bytes) or not body:
        raise EnvelopeError("bad body")
    if sig is not None and (not isinstance(sig, bytes) or len(sig) != 64):
        raise EnvelopeError("bad signature field")
    if cap is not None and (not isinstance(cap, bytes) or len(cap) > 4096):
        raise EnvelopeError("bad capability field")
    return Envelope(doc, actor, seq, body, sig, cap)


def chain_hash(prev: bytes, doc: bytes, actor: bytes, seq: int, body: bytes,
               cap: bytes | None = None) -> bytes:
    h = hashlib.blake2b(digest_size=32, person=b"ownk-chain-v1")
    c = cap or b""
    h.update(prev)
    h.update(len(doc).to_bytes(1, "big"))
    h.update(doc)
    h.update(actor)
    h.update(seq.to_bytes(8, "big"))
    h.update(len(c).to_bytes(4, "big"))
    h.update(c)
    h.update(body)
    return h.digest()


def head_message(h: bytes) -> bytes:
    return SIG_DOMAIN + h


_vk_cache: dict[bytes, nacl.signing.VerifyKey] = {}


def verify_head(actor: bytes, h: bytes, sig: bytes) -> bool:
    vk = _vk_cache.get(actor)
    try:
        if vk is None:
            vk = nacl.signing.VerifyKey(actor)
            if len(_vk_cache) > 4096:
                _vk_cache.clear()
            _vk_cache[actor] = vk
        vk.verify(head_message(h), sig)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError,
            TypeError):
        return False


@dataclass
class Run:
    """A verified run of one author's changes, ending in a signed head."""

    actor: bytes
    envelopes: list[Envelope]
    hashes: list[bytes]

    @property
    def head(self) -> Head:
        last = self.envelopes[-1]
        return Head(last.seq, self.hashes[-1], last.sig, last.seq)


@dataclass
class ChainCheck:
    """Outcome of :func:`check_chains` for one doc."""

    runs: list[Run] = field(default_factory=list)
    rejected: list[tuple[str, Envelope]] = field(default_factory=list)
    duplicates: int = 0
    waiting: list[Envelope] = field(default_factory=list)  # unsigned tails / early arrivals


def check_chains(
    doc: bytes,
    envelopes: Iterable[Envelope],
    heads: dict[bytes, Head],
    stored: Callable[[bytes, int], Any],
) -> ChainCheck:
    """Verify envelopes (all of ``doc``) against the known heads.

    ``stored(actor, seq)`` returns the stored ``(body, cap)`` of an already held
    change (or None), to tell a harmless replay from a forged rewrite of history.
    Rejection reasons: ``fork`` (different content under a seq we hold),
    ``bad_signature`` (signature or chain does not verify: forged, altered or
    re-attributed). Envelopes beyond a gap, or in an unsigned tail, come back in
    ``waiting`` for the caller to keep until their signed head arrives.
    """
    out = ChainCheck()
    by_actor: dict[bytes, dict[int, Envelope]] = {}
    for env in envelopes:
        slot = by_actor.setdefault(env.actor, {})
        prev = slot.get(env.seq)
        # Keep the signed copy if the same change arrives both ways.
        if prev is None or (prev.sig is None and env.sig is not None and prev.body == env.body):
            slot[env.seq] = env
        elif prev.body != env.body or prev.cap != env.cap:
            out.rejected.append(("fork", env))
    for actor, envs in by_actor.items():
        head = heads.get(actor) or Head(0, ZERO_HASH)
        seqs = sorted(envs)
        run: list[Envelope] = []
        hashes: list[bytes] = []
        prev_hash = head.hash
        signed_upto = -1
        broken = False
        for s in seqs:
            env = envs[s]
            if s <= head.seq:
                old = stored(actor, s)
                if old is not None and (old[0] != env.body or old[1] != env.cap):
                    out.rejected.append(("fork", env))
                else:
                    out.duplicates += 1
                continue
            if broken:
                out.rejected.append(("bad_signature", env))
                continue
            if s != head.seq + len(run) + 1:
                out.waiting.append(env)  # gap: cannot chain it yet
                continue
            h = chain_hash(prev_hash, doc, actor, s, env.body, env.cap)
            run.append(env)
            hashes.append(h)
            prev_hash = h
            if env.sig is not None:
                if verify_head(actor, h, env.sig):
                    signed_upto = len(run) - 1
                else:
                    # Something in the run up to here was forged or altered; we cannot
                    # tell which change, so none of the unverified ones is trusted.
                    bad = run[signed_upto + 1:]
                    out.rejected.extend(("bad_signature", e) for e in bad)
                    run = run[: signed_upto + 1]
                    hashes = hashes[: signed_upto + 1]
                    broken = True
        if signed_upto >= 0:
            out.runs.append(Run(actor, run[: signed_upto + 1], hashes[: signed_upto + 1]))
        if not broken:
            out.waiting.extend(run[signed_upto + 1:])
    return out


def audit(store: Any, doc: bytes) -> list[str]:
    """Re-verify everything stored for ``doc``: gap-free chains, heads, signatures.

    Returns a list of problems (empty: consistent). Compacted history is checked
    from the chain hash kept at the cut. Reads every change of the doc, so it is
    for tests, benchmarks and ``fsck``-style tools, not hot paths.
    """
    problems: list[str] = []
    cuts = store.compacted(doc)
    for actor, head in store.heads(doc).items():
        base, h = cuts.get(actor, (0, ZERO_HASH))
        expect = base + 1
        sig_ok = head.sig is None or head.sig_seq <= base
        for row in store.changes(doc, actor, after=base):
            if row.seq != expect:
                problems.append(f"{actor.hex()[:8]}: seq {expect} missing (found {row.seq})")
                break
            h = chain_hash(h, doc, actor, row.seq, row.blob, row.auth)
            if head.sig is not None and row.seq == head.sig_seq:
                sig_ok = verify_head(actor, h, head.sig)
            expect += 1
        else:
            if expect - 1 != head.seq:
                problems.append(f"{actor.hex()[:8]}: head says {head.seq}, stored {expect - 1}")
            elif h != head.hash:
                problems.append(f"{actor.hex()[:8]}: chain hash does not match the head")
        if not sig_ok:
            problems.append(f"{actor.hex()[:8]}: head signature does not verify")
    return problems
