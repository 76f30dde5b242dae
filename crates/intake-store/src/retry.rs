//! A quarantined message applied again (`POST /api/quarantine/{id}/retry`), exactly once.
//!
//! The caller prepares the stored raw message again under the channel's current rules. When it
//! is still unreadable, [`Store::requarantine`] only replaces the reason. Otherwise
//! [`Store::retry_quarantined`] runs, in **one transaction** on the store's own writer (the
//! same engine and statements as a batch of ingest): the quarantined ledger row becomes
//! `retried` and its identity is moved aside, the message is claimed under its original
//! identity and decided like any other (ticket, comment, ignored), and the ticket it went to is
//! noted on the `retried` row. A crash before the commit leaves the message quarantined; after
//! it, the `retried` row can no longer be retried (it is not `quarantined`), and the claim makes
//! a second delivery of the same message a duplicate. Two retries racing: the first commits,
//! the second finds no quarantined row.

use intake_core::ProjectKey;
use sqlx::Row;

use crate::apply::{Applied, BatchRules, Incoming};
use crate::{Store, StoreError, now};

impl Store {
    /// Apply the quarantined ledger row `id`'s message again as `inc` (its identity, the raw
    /// bytes prepared again, its arrival time), in one transaction. `None` when `id` is not a
    /// quarantined row (unknown, discarded, or already retried).
    pub async fn retry_quarantined(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: impl Into<BatchRules>,
        id: i64,
        inc: &Incoming,
    ) -> Result<Option<Applied>, StoreError> {
        let rules = rules.into();
        if let Some(native) = &self.native {
            return native.retry(channel, project, &rules, id, inc);
        }
        if let Some(pg) = &self.pg {
            return pg.retry(channel, project, &rules, id, inc).await;
        }
        let mut tx = self.begin_write().await?;
        let out = crate::apply::retry_with(&mut tx, channel, project, &rules, id, inc).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The message of quarantined row `id` is still unreadable: record the new reason. False
    /// when `id` is not quarantined.
    pub async fn requarantine(&self, id: i64, reason: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE message_ledger SET reason = $1, processed_at = $2
             WHERE id = $3 AND outcome = 'quarantined'",
        )
        .bind(reason)
        .bind(now())
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// The ledger row holding `identity` on `channel`: (id, outcome, ticket key). After a
    /// retry that came back a duplicate, this is the outcome the message already had.
    pub async fn ledger_outcome(
        &self,
        channel: &str,
        identity: &str,
    ) -> Result<Option<(i64, String, Option<String>)>, StoreError> {
        let r = sqlx::query(
            "SELECT id, outcome, ticket_key FROM message_ledger WHERE channel = $1 AND identity = $2",
        )
        .bind(channel)
        .bind(identity)
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("outcome")?,
                r.try_get("ticket_key")?,
            ))
        })
        .transpose()
    }
}
