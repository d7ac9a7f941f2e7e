-- The national check (PROTOCOL §6, §7). Hubs, the pseudonymiser and the index share
-- one migration set; each role leaves the tables of the other roles empty.

-- Hub: what the national index must be told about this hub's pids (an outbox of
-- states, not of messages). Written in the same job as the case that causes it
-- (write-ahead); a background task pushes every pending row, with backoff, and
-- marks open rows pending again when their lease needs renewing. A row goes when its
-- case is closed and the lease it was last given has run out.
CREATE TABLE index_outbox (
    pid             TEXT PRIMARY KEY,       -- hex, as in case_subjects
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    since_ms        INTEGER NOT NULL,
    closed_ms       INTEGER,
    lease_until_ms  INTEGER,                -- the lease the index last confirmed; NULL: never
    pending         INTEGER NOT NULL CHECK (pending IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_try_ms     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX index_outbox_pending ON index_outbox (next_try_ms) WHERE pending = 1;

-- Index: pid -> the hubs that registered it. The primary key is the lookup path
-- (one B-tree descent at any size); expired leases are filtered on read and deleted
-- in slices of the key space, so there is no secondary index to maintain.
CREATE TABLE index_registrations (
    pid             BLOB NOT NULL CHECK (length(pid) = 64),
    hub             TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    since_ms        INTEGER NOT NULL,
    lease_until_ms  INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (pid, hub)
) WITHOUT ROWID;

-- Pseudonymiser: evaluations per calling hub per UTC day (flushed from memory).
CREATE TABLE oprf_usage (
    org          TEXT NOT NULL,
    day          TEXT NOT NULL,             -- YYYY-MM-DD, UTC
    evaluations  INTEGER NOT NULL,
    PRIMARY KEY (org, day)
) WITHOUT ROWID;
