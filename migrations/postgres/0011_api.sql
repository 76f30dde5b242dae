-- intake serve's REST API (issue 12): authorization flows started through the API, and the
-- ticket search index. Keep in step with ../sqlite/0011_api.sql.

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

-- GET /api/tickets?q= is a case-insensitive substring search (ILIKE) over summary,
-- description and comment bodies; trigram GIN indexes answer it without reading every ticket
-- (a query of fewer than three characters still scans). pg_trgm is a trusted extension: the
-- database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX tickets_summary_trgm ON tickets USING GIN (summary gin_trgm_ops);
CREATE INDEX tickets_description_trgm ON tickets USING GIN (description gin_trgm_ops);
CREATE INDEX comments_body_trgm ON comments USING GIN (body gin_trgm_ops);

-- GET /api/channels/{name}/status `backlog`: messages the channel's last listing found that
-- had no outcome yet, counted down as batches commit (intake-store/src/status.rs); NULL until
-- a node has listed the channel.
ALTER TABLE channel_status ADD COLUMN backlog BIGINT;
ALTER TABLE channel_status ADD COLUMN backlog_at BIGINT;
