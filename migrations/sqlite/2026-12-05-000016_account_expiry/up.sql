-- The lifecycle job removes the accounts' rows a day after they expired
-- (`store::accounts::purge_expired`): found by these, not by reading each table.
CREATE INDEX account_code_expiry ON account_code (expires_at);
CREATE INDEX account_throttle_expiry ON account_throttle ((COALESCE(locked_until, window_start)));
CREATE INDEX account_session_expiry ON account_session (expires_at);
CREATE INDEX oauth_code_expiry ON oauth_code (expires_at);
CREATE INDEX refresh_token_expiry ON refresh_token (expires_at);
