//! The mail log: structured events (fetches, ignored and quarantined messages, batch summaries,
//! failures), the counterpart of Jira's incoming-mail log. Created and commented messages are
//! already recorded, with their ticket, in the message ledger and are not repeated here.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, now};

/// One mail-log entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogEvent {
    pub at: i64,
    pub channel: Option<String>,
    pub level: String,
    pub kind: String,
    pub message: String,
    pub fields: serde_json::Value,
}

impl Store {
    /// Append an event to the mail log.
    pub async fn log_event(
        &self,
        channel: Option<&str>,
        level: &str,
        kind: &str,
        message: &str,
        fields: serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mail_log (at, channel, level, kind, message, fields) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now())
        .bind(channel)
        .bind(level)
        .bind(kind)
        .bind(message)
        .bind(fields.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Delete mail-log events older than `before` (Unix seconds), `chunk` rows per statement
    /// (each its own short transaction, so neither backend holds a long write lock and a
    /// concurrent writer waits at most one chunk). Returns how many were deleted.
    pub async fn purge_mail_log(&self, before: i64, chunk: u32) -> Result<u64, StoreError> {
        let chunk = i64::from(chunk.max(1));
        let mut total = 0;
        loop {
            // `mail_log_at` indexes `at`: each chunk reads only the rows it deletes.
            let done = sqlx::query(
                "DELETE FROM mail_log WHERE id IN
                     (SELECT id FROM mail_log WHERE at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(chunk)
            .execute(self.pool())
            .await?
            .rows_affected();
            total += done;
            if (done as i64) < chunk {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// The newest `limit` events, newest first.
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<LogEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, channel, level, kind, message, fields FROM mail_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let fields: String = r.try_get("fields")?;
                Ok(LogEvent {
                    at: r.try_get("at")?,
                    channel: r.try_get("channel")?,
                    level: r.try_get("level")?,
                    kind: r.try_get("kind")?,
                    message: r.try_get("message")?,
                    fields: serde_json::from_str(&fields).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}
