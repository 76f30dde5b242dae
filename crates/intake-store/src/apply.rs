//! The exactly-once engine: a batch of prepared messages becomes ledger rows and ticket effects
//! in **one transaction**.
//!
//! For each message, in order:
//! 1. **Claim**: `INSERT … ON CONFLICT DO NOTHING RETURNING id` into the ledger, keyed by
//!    (channel, identity) and (channel, Message-ID, content hash). No row back means the message
//!    was already processed (or is being processed by another node, whose commit we wait for on
//!    PostgreSQL): it is a duplicate and nothing else happens.
//! 2. **Decide**: quarantined and ignored messages keep their reason; readable mail from a sender
//!    over the loop-guard rate is ignored; otherwise a Message-ID in In-Reply-To/References that
//!    is already on a ticket, or else a ticket key in the subject that exists, makes it a comment;
//!    else a new ticket.
//! 3. **Apply** the effect (ticket/comment, attachments content-addressed, customer upsert) and
//!    write the outcome onto the claimed ledger row.
//!
//! The caller commits a batch or nothing: a crash before commit leaves no claim and no effect, so
//! re-running processes the messages again; a crash after commit leaves claims that make the
//! re-run see duplicates. Either way each message has exactly one outcome.

use std::collections::HashMap;

use intake_core::{
    AttachmentDraft, IgnoreReason, LoopGuard, MailDraft, Outcome, Prepared, PreparedKind,
    ProjectKey, TicketKey,
};
use sqlx::any::Any;
use sqlx::{AssertSqlSafe, Row, Transaction};

use crate::{Store, StoreError, now};

/// One message to apply.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The source's identity for the message: `sha256:<hash>` for files, `imap:<uidvalidity>:<uid>`,
    /// `pop3:<uidl>`, `graph:<id>` for servers.
    pub identity: String,
    pub prepared: Prepared,
    /// Raw bytes, needed only when the message is quarantined (kept for the administrator).
    pub raw: Option<Vec<u8>>,
    /// When the source received the message (Unix seconds).
    pub received_at: i64,
}

/// What applying one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The message was new; this is its one outcome.
    Recorded(Outcome),
    /// The message was already in the ledger; nothing changed.
    Duplicate,
}

/// Per-sender timestamps seen in this batch and before it, for the mail-loop guard.
#[derive(Debug, Default)]
pub struct LoopGuardState {
    seen: HashMap<String, Vec<i64>>,
}

impl LoopGuardState {
    /// Record a message from `sender` at `t`; returns how many others fall within the window.
    fn observe(&mut self, sender: &str, t: i64, window: i64) -> u32 {
        let times = self.seen.entry(sender.to_string()).or_default();
        let near = times.iter().filter(|x| (**x - t).abs() < window).count() as u32;
        times.push(t);
        near
    }
}

struct TicketRow {
    id: i64,
    key: String,
    reporter: String,
    participants: Vec<String>,
}

