//! A channel's backlog (`channel_status.backlog`): how many messages its last listing found
//! that had no outcome yet, counted down as the round's batches commit. Written by the node
//! working the channel, read by any node (`GET /api/channels/{name}/status`).

use sqlx::Row;

use crate::{Store, StoreError, now};

impl Store {
    /// Record that `channel` has `backlog` messages waiting (as of now), seen by `node`.
    pub async fn record_backlog(
        &self,
        channel: &str,
        node: &str,
        backlog: i64,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "INSERT INTO channel_status (channel, node, backlog, backlog_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (channel) DO UPDATE SET node = excluded.node,
                 backlog = excluded.backlog, backlog_at = excluded.backlog_at",
        )
        .bind(channel)
        .bind(node)
        .bind(backlog)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The channel's recorded backlog and when it was recorded; `None` until a node listed it.
    pub async fn channel_backlog(&self, channel: &str) -> Result<Option<(i64, i64)>, StoreError> {
        let r = sqlx::query("SELECT backlog, backlog_at FROM channel_status WHERE channel = $1")
            .bind(channel)
            .fetch_optional(self.pool())
            .await?;
        let Some(r) = r else {
            return Ok(None);
        };
        let backlog: Option<i64> = r.try_get("backlog")?;
        let at: Option<i64> = r.try_get("backlog_at")?;
        Ok(backlog.zip(at))
    }
}
