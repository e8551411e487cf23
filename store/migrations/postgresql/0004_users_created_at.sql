-- Replicas page through users in creation order to learn who migrated meanwhile (proxy/known.py):
-- "(created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT n" must be an index range scan,
-- not a scan of every user each few seconds.
CREATE INDEX IF NOT EXISTS users_created_at ON users (created_at, id);
