-- Usernames as the legacy app spells them (issue 15, [migration] username_case): a username
-- is unique and found by username_key, which the application folds by the store's rule
-- ("lower", "first_letter", "exact"; settings.username_case, absent = "lower"). The username
-- column keeps the spelling and is no longer unique: under "first_letter" Casey and CASEY
-- are two users. Rows stored before this were lower-cased by the application, so their key
-- is their username. The search indexes of 0007 stay on lower(username): a prefix search
-- ignores case whatever the rule.

ALTER TABLE users ADD COLUMN username_key TEXT;
UPDATE users SET username_key = username WHERE username IS NOT NULL;

-- The same name, so that a unique violation still maps to UserExists("username").
DROP INDEX users_username_key;
CREATE UNIQUE INDEX users_username_key ON users (username_key);
