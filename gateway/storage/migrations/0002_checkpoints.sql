-- Signed checkpoints (PROTOCOL §5) and what purge needs to find an entry's case.

CREATE TABLE checkpoints (
    size     INTEGER NOT NULL,
    time_ms  INTEGER NOT NULL,
    root     BLOB NOT NULL CHECK (length(root) = 32),
    note     TEXT NOT NULL,          -- the full signed note, exactly as served
    tree     BLOB NOT NULL,          -- compact tree state at `size` (fast restart)
    PRIMARY KEY (size, time_ms)
) WITHOUT ROWID;

CREATE TRIGGER checkpoints_append_only_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only');
END;

CREATE TRIGGER checkpoints_append_only_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only');
END;

-- The case an entry belongs to, for retention. Deleted when the entry is purged,
-- so a purged entry cannot be linked to its case any more.
CREATE TABLE ledger_cases (
    idx       INTEGER PRIMARY KEY REFERENCES ledger (idx),
    case_ref  TEXT NOT NULL
);

CREATE INDEX ledger_cases_case ON ledger_cases (case_ref);
