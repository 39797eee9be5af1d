-- See the SQLite migration of the same name.
-- The holders' own accounts (SPEC §11, R-ACT-1 … R-ACT-4). Instants are text in the
-- index format (YYYY-MM-DDTHH:MM:SS.ffffffZ): text order is time order. Codes,
-- tickets, session and refresh secrets are stored only as hashes.

-- The server's own secrets, made at first start: the key of the codes' and
-- counters' HMAC (`code-pepper`).
CREATE TABLE server_secret (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- The server's token signing keys (ES256, PKCS#8 PEM); the newest unretired key
-- signs, every unretired key verifies and is published in the JWKS.
CREATE TABLE issuer_key (
    kid TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT
);

-- One account per space; `identifiant` and `password_hash` once chosen (R-ACT-2).
CREATE TABLE account (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL UNIQUE,
    identifiant TEXT UNIQUE,
    -- argon2id, PHC string format.
    password_hash TEXT,
    email TEXT NOT NULL,
    mobile TEXT NOT NULL,
    -- Where one-time codes go: 'email' or 'sms'.
    code_channel TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Provisional codes, one-time sign-in codes and first sign-in tickets.
CREATE TABLE account_code (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    -- 'provisional', 'sign-in' or 'enrolment'.
    purpose TEXT NOT NULL,
    -- HMAC-SHA256 (hex) of the code under the server's pepper.
    code_hash TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    used_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX account_code_patient ON account_code (patient_id, purpose, created_at);

-- Failure counters and lock-outs, by HMAC of what was typed (a NIR, an
-- identifiant): the same row is written whether or not such an account exists.
CREATE TABLE account_throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start TEXT NOT NULL,
    locked_until TEXT
);

-- Signed-in sessions (the cookie holds a secret; its SHA-256 is the id).
CREATE TABLE account_session (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES account (id),
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    ended_at TEXT
);
CREATE INDEX account_session_account ON account_session (account_id);

-- Apps a holder authorised (SMART, R-ACT-4), with the scopes granted; revocable.
CREATE TABLE app_grant (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES account (id),
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX app_grant_account ON app_grant (account_id, client_id);

-- Authorisation codes (PKCE S256) and refresh tokens of a grant, by their hash.
CREATE TABLE oauth_code (
    code_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES app_grant (id),
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE refresh_token (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES app_grant (id),
    expires_at TEXT NOT NULL,
    -- Set when it was exchanged for the next one (rotation): presented again, it
    -- revokes the grant.
    used_at TEXT
);
CREATE INDEX refresh_token_grant ON refresh_token (grant_id);
