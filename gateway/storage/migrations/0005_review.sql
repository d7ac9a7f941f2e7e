-- Review (issue 6): the people who log in to the review pages, and a flat index over
-- the ledger that the review filters and keyset paging use at a million entries.

-- People, not organisations. The password hash is argon2id (gateway.crypto.passwords);
-- failed logins and the lockout live here so that a restart does not lift a lockout.
CREATE TABLE users (
    name            TEXT PRIMARY KEY,
    role            TEXT NOT NULL CHECK (role IN ('privacy-officer', 'admin')),
    password_hash   TEXT NOT NULL,
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER,
    created_ms      INTEGER NOT NULL,
    disabled_ms     INTEGER
) WITHOUT ROWID;

-- One row per ledger entry, filled by a trigger in the same transaction as the
-- append (so it can never lag behind the ledger, whoever appends: the hub or an
-- offline tool). Derived data only: the ledger stays the evidence.
CREATE TABLE review_entries (
    idx          INTEGER PRIMARY KEY REFERENCES ledger (idx),
    type         TEXT NOT NULL,
    time_ms      INTEGER NOT NULL,
    exchange_id  TEXT,
    case_ref     TEXT,
    theme        TEXT,
    org          TEXT,          -- who acted: requester, answering holder, denied caller
    counterpart  TEXT,          -- holder, answer recipient, denied organisation
    decision     TEXT,          -- answers: known, not-known, release, partial, refuse
    code         TEXT           -- denials: the deny code
);

CREATE INDEX review_entries_type ON review_entries (type, idx);
CREATE INDEX review_entries_exchange ON review_entries (exchange_id, idx)
    WHERE exchange_id IS NOT NULL;
CREATE INDEX review_entries_case ON review_entries (case_ref, idx) WHERE case_ref IS NOT NULL;
CREATE INDEX review_entries_theme ON review_entries (theme, idx) WHERE theme IS NOT NULL;
CREATE INDEX review_entries_decision ON review_entries (decision, idx)
    WHERE decision IS NOT NULL;
CREATE INDEX review_entries_code ON review_entries (code, idx) WHERE code IS NOT NULL;
CREATE INDEX review_entries_time ON review_entries (time_ms);
CREATE INDEX review_entries_org ON review_entries (org, idx) WHERE org IS NOT NULL;

-- Bodies are canonical JSON stored as BLOB: CAST to TEXT for the JSON functions.
CREATE TRIGGER review_entries_add AFTER INSERT ON ledger
WHEN NEW.body IS NOT NULL
BEGIN
    INSERT INTO review_entries
        (idx, type, time_ms, exchange_id, case_ref, theme, org, counterpart, decision, code)
    SELECT
        NEW.idx, NEW.type, NEW.time_ms,
        json_extract(b, '$.exchange_id'),
        json_extract(b, '$.case_ref'),
        COALESCE(json_extract(b, '$.theme'),
                 (SELECT theme FROM cases WHERE case_ref = json_extract(b, '$.case_ref'))),
        COALESCE(json_extract(b, '$.requester'), json_extract(b, '$.from'),
                 json_extract(b, '$.org')),
        COALESCE(json_extract(b, '$.holder'), json_extract(b, '$.to'),
                 json_extract(b, '$.denied_org')),
        json_extract(b, '$.decision'),
        CASE WHEN NEW.type = 'denied' THEN json_extract(b, '$.code') END
    FROM (SELECT CAST(NEW.body AS TEXT) AS b)
    WHERE json_valid(b);
END;

-- Retention: a purged entry may no longer be linked to its case or exchange.
CREATE TRIGGER review_entries_purge AFTER UPDATE OF body ON ledger
WHEN NEW.body IS NULL
BEGIN
    UPDATE review_entries SET exchange_id = NULL, case_ref = NULL WHERE idx = NEW.idx;
END;

INSERT INTO review_entries
    (idx, type, time_ms, exchange_id, case_ref, theme, org, counterpart, decision, code)
SELECT
    l.idx, l.type, l.time_ms,
    json_extract(b, '$.exchange_id'),
    json_extract(b, '$.case_ref'),
    COALESCE(json_extract(b, '$.theme'),
             (SELECT theme FROM cases WHERE case_ref = json_extract(b, '$.case_ref'))),
    COALESCE(json_extract(b, '$.requester'), json_extract(b, '$.from'), json_extract(b, '$.org')),
    COALESCE(json_extract(b, '$.holder'), json_extract(b, '$.to'), json_extract(b, '$.denied_org')),
    json_extract(b, '$.decision'),
    CASE WHEN l.type = 'denied' THEN json_extract(b, '$.code') END
FROM (SELECT idx, type, time_ms, CAST(body AS TEXT) AS b FROM ledger WHERE body IS NOT NULL) AS l
WHERE json_valid(b);

-- Entries purged before this migration: their type and time only.
INSERT INTO review_entries (idx, type, time_ms)
SELECT idx, type, time_ms FROM ledger WHERE body IS NULL;
