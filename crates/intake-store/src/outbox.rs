//! The outbox: every outgoing effect (an acknowledgement or reply mail, a webhook call, a
//! tracker call) as a row written **in the same transaction** as the ticket effect that causes
//! it (the apply engine, [`crate::apply`], or [`Store::enqueue_reply`]), then delivered by any
//! node.
//!
//! ## Protocol
//! 1. **Enqueue** (inside the ticket's transaction): the row's `identity` is chosen now and never
//!    changes: the mail's Message-ID, or the `Idempotency-Key` of an HTTP call. A crash after
//!    the send and before [`Store::outbox_sent`] leaves the row pending: a webhook goes out
//!    again with the same identity (the receiver recognises the repeat); a mail or Jira row was
//!    marked in flight before its final step ([`Store::outbox_in_flight`]), so the next try
//!    looks for its effect first (the mail in the Sent folder, the issue, comment and
//!    attachments at Jira) instead of repeating it.
//! 2. **Claim** ([`Store::claim_outbox`]): one conditional `UPDATE … RETURNING` takes due rows
//!    that no other node holds (`lease_until` in the past) for `lease` seconds. On PostgreSQL
//!    the row lock and the re-check of the condition make two claimers exclusive; SQLite has one
//!    writer at a time.
//! 3. **Order per ticket**: a row is due only when no earlier row (smaller id) for the same
//!    target and ticket is still pending or failed, so a comment never reaches a sink before its
//!    ticket does. A permanently failed row therefore holds back the later rows of its ticket
//!    until it is retried or discarded (docs/decisions.md).
//! 4. **Outcome**: [`Store::outbox_sent`], [`Store::outbox_retry`] (attempts + 1, the next try
//!    at a back-off time the caller chose) or [`Store::outbox_failed`] (kept with its diagnosis,
//!    and an `error` event in the mail log as the alert). Each is conditional on the caller
//!    still holding the row's lease.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::Row;

use crate::{Store, StoreError, now};

/// What an outbox row delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// A mail sent from a channel's mailbox (`target` is the channel).
    Mail,
    /// A `[[sink]]` of type `webhook` (`target` is the sink).
    Webhook,
    /// A `[[sink]]` of type `jira` (`target` is the sink).
    Jira,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::Webhook => "webhook",
            Self::Jira => "jira",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "mail" => Ok(Self::Mail),
            "webhook" => Ok(Self::Webhook),
            "jira" => Ok(Self::Jira),
            other => Err(StoreError::Corrupt(format!("outbox kind {other:?}"))),
        }
    }
}

/// A row to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutbox {
    pub kind: OutboxKind,
    pub target: String,
    pub ticket_key: Option<String>,
    /// `ack`, `reply`, `ticket.created`, `comment.added`, `ticket.quarantined`.
    pub event: String,
    /// Fixed identity: the Message-ID (mail, without angle brackets) or the idempotency key.
    pub identity: String,
    /// The Message-ID of a mail row (the same as `identity`), for recognising Intake's own mail.
    pub message_id: Option<String>,
    /// A mail's first recipient (acknowledgements are rate-limited per recipient).
    pub recipient: Option<String>,
    /// JSON: what to send.
    pub payload: String,
}

/// A stored row, as claimed or listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    pub target: String,
    pub ticket_key: Option<String>,
    pub event: String,
    pub identity: String,
    pub message_id: Option<String>,
    pub recipient: Option<String>,
    pub payload: String,
    /// `pending`, `sent`, `failed`, `discarded`.
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    /// What the receiver answered that Intake keeps (the Jira issue key).
    pub result: Option<String>,
    pub created_at: i64,
    pub done_at: Option<i64>,
    /// When a try last reached its final step (the end of SMTP `DATA`, the Graph `sendMail`
    /// POST) without an answer recorded: the mail may have gone out. A later try looks for it in
    /// the Sent folder before sending again ([`Store::outbox_in_flight`]).
    pub in_flight_at: Option<i64>,
}

