-- zvh-gateway hub schema, version 1. Forward-only: never edit a released migration.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('directory_version', '0');

CREATE TABLE organisations (
    org             TEXT PRIMARY KEY,
    role            TEXT NOT NULL CHECK (role IN ('hub', 'zvh', 'partner', 'incidental')),
    domain          TEXT,
    name            TEXT NOT NULL,
    signing_key     BLOB NOT NULL CHECK (length(signing_key) = 32),
    signing_kid     TEXT NOT NULL,
    encryption_key  BLOB NOT NULL CHECK (length(encryption_key) = 32),
    encryption_kid  TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    valid_until_ms  INTEGER,
    created_ms      INTEGER NOT NULL,
    revoked_ms      INTEGER
) WITHOUT ROWID;

CREATE TABLE cases (
    case_ref        TEXT PRIMARY KEY,
    theme           TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    registered_by   TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    closed_ms       INTEGER,
    close_ledger    INTEGER
) WITHOUT ROWID;

CREATE TABLE case_subjects (
    case_ref     TEXT NOT NULL REFERENCES cases (case_ref),
    subject_ref  TEXT NOT NULL,
    pid          TEXT NOT NULL,
    PRIMARY KEY (case_ref, subject_ref)
) WITHOUT ROWID;

CREATE INDEX case_subjects_pid ON case_subjects (pid);

CREATE TABLE case_participants (
    case_ref   TEXT NOT NULL REFERENCES cases (case_ref),
    org        TEXT NOT NULL REFERENCES organisations (org),
    added_ms   INTEGER NOT NULL,
    PRIMARY KEY (case_ref, org)
) WITHOUT ROWID;

-- One row per accepted request; also its idempotency record (PROTOCOL §3).
CREATE TABLE exchanges (
    exchange_id    TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    case_ref       TEXT NOT NULL REFERENCES cases (case_ref),
    subject_ref    TEXT NOT NULL,
    requester      TEXT NOT NULL,
    body_sha256    BLOB NOT NULL,
    response       TEXT NOT NULL,
    created_ms     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE exchange_recipients (
    exchange_id     TEXT NOT NULL REFERENCES exchanges (exchange_id),
    org             TEXT NOT NULL,
    outcome         TEXT NOT NULL,          -- 'delivered' or a deny code
    payload_sha256  BLOB,
    decision        TEXT,
    answer_sha256   BLOB,
    answer_response TEXT,
    answered_ms     INTEGER,
    PRIMARY KEY (exchange_id, org)
) WITHOUT ROWID;

-- Per-organisation store-and-forward inbox. Leases (visibility) live in memory:
-- after a crash every unacknowledged message is simply visible again.
CREATE TABLE inbox (
    message_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    org          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    exchange_id  TEXT,
    sender       TEXT NOT NULL,
    case_ref     TEXT NOT NULL,
    subject_ref  TEXT NOT NULL,
    decision     TEXT,
    reason_code  TEXT,
    envelope     TEXT,
    created_ms   INTEGER NOT NULL,
    acked_ms     INTEGER
);

CREATE INDEX inbox_pending ON inbox (org, message_id) WHERE acked_ms IS NULL;

-- RFC 9421 replay cache (PROTOCOL §2): survives restarts and crashes.
CREATE TABLE nonces (
    keyid       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL,
    PRIMARY KEY (keyid, nonce)
) WITHOUT ROWID;

CREATE INDEX nonces_expiry ON nonces (expires_ms);

-- The ledger (PROTOCOL §5). leaf_data is the raw canonical leaf JSON, readable with
-- standard tools; body and salt are purgeable, leaf data never changes.
CREATE TABLE ledger (
    idx        INTEGER PRIMARY KEY,
    type       TEXT NOT NULL,
    time_ms    INTEGER NOT NULL,
    leaf_data  BLOB NOT NULL,
    leaf_hash  BLOB NOT NULL,
    body       BLOB,
    salt       BLOB
);

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only');
END;

CREATE TRIGGER ledger_leaf_immutable BEFORE UPDATE OF idx, type, time_ms, leaf_data, leaf_hash ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger leaf data is immutable');
END;

-- Purge may only clear body and salt (PROTOCOL §5), never set them.
CREATE TRIGGER ledger_purge_only BEFORE UPDATE OF body, salt ON ledger
WHEN NEW.body IS NOT NULL OR NEW.salt IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'ledger bodies can only be purged');
END;

-- Which organisations appear in an entry (for access to bodies and for review).
CREATE TABLE ledger_actors (
    idx  INTEGER NOT NULL REFERENCES ledger (idx),
    org  TEXT NOT NULL,
    PRIMARY KEY (org, idx)
) WITHOUT ROWID;
