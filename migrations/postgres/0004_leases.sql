-- Per-channel leases: with several nodes on one database, one node at a time processes a channel
-- (one mailbox + folder). A lease is held while expires_at > now (Unix seconds); the holder renews
-- it, and once it lapses any node may take it over. See intake-store/src/lease.rs.
CREATE TABLE channel_leases (
    channel      TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    acquired_at  BIGINT NOT NULL
);
