-- Leak response. `leak_policy`: what a leak report naming one of the trust's keys does
-- (report, revoke, rotate); NULL means the default for the trust's direction (rotate for
-- inbound, report for outbound). `pending_auth`: whether a pending version authenticates
-- as soon as it is staged (`staged`, the behaviour before this migration) or only once every
-- connector has confirmed its delivery (`delivered`).
ALTER TABLE trusts ADD COLUMN leak_policy TEXT;
ALTER TABLE trusts ADD COLUMN pending_auth TEXT NOT NULL DEFAULT 'staged';
