"""The database schema and its migrations (the tables are described in sqlite.py).

Kept apart from sqlite.py so that a new schema version is one reviewable change.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
CREATE TABLE documents (
    n          INTEGER PRIMARY KEY,
    id         BLOB NOT NULL UNIQUE,
    title      TEXT NOT NULL DEFAULT '',
    created    REAL NOT NULL,
    owner      BLOB NOT NULL,
    capability TEXT NOT NULL,          -- what this node may do: owner | admin | write | read
    encrypted  INTEGER NOT NULL DEFAULT 0,
    key        BLOB,                   -- SecretBox key of an encrypted doc (NULL: we lack it)
    access     BLOB,                   -- CBOR snapshot of the access list, for listing only
    inviter    BLOB,
    addresses  BLOB,                   -- CBOR list of where the inviter said it listens
    token      BLOB                    -- capability token we joined with (presented once)
);
CREATE TABLE actors (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
CREATE TABLE changes (
    doc   INTEGER NOT NULL,
    actor INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    blob  BLOB NOT NULL,
    auth  BLOB,
    PRIMARY KEY (doc, actor, seq)
) WITHOUT ROWID;
-- capabilities presented with changes are rare: a partial index finds them fast
CREATE INDEX changes_auth ON changes (doc) WHERE auth IS NOT NULL;
CREATE TABLE heads (
    doc     INTEGER NOT NULL,
    actor   INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    sig     BLOB,
    sig_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (doc, actor)
) WITHOUT ROWID;
-- per (doc, actor): changes up to seq are compacted into the snapshot (regenerated from
-- it byte for byte when needed), hash is the chain hash at that seq to verify them
CREATE TABLE compacted (
    doc   INTEGER NOT NULL,
    actor INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (doc, actor)
) WITHOUT ROWID;
CREATE TABLE snapshots (
    doc      INTEGER PRIMARY KEY,
    version  BLOB NOT NULL,
    data     BLOB NOT NULL,
    nchanges INTEGER NOT NULL,
    created  REAL NOT NULL
);
CREATE TABLE peers (
    id        BLOB PRIMARY KEY,
    name      TEXT,
    addresses BLOB,
    last_seen REAL
) WITHOUT ROWID;
"""

# MIGRATIONS[v] upgrades a database from version v-1 to v. Version 1 is the first
# release; a later release appends e.g. ``2: "ALTER TABLE peers ADD COLUMN ..."``.
MIGRATIONS: dict[int, str] = {1: _V1}
SCHEMA_VERSION = max(MIGRATIONS)
