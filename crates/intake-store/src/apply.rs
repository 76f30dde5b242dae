//! The exactly-once engine: a batch of prepared messages becomes ledger rows and ticket effects
//! in **one transaction**.
//!
//! 1. **Claim** every message: `INSERT … ON CONFLICT DO NOTHING RETURNING id` into the ledger,
//!    keyed by (channel, identity) and (channel, Message-ID, content hash). No row back means the
//!    message was already processed (or is being processed by another node, whose commit we wait
//!    for on PostgreSQL): it is a duplicate and nothing else happens.
//! 2. **Decide**, in memory and in order, after one lookup of every referenced Message-ID and
//!    subject key of the batch: quarantined and ignored messages keep their reason; readable mail from a sender
//!    over the loop-guard rate is ignored; otherwise a Message-ID in In-Reply-To/References that
//!    is already on a ticket, or else a ticket key in the subject that exists, makes it a comment;
//!    else a new ticket.
//! 3. **Write** all effects with multi-row statements (tickets, comments, blobs, attachments,
//!    customers, outcomes), so a new ticket costs a share of a few statements rather than a round
//!    trip of its own.
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

/// A ticket that exists in the database and is touched by this batch.
struct Existing {
    id: i64,
    key: String,
    reporter: String,
    participants: Vec<String>,
    touched: bool,
}

/// A ticket this batch creates.
struct NewTicket<'b> {
    number: i64,
    key: String,
    draft: &'b MailDraft,
    participants: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Existing(usize),
    New(usize),
}

struct NewComment<'b> {
    target: Target,
    ledger_id: i64,
    draft: &'b MailDraft,
}

/// Everything the batch decides before writing.
#[derive(Default)]
struct Plan<'b> {
    existing: Vec<Existing>,
    existing_by_key: HashMap<String, usize>,
    db_threads: HashMap<String, String>,
    new_tickets: Vec<NewTicket<'b>>,
    new_by_key: HashMap<String, usize>,
    /// Message-ID → ticket, for messages applied earlier in this batch.
    threads: HashMap<String, Target>,
    comments: Vec<NewComment<'b>>,
    customers: HashMap<String, Option<String>>,
}

impl<'b> Plan<'b> {
    fn target(&self, d: &MailDraft) -> Option<Target> {
        for r in &d.references {
            if let Some(t) = self.threads.get(r) {
                return Some(*t);
            }
            if let Some(i) = self
                .db_threads
                .get(r)
                .and_then(|k| self.existing_by_key.get(k))
            {
                return Some(Target::Existing(*i));
            }
        }
        for k in &d.subject_keys {
            let k = k.to_string();
            if let Some(i) = self.new_by_key.get(&k) {
                return Some(Target::New(*i));
            }
            if let Some(i) = self.existing_by_key.get(&k) {
                return Some(Target::Existing(*i));
            }
        }
        None
    }

    fn key_of(&self, t: Target) -> &str {
        match t {
            Target::Existing(i) => &self.existing[i].key,
            Target::New(i) => &self.new_tickets[i].key,
        }
    }

    /// Decide what a readable message does; returns the outcome.
    fn mail(
        &mut self,
        project: &ProjectKey,
        next: &mut i64,
        ledger_id: i64,
        message_id: Option<&String>,
        d: &'b MailDraft,
    ) -> Result<Outcome, StoreError> {
        let name = self.customers.entry(d.reporter.clone()).or_default();
        if d.reporter_name.is_some() {
            name.clone_from(&d.reporter_name);
        }
        let (target, outcome) = match self.target(d) {
            Some(t) => {
                let (reporter, participants) = match t {
                    Target::Existing(i) => {
                        self.existing[i].touched = true;
                        let e = &mut self.existing[i];
                        (e.reporter.clone(), &mut e.participants)
                    }
                    Target::New(i) => {
                        let n = &mut self.new_tickets[i];
                        (n.draft.reporter.clone(), &mut n.participants)
                    }
                };
                for p in d.participants.iter().chain(std::iter::once(&d.reporter)) {
                    if *p != reporter && !participants.contains(p) {
                        participants.push(p.clone());
                    }
                }
                self.comments.push(NewComment {
                    target: t,
                    ledger_id,
                    draft: d,
                });
                (t, Outcome::Commented(parse_key(self.key_of(t))?))
            }
            None => {
                let key = TicketKey::new(project.clone(), *next);
                *next += 1;
                let i = self.new_tickets.len();
                self.new_by_key.insert(key.to_string(), i);
                self.new_tickets.push(NewTicket {
                    number: key.number,
                    key: key.to_string(),
                    draft: d,
                    participants: d.participants.clone(),
                });
                (Target::New(i), Outcome::Created(key))
            }
        };
        if let Some(id) = message_id {
            self.threads.insert(id.clone(), target);
        }
        Ok(outcome)
    }
}

