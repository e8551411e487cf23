-- Admin queries (operations issue): keyset pagination, filters and the cut-over readiness.
-- Prefix search compares in the "C" collation (byte order, as SQLite and Python do), so
-- that a prefix is an index range whatever the database's default collation is.

-- The same index (and name) as 0004_users_created_at, which replicas' polling needs too.
CREATE INDEX IF NOT EXISTS users_created_at ON users (created_at, id);
CREATE INDEX users_source_created ON users (source, created_at, id);
-- Covering: a search picks a page's ids from the index alone (an index-only scan), skipping
-- what an earlier branch matched (by legacy id, then by email) and applying the source/since
-- filters without reading rows; only the page's rows are then read.
CREATE INDEX users_email_prefix ON users ((lower(email) COLLATE "C"), legacy_id)
    INCLUDE (id, source, created_at);
CREATE INDEX users_username_prefix
    ON users ((lower(username) COLLATE "C"), (lower(email) COLLATE "C"), legacy_id)
    INCLUDE (id, source, created_at);

-- One row per distinct login identifier (a keyed hash, never the identifier itself) that
-- the legacy app or authshim accepted: the last UTC day it logged in and whether it was
-- migrated then. Storage grows per distinct identifier, not per login.
CREATE TABLE login_activity (
    ident     TEXT PRIMARY KEY,
    last_day  TEXT NOT NULL,
    migrated  BOOLEAN NOT NULL
);

CREATE INDEX login_activity_day ON login_activity (last_day, migrated);
