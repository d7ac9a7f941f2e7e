-- Privacy protocols, accessions, geheimhoudingsverklaringen and wat-requests.

CREATE TABLE protocols (
    protocol_id    TEXT PRIMARY KEY,
    version        INTEGER NOT NULL,
    title          TEXT NOT NULL,
    text           BLOB NOT NULL,          -- the exact bytes that text_sha256 covers
    text_sha256    TEXT NOT NULL,
    themes         TEXT NOT NULL,          -- JSON list
    valid_from_ms  INTEGER NOT NULL,
    valid_until_ms INTEGER,
    published_ms   INTEGER NOT NULL
) WITHOUT ROWID;

-- Signed accessions, kept as received so they can be shown to the signer's
-- organisation and to a privacy officer.
CREATE TABLE accessions (
    protocol_id   TEXT NOT NULL REFERENCES protocols (protocol_id),
    org           TEXT NOT NULL REFERENCES organisations (org),
    text_sha256   TEXT NOT NULL,
    signed_at_ms  INTEGER NOT NULL,
    record        TEXT NOT NULL,           -- the signed record, canonical JSON
    received_ms   INTEGER NOT NULL,
    revoked_ms    INTEGER,
    PRIMARY KEY (protocol_id, org)
) WITHOUT ROWID;

CREATE TABLE declarations (
    declaration_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    org             TEXT NOT NULL REFERENCES organisations (org),
    case_ref        TEXT NOT NULL REFERENCES cases (case_ref),
    signer_name     TEXT NOT NULL,
    signer_role     TEXT NOT NULL,
    valid_from_ms   INTEGER NOT NULL,
    valid_until_ms  INTEGER NOT NULL,
    text_sha256     TEXT NOT NULL,
    record          TEXT NOT NULL,         -- the signed record, canonical JSON
    received_ms     INTEGER NOT NULL,
    revoked_ms      INTEGER
);

CREATE INDEX declarations_lookup ON declarations (org, case_ref);

CREATE TABLE wat_requests (
    exchange_id          TEXT PRIMARY KEY REFERENCES exchanges (exchange_id),
    holder               TEXT NOT NULL,
    categories           TEXT NOT NULL,    -- JSON list
    purpose              TEXT NOT NULL,
    processing_activity  TEXT NOT NULL,
    legal_basis          TEXT NOT NULL,    -- JSON, as requested
    rule                 TEXT NOT NULL,    -- the policy rule that allowed it
    manual_release       INTEGER NOT NULL,
    deadline_ms          INTEGER NOT NULL,
    decided_ms           INTEGER
) WITHOUT ROWID;

CREATE INDEX wat_requests_open ON wat_requests (deadline_ms) WHERE decided_ms IS NULL;