fn parse_key(k: &str) -> Result<TicketKey, StoreError> {
    k.parse::<TicketKey>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn placeholders(rows: usize, cols: usize, offset: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols)
                .map(|c| format!("${}", offset + r * cols + c))
                .collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
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
        // Lock the project's counter row for this transaction (both backends); new tickets are
        // numbered in memory and the counter is written back once.
        let first: Option<i64> = sqlx::query_scalar(
            "UPDATE projects SET next_number = next_number WHERE key = $1 RETURNING next_number",
        )
        .bind(project.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let mut next = first.ok_or_else(|| StoreError::NoProject(project.to_string()))?;
        let mut plan = Plan::default();
        lookup_targets(&mut tx, batch, &claims, &mut plan).await?;

        let mut out = Vec::with_capacity(batch.len());
        let mut outcomes: Vec<LedgerOutcome> = Vec::with_capacity(batch.len());
        let mut blobs: Vec<(&str, &[u8])> = Vec::new();
        for (inc, claim) in batch.iter().zip(&claims) {
            let Some(ledger_id) = *claim else {
                out.push(Applied::Duplicate);
                continue;
            };
            let env = &inc.prepared.envelope;
            let mut raw_hash = None;
            let outcome = match &inc.prepared.kind {
                PreparedKind::Quarantined(r) => {
                    if let Some(raw) = &inc.raw {
                        blobs.push((&env.content_hash, raw));
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
                        plan.mail(project, &mut next, ledger_id, env.message_id.as_ref(), d)?
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

        let ticket_ids = insert_tickets(&mut tx, channel, project, &plan.new_tickets, ts).await?;
        let id_of = |t: Target| match t {
            Target::Existing(i) => plan.existing[i].id,
            Target::New(i) => ticket_ids[i],
        };
        for e in plan.existing.iter().filter(|e| e.touched) {
            sqlx::query("UPDATE tickets SET updated_at = $1, participants = $2 WHERE id = $3")
                .bind(ts)
                .bind(json_list(&e.participants))
                .bind(e.id)
                .execute(&mut *tx)
                .await?;
        }
        let comment_ids = insert_comments(&mut tx, &plan.comments, &id_of, ts).await?;
        let mut attachments: Vec<(i64, Option<i64>, &AttachmentDraft)> = Vec::new();
        for (n, id) in plan.new_tickets.iter().zip(&ticket_ids) {
            attachments.extend(n.draft.attachments.iter().map(|a| (*id, None, a)));
        }
        for (c, cid) in plan.comments.iter().zip(&comment_ids) {
            attachments.extend(
                c.draft
                    .attachments
                    .iter()
                    .map(|a| (id_of(c.target), Some(*cid), a)),
            );
        }
        blobs.extend(
            attachments
                .iter()
                .map(|(_, _, a)| (a.hash.as_str(), a.data.as_slice())),
        );
        put_blobs(&mut tx, &blobs).await?;
        insert_attachments(&mut tx, &attachments).await?;
        sqlx::query("UPDATE projects SET next_number = $1 WHERE key = $2")
            .bind(next)
            .bind(project.as_str())
            .execute(&mut *tx)
            .await?;
        upsert_customers(&mut tx, &plan.customers, ts).await?;
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
        for chunk in identities.chunks(rows_per_statement(1)) {
            let ph: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT identity FROM message_ledger WHERE channel = $1 AND identity IN ({})",
                ph.join(", ")
            );
            let sql = sql_for_sqlite(self.backend() == crate::Backend::Sqlite, sql);
            let mut q = sqlx::query_scalar::<_, String>(sql).bind(channel);
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
    for chunk in senders.chunks(rows_per_statement(1)) {
        let ph: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT sender, COALESCE(sent_at, received_at) AS t FROM message_ledger
             WHERE channel = $1 AND outcome <> 'pending' AND COALESCE(sent_at, received_at) > $2
               AND COALESCE(sent_at, received_at) < $3 AND sender IN ({})",
            ph.join(", ")
        );
        let mut q = sqlx::query(sql_for(tx, sql))
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
    for chunk in batch.chunks(rows_per_statement(8)) {
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
        let mut q = sqlx::query(sql_for(tx, sql));
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
    for chunk in outcomes.chunks(rows_per_statement(5)) {
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
        let mut q = sqlx::query(sql_for(tx, sql)).bind(ts);
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
    for chunk in all.chunks(rows_per_statement(4)) {
        let rows = placeholders(chunk.len(), 4, 0);
        let sql = format!(
            "INSERT INTO customers (address, display_name, first_seen, last_seen) VALUES {}
             ON CONFLICT (address) DO UPDATE SET last_seen = excluded.last_seen,
                 display_name = COALESCE(excluded.display_name, customers.display_name)",
            rows
        );
        let mut q = sqlx::query(sql_for(tx, sql));
        for (address, name) in chunk {
            q = q
                .bind(address.as_str())
                .bind(name.as_deref())
                .bind(ts)
                .bind(ts);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Bound parameters per multi-row statement (far below SQLite's 32,766 and PostgreSQL's 65,535).
const PARAMS_PER_STATEMENT: usize = 900;

/// Statements are written with `$1…$N` in text order. On SQLite they are sent with anonymous `?`
/// parameters instead: sqlx's SQLite driver looks every *named* parameter up with
/// `sqlite3_bind_parameter_name`, a linear scan, which makes binding quadratic in the parameter
/// count; anonymous ones bind positionally. (PostgreSQL needs `$N`.) Only a statement whose
/// `$N` run exactly 1, 2, 3, … in text order is rewritten, so the meaning cannot change.
fn sql_for(conn: &sqlx::AnyConnection, sql: String) -> AssertSqlSafe<String> {
    sql_for_sqlite(conn.backend_name() == "SQLite", sql)
}

fn sql_for_sqlite(sqlite: bool, sql: String) -> AssertSqlSafe<String> {
    if !sqlite {
        return AssertSqlSafe(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut expect = 1usize;
    let mut rest = sql.as_str();
    while let Some(i) = rest.find('$') {
        let digits = rest[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || rest[i + 1..i + 1 + digits].parse::<usize>().ok() != Some(expect) {
            return AssertSqlSafe(sql);
        }
        out.push_str(&rest[..i]);
        out.push('?');
        expect += 1;
        rest = &rest[i + 1 + digits..];
    }
    out.push_str(rest);
    AssertSqlSafe(out)
}

fn rows_per_statement(cols: usize) -> usize {
    (PARAMS_PER_STATEMENT / cols).max(1)
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// One lookup for every Message-ID referenced and every ticket key named in the batch.
async fn lookup_targets<'b>(
    tx: &mut Transaction<'_, Any>,
    batch: &'b [Incoming],
    claims: &[Option<i64>],
    plan: &mut Plan<'b>,
) -> Result<(), StoreError> {
    let drafts = batch
        .iter()
        .zip(claims)
        .filter_map(|(inc, c)| match (&inc.prepared.kind, c) {
            (PreparedKind::Mail(d), Some(_)) => Some(d),
            _ => None,
        });
    let mut refs: Vec<&str> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for d in drafts {
        refs.extend(d.references.iter().map(String::as_str));
        keys.extend(d.subject_keys.iter().map(|k| k.to_string()));
    }
    refs.sort_unstable();
    refs.dedup();
    for chunk in refs.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT message_id, ticket_key FROM message_ledger
             WHERE ticket_key IS NOT NULL AND message_id IN {}",
            placeholders(1, chunk.len(), 0)
        );
        let mut q = sqlx::query(sql_for(tx, sql));
        for r in chunk {
            q = q.bind(*r);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let key: String = row.try_get("ticket_key")?;
            keys.push(key.clone());
            plan.db_threads.insert(row.try_get("message_id")?, key);
        }
    }
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, key, reporter, participants FROM tickets WHERE key IN {}",
            placeholders(1, chunk.len(), 0)
        );
        let mut q = sqlx::query(sql_for(tx, sql));
        for k in chunk {
            q = q.bind(k.as_str());
        }
        for r in q.fetch_all(&mut **tx).await? {
            let key: String = r.try_get("key")?;
            let participants: String = r.try_get("participants")?;
            let e = Existing {
                id: r.try_get("id")?,
                reporter: r.try_get("reporter")?,
                participants: serde_json::from_str(&participants)
                    .map_err(|e| StoreError::Corrupt(format!("participants of {key}: {e}")))?,
                key: key.clone(),
                touched: false,
            };
            plan.existing_by_key.insert(key, plan.existing.len());
            plan.existing.push(e);
        }
    }
    Ok(())
}

async fn insert_tickets(
    tx: &mut Transaction<'_, Any>,
    channel: &str,
    project: &ProjectKey,
    tickets: &[NewTicket<'_>],
    ts: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut by_number: HashMap<i64, i64> = HashMap::new();
    for chunk in tickets.chunks(rows_per_statement(10)) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p: Vec<String> = (1..=10).map(|c| format!("${}", r * 10 + c)).collect();
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, 'open', {}, {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO tickets (project_key, number, key, summary, description, reporter, participants,
                 status, channel, created_at, updated_at) VALUES {} RETURNING id, number",
            rows.join(", ")
        );
        let mut q = sqlx::query(sql_for(tx, sql));
        for t in chunk {
            q = q
                .bind(project.as_str())
                .bind(t.number)
                .bind(t.key.as_str())
                .bind(t.draft.summary.as_str())
                .bind(t.draft.description.as_str())
                .bind(t.draft.reporter.as_str())
                .bind(json_list(&t.participants))
                .bind(channel)
                .bind(ts)
                .bind(ts);
        }
        for row in q.fetch_all(&mut **tx).await? {
            by_number.insert(row.try_get("number")?, row.try_get("id")?);
        }
    }
    tickets
        .iter()
        .map(|t| {
            by_number
                .get(&t.number)
                .copied()
                .ok_or_else(|| StoreError::Corrupt(format!("no id for {}", t.key)))
        })
        .collect()
}

async fn insert_comments(
    tx: &mut Transaction<'_, Any>,
    comments: &[NewComment<'_>],
    id_of: &impl Fn(Target) -> i64,
    ts: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut by_ledger: HashMap<i64, i64> = HashMap::new();
    for chunk in comments.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO comments (ticket_id, author, body, ledger_id, created_at) VALUES {} RETURNING id, ledger_id",
            placeholders(chunk.len(), 5, 0)
        );
        let mut q = sqlx::query(sql_for(tx, sql));
        for c in chunk {
            q = q
                .bind(id_of(c.target))
                .bind(c.draft.reporter.as_str())
                .bind(c.draft.reply_text.as_str())
                .bind(c.ledger_id)
                .bind(ts);
        }
        for row in q.fetch_all(&mut **tx).await? {
            by_ledger.insert(row.try_get("ledger_id")?, row.try_get("id")?);
        }
    }
    comments
        .iter()
        .map(|c| {
            by_ledger
                .get(&c.ledger_id)
                .copied()
                .ok_or_else(|| StoreError::Corrupt("comment without id".into()))
        })
        .collect()
}

/// Store blobs (content-addressed, so repeats are free), in statements of bounded size.
async fn put_blobs(
    tx: &mut Transaction<'_, Any>,
    blobs: &[(&str, &[u8])],
) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&(&str, &[u8])> = blobs.iter().filter(|(h, _)| seen.insert(*h)).collect();
    let mut start = 0;
    while start < unique.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < unique.len()
            && (end == start
                || (bytes + unique[end].1.len() < 8 << 20 && end - start < rows_per_statement(3)))
        {
            bytes += unique[end].1.len();
            end += 1;
        }
        let chunk = &unique[start..end];
        let sql = format!(
            "INSERT INTO blobs (hash, size, data) VALUES {} ON CONFLICT (hash) DO NOTHING",
            placeholders(chunk.len(), 3, 0)
        );
        let mut q = sqlx::query(sql_for(tx, sql));
        for (h, data) in chunk {
            q = q.bind(*h).bind(data.len() as i64).bind(data.to_vec());
        }
        q.execute(&mut **tx).await?;
        start = end;
    }
    Ok(())
}

async fn insert_attachments(
    tx: &mut Transaction<'_, Any>,
    attachments: &[(i64, Option<i64>, &AttachmentDraft)],
) -> Result<(), StoreError> {
    for chunk in attachments.chunks(rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO attachments (ticket_id, comment_id, filename, content_type, content_id, inline,
                 size, blob_hash) VALUES {}",
            placeholders(chunk.len(), 8, 0)
        );
        let mut q = sqlx::query(sql_for(tx, sql));
        for (ticket, comment, a) in chunk {
            q = q
                .bind(*ticket)
                .bind(*comment)
                .bind(a.filename.as_str())
                .bind(a.content_type.as_str())
                .bind(a.content_id.as_deref())
                .bind(i64::from(a.inline))
                .bind(a.data.len() as i64)
                .bind(a.hash.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sql_for_sqlite;

    #[test]
    fn only_strictly_sequential_placeholders_become_anonymous() {
        let s = |q: &str| sql_for_sqlite(true, q.to_string()).0;
        assert_eq!(s("SELECT $1, $2 WHERE x = $3"), "SELECT ?, ? WHERE x = ?");
        assert_eq!(
            s("SELECT $1, $1"),
            "SELECT $1, $1",
            "reused parameters keep their numbers"
        );
        assert_eq!(
            s("SELECT $2, $1"),
            "SELECT $2, $1",
            "out of order keeps numbers"
        );
        assert_eq!(s("SELECT $1, $10"), "SELECT $1, $10");
        assert_eq!(sql_for_sqlite(false, "SELECT $1".into()).0, "SELECT $1");
    }
}
