-- Secure case messages, referrals, attachment blobs and notifications (issue #8).

-- One row per stored attachment blob and uploader (ciphertext only; the file is
-- blobs/<blob_id> next to the database). Only an uploader may reference a blob in a
-- message, so naming someone else's blob id never grants access to it.
CREATE TABLE blobs (
    blob_id      TEXT NOT NULL,              -- hex SHA-256 of the ciphertext
    uploader     TEXT NOT NULL,
    size         INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    referenced   INTEGER NOT NULL DEFAULT 0, -- 1 once a message or referral names it
    PRIMARY KEY (blob_id, uploader)
) WITHOUT ROWID;

-- Who may fetch a blob: the recipients of each message or referral that names it.
-- A blob is deleted when every row has both fetched_ms (streamed to the end) and
-- acked_ms (the carrying inbox message acknowledged), or at retention.
CREATE TABLE blob_recipients (
    blob_id      TEXT NOT NULL,
    exchange_id  TEXT NOT NULL,
    org          TEXT NOT NULL,
    fetched_ms   INTEGER,
    acked_ms     INTEGER,
    PRIMARY KEY (blob_id, exchange_id, org)
) WITHOUT ROWID;

CREATE INDEX blob_recipients_org ON blob_recipients (org, exchange_id);

-- Accepted messages and referrals: their idempotency record (the exchange id is
-- unique across this table and `exchanges`). `case_ref` is '' for a referral.
CREATE TABLE messages (
    exchange_id   TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('message', 'referral')),
    case_ref      TEXT NOT NULL,
    sender        TEXT NOT NULL,
    body_sha256   BLOB NOT NULL,
    response      TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX messages_case ON messages (case_ref);

-- Declarations whose coming expiry the signer's organisation was told about (once).
ALTER TABLE declarations ADD COLUMN expiry_notified_ms INTEGER;
