"""Per-document encryption for end-to-end encrypted docs (nacl SecretBox).

Only the change *body* and the snapshot are sealed; the envelope header
(doc, actor, seq, signature, capability) stays in clear, so nodes without the
key (relays, bootstrap servers) can still verify authorship, store and
forward. The chain hash and signature are computed over the ciphertext.
Each seal uses a fresh random 24-byte nonce (cost: 40 bytes per change).
"""

from __future__ import annotations

import nacl.exceptions
import nacl.secret
import nacl.utils

__all__ = ["KEY_SIZE", "SealError", "new_key", "open_sealed", "seal"]

KEY_SIZE = nacl.secret.SecretBox.KEY_SIZE


class SealError(ValueError):
    """Ciphertext that does not open with the key (wrong key or tampered)."""


def new_key() -> bytes:
    return nacl.utils.random(KEY_SIZE)


def seal(key: bytes, plaintext: bytes) -> bytes:
    return bytes(nacl.secret.SecretBox(key).encrypt(plaintext))


def open_sealed(key: bytes, data: bytes) -> bytes:
    try:
        return nacl.secret.SecretBox(key).decrypt(data)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
        raise SealError(f"cannot open sealed data: {e}") from None
