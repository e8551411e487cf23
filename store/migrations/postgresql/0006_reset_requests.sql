-- Reset requests, written before the client is answered, so that a process killed right after
-- the answer loses none (hardening issue). Same columns as SQLite. Every well-formed request
-- gets a row, whether or not anyone has the email: the answer must not tell them apart.
-- Workers on every replica claim rows with FOR UPDATE SKIP LOCKED and a lease; the token, the
-- mail (outbox id = request id) and done_at are written in one transaction. A done row
-- forgets its email; the mail worker purges done rows with sent mail.

CREATE TABLE reset_requests (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    created_at     DOUBLE PRECISION NOT NULL,
    claimed_until  DOUBLE PRECISION,
    done_at        DOUBLE PRECISION
);

CREATE INDEX reset_requests_due ON reset_requests (created_at) WHERE done_at IS NULL;
CREATE INDEX reset_requests_done_at ON reset_requests (done_at) WHERE done_at IS NOT NULL;