const COLUMNS: &str = "id, kind, target, ticket_key, event, identity, message_id, recipient, \
                       payload, state, attempts, next_at, last_error, result, created_at, done_at, \
                       in_flight_at";

fn item(r: &sqlx::any::AnyRow) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        target: r.try_get("target")?,
        ticket_key: r.try_get("ticket_key")?,
        event: r.try_get("event")?,
        identity: r.try_get("identity")?,
        message_id: r.try_get("message_id")?,
        recipient: r.try_get("recipient")?,
        payload: r.try_get("payload")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_at: r.try_get("next_at")?,
        last_error: r.try_get("last_error")?,
        result: r.try_get("result")?,
        created_at: r.try_get("created_at")?,
        done_at: r.try_get("done_at")?,
        in_flight_at: r.try_get("in_flight_at")?,
    })
}

/// A reply from a ticket: the outgoing comment and its mail row, written together by
/// [`Store::enqueue_reply`].
#[derive(Debug, Clone)]
pub struct NewReply {
    pub ticket_key: String,
    /// The From address (the comment's author).
    pub author: String,
    pub body: String,
    /// (filename, content type, hash, bytes).
    pub attachments: Vec<(String, String, String, Vec<u8>)>,
    pub row: NewOutbox,
}

/// How rows of one run stand (for `--json`'s `sent` / `send_failed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxTally {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
}

