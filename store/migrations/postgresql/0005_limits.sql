-- Brute-force and rate-limit counters (store/limits.py holds the rule), shared by every
-- replica. Keys are keyed hashes, never identifiers or addresses in clear. subject is the
-- hashed account a key belongs to, so that a reset or an admin unblock clears every counter
-- of that account at once. version makes each update a compare-and-swap.

CREATE TABLE limits (
    key            TEXT PRIMARY KEY,
    subject        TEXT,
    count          INTEGER NOT NULL,
    window_start   DOUBLE PRECISION NOT NULL,
    blocked_until  DOUBLE PRECISION NOT NULL DEFAULT 0,
    version        INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX limits_subject ON limits (subject) WHERE subject IS NOT NULL;
CREATE INDEX limits_window_start ON limits (window_start);
