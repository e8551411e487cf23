-- Brute-force and rate-limit counters (store/limits.py holds the rule). Keys are keyed hashes,
-- never identifiers or addresses in clear. subject is the hashed account a key belongs to, so
-- that a reset or an admin unblock can clear every counter of that account in one statement.
-- version makes each update a compare-and-swap, so a burst of parallel attempts from several
-- processes is counted exactly.

CREATE TABLE limits (
    key           TEXT    PRIMARY KEY NOT NULL,
    subject       TEXT,
    count         INTEGER NOT NULL,
    window_start  REAL    NOT NULL,
    blocked_until REAL    NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX limits_subject ON limits (subject) WHERE subject IS NOT NULL;
CREATE INDEX limits_window_start ON limits (window_start);
