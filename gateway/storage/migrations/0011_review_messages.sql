-- The review index now reads the parties of case messages and referrals (`sender`,
-- `recipients`, `recipient`, issue #8). Entries indexed before that get them here; the
-- index is derived data, so this changes no ledger entry. Purged bodies stay NULL.
UPDATE review_entries SET
    org = (SELECT json_extract(CAST(l.body AS TEXT), '$.sender') FROM ledger l
           WHERE l.idx = review_entries.idx),
    counterpart = (SELECT CASE WHEN review_entries.type = 'referral'
                       THEN json_extract(CAST(l.body AS TEXT), '$.recipient')
                       ELSE (SELECT group_concat(j.value, ', ')
                             FROM json_each(CAST(l.body AS TEXT), '$.recipients') j)
                   END
                   FROM ledger l WHERE l.idx = review_entries.idx)
WHERE type IN ('message', 'referral');
