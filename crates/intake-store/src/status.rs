//! What the node working a channel last saw (`channel_status`): the last successful round, the
//! last error and since when the channel has been failing. Written by the worker, read by any
//! node (status API, alerts).

use sqlx::Row;

use crate::{Store, StoreError, now};

/// One channel's recorded health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelHealth {
    pub node: String,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Set while failing (first failure after the last success); cleared by a success.
    pub failing_since: Option<i64>,
    pub updated_at: i64,
}

impl Store {
    /// A round of the channel finished (drained, waiting for mail): clears `failing_since`.
    pub async fn record_channel_success(
        &self,
        channel: &str,
        node: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "INSERT INTO channel_status (channel, node, last_success_at, updated_at)
             VALUES ($1, $2, $3, $3)
             ON CONFLICT (channel) DO UPDATE SET node = excluded.node,
                 last_success_at = excluded.last_success_at, failing_since = NULL,
                 updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(node)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The channel failed with `error` (already free of secrets): `failing_since` is set if it
    /// was not.
    pub async fn record_channel_failure(
        &self,
        channel: &str,
        node: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "INSERT INTO channel_status (channel, node, last_error, last_error_at, failing_since, updated_at)
             VALUES ($1, $2, $3, $4, $4, $4)
             ON CONFLICT (channel) DO UPDATE SET node = excluded.node,
                 last_error = excluded.last_error, last_error_at = excluded.last_error_at,
                 failing_since = COALESCE(channel_status.failing_since, excluded.failing_since),
                 updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(node)
        .bind(error)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The recorded health of a channel, if any node has worked it.
    pub async fn channel_health(&self, channel: &str) -> Result<Option<ChannelHealth>, StoreError> {
        let r = sqlx::query(
            "SELECT node, last_success_at, last_error, last_error_at, failing_since, updated_at
             FROM channel_status WHERE channel = $1",
        )
        .bind(channel)
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| {
            Ok(ChannelHealth {
                node: r.try_get("node")?,
                last_success_at: r.try_get("last_success_at")?,
                last_error: r.try_get("last_error")?,
                last_error_at: r.try_get("last_error_at")?,
                failing_since: r.try_get("failing_since")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    /// Every recorded channel health, by channel.
    pub async fn all_channel_health(&self) -> Result<Vec<(String, ChannelHealth)>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, node, last_success_at, last_error, last_error_at, failing_since, updated_at
             FROM channel_status ORDER BY channel",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("channel")?,
                    ChannelHealth {
                        node: r.try_get("node")?,
                        last_success_at: r.try_get("last_success_at")?,
                        last_error: r.try_get("last_error")?,
                        last_error_at: r.try_get("last_error_at")?,
                        failing_since: r.try_get("failing_since")?,
                        updated_at: r.try_get("updated_at")?,
                    },
                ))
            })
            .collect()
    }

    /// Messages of a channel by outcome (`created`, `commented`, `ignored`, `quarantined`, …).
    pub async fn outcome_counts(&self, channel: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT outcome, COUNT(*) AS n FROM message_ledger WHERE channel = $1
             GROUP BY outcome ORDER BY outcome",
        )
        .bind(channel)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("outcome")?, r.try_get("n")?)))
            .collect()
    }
}

impl Store {
    /// The integration of a pending, unexpired OAuth flow, without taking it (the callback
    /// needs it to build the client that finishes the flow).
    pub async fn pending_flow_integration(
        &self,
        state: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT integration FROM oauth_flows WHERE state = $1 AND expires_at > $2")
                .bind(state)
                .bind(now())
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.try_get("integration"))
                .transpose()?,
        )
    }

    /// The mail-log event that finished the flow `flow_id` (`authorization_completed` or
    /// `authorization_failed`), if any.
    pub async fn flow_outcome(
        &self,
        flow_id: &str,
    ) -> Result<Option<(String, serde_json::Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, fields FROM mail_log
             WHERE kind IN ('authorization_completed', 'authorization_failed') AND fields LIKE $1
             ORDER BY id DESC LIMIT 10",
        )
        .bind(format!("%{flow_id}%"))
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let fields: String = r.try_get("fields")?;
            let v: serde_json::Value = serde_json::from_str(&fields).unwrap_or_default();
            if v["flow_id"] == flow_id {
                return Ok(Some((r.try_get("kind")?, v)));
            }
        }
        Ok(None)
    }
}