impl Store {
    /// Apply a batch of messages for `channel` into `project`, all in one transaction.
    /// Returns one [`Applied`] per input, in order.
    pub async fn apply_batch(
        &self,
        channel: &str,
        project: &ProjectKey,
        guard: &LoopGuard,
        batch: &[Incoming],
    ) -> Result<Vec<Applied>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let ts = now();
        let claims = claim(&mut tx, channel, batch, ts).await?;
        let mut loops = load_loop_state(&mut tx, channel, guard, batch, &claims).await?;
        // Lock the project's counter row for this transaction (both backends) and number new
        // tickets from it in memory; written back once at the end.
        let first: Option<i64> = sqlx::query_scalar(
            "UPDATE projects SET next_number = next_number WHERE key = $1 RETURNING next_number",
        )
        .bind(project.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let mut state = BatchState {
            channel,
            project,
            next_number: first.ok_or_else(|| StoreError::NoProject(project.to_string()))?,
            threads: HashMap::new(),
            customers: HashMap::new(),
            ts,
        };
        let mut out = Vec::with_capacity(batch.len());
        let mut outcomes: Vec<LedgerOutcome> = Vec::with_capacity(batch.len());
        for (inc, claim) in batch.iter().zip(claims) {
            let Some(ledger_id) = claim else {
                out.push(Applied::Duplicate);
                continue;
            };
            let env = &inc.prepared.envelope;
            let mut raw_hash = None;
            let outcome = match &inc.prepared.kind {
                PreparedKind::Quarantined(r) => {
                    if let Some(raw) = &inc.raw {
                        put_blob(&mut tx, &env.content_hash, raw).await?;
                        raw_hash = Some(env.content_hash.clone());
                    }
                    Outcome::Quarantined(r.to_string())
                }
                PreparedKind::Ignored(r) => Outcome::Ignored(r.to_string()),
                PreparedKind::Mail(d) => {
                    let t = env.sent_at.unwrap_or(inc.received_at);
                    let near = loops.observe(&d.reporter, t, guard.window_seconds);
                    if guard.max_per_sender > 0 && near >= guard.max_per_sender {
                        Outcome::Ignored(
                            IgnoreReason::MailLoop {
                                sender: d.reporter.clone(),
                                count: guard.max_per_sender,
                                window_seconds: guard.window_seconds,
                            }
                            .to_string(),
                        )
                    } else {
                        let o = state.apply_mail(&mut tx, ledger_id, d).await?;
                        if let (Some(id), Outcome::Created(k) | Outcome::Commented(k)) =
                            (&env.message_id, &o)
                        {
                            state.threads.insert(id.clone(), k.to_string());
                        }
                        o
                    }
                }
            };
            outcomes.push(LedgerOutcome {
                id: ledger_id,
                outcome: outcome.clone(),
                raw_hash,
            });
            out.push(Applied::Recorded(outcome));
        }
        sqlx::query("UPDATE projects SET next_number = $1 WHERE key = $2")
            .bind(state.next_number)
            .bind(project.as_str())
            .execute(&mut *tx)
            .await?;
        upsert_customers(&mut tx, &state.customers, ts).await?;
        record_outcomes(&mut tx, &outcomes, ts).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Which of these identities the channel's ledger already holds (a fast pre-check so a
    /// re-run does not re-parse everything; correctness comes from the claim in
    /// [`Store::apply_batch`]).
    pub async fn known_identities(
        &self,
        channel: &str,
        identities: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut known = std::collections::HashSet::new();
        for chunk in identities.chunks(500) {
            let ph: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT identity FROM message_ledger WHERE channel = $1 AND identity IN ({})",
                ph.join(", ")
            );
            let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).bind(channel);
            for id in chunk {
                q = q.bind(id);
            }
            known.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(known)
    }
}

async fn load_loop_state(
    tx: &mut Transaction<'_, Any>,
    channel: &str,
    guard: &LoopGuard,
    batch: &[Incoming],
    claims: &[Option<i64>],
) -> Result<LoopGuardState, StoreError> {
    let mut state = LoopGuardState::default();
    if guard.max_per_sender == 0 {
        return Ok(state);
    }
    let mut senders: Vec<&str> = Vec::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (inc, claim) in batch.iter().zip(claims) {
        if let (Some(_), PreparedKind::Mail(d)) = (claim, &inc.prepared.kind) {
            let t = inc.prepared.envelope.sent_at.unwrap_or(inc.received_at);
            (lo, hi) = (lo.min(t), hi.max(t));
            if !senders.contains(&d.reporter.as_str()) {
                senders.push(&d.reporter);
            }
        }
    }
    for chunk in senders.chunks(400) {
        let ph: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT sender, COALESCE(sent_at, received_at) AS t FROM message_ledger
             WHERE channel = $1 AND outcome <> 'pending' AND COALESCE(sent_at, received_at) > $2
               AND COALESCE(sent_at, received_at) < $3 AND sender IN ({})",
            ph.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(channel)
            .bind(lo.saturating_sub(guard.window_seconds))
            .bind(hi.saturating_add(guard.window_seconds));
        for s in chunk {
            q = q.bind(*s);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let sender: String = row.try_get("sender")?;
            let t: i64 = row.try_get("t")?;
            state.seen.entry(sender).or_default().push(t);
        }
    }
    Ok(state)
}

async fn put_blob(
    tx: &mut Transaction<'_, Any>,
    hash: &str,
    data: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO blobs (hash, size, data) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash)
    .bind(data.len() as i64)
    .bind(data.to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn find_ticket(
    tx: &mut Transaction<'_, Any>,
    key: &str,
) -> Result<Option<TicketRow>, StoreError> {
    let row = sqlx::query("SELECT id, key, reporter, participants FROM tickets WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| {
        let participants: String = r.try_get("participants")?;
        Ok(TicketRow {
            id: r.try_get("id")?,
            key: r.try_get("key")?,
            reporter: r.try_get("reporter")?,
            participants: serde_json::from_str(&participants)
                .map_err(|e| StoreError::Corrupt(format!("participants of {key}: {e}")))?,
        })
    })
    .transpose()
}

