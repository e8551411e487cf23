-- Admin queries (operations issue): keyset pagination, filters and the cut-over readiness.
-- Listing pages walk users in (created_at, id) order; filtering by source walks the second
-- index in the same order.
-- The same index (and name) as 0004_users_created_at, which replicas' polling needs too.
CREATE INDEX IF NOT EXISTS users_created_at ON users (created_at, id);
CREATE INDEX users_source_created ON users (source, created_at, id);
-- Prefix search walks email and username in order and skips what an earlier branch matched
-- (by legacy id, then by email) and applies the source/since filters: these covering indexes
-- let it do so without reading rows.
CREATE INDEX users_email_search ON users (email, legacy_id, source, created_at);
CREATE INDEX users_username_search ON users (username, email, legacy_id, source, created_at);

-- One row per distinct login identifier (a keyed hash, never the identifier itself) that
-- the legacy app or authshim accepted: the last UTC day it logged in and whether it was
-- migrated then. Storage grows per distinct identifier, not per login; rows not seen within
-- admin.readiness_days are pruned.
CREATE TABLE login_activity (
    ident    TEXT    PRIMARY KEY NOT NULL,
    last_day TEXT    NOT NULL,
    migrated INTEGER NOT NULL CHECK (migrated IN (0, 1))
) WITHOUT ROWID;

CREATE INDEX login_activity_day ON login_activity (last_day, migrated);
