"""ownkernel.store: durable storage (SQLite, WAL), profiles, identity, authentication.

Imports only ``ownkernel.crdt`` (and not even that: bodies are opaque here).
"""

from ownkernel.store.auth import (
    Envelope,
    EnvelopeError,
    audit,
    chain_hash,
    check_chains,
    decode_envelope,
    encode_envelope,
    verify_head,
)
from ownkernel.store.crypto import SealError, new_key, open_sealed, seal
from ownkernel.store.errors import (
    CorruptRowError,
    DatabaseError,
    IdentityError,
    ProfileError,
    ProfileLockedError,
    StoreError,
    StoreFullError,
)
from ownkernel.store.identity import Identity, short_id, z85_decode, z85_encode
from ownkernel.store.profile import (
    DEFAULT_PROFILE,
    ProfileLock,
    base_dir,
    default_profile,
    make_temp_profile,
    resolve_profile,
)
from ownkernel.store.rows import ChangeRow, DocRow, Head
from ownkernel.store.sqlite import DB_FILE, SCHEMA_VERSION, Store

__all__ = [
    "DB_FILE",
    "DEFAULT_PROFILE",
    "SCHEMA_VERSION",
    "ChangeRow",
    "CorruptRowError",
    "DatabaseError",
    "DocRow",
    "Envelope",
    "EnvelopeError",
    "Head",
    "Identity",
    "IdentityError",
    "ProfileError",
    "ProfileLock",
    "ProfileLockedError",
    "SealError",
    "Store",
    "StoreError",
    "StoreFullError",
    "audit",
    "base_dir",
    "chain_hash",
    "check_chains",
    "decode_envelope",
    "default_profile",
    "encode_envelope",
    "make_temp_profile",
    "new_key",
    "open_sealed",
    "resolve_profile",
    "seal",
    "short_id",
    "verify_head",
    "z85_decode",
    "z85_encode",
]
