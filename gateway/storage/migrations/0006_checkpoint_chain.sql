-- Each stored checkpoint names the one stored before it, signed by the hub, so that
-- deleting a stored checkpoint row is visible to the offline verifier.

ALTER TABLE checkpoints ADD COLUMN chain TEXT;      -- canonical JSON of the link
ALTER TABLE checkpoints ADD COLUMN chain_sig TEXT;  -- hub's Ed25519 signature (b64u)