/// What a batch keeps in memory while it runs: the next ticket number, threads started in this
/// batch (their ledger rows are written at the end), and customers to upsert once.
struct BatchState<'a> {
    channel: &'a str,
    project: &'a ProjectKey,
    next_number: i64,
    threads: HashMap<String, String>,
    customers: HashMap<String, Option<String>>,
    ts: i64,
}

impl BatchState<'_> {
    /// The ticket a message answers: a Message-ID in In-Reply-To/References that is already on a
    /// ticket (newest reference first: mail clients set these, so they are precise), else a
    /// ticket key in the subject that exists (people type and copy those).
    async fn resolve_target(
        &self,
        tx: &mut Transaction<'_, Any>,
        d: &MailDraft,
    ) -> Result<Option<TicketRow>, StoreError> {
        if !d.references.is_empty() {
            let mut found: HashMap<String, String> = HashMap::new();
            for r in &d.references {
                if let Some(k) = self.threads.get(r) {
                    found.insert(r.clone(), k.clone());
                }
            }
            let ph: Vec<String> = (0..d.references.len())
                .map(|i| format!("${}", i + 1))
                .collect();
            let sql = format!(
                "SELECT message_id, ticket_key FROM message_ledger
                 WHERE ticket_key IS NOT NULL AND message_id IN ({})",
                ph.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in &d.references {
                q = q.bind(r);
            }
            for row in q.fetch_all(&mut **tx).await? {
                found.insert(row.try_get("message_id")?, row.try_get("ticket_key")?);
            }
            for r in &d.references {
                if let Some(key) = found.get(r)
                    && let Some(t) = find_ticket(tx, key).await?
                {
                    return Ok(Some(t));
                }
            }
        }
        for key in &d.subject_keys {
            if let Some(t) = find_ticket(tx, &key.to_string()).await? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    async fn apply_mail(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        ledger_id: i64,
        d: &MailDraft,
    ) -> Result<Outcome, StoreError> {
        let name = self.customers.entry(d.reporter.clone()).or_default();
        if d.reporter_name.is_some() {
            name.clone_from(&d.reporter_name);
        }
        let ts = self.ts;
        if let Some(ticket) = self.resolve_target(tx, d).await? {
            let comment_id: i64 = sqlx::query_scalar(
                "INSERT INTO comments (ticket_id, author, body, ledger_id, created_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(ticket.id)
            .bind(&d.reporter)
            .bind(&d.reply_text)
            .bind(ledger_id)
            .bind(ts)
            .fetch_one(&mut **tx)
            .await?;
            let mut participants = ticket.participants.clone();
            for p in d.participants.iter().chain(std::iter::once(&d.reporter)) {
                if *p != ticket.reporter && !participants.contains(p) {
                    participants.push(p.clone());
                }
            }
            sqlx::query("UPDATE tickets SET updated_at = $1, participants = $2 WHERE id = $3")
                .bind(ts)
                .bind(serde_json::to_string(&participants).unwrap_or_else(|_| "[]".into()))
                .bind(ticket.id)
                .execute(&mut **tx)
                .await?;
            put_attachments(tx, ticket.id, Some(comment_id), &d.attachments).await?;
            let key = ticket
                .key
                .parse::<TicketKey>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            return Ok(Outcome::Commented(key));
        }
        let number = self.next_number;
        self.next_number += 1;
        let key = TicketKey::new(self.project.clone(), number);
        let ticket_id: i64 = sqlx::query_scalar(
            "INSERT INTO tickets (project_key, number, key, summary, description, reporter, participants,
                 status, channel, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $9) RETURNING id",
        )
        .bind(self.project.as_str())
        .bind(number)
        .bind(key.to_string())
        .bind(&d.summary)
        .bind(&d.description)
        .bind(&d.reporter)
        .bind(serde_json::to_string(&d.participants).unwrap_or_else(|_| "[]".into()))
        .bind(self.channel)
        .bind(ts)
        .fetch_one(&mut **tx)
        .await?;
        put_attachments(tx, ticket_id, None, &d.attachments).await?;
        Ok(Outcome::Created(key))
    }
}

/// Claim every message of the batch in the ledger with multi-row inserts. Returns the new
/// ledger row id per message, or `None` for a duplicate (already in the ledger, or earlier in
/// this batch).
async fn claim(
    tx: &mut Transaction<'_, Any>,
    channel: &str,
    batch: &[Incoming],
    ts: i64,
) -> Result<Vec<Option<i64>>, StoreError> {
    const COLS: usize = 8;
    let mut ids: HashMap<String, i64> = HashMap::new();
    for chunk in batch.chunks(400) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
                format!("({}, 'pending', {}, {})", p[..6].join(", "), p[6], p[7])
            })
            .collect();
        let sql = format!(
            "INSERT INTO message_ledger (channel, identity, message_id, content_hash, sender, sent_at,
                 outcome, received_at, processed_at) VALUES {} ON CONFLICT DO NOTHING RETURNING id, identity",
            rows.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for inc in chunk {
            let env = &inc.prepared.envelope;
            q = q
                .bind(channel)
                .bind(&inc.identity)
                .bind(env.message_id.as_deref())
                .bind(&env.content_hash)
                .bind(env.sender.as_deref())
                .bind(env.sent_at)
                .bind(inc.received_at)
                .bind(ts);
        }
        for row in q.fetch_all(&mut **tx).await? {
            ids.insert(row.try_get("identity")?, row.try_get("id")?);
        }
    }
    // The first occurrence of an identity owns the claim; repeats in the batch are duplicates.
    Ok(batch.iter().map(|inc| ids.remove(&inc.identity)).collect())
}

