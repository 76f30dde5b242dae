-- Intake schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql (same tables,
-- columns and meaning; only types differ). Times are Unix seconds.
CREATE TABLE projects (
    key          TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    next_number  BIGINT NOT NULL DEFAULT 1,
    created_at   BIGINT NOT NULL
);

CREATE TABLE customers (
    address      TEXT PRIMARY KEY,
    display_name TEXT,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL
);

CREATE TABLE tickets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_key  TEXT NOT NULL REFERENCES projects(key),
    number       BIGINT NOT NULL,
    key          TEXT NOT NULL UNIQUE,
    summary      TEXT NOT NULL,
    description  TEXT NOT NULL,
    reporter     TEXT NOT NULL,
    participants TEXT NOT NULL DEFAULT '[]',
    status       TEXT NOT NULL DEFAULT 'open',
    channel      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (project_key, number)
);

CREATE TABLE comments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id    BIGINT NOT NULL REFERENCES tickets(id),
    author       TEXT NOT NULL,
    body         TEXT NOT NULL,
    ledger_id    BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX comments_ticket ON comments(ticket_id);

CREATE TABLE blobs (
    hash         TEXT PRIMARY KEY,
    size         BIGINT NOT NULL,
    data         BLOB NOT NULL
);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id    BIGINT NOT NULL REFERENCES tickets(id),
    comment_id   BIGINT REFERENCES comments(id),
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_id   TEXT,
    inline       BIGINT NOT NULL DEFAULT 0,
    size         BIGINT NOT NULL,
    blob_hash    TEXT NOT NULL REFERENCES blobs(hash)
);
CREATE INDEX attachments_ticket ON attachments(ticket_id);

CREATE TABLE message_ledger (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT NOT NULL,
    identity     TEXT NOT NULL,
    message_id   TEXT,
    content_hash TEXT NOT NULL,
    sender       TEXT,
    sent_at      BIGINT,
    outcome      TEXT NOT NULL,
    ticket_key   TEXT,
    reason       TEXT,
    raw_hash     TEXT REFERENCES blobs(hash),
    received_at  BIGINT NOT NULL,
    processed_at BIGINT NOT NULL,
    UNIQUE (channel, identity),
    UNIQUE (channel, message_id, content_hash)
);
CREATE INDEX ledger_message_id ON message_ledger(message_id);
CREATE INDEX ledger_sender ON message_ledger(channel, sender, sent_at);

CREATE TABLE mail_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           BIGINT NOT NULL,
    channel      TEXT,
    level        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL,
    fields       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX mail_log_at ON mail_log(at);
