-- Sessions ended by a logout (session-revocation issue). A session cookie names its session by
-- the random nonce in its payload; a revoked one is kept until the cookie itself expires, so
-- that a copied cookie stops working at once on this replica and within session.cache_ttl on
-- the others. Read with the user on a session-cache miss; expired rows are purged on revoke.

CREATE TABLE revoked_sessions (
    session_id  TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    expires_at  REAL NOT NULL
);

CREATE INDEX revoked_sessions_user ON revoked_sessions (user_id, expires_at);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