impl Store {
    /// The highest outbox id so far (0 when empty): rows a run creates have larger ids.
    pub async fn outbox_high_water(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM outbox")
            .fetch_one(self.pool())
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Claim up to `limit` due rows for `owner` for `lease`; only rows with `id > after` (0:
    /// all). Rows are returned in id order.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
        after: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let t = now();
        let until = t.saturating_add(i64::try_from(lease.as_secs().max(1)).unwrap_or(i64::MAX));
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2
             WHERE id IN (
                 SELECT o.id FROM outbox o
                 WHERE o.state = 'pending' AND o.next_at <= $3 AND o.id > $4
                   AND (o.lease_until IS NULL OR o.lease_until < $3)
                   AND NOT EXISTS (
                       SELECT 1 FROM outbox p
                       WHERE p.target = o.target AND p.ticket_key = o.ticket_key
                         AND p.id < o.id AND p.state IN ('pending', 'failed'))
                 ORDER BY o.id LIMIT $5)
               AND state = 'pending' AND (lease_until IS NULL OR lease_until < $3)
             RETURNING {COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(until)
            .bind(t)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let mut out = rows.iter().map(item).collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|i| i.id);
        Ok(out)
    }

    /// The row was delivered. `result` is kept (a Jira issue key); for a Jira `ticket.created`
    /// it also becomes the ticket's `external_key`. `false` if `owner` no longer holds the row.
    pub async fn outbox_sent(
        &self,
        id: i64,
        owner: &str,
        result: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE outbox SET state = 'sent', done_at = $1, result = $2, lease_owner = NULL,
                 lease_until = NULL, attempts = attempts + 1, last_error = NULL, in_flight_at = NULL
             WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(now())
        .bind(result)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1
            && let Some(r) = result
        {
            sqlx::query(
                "UPDATE tickets SET external_key = $1 WHERE key = (
                     SELECT ticket_key FROM outbox
                     WHERE id = $2 AND kind = 'jira' AND event = 'ticket.created')",
            )
            .bind(r)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Mark a held row in flight, durably, right before the final step of a send: from now on
    /// the mail may be out even if this process never hears the answer. `false` if `owner` no
    /// longer holds the row (then it must not be sent).
    pub async fn outbox_in_flight(&self, id: i64, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET in_flight_at = $1
             WHERE id = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(now())
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The final step was answered with a refusal (nothing went out): the row is no longer in
    /// flight, so the next try sends without looking first.
    pub async fn outbox_not_in_flight(&self, id: i64, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET in_flight_at = NULL
             WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
        )
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A try failed and the row stays pending: attempts + 1, tried again from `next_at`.
    pub async fn outbox_retry(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        next_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_at = $2,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(error)
        .bind(next_at)
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The row failed for good: kept with its diagnosis, and an `error` event
    /// (`outbox_failed`) in the mail log raises the alert.
    pub async fn outbox_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1,
                 done_at = $2, lease_owner = NULL, lease_until = NULL
             WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(error)
        .bind(now())
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 1 {
            let row = self.outbox_item(id).await?;
            let target = row.as_ref().map(|r| r.target.clone());
            self.log_event(
                None,
                "error",
                "outbox_failed",
                &format!(
                    "outbox row {id} ({} to {}) failed: {error}",
                    row.as_ref().map(|r| r.event.as_str()).unwrap_or("?"),
                    target.as_deref().unwrap_or("?")
                ),
                serde_json::json!({"outbox_id": id, "target": target, "error": error}),
            )
            .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// One row by id.
    pub async fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(item).transpose()
    }

    /// Rows, newest first, optionally only those in `state`.
    pub async fn list_outbox(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE ($1 = '' OR state = $1) ORDER BY id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(item).collect()
    }

    /// Rows with `id > after`, in id order (what a run created).
    pub async fn outbox_since(&self, after: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id > $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(item).collect()
    }

    /// Put a failed (or pending) row back to be sent now. `false` if it is sent or discarded.
    pub async fn retry_outbox(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'pending', next_at = $1, done_at = NULL,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = $2 AND state IN ('pending', 'failed')",
        )
        .bind(now())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give up on a pending or failed row: it is never sent, and stops holding back later rows
    /// of its ticket. `note` (who and why) replaces the row's last error.
    pub async fn discard_outbox(&self, id: i64, note: Option<&str>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'discarded', done_at = $1, lease_owner = NULL,
                 lease_until = NULL, last_error = COALESCE($3, last_error)
             WHERE id = $2 AND state IN ('pending', 'failed')",
        )
        .bind(now())
        .bind(id)
        .bind(note)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Which of these Message-IDs Intake generated for its own mail (any outbox mail row).
    pub async fn own_message_ids(&self, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(500) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT message_id FROM outbox WHERE kind = 'mail' AND message_id IN ({list})"
            );
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(out)
    }

    /// The earliest next try of a pending row with `id > after`.
    pub async fn outbox_next_due(&self, after: i64) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_at) FROM outbox WHERE state = 'pending' AND id > $1",
        )
        .bind(after)
        .fetch_one(self.pool())
        .await?)
    }

    /// How many pending rows with `id > after` wait behind a failed earlier row of their ticket
    /// at the same target (they move only when that row is retried or discarded).
    pub async fn outbox_held_back(&self, after: i64) -> Result<(i64, i64), StoreError> {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND id > $1")
                .bind(after)
                .fetch_one(self.pool())
                .await?;
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox o WHERE o.state = 'pending' AND o.id > $1
               AND EXISTS (SELECT 1 FROM outbox p WHERE p.target = o.target
                   AND p.ticket_key = o.ticket_key AND p.id < o.id AND p.state = 'failed')",
        )
        .bind(after)
        .fetch_one(self.pool())
        .await?;
        Ok((held, pending))
    }

    /// The distinct holders of unexpired row leases.
    pub async fn outbox_lease_owners(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM outbox
             WHERE state = 'pending' AND lease_owner IS NOT NULL AND lease_until >= $1",
        )
        .bind(now())
        .fetch_all(self.pool())
        .await?)
    }

    /// Free every row lease of `owner` (a process known to be dead).
    pub async fn outbox_release_owner(&self, owner: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL
             WHERE lease_owner = $1 AND state = 'pending'",
        )
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Record `reply` as an outgoing comment on its ticket and enqueue its mail, in one
    /// transaction. Returns the comment id and the outbox row id.
    pub async fn enqueue_reply(&self, reply: &NewReply) -> Result<(i64, i64), StoreError> {
        let ts = now();
        let mut tx = self.begin_write().await?;
        let ticket: Option<i64> = sqlx::query_scalar("SELECT id FROM tickets WHERE key = $1")
            .bind(&reply.ticket_key)
            .fetch_optional(&mut *tx)
            .await?;
        let ticket =
            ticket.ok_or_else(|| StoreError::Corrupt(format!("no ticket {}", reply.ticket_key)))?;
        let comment: i64 = sqlx::query_scalar(
            "INSERT INTO comments (ticket_id, author, body, ledger_id, created_at, outgoing)
             VALUES ($1, $2, $3, NULL, $4, 1) RETURNING id",
        )
        .bind(ticket)
        .bind(&reply.author)
        .bind(&reply.body)
        .bind(ts)
        .fetch_one(&mut *tx)
        .await?;
        for (name, ctype, hash, data) in &reply.attachments {
            sqlx::query(
                "INSERT INTO blobs (hash, size, data) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
            )
            .bind(hash)
            .bind(data.len() as i64)
            .bind(data.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO attachments (ticket_id, comment_id, filename, content_type, content_id,
                     inline, size, blob_hash) VALUES ($1, $2, $3, $4, NULL, 0, $5, $6)",
            )
            .bind(ticket)
            .bind(comment)
            .bind(name)
            .bind(ctype)
            .bind(data.len() as i64)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE tickets SET updated_at = $1 WHERE id = $2")
            .bind(ts)
            .bind(ticket)
            .execute(&mut *tx)
            .await?;
        let r = &reply.row;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (kind, target, ticket_key, event, identity, message_id, recipient,
                 payload, state, attempts, next_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10) RETURNING id",
        )
        .bind(r.kind.as_str())
        .bind(&r.target)
        .bind(r.ticket_key.as_deref())
        .bind(&r.event)
        .bind(&r.identity)
        .bind(r.message_id.as_deref())
        .bind(r.recipient.as_deref())
        .bind(&r.payload)
        .bind(ts)
        .bind(ts)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((comment, id))
    }

    /// The Message-IDs of a ticket's thread, oldest first: the mail it was made of (the ledger)
    /// and the mail Intake sent about it (the outbox).
    pub async fn thread_message_ids(&self, ticket_key: &str) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<(i64, String)> = Vec::new();
        let rows = sqlx::query(
            "SELECT processed_at AS t, message_id FROM message_ledger
             WHERE ticket_key = $1 AND message_id IS NOT NULL
             UNION ALL
             SELECT created_at AS t, message_id FROM outbox
             WHERE ticket_key = $1 AND kind = 'mail' AND message_id IS NOT NULL",
        )
        .bind(ticket_key)
        .fetch_all(self.pool())
        .await?;
        for r in rows {
            ids.push((r.try_get("t")?, r.try_get("message_id")?));
        }
        ids.sort_by_key(|(t, _)| *t);
        let mut seen = HashSet::new();
        Ok(ids
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| seen.insert(m.clone()))
            .collect())
    }

    /// The ticket's key in an external tracker (recorded by a Jira sink), if any.
    pub async fn ticket_external_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT external_key FROM tickets WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?;
        Ok(v.flatten())
    }

    /// How the rows with `id > after` stand.
    pub async fn outbox_tally(&self, after: i64) -> Result<OutboxTally, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM outbox WHERE id > $1 GROUP BY state ORDER BY state",
        )
        .bind(after)
        .fetch_all(self.pool())
        .await?;
        let mut t = OutboxTally::default();
        for r in rows {
            let state: String = r.try_get("state")?;
            let n = u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0);
            match state.as_str() {
                "pending" => t.pending += n,
                "sent" => t.sent += n,
                "failed" => t.failed += n,
                _ => {}
            }
        }
        Ok(t)
    }
}
