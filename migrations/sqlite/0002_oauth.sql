-- OAuth state, SQLite flavour. Keep in step with ../postgres/0002_oauth.sql (same tables,
-- columns and meaning; only types differ). Times are Unix seconds.
--
-- Secrets (access/refresh/id tokens, PKCE verifiers) are only ever stored sealed with
-- XChaCha20-Poly1305 (see intake-store's crypto module): key_id names the key, nonce is 24
-- random bytes, ciphertext ends in the 16-byte tag. The AAD binds each ciphertext to its row.

-- One token set per (integration, mailbox). version counts token writes (optimistic
-- concurrency); lease_owner/lease_until make a refresh single-flight across nodes.
CREATE TABLE oauth_tokens (
    integration   TEXT NOT NULL,
    mailbox       TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,   -- sealed JSON {access_token, refresh_token, id_token}
    expires_at    BIGINT NOT NULL,
    scopes        TEXT NOT NULL DEFAULT '',   -- space-separated, as granted
    identity      TEXT NOT NULL DEFAULT '{}', -- JSON of intake_core::TokenIdentity (not secret)
    status        TEXT NOT NULL DEFAULT 'valid'
                  CHECK (status IN ('valid', 'needs_reauthorization')),
    status_reason TEXT,
    version       BIGINT NOT NULL DEFAULT 1,
    lease_owner   TEXT,
    lease_until   BIGINT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (integration, mailbox)
);

-- Authorization-code flows between the redirect and the callback, so any node can finish them.
-- Single use: the callback deletes the row it reads.
CREATE TABLE oauth_flows (
    state         TEXT PRIMARY KEY,
    integration   TEXT NOT NULL,
    mailbox       TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,   -- sealed PKCE verifier
    expires_at    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX oauth_flows_expires ON oauth_flows(expires_at);

-- Credential-expiry warnings already sent: the primary key makes each one written once, by
-- whichever node gets there first.
CREATE TABLE credential_warnings (
    integration   TEXT NOT NULL,
    stage         TEXT NOT NULL,   -- '30d' | '14d' | '3d' | 'expired'
    expires_at    BIGINT NOT NULL,
    warned_at     BIGINT NOT NULL,
    PRIMARY KEY (integration, stage, expires_at)
);
