-- Ticket search leaves the ingest path. The trigram FTS5 tables of 0011 were kept by triggers
-- in every ingest transaction, and indexing the trigrams of a typical 8 KB description costs
-- about 0.6 ms: `intake bench ingest` fell from about 0.6 to 0.08 of the parse-only rate.
-- Search is a LIKE scan again (Store::search_tickets, intake-store/src/browse.rs; the count
-- stays capped and deep pages use keyset paging). docs/decisions.md, "Ticket search".
-- Keep in step with ../postgres/0016_search_off_ingest_path.sql.
DROP TRIGGER IF EXISTS tickets_fts_insert;
DROP TRIGGER IF EXISTS tickets_fts_delete;
DROP TRIGGER IF EXISTS tickets_fts_update;
DROP TRIGGER IF EXISTS comments_fts_insert;
DROP TRIGGER IF EXISTS comments_fts_delete;
DROP TRIGGER IF EXISTS comments_fts_update;
DROP TABLE IF EXISTS tickets_fts;
DROP TABLE IF EXISTS comments_fts;
