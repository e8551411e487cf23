-- Password-reset tokens and the mail outbox (reset/sign-up issue). Same columns as SQLite.
-- A token is kept only as the SHA-256 of what was mailed; the mailed value is never stored.
-- user_id is NULL for a legacy user who has not migrated yet: the token then carries the
-- profile the legacy look-up returned, so that confirming it needs no legacy app (cut-over).
-- epoch is the user's session epoch when the token was made: any password change bumps it,
-- which is how a password change by any route invalidates older tokens.

CREATE TABLE reset_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    legacy_id   TEXT,
    profile     JSONB,
    epoch       INTEGER NOT NULL DEFAULT 0,
    created_at  DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    used_at     DOUBLE PRECISION
);

CREATE INDEX reset_tokens_email ON reset_tokens (email);  -- stored normalised (lower-case)
CREATE INDEX reset_tokens_user_id ON reset_tokens (user_id);
CREATE INDEX reset_tokens_expires_at ON reset_tokens (expires_at);

-- Mail waits here until a worker sends it: a failed send stays, with a later next_attempt_at.
-- Workers claim rows with FOR UPDATE SKIP LOCKED and a lease, so each mail goes out once.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    data             JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at       DOUBLE PRECISION NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION NOT NULL,
    lease_until      DOUBLE PRECISION,
    sent_at          DOUBLE PRECISION,
    last_error       TEXT
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
