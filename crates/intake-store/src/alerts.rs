//! Alerts: one open alert per key (a partial unique index), raised and cleared by the checks of
//! `intake serve` (any node; raising is idempotent), with a notification state so that exactly
//! one node sends each webhook call (claimed by a conditional update).

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, now};

/// An alert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    pub id: i64,
    /// `KIND:SUBJECT`, unique among open alerts.
    pub key: String,
    /// `channel_failing`, `token_needs_reauthorization`, `credential_expiry`.
    pub kind: String,
    /// The channel, integration or token it is about.
    pub subject: String,
    /// `warning` or `critical`.
    pub severity: String,
    pub message: String,
    pub raised_at: i64,
    pub cleared_at: Option<i64>,
}

/// Notification states (`alerts.notified`).
pub const NOTIFY_NONE: i64 = 0;
pub const NOTIFY_RAISED: i64 = 1;
pub const NOTIFY_CLEARED: i64 = 2;
/// Claimed by a node that is sending (raised / cleared).
const NOTIFY_SENDING_RAISED: i64 = 10;
const NOTIFY_SENDING_CLEARED: i64 = 11;

const COLUMNS: &str = "id, alert_key, kind, subject, severity, message, raised_at, cleared_at";

fn alert(r: &sqlx::any::AnyRow) -> Result<Alert, StoreError> {
    Ok(Alert {
        id: r.try_get("id")?,
        key: r.try_get("alert_key")?,
        kind: r.try_get("kind")?,
        subject: r.try_get("subject")?,
        severity: r.try_get("severity")?,
        message: r.try_get("message")?,
        raised_at: r.try_get("raised_at")?,
        cleared_at: r.try_get("cleared_at")?,
    })
}

impl Store {
    /// Raise (or refresh the message and severity of) the open alert `kind:subject`. Returns
    /// true when it was not open before.
    pub async fn raise_alert(
        &self,
        kind: &str,
        subject: &str,
        severity: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let key = format!("{kind}:{subject}");
        let inserted = sqlx::query(
            "INSERT INTO alerts (alert_key, kind, subject, severity, message, raised_at, notified)
             VALUES ($1, $2, $3, $4, $5, $6, 0)
             ON CONFLICT (alert_key) WHERE cleared_at IS NULL DO NOTHING",
        )
        .bind(&key)
        .bind(kind)
        .bind(subject)
        .bind(severity)
        .bind(message)
        .bind(now())
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 0 {
            sqlx::query(
                "UPDATE alerts SET severity = $1, message = $2
                 WHERE alert_key = $3 AND cleared_at IS NULL",
            )
            .bind(severity)
            .bind(message)
            .bind(&key)
            .execute(self.pool())
            .await?;
        }
        Ok(inserted > 0)
    }

    /// Clear the open alerts of `kind` whose subject is not in `still_true`. Returns how many.
    pub async fn clear_alerts_except(
        &self,
        kind: &str,
        still_true: &[String],
    ) -> Result<u64, StoreError> {
        let open = self.open_alerts().await?;
        let mut n = 0;
        for a in open
            .iter()
            .filter(|a| a.kind == kind && !still_true.contains(&a.subject))
        {
            n += sqlx::query(
                "UPDATE alerts SET cleared_at = $1 WHERE id = $2 AND cleared_at IS NULL",
            )
            .bind(now())
            .bind(a.id)
            .execute(self.pool())
            .await?
            .rows_affected();
        }
        Ok(n)
    }

    /// Open alerts, oldest first.
    pub async fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM alerts WHERE cleared_at IS NULL ORDER BY id"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert).collect()
    }

    /// The newest `limit` alerts, open and cleared, newest first.
    pub async fn recent_alerts(&self, limit: i64) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM alerts ORDER BY id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert).collect()
    }

    /// Claim one alert whose raise or clear has not been sent yet: `(alert, cleared?)`. The
    /// claim is a conditional update, so of several nodes one sends it.
    pub async fn claim_alert_notification(&self) -> Result<Option<(Alert, bool)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, notified FROM alerts
             WHERE (cleared_at IS NULL AND notified = 0)
                OR (cleared_at IS NOT NULL AND notified IN (0, 1))
             ORDER BY id LIMIT 10"
        )))
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let a = alert(r)?;
            let from: i64 = r.try_get("notified")?;
            let cleared = a.cleared_at.is_some();
            let to = if cleared {
                NOTIFY_SENDING_CLEARED
            } else {
                NOTIFY_SENDING_RAISED
            };
            let won =
                sqlx::query("UPDATE alerts SET notified = $1 WHERE id = $2 AND notified = $3")
                    .bind(to)
                    .bind(a.id)
                    .bind(from)
                    .execute(self.pool())
                    .await?
                    .rows_affected()
                    == 1;
            if won {
                return Ok(Some((a, cleared)));
            }
        }
        Ok(None)
    }

    /// The claimed notification was sent (`sent`) or failed (`!sent`: released for a retry).
    pub async fn finish_alert_notification(
        &self,
        id: i64,
        cleared: bool,
        sent: bool,
    ) -> Result<(), StoreError> {
        let to = match (cleared, sent) {
            (false, true) => NOTIFY_RAISED,
            (true, true) => NOTIFY_CLEARED,
            (false, false) => NOTIFY_NONE,
            // A clear that failed to send goes back to "raised sent", so it is tried again.
            (true, false) => NOTIFY_RAISED,
        };
        sqlx::query("UPDATE alerts SET notified = $1 WHERE id = $2")
            .bind(to)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stored tokens that need re-authorization: `(integration, mailbox, reason)`.
    pub async fn tokens_needing_reauthorization(
        &self,
    ) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT integration, mailbox, status_reason FROM oauth_tokens
             WHERE status = 'needs_reauthorization' ORDER BY integration, mailbox",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("integration")?,
                    r.try_get("mailbox")?,
                    r.try_get("status_reason")?,
                ))
            })
            .collect()
    }

    /// Channels this node holds an unexpired lease on.
    pub async fn leases_held_by(&self, holder: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM channel_leases WHERE holder = $1 AND expires_at > $2",
        )
        .bind(holder)
        .bind(now())
        .fetch_one(self.pool())
        .await?
        .try_get("n")?)
    }
}
