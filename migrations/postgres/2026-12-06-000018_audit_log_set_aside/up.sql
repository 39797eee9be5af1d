-- A row of the trace's log that cannot be applied (its frame does not read, or
-- its events failed to store five times) is set aside with the reason, instead of
-- holding back the rows after it: the trace's readers no longer wait for it, and
-- `audit-verify` reports it until someone deals with it.
ALTER TABLE audit_log ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_log ADD COLUMN set_aside TEXT;
