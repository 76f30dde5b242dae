-- The admin UI's ticket page reads the kept originals of a ticket's messages (ledger rows of
-- the ticket created or commented, intake-store/src/original.rs): an index on ticket_key keeps
-- that a lookup.
CREATE INDEX ledger_ticket_key ON message_ledger(ticket_key);
