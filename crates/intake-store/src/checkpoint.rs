//! Per-channel source checkpoints: where a mail source resumes (IMAP `uidvalidity:uid`). A
//! checkpoint only moves forward after the batch it covers was committed and acknowledged, so a
//! crash in between makes the next run fetch those messages again — and the ledger turns them
//! into duplicates (then acknowledges them), never into second tickets.

use crate::{Store, StoreError, now};

impl Store {
    pub async fn checkpoint(&self, channel: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT checkpoint FROM channel_checkpoints WHERE channel = $1")
                .bind(channel)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn set_checkpoint(&self, channel: &str, checkpoint: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO channel_checkpoints (channel, checkpoint, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (channel) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(checkpoint)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
