-- intake serve's REST API (issue 12): authorization flows started through the API, and the
-- ticket search index. Keep in step with ../postgres/0011_api.sql.

-- Flows started by POST /api/integrations/{name}/authorize (browser and device), so that any
-- node answers GET /api/flows/{flow_id}. No secret here: the PKCE verifier of a browser flow
-- stays sealed in oauth_flows, the device code only in the memory of the node polling it.
-- state: pending | done | failed; result: JSON (done: the `intake authorize --json` document,
-- failed: the decoded error). intake-store/src/flows.rs.
CREATE TABLE api_flows (
    flow_id      TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    integration  TEXT NOT NULL,
    mailbox      TEXT NOT NULL,
    state        TEXT NOT NULL,
    node         TEXT,
    result       TEXT,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX api_flows_created ON api_flows (created_at);

-- GET /api/tickets?q= is a case-insensitive substring search over summary, description and
-- comment bodies. Trigram full-text indexes answer it without reading every ticket (a query of
-- fewer than three characters still scans). External content: the text is stored once, in
-- tickets and comments; triggers keep the indexes in step. Ticket updates that do not change
-- the text (participants, updated_at on every comment) do not touch the index.
CREATE VIRTUAL TABLE tickets_fts USING fts5(
    summary, description, content = 'tickets', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER tickets_fts_insert AFTER INSERT ON tickets BEGIN
    INSERT INTO tickets_fts (rowid, summary, description)
    VALUES (new.id, new.summary, new.description);
END;
CREATE TRIGGER tickets_fts_delete AFTER DELETE ON tickets BEGIN
    INSERT INTO tickets_fts (tickets_fts, rowid, summary, description)
    VALUES ('delete', old.id, old.summary, old.description);
END;
CREATE TRIGGER tickets_fts_update AFTER UPDATE OF summary, description ON tickets BEGIN
    INSERT INTO tickets_fts (tickets_fts, rowid, summary, description)
    VALUES ('delete', old.id, old.summary, old.description);
    INSERT INTO tickets_fts (rowid, summary, description)
    VALUES (new.id, new.summary, new.description);
END;
INSERT INTO tickets_fts (tickets_fts) VALUES ('rebuild');

CREATE VIRTUAL TABLE comments_fts USING fts5(
    body, content = 'comments', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER comments_fts_insert AFTER INSERT ON comments BEGIN
    INSERT INTO comments_fts (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER comments_fts_delete AFTER DELETE ON comments BEGIN
    INSERT INTO comments_fts (comments_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER comments_fts_update AFTER UPDATE OF body ON comments BEGIN
    INSERT INTO comments_fts (comments_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO comments_fts (rowid, body) VALUES (new.id, new.body);
END;
INSERT INTO comments_fts (comments_fts) VALUES ('rebuild');

-- GET /api/channels/{name}/status `backlog`: messages the channel's last listing found that
-- had no outcome yet, counted down as batches commit (intake-store/src/status.rs); NULL until
-- a node has listed the channel.
ALTER TABLE channel_status ADD COLUMN backlog BIGINT;
ALTER TABLE channel_status ADD COLUMN backlog_at BIGINT;
