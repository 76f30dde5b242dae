-- Ticket search leaves the ingest path: the pg_trgm GIN indexes of 0011 were maintained in
-- every ingest transaction (docs/decisions.md, "Ticket search"). Search is an ILIKE scan again.
-- Keep in step with ../sqlite/0016_search_off_ingest_path.sql.
DROP INDEX IF EXISTS tickets_summary_trgm;
DROP INDEX IF EXISTS tickets_description_trgm;
DROP INDEX IF EXISTS comments_body_trgm;
