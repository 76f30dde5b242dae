-- Per-channel source checkpoints (IMAP: "uidvalidity:uid"; POP3/Graph later: UIDL set, deltaLink).
-- Written only after the batch it covers is committed and acknowledged.
CREATE TABLE channel_checkpoints (
    channel      TEXT PRIMARY KEY,
    checkpoint   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);
