-- Multi-step legacy logins (a second page after the password): the capture waits here, keyed by
-- the hash of a random cookie value, until the legacy app finishes the login or it expires. It
-- holds an argon2id hash, never a password.

CREATE TABLE pending_logins (
    key_hash      TEXT PRIMARY KEY NOT NULL,
    identifier    TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    route         TEXT NOT NULL,
    expires_at    DOUBLE PRECISION NOT NULL
);

CREATE INDEX pending_logins_expires_at ON pending_logins (expires_at);
