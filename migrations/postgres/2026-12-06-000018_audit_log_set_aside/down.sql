ALTER TABLE audit_log DROP COLUMN set_aside;
ALTER TABLE audit_log DROP COLUMN attempts;
