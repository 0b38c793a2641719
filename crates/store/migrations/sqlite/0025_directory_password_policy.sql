-- What a directory does with the SCIM `password` attribute: `fingerprint` (keep only a keyed
-- fingerprint, the behaviour before this setting), `ignore` (drop it) or `refuse` (400).
ALTER TABLE directories ADD COLUMN password_policy TEXT NOT NULL DEFAULT 'fingerprint';
