DROP INDEX account_code_expiry;
DROP INDEX account_throttle_expiry;
DROP INDEX account_session_expiry;
DROP INDEX oauth_code_expiry;
DROP INDEX refresh_token_expiry;
