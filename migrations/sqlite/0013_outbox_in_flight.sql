-- Exactly once for mail across a crash (intake/src/outbox/mail.rs): before the final step of a
-- send (the end of SMTP DATA, the Graph sendMail POST) the row is marked in flight. A row found
-- in flight by a later try is first looked up by its Message-ID in the sending mailbox's Sent
-- folder; found means it went out and is marked sent without sending again.
-- Keep in step with ../postgres/0013_outbox_in_flight.sql.
ALTER TABLE outbox ADD COLUMN in_flight_at BIGINT;
