-- intake serve (issue 12): administrators, API tokens, browser sessions, login attempts, the
-- audit log, configuration kept in the database, and alerts. See intake-store/src/admin.rs,
-- config_store.rs and alerts.rs.

-- Administrators. The password is an argon2id PHC string; never the password itself.
CREATE TABLE admin_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- API tokens: only the SHA-256 of the token (256 random bits) is stored; it is shown once.
CREATE TABLE api_tokens (
    token_hash    TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES admin_users(name) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);

-- Browser sessions: SHA-256 of the cookie value; the CSRF token is per session.
CREATE TABLE admin_sessions (
    session_hash  TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES admin_users(name) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

-- Failed logins, counted per user and per client address over a window (rate limit shared by
-- every node).
CREATE TABLE login_failures (
    scope         TEXT NOT NULL,
    at            BIGINT NOT NULL
);
CREATE INDEX login_failures_scope_at ON login_failures (scope, at);

-- Who changed what.
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    details       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);

-- Integrations and channels kept in the database (the same keys as the TOML tables, as JSON).
-- managed_by = 'file' for entries imported from --config (read-only through the API), 'api'
-- otherwise. paused applies to channels.
CREATE TABLE config_entries (
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    body          TEXT NOT NULL,
    managed_by    TEXT NOT NULL,
    paused        BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- One row: bumped by every change of config_entries, polled by every node.
CREATE TABLE config_version (
    id            BIGINT PRIMARY KEY,
    version       BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);

-- Open and cleared alerts. One open alert per key (kind + subject).
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_key     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    severity      TEXT NOT NULL,
    message       TEXT NOT NULL,
    raised_at     BIGINT NOT NULL,
    cleared_at    BIGINT,
    notified      BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX alerts_open ON alerts (alert_key) WHERE cleared_at IS NULL;

-- What the node working a channel last saw: written by the worker after every round and every
-- failure, read by the status API and the alert checks (any node).
CREATE TABLE channel_status (
    channel          TEXT PRIMARY KEY,
    node             TEXT NOT NULL,
    last_success_at  BIGINT,
    last_error       TEXT,
    last_error_at    BIGINT,
    failing_since    BIGINT,
    updated_at       BIGINT NOT NULL
);
