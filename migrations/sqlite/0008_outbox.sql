-- The outbox: every outgoing effect (a mail, a webhook call, a tracker call), written in the same
-- transaction as the ticket effect that causes it, then claimed with a lease by any node and
-- delivered (intake-store/src/outbox.rs). `identity` is fixed at enqueue time and sent with every
-- attempt: the mail's Message-ID, or the Idempotency-Key of an HTTP call.
-- Keep in step with ../postgres/0008_outbox.sql.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL,
    ticket_key   TEXT,
    event        TEXT NOT NULL,
    identity     TEXT NOT NULL UNIQUE,
    message_id   TEXT,
    recipient    TEXT,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    result       TEXT,
    created_at   BIGINT NOT NULL,
    done_at      BIGINT
);
CREATE INDEX outbox_due ON outbox(state, next_at);
CREATE INDEX outbox_order ON outbox(target, ticket_key, id);
CREATE INDEX outbox_message_id ON outbox(message_id);
CREATE INDEX outbox_recipient ON outbox(recipient, created_at);
-- The key of the ticket in an external tracker (a Jira sink), shown with the ticket.
ALTER TABLE tickets ADD COLUMN external_key TEXT;
-- A comment Intake sent (a reply from the ticket), as opposed to one that arrived by mail.
ALTER TABLE comments ADD COLUMN outgoing BIGINT NOT NULL DEFAULT 0;
