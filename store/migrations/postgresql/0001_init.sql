-- Users, settings and per-day counters. Same columns as the SQLite backend.
-- Applied by store/postgres.py inside the migration transaction, with search_path set to the
-- store's schema, so no name here is schema-qualified.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    legacy_id      TEXT,
    email          TEXT,
    username       TEXT,
    password_hash  TEXT NOT NULL,
    profile        JSONB NOT NULL DEFAULT '{}'::jsonb,
    source         TEXT NOT NULL,
    created_at     DOUBLE PRECISION NOT NULL,
    last_login_at  DOUBLE PRECISION,
    login_count    INTEGER NOT NULL DEFAULT 0,
    blocked        BOOLEAN NOT NULL DEFAULT FALSE,
    session_epoch  INTEGER NOT NULL DEFAULT 0,
    -- The backend maps a unique violation to UserExists(field) by these constraint names.
    CONSTRAINT users_legacy_id_key UNIQUE (legacy_id)
);

-- Case-insensitive uniqueness is the database's job, not the application's: two replicas
-- capturing "Alice@x" and "alice@x" at once must collide here. find_user uses these too.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE counters (
    day    TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, name)
);
