-- The admin UI's overview counts messages per channel and hour over the last week
-- (Store::hourly_activity): an index on processed_at keeps that a range read.
CREATE INDEX ledger_processed_at ON message_ledger(processed_at);
