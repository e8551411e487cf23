-- Prefix search without skipping (operations issue, 1M users): a user whose email and
-- username both start with the query is listed once, under its email, so the username scan
-- of 0003 had to step over every such user (all 100k "grace.N"/"graceN@" users for "grace").
-- Both names start with a prefix p exactly when their shared prefix is at least len(p) long,
-- so the username index leads with that length: for a query of n characters the username
-- branch reads only the keys 0 .. n-1, one ordered range each, and skips nothing.
-- The length is capped at 32 (the key 32 means "32 or more"): longer queries read that key
-- too and test the email there (rare rows), so that a query never needs more than 33 ranges.

CREATE FUNCTION search_split(email text, username text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN email IS NULL OR username IS NULL THEN 0 ELSE (
        SELECT coalesce(min(i) - 1, least(length(email), length(username), 32))
        FROM generate_series(1, least(length(email), length(username), 32)) AS i
        WHERE substr(email, i, 1) <> substr(username, i, 1)
    ) END;

-- Built from the existing rows, and kept by PostgreSQL on every insert and update: no trigger.
CREATE INDEX users_username_split ON users (
    (search_split(lower(email) COLLATE "C", lower(username) COLLATE "C")),
    (lower(username) COLLATE "C")
) INCLUDE (id, legacy_id, source, created_at);

DROP INDEX users_username_prefix;

-- The email branch, index-only this time: PostgreSQL reads an expression's value from an index
-- only when the column it is computed from is in the index too (0003's lacked email, so every
-- entry it stepped over cost a row read). A source filter walks the second index: a source
-- that few matching users have would otherwise step over the whole range.
CREATE INDEX users_email_search ON users ((lower(email) COLLATE "C"), legacy_id)
    INCLUDE (email, id, source, created_at);
CREATE INDEX users_source_email ON users (source, (lower(email) COLLATE "C"))
    INCLUDE (email, id, legacy_id, created_at);
DROP INDEX users_email_prefix;
