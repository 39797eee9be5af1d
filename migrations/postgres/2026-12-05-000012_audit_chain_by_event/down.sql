CREATE INDEX audit_chain_request ON audit_chain (request_id);
