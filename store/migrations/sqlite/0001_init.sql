-- authshim store, SQLite: users, settings, per-day counters.
-- Email and username are stored lower-case by the application; COLLATE NOCASE is a second
-- belt so that an upper-case copy can never slip past the UNIQUE constraint. The UNIQUE
-- constraints create the indexes that find_user's "email = ? OR username = ?" uses
-- (a MULTI-INDEX OR lookup), so no further index is needed for it.
-- users keeps its rowid: rows carry a hash and a profile (too wide for WITHOUT ROWID), and
-- secondary indexes then point at an 8-byte rowid rather than the 32-character id.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,
    legacy_id     TEXT    UNIQUE,
    email         TEXT    UNIQUE COLLATE NOCASE,
    username      TEXT    UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,
    profile       TEXT    NOT NULL DEFAULT '{}',
    source        TEXT    NOT NULL,
    created_at    REAL    NOT NULL,
    last_login_at REAL,
    login_count   INTEGER NOT NULL DEFAULT 0,
    blocked       INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    session_epoch INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE counters (
    day   TEXT    NOT NULL,
    name  TEXT    NOT NULL,
    value INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, name)
) WITHOUT ROWID;
