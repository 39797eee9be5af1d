-- No query reads the chain's links by request id: its index goes, one B-tree fewer
-- to write per event (every answered request appends a link; BENCHMARKS.md).
DROP INDEX audit_chain_request;
