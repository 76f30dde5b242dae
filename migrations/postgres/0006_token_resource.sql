-- Tokens keyed by the resource (audience) they are for. Keep in step with ../sqlite.
--
-- One access token has one audience: on Microsoft, Exchange Online (IMAP, POP3, SMTP) and
-- Microsoft Graph need separate tokens for the same mailbox. `resource` is 'exo' or 'graph' for
-- Microsoft integrations and '' for providers with one mail resource (Google, custom).
-- Rows written before this migration are classified by the scopes they were granted; a row
-- that cannot be classified keeps '' and is simply not found for a Microsoft channel, whose
-- error then names the `intake authorize` command (docs/decisions.md, "Tokens per resource").
ALTER TABLE oauth_tokens ADD COLUMN resource TEXT NOT NULL DEFAULT '';
UPDATE oauth_tokens SET resource =
    CASE
        WHEN scopes ILIKE '%outlook.office%' OR scopes ILIKE '%outlook-dod.office365%'
          OR scopes ILIKE '%partner.outlook.cn%' OR scopes ILIKE '%ps.outlook.com%'
          OR scopes ILIKE '%AccessAsUser%' OR scopes ILIKE '%AccessAsApp%'
          OR scopes ILIKE '%SMTP.Send%' THEN 'exo'
        WHEN scopes ILIKE '%graph.microsoft%' OR scopes ILIKE '%microsoftgraph.chinacloudapi%'
          OR scopes ILIKE '%Mail.Read%' OR scopes ILIKE '%Mail.Send%' THEN 'graph'
        ELSE ''
    END;
ALTER TABLE oauth_tokens DROP CONSTRAINT oauth_tokens_pkey;
ALTER TABLE oauth_tokens ADD PRIMARY KEY (integration, mailbox, resource);
