-- A ticket that answered another one without being allowed to comment on it (the channel's
-- reply_policy): `ticket_id` follows up `related_id`. Keep in step with ../postgres.
CREATE TABLE ticket_links (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id    BIGINT NOT NULL REFERENCES tickets(id),
    related_id   BIGINT NOT NULL REFERENCES tickets(id),
    relation     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX ticket_links_ticket ON ticket_links(ticket_id);
CREATE INDEX ticket_links_related ON ticket_links(related_id);
