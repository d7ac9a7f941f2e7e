-- The maintenance loop deletes acknowledged inbox rows after a day. Without an index
-- on acked_ms that DELETE scanned the whole inbox every 10 s on the writer's thread;
-- a partial index keeps it to the rows it deletes.
CREATE INDEX inbox_acked ON inbox (acked_ms) WHERE acked_ms IS NOT NULL;
