DROP TABLE notification_outbox;
DROP TABLE first_access;
DROP TRIGGER audit_chain_no_delete;
DROP TRIGGER audit_chain_no_update;
DROP TRIGGER audit_event_no_delete;
DROP TRIGGER audit_event_no_update;
DROP TABLE audit_chain_head;
DROP TABLE audit_chain;
