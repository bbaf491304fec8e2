-- Accounts: users, sign-in sessions and their rotating refresh tokens.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Normalised (trimmed, lower-cased) by the service before it is stored.
    email         text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_length CHECK (char_length(email) BETWEEN 3 AND 254)
);

-- One row per sign-in. Access tokens carry the session id (`sid`), so revoking
-- the session (logout, refresh-token reuse) rejects its access tokens too.
CREATE TABLE sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    -- Why it was revoked: 'logout' or 'refresh_token_reuse'.
    revoked_reason text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Refresh tokens are stored as SHA-256 hashes only. A session is one rotation
-- family: presenting a token that was already used revokes the whole session
-- (OAuth 2.0 Security BCP, RFC 9700 section 4.14.2).
CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
