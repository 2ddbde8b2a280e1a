-- OpenID Connect clients and the SQLite session store.
-- Secrets (client secrets, cookie values, codes, tokens) are stored as the
-- hex SHA-256 of the secret; times are POSIX timestamps in seconds.

CREATE TABLE oidc_clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,              -- JSON list
    post_logout_redirect_uris TEXT NOT NULL,  -- JSON list
    launch_url TEXT,
    signing_alg TEXT NOT NULL,
    public INTEGER NOT NULL,
    allowed_group_ids TEXT NOT NULL,          -- JSON list of group ids
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE browser_sessions (
    key TEXT PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    user_id TEXT,
    state TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    amr TEXT NOT NULL,                        -- space-separated
    auth_time REAL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    expires_at REAL NOT NULL,
    address TEXT,
    user_agent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expiry ON browser_sessions (expires_at);

CREATE TABLE authorization_codes (
    key TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,                      -- space-separated
    nonce TEXT,
    code_challenge TEXT,
    sid TEXT NOT NULL,
    auth_time REAL NOT NULL,
    amr TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    grant_id TEXT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    sid TEXT NOT NULL,
    auth_time REAL NOT NULL,
    amr TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used REAL NOT NULL
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_client ON grants (client_id);

CREATE TABLE refresh_tokens (
    key TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    rotated_at REAL
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE access_tokens (
    key TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX access_tokens_grant ON access_tokens (grant_id);
CREATE INDEX access_tokens_expiry ON access_tokens (expires_at);
