//! How busy each channel has been: messages processed per hour (the overview page's charts and
//! its "last 24 h" column). Reads `message_ledger.processed_at` through the
//! `ledger_processed_at` index (migration 0010), so the cost follows the week's mail, not the
//! whole ledger.

use sqlx::Row as _;

use crate::{Store, StoreError};

impl Store {
    /// `(channel, hour number since the epoch, messages)` for every hour since `since` (Unix
    /// seconds) in which a channel processed mail (any outcome, duplicates excluded: they have
    /// no ledger row of their own).
    pub async fn hourly_activity(&self, since: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, processed_at / 3600 AS hour, COUNT(*) AS n FROM message_ledger
             WHERE processed_at >= $1 GROUP BY channel, processed_at / 3600",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("channel")?, r.try_get("hour")?, r.try_get("n")?)))
            .collect()
    }
}

impl Store {
    /// The ledger id of the quarantined message `message_id` on `channel` (the mail log links
    /// its `quarantined` events to the quarantine entry through it).
    pub async fn quarantined_id(
        &self,
        channel: &str,
        message_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM message_ledger WHERE channel = $1 AND message_id = $2 AND outcome = 'quarantined'
             ORDER BY id DESC LIMIT 1",
        )
        .bind(channel)
        .bind(message_id)
        .fetch_optional(self.pool())
        .await?)
    }
}
