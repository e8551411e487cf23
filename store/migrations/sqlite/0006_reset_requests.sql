-- Reset requests, written before the client is answered, so that a process killed right after
-- the answer loses none (hardening issue). Every well-formed request gets a row, whether or
-- not anyone has the email: the answer must not tell them apart. A worker claims a row with a
-- lease (claimed_until), looks the email up, stores the token and queues the mail (whose
-- outbox id is the request's id, so a request processed twice queues one mail), and sets
-- done_at. A done row forgets its email; the mail worker purges done rows with sent mail.

CREATE TABLE reset_requests (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    created_at    REAL NOT NULL,
    claimed_until REAL,
    done_at       REAL
);

CREATE INDEX reset_requests_due ON reset_requests (created_at) WHERE done_at IS NULL;
CREATE INDEX reset_requests_done_at ON reset_requests (done_at) WHERE done_at IS NOT NULL;
