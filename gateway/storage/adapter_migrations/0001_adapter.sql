-- A partner's adapter (issue 8): its own small database, never a hub's. It holds what
-- must survive a restart so that nothing is lost or done twice: the idempotency keys of
-- the local API and the file drop, and every inbox item until the partner system has
-- taken it (or it is a dead letter). Inbox items are kept as the hub delivered them:
-- the envelope stays sealed to this organisation's key and is opened in memory only.

-- One row per Idempotency-Key. `hub_request` is the sealed, ready-to-sign call made for
-- it, stored before it is sent: a retry after a crash or a lost answer sends the same
-- bytes again, which the hub answers idempotently (PROTOCOL §3.3), instead of a freshly
-- sealed (so different) body that it would refuse as exchange-exists.
CREATE TABLE idempotency (
    key             TEXT PRIMARY KEY,
    operation       TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('started', 'done')),
    hub_request     TEXT,
    status          INTEGER,
    response        TEXT,
    created_ms      INTEGER NOT NULL,
    done_ms         INTEGER
) WITHOUT ROWID;

-- Inbox items, keyed by the hub's message id. `message` is the item exactly as fetched
-- (ciphertext); it is dropped once the item is delivered. `reply` is the sealed answer
-- made from the partner system's reply, stored before it is sent (same bytes on retry).
CREATE TABLE deliveries (
    message_id       INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    exchange_id      TEXT,
    sender           TEXT NOT NULL,
    case_ref         TEXT NOT NULL,
    subject_ref      TEXT NOT NULL,
    message          TEXT,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT,
    reply            TEXT,
    reply_sent       INTEGER NOT NULL DEFAULT 0,
    hub_acked        INTEGER NOT NULL DEFAULT 0,
    received_ms      INTEGER NOT NULL,
    delivered_ms     INTEGER,
    dead_ms          INTEGER
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_ms) WHERE state = 'pending';
CREATE INDEX deliveries_unacked ON deliveries (message_id) WHERE hub_acked = 0 AND state != 'pending';
CREATE INDEX deliveries_exchange ON deliveries (exchange_id) WHERE exchange_id IS NOT NULL;

-- Every delivery attempt: when, and what happened (a status code or an error class,
-- never a body).
CREATE TABLE delivery_attempts (
    message_id  INTEGER NOT NULL REFERENCES deliveries (message_id),
    attempt     INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('accepted', 'failed')),
    detail      TEXT,
    PRIMARY KEY (message_id, attempt)
) WITHOUT ROWID;
