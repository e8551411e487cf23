-- Usernames as the legacy app spells them (issue 15, [migration] username_case): a username
-- is unique and found by username_key, which the application folds by the store's rule
-- ("lower", "first_letter", "exact"; settings.username_case, absent = "lower"). The username
-- column keeps the spelling and is no longer unique: under "first_letter" Casey and CASEY
-- are two users. Rows stored before this were lower-cased by the application, so their key
-- is their username.
-- SQLite cannot drop a column's UNIQUE, so the table is rebuilt. Dropping users deletes its
-- rows first, and ON DELETE CASCADE would take the users' reset tokens along: they are kept
-- aside in a temporary table and put back once the new table holds the name "users".

CREATE TABLE users_0012 (
    id            TEXT    PRIMARY KEY NOT NULL,
    legacy_id     TEXT    UNIQUE,
    email         TEXT    UNIQUE COLLATE NOCASE,
    username      TEXT    COLLATE NOCASE,
    username_key  TEXT    UNIQUE,
    password_hash TEXT    NOT NULL,
    profile       TEXT    NOT NULL DEFAULT '{}',
    source        TEXT    NOT NULL,
    created_at    REAL    NOT NULL,
    last_login_at REAL,
    login_count   INTEGER NOT NULL DEFAULT 0,
    blocked       INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    session_epoch INTEGER NOT NULL DEFAULT 0
);

INSERT INTO users_0012 (rowid, id, legacy_id, email, username, username_key, password_hash,
                        profile, source, created_at, last_login_at, login_count, blocked,
                        session_epoch)
SELECT rowid, id, legacy_id, email, username, username, password_hash, profile, source,
       created_at, last_login_at, login_count, blocked, session_epoch
FROM users;

CREATE TEMP TABLE reset_tokens_0012 AS SELECT * FROM reset_tokens;

DROP TABLE users;

ALTER TABLE users_0012 RENAME TO users;

INSERT OR IGNORE INTO reset_tokens SELECT * FROM temp.reset_tokens_0012;

DROP TABLE temp.reset_tokens_0012;

-- The indexes of 0003 and 0004, which went with the old table.
CREATE INDEX users_created_at ON users (created_at, id);
CREATE INDEX users_source_created ON users (source, created_at, id);
CREATE INDEX users_email_search ON users (email, legacy_id, source, created_at);
CREATE INDEX users_username_search ON users (username, email, legacy_id, source, created_at);
