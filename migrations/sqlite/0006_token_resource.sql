-- Tokens keyed by the resource (audience) they are for. Keep in step with ../postgres.
--
-- One access token has one audience: on Microsoft, Exchange Online (IMAP, POP3, SMTP) and
-- Microsoft Graph need separate tokens for the same mailbox. `resource` is 'exo' or 'graph' for
-- Microsoft integrations and '' for providers with one mail resource (Google, custom).
-- Rows written before this migration are classified by the scopes they were granted; a row
-- that cannot be classified keeps '' and is simply not found for a Microsoft channel, whose
-- error then names the `intake authorize` command (docs/decisions.md, "Tokens per resource").
CREATE TABLE oauth_tokens_new (
    integration   TEXT NOT NULL,
    mailbox       TEXT NOT NULL,
    resource      TEXT NOT NULL DEFAULT '',
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    expires_at    BIGINT NOT NULL,
    scopes        TEXT NOT NULL DEFAULT '',
    identity      TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'valid'
                  CHECK (status IN ('valid', 'needs_reauthorization')),
    status_reason TEXT,
    version       BIGINT NOT NULL DEFAULT 1,
    lease_owner   TEXT,
    lease_until   BIGINT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (integration, mailbox, resource)
);
INSERT INTO oauth_tokens_new (integration, mailbox, resource, key_id, nonce, ciphertext,
    expires_at, scopes, identity, status, status_reason, version, lease_owner, lease_until,
    updated_at)
SELECT integration, mailbox,
    CASE
        WHEN scopes LIKE '%outlook.office%' OR scopes LIKE '%outlook-dod.office365%'
          OR scopes LIKE '%partner.outlook.cn%' OR scopes LIKE '%ps.outlook.com%'
          OR scopes LIKE '%AccessAsUser%' OR scopes LIKE '%AccessAsApp%'
          OR scopes LIKE '%SMTP.Send%' THEN 'exo'
        WHEN scopes LIKE '%graph.microsoft%' OR scopes LIKE '%microsoftgraph.chinacloudapi%'
          OR scopes LIKE '%Mail.Read%' OR scopes LIKE '%Mail.Send%' THEN 'graph'
        ELSE ''
    END,
    key_id, nonce, ciphertext, expires_at, scopes, identity, status, status_reason, version,
    lease_owner, lease_until, updated_at
FROM oauth_tokens;
DROP TABLE oauth_tokens;
ALTER TABLE oauth_tokens_new RENAME TO oauth_tokens;
