DROP TABLE notification_outbox;
DROP TABLE first_access;
DROP TRIGGER audit_chain_immutable ON audit_chain;
DROP TRIGGER audit_event_immutable ON resources;
DROP FUNCTION audit_immutable();
DROP TABLE audit_chain_head;
DROP TABLE audit_chain;
