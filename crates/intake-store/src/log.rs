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
