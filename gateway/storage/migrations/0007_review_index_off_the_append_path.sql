-- The review index is derived data: the hub now builds it after the fact, in batches,
-- off the append path (ledger_store.index_for_review), instead of a trigger that parsed
-- every body again inside every exchange step's transaction.
DROP TRIGGER review_entries_add;
