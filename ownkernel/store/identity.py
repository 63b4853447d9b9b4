"""The node's Ed25519 identity.

The node id *is* the Ed25519 public key (32 bytes, shown as a short hex prefix
like git). Its Curve25519 form is the CurveZMQ transport key, so "who is this
socket" and "who signed this change" are the same fact.

Key file format (``<profile>/identity.key``, mode 0600): one line
``ownkernel-ed25519-seed-v1 <64 hex digits>``. Text, so a truncated or
foreign file is recognised and reported instead of being used as a key.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ownkernel.store.errors import IdentityError

__all__ = ["Identity", "short_id", "verify", "z85_decode", "z85_encode"]

KEY_FILE = "identity.key"
_HEADER = "ownkernel-ed25519-seed-v1"


def short_id(node_id: bytes, n: int = 8) -> str:
    """Short hex prefix for display (store and compare ids whole)."""
    return node_id.hex()[:n]


class Identity:
    """An Ed25519 signing key and the forms of it other layers need."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._sk = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._sk.verify_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(32))

    # -- the node id ---------------------------------------------------------
    @property
    def node_id(self) -> bytes:
        return self.public_key

    @property
    def short_id(self) -> str:
        return short_id(self.public_key)

    # -- signing -------------------------------------------------------------
    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature."""
        return self._sk.sign(message).signature

    # -- transport keys (CurveZMQ) -------------------------------------------
    @property
    def curve_public(self) -> bytes:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self.public_key)

    @property
    def curve_secret(self) -> bytes:
        sk64 = self._sk._signing_key  # seed || public key, as libsodium wants it
        return nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(sk64)

    @property
    def curve_public_z85(self) -> bytes:
        return z85_encode(self.curve_public)

    @property
    def curve_secret_z85(self) -> bytes:
        return z85_encode(self.curve_secret)

    def __repr__(self) -> str:  # never print key material
        return f"<Identity {self.short_id}>"

    # -- persistence ---------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Identity:
        try:
            text = path.read_text("ascii")
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError) as e:
            raise IdentityError(f"cannot read identity key {path}: {e}") from e
        parts = text.split()
        if len(parts) != 2 or parts[0] != _HEADER or len(parts[1]) != 64:
            raise IdentityError(
                f"identity key {path} is damaged or not an ownkernel key. It was left "
                f"untouched; restore it from a backup, or move the whole profile away "
                f"to start a new identity."
            )
        try:
            seed = bytes.fromhex(parts[1])
        except ValueError:
            raise IdentityError(f"identity key {path} is damaged (not hex)") from None
        return cls(seed)

    def save(self, path: Path) -> None:
        """Write the key with mode 0600; refuses to overwrite an existing file."""
        data = f"{_HEADER} {bytes(self._sk).hex()}\n".encode("ascii")
        # O_EXCL: two racing first starts cannot both write a key; 0o600 from birth,
        # so there is no window in which the file is world-readable.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError,
            TypeError):
        return False


# --- Z85 (ZeroMQ RFC 32), so the transport can use keys without importing zmq here
_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85_DEC = {c: i for i, c in enumerate(_Z85)}


def z85_encode(data: bytes) -> bytes:
    if len(data) % 4:
        raise ValueError("z85 input length must be a multiple of 4")
    out = []
    for i in range(0, len(data), 4):
        v = int.from_bytes(data[i : i + 4], "big")
        chunk = []
        for _ in range(5):
            v, r = divmod(v, 85)
            chunk.append(_Z85[r])
        out.extend(reversed(chunk))
    return "".join(out).encode("ascii")


def z85_decode(text: bytes | str) -> bytes:
    s = text.decode("ascii") if isinstance(text, bytes) else text
    if len(s) % 5:
        raise ValueError("z85 input length must be a multiple of 5")
    out = bytearray()
    for i in range(0, len(s), 5):
        v = 0
        for c in s[i : i + 5]:
            v = v * 85 + _Z85_DEC[c]
        out += v.to_bytes(4, "big")
    return bytes(out)