struct LedgerOutcome {
    id: i64,
    outcome: Outcome,
    raw_hash: Option<String>,
}

/// Write the outcomes onto the claimed ledger rows, many rows per statement.
async fn record_outcomes(
    tx: &mut Transaction<'_, Any>,
    outcomes: &[LedgerOutcome],
    ts: i64,
) -> Result<(), StoreError> {
    for chunk in outcomes.chunks(300) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let b = r * 5;
                format!(
                    "SELECT ${} AS id, ${} AS outcome, ${} AS ticket_key, ${} AS reason, ${} AS raw_hash",
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect();
        let sql = format!(
            "UPDATE message_ledger SET outcome = v.outcome, ticket_key = v.ticket_key, reason = v.reason,
                 raw_hash = v.raw_hash, processed_at = $1
             FROM ({}) AS v WHERE message_ledger.id = v.id",
            rows.join(" UNION ALL ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(ts);
        for o in chunk {
            let (key, reason) = match &o.outcome {
                Outcome::Created(k) | Outcome::Commented(k) => (Some(k.to_string()), None),
                Outcome::Ignored(r) | Outcome::Quarantined(r) => (None, Some(r.clone())),
            };
            q = q
                .bind(o.id)
                .bind(o.outcome.kind())
                .bind(key)
                .bind(reason)
                .bind(o.raw_hash.clone());
        }
        let done = q.execute(&mut **tx).await?.rows_affected();
        if done != chunk.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "recorded {done} of {} ledger outcomes",
                chunk.len()
            )));
        }
    }
    Ok(())
}

async fn upsert_customers(
    tx: &mut Transaction<'_, Any>,
    customers: &HashMap<String, Option<String>>,
    ts: i64,
) -> Result<(), StoreError> {
    let all: Vec<(&String, &Option<String>)> = customers.iter().collect();
    for chunk in all.chunks(400) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| format!("(${}, ${}, $1, $1)", r * 2 + 2, r * 2 + 3))
            .collect();
        let sql = format!(
            "INSERT INTO customers (address, display_name, first_seen, last_seen) VALUES {}
             ON CONFLICT (address) DO UPDATE SET last_seen = excluded.last_seen,
                 display_name = COALESCE(excluded.display_name, customers.display_name)",
            rows.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(ts);
        for (address, name) in chunk {
            q = q.bind(address.as_str()).bind(name.as_deref());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn put_attachments(
    tx: &mut Transaction<'_, Any>,
    ticket_id: i64,
    comment_id: Option<i64>,
    attachments: &[AttachmentDraft],
) -> Result<(), StoreError> {
    for a in attachments {
        put_blob(tx, &a.hash, &a.data).await?;
        sqlx::query(
            "INSERT INTO attachments (ticket_id, comment_id, filename, content_type, content_id, inline,
                 size, blob_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(ticket_id)
        .bind(comment_id)
        .bind(&a.filename)
        .bind(&a.content_type)
        .bind(a.content_id.as_deref())
        .bind(i64::from(a.inline))
        .bind(a.data.len() as i64)
        .bind(&a.hash)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
