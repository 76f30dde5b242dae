//! The exactly-once engine: a batch of prepared messages becomes ledger rows and ticket effects
//! in **one transaction**.
//!
//! 1. **Claim** every message: look the batch up in the ledger, keyed by (channel, identity)
//!    and (channel, Message-ID, content hash), after taking the project's counter lock (on
//!    PostgreSQL a row lock held to commit, so batches of one project — and so of one channel —
//!    follow each other). A message already recorded, or earlier in the batch, is a duplicate
//!    and nothing else happens; every other one gets a ledger id reserved for it.
//! 2. **Decide**, in memory and in order, after one lookup of every referenced Message-ID and
//!    subject key of the batch: quarantined and ignored messages keep their reason; readable mail
//!    from a sender over the loop-guard rate is ignored; otherwise a Message-ID in
//!    In-Reply-To/References that is already on a ticket, or else a ticket key in the subject
//!    that exists, makes it a comment; else a new ticket.
//! 3. **Write** all effects (tickets, comments, blobs, attachments, customers) and the outbox
//!    rows they cause ([`OutboxRules`]: `[[sink]]` events, acknowledgements), and the ledger
//!    rows with their outcomes — `INSERT … ON CONFLICT DO NOTHING`, each row written once — in
//!    the same transaction (see [`crate::outbox`]). If the insert finds a row already there
//!    (another writer committed the message after step 1; on PostgreSQL the insert first waits
//!    for that writer's commit), the transaction rolls back with [`StoreError::Raced`] and the
//!    batch is applied again, when step 1 sees the message as a duplicate.
//!
//!    Until issue 15 the claim inserted `pending` rows in step 1 and step 3 updated them: every
//!    ledger row was written twice, in all six of its indexes, and on SQLite the update of
//!    `raw_hash` (a foreign key) kept a statement journal. Writing each row once made the
//!    PostgreSQL ingest about a fifth faster (docs/BENCHMARKS.md, docs/decisions.md).
//!
//! **Staging** (PostgreSQL): the parts of steps 1 and 3 that do not depend on the batches
//! before this one — the ledger look-up, the ledger ids, the blobs — can be done ahead of the
//! transaction, while those batches commit ([`Store::stage_batch`], [`Staged`]); the first
//! transaction of [`Store::apply_staged`] then uses them. A stale look-up ends in
//! [`StoreError::Raced`] like any lost race, and the batch is applied again without them
//! (docs/decisions.md, "Staging a batch ahead of its transaction").
//!
//! Steps 1–3 are written once, in [`apply_with`], against the [`Writer`] trait: the statements
//! of one batch transaction. It has three implementations:
//! - [`pg`]: sqlx's native PostgreSQL driver, used on PostgreSQL: one fixed-text statement per
//!   step with one array parameter per column (`INSERT … SELECT … FROM UNNEST(…)`), so a batch
//!   costs about a dozen round trips of prepared statements;
//! - [`any`]: sqlx's `Any` driver, used on SQLite when the database is not a file, with
//!   multi-row statements;
//! - [`native`]: a dedicated rusqlite connection used on SQLite files, with cached single-row
//!   statements. SQLite runs in-process, so there are no round trips to save, and sqlx's `Any`
//!   path copied every text argument twice and compiled a fresh 900-parameter statement per
//!   chunk — the writer's CPU was the ingest bottleneck (docs/BENCHMARKS.md).
//!
//! The caller commits a batch or nothing: a crash before commit leaves no ledger row and no
//! effect, so re-running processes the messages again; a crash after commit leaves ledger rows
//! that make the re-run see duplicates. Either way each message has exactly one outcome.

mod any;
mod native;
mod pg;

use std::collections::{HashMap, HashSet};

use std::future::Future;
use std::pin::Pin;

use intake_core::{
    AttachmentDraft, ChannelRules, IgnoreReason, LoopGuard, MailDraft, Outcome, Prepared,
    PreparedKind, ProjectKey, QuarantineReason, ReplyPolicy, TicketKey,
};

pub(crate) use native::NativeWriter;
pub(crate) use pg::PgWriter;

use std::sync::Arc;

use crate::outbox::{NewOutbox, OutboxKind};
use crate::{Store, StoreError, now};

/// One message to apply.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The source's identity for the message: `sha256:<hash>` for files, `imap:<uidvalidity>:<uid>`,
    /// `pop3:<uidl>`, `graph:<id>` for servers.
    pub identity: String,
    pub prepared: Prepared,
    /// Raw bytes, kept when the message is quarantined (a ticket or comment keeps only its
    /// HTML, prepared with the draft: [`crate::original`]).
    pub raw: Option<Vec<u8>>,
    /// When the source received the message (Unix seconds).
    pub received_at: i64,
}

/// The channel rules the store applies a batch under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchRules {
    pub loop_guard: LoopGuard,
    pub reply_policy: ReplyPolicy,
    /// The channel's own addresses and what the batch enqueues in the outbox.
    pub outbox: Arc<OutboxRules>,
}

impl From<&LoopGuard> for BatchRules {
    /// The loop guard with the default reply policy.
    fn from(g: &LoopGuard) -> Self {
        Self {
            loop_guard: g.clone(),
            reply_policy: ReplyPolicy::default(),
            outbox: Arc::default(),
        }
    }
}

impl From<&ChannelRules> for BatchRules {
    /// The channel's rules; its `addresses` are its own (never participants); nothing is
    /// enqueued.
    fn from(r: &ChannelRules) -> Self {
        Self {
            loop_guard: r.loop_guard.clone(),
            reply_policy: r.reply_policy,
            outbox: Arc::new(OutboxRules {
                own: r.addresses.iter().map(|a| a.to_lowercase()).collect(),
                ..OutboxRules::default()
            }),
        }
    }
}

/// What one channel's batches write into the outbox, and the addresses that are its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxRules {
    /// The channel's own addresses (lower case): never a participant of its tickets, never a
    /// recipient of its mail.
    pub own: Vec<String>,
    /// The `[[sink]]`s of the channel's project.
    pub sinks: Vec<SinkRoute>,
    /// The project's acknowledgement, when it is on.
    pub acknowledge: Option<Acknowledge>,
}

/// One `[[sink]]` and the events it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRoute {
    pub name: String,
    pub kind: OutboxKind,
    /// `ticket.created`, `comment.added`, `ticket.quarantined`; empty: all of them.
    pub events: Vec<String>,
}

impl SinkRoute {
    fn takes(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

/// An acknowledgement mail on ticket creation, sent from the channel's mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledge {
    /// The channel that sends it (the outbox target).
    pub channel: String,
    /// The From address (the channel's mailbox).
    pub from: String,
    /// Templates; `{key}`, `{summary}`, `{reporter}`, `{project}` are replaced.
    pub subject: String,
    pub body: String,
    /// At most this many acknowledgements per recipient per hour (0: none at all).
    pub max_per_hour: u32,
    /// The domain of generated Message-IDs.
    pub domain: String,
}

/// Fill `{key}`, `{summary}`, `{reporter}`, `{project}` in a template.
pub fn render(template: &str, key: &str, summary: &str, reporter: &str, project: &str) -> String {
    template
        .replace("{key}", key)
        .replace("{summary}", summary)
        .replace("{reporter}", reporter)
        .replace("{project}", project)
}

/// A fresh Message-ID (without angle brackets): `intake.{what}.{key}.{random}@{domain}`.
pub fn new_message_id(what: &str, key: &str, domain: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut g = std::collections::hash_map::RandomState::new().build_hasher();
    g.write_u64(h.finish());
    format!(
        "intake.{what}.{}.{:016x}{:016x}@{domain}",
        key.to_ascii_lowercase(),
        h.finish(),
        g.finish()
    )
}

impl From<&BatchRules> for BatchRules {
    fn from(r: &BatchRules) -> Self {
        r.clone()
    }
}

/// What applying one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The message was new; this is its one outcome.
    Recorded(Outcome),
    /// The message was already in the ledger; nothing changed.
    Duplicate,
}

/// The part of a batch's work done ahead of its transaction, while earlier batches commit
/// ([`Store::stage_batch`]; PostgreSQL only). [`Store::apply_staged`] uses it in its first
/// transaction; a retry or a half of a bisected batch does that work again in its own.
#[derive(Debug, Default)]
pub struct Staged {
    channel: String,
    /// Per identity of the staged messages: whether the ledger held the message when it was
    /// staged. A stale `false` (another writer recorded it since) is caught by the ledger
    /// insert's conflict ([`StoreError::Raced`]); a stale `true` cannot happen, as ledger rows
    /// keep their keys (a retried row moves aside only in the transaction that records the
    /// message again).
    recorded: HashMap<String, bool>,
    /// Ledger ids reserved for the batch, ascending: one per message the ledger did not hold.
    ids: Vec<i64>,
    /// Hashes of the blobs stored, and committed, for the batch.
    blobs: HashSet<String>,
}

impl Staged {
    /// The staged work of two batches of `channel` committed as one transaction (a group
    /// commit): when both were staged for the same channel, their look-ups, reserved ids
    /// (ascending again) and blobs together; otherwise `None`, and the transaction does that
    /// work itself.
    pub fn join(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        let (mut a, b) = (a?, b?);
        if a.channel != b.channel {
            return None;
        }
        a.recorded.extend(b.recorded);
        a.ids.extend(b.ids);
        a.ids.sort_unstable();
        a.blobs.extend(b.blobs);
        Some(a)
    }

    /// The staged answer of [`Writer::recorded`] for `batch`, when every message of it was
    /// staged for `channel`.
    fn recorded(&self, channel: &str, batch: &[Incoming]) -> Option<Vec<bool>> {
        if self.channel != channel {
            return None;
        }
        batch
            .iter()
            .map(|inc| self.recorded.get(&inc.identity).copied())
            .collect()
    }

    /// `n` reserved ledger ids, when that many were staged.
    fn take_ids(&mut self, n: usize) -> Option<Vec<i64>> {
        (self.ids.len() >= n).then(|| self.ids.drain(..n).collect())
    }
}

/// The blobs a batch may write, each hash once: the kept HTML and the attachments of readable
/// mail, and the raw bytes of quarantined messages (as [`apply_with`] stores them). Staging
/// stores them before the batch's transaction; those of mail that turns out a duplicate or is
/// ignored (the loop guard, Intake's own mail) stay unreferenced, which costs space and nothing
/// else (a blob is content-addressed and only ever read through a reference).
fn stageable_blobs<'a>(batch: impl IntoIterator<Item = &'a Incoming>) -> Vec<(&'a str, &'a [u8])> {
    let mut seen = HashSet::new();
    let mut out: Vec<(&str, &[u8])> = Vec::new();
    for inc in batch {
        match &inc.prepared.kind {
            PreparedKind::Mail(d) => {
                if let Some(h) = &d.html {
                    out.push((&h.hash, &h.data));
                }
                out.extend(
                    d.attachments
                        .iter()
                        .map(|a| (a.hash.as_str(), a.data.as_slice())),
                );
            }
            PreparedKind::Quarantined(_) => {
                if let Some(raw) = &inc.raw {
                    out.push((&inc.prepared.envelope.content_hash, raw));
                }
            }
            PreparedKind::Ignored(_) => {}
        }
    }
    out.retain(|(h, _)| seen.insert(*h));
    out
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
pub(crate) struct NewTicket<'b> {
    number: i64,
    key: String,
    draft: &'b MailDraft,
    /// The Message-ID of the mail that opened it.
    message_id: Option<&'b String>,
    participants: Vec<String>,
    /// The ticket this one answered without being allowed to comment on it (reply policy).
    follows: Option<Target>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Existing(usize),
    New(usize),
}

pub(crate) struct NewComment<'b> {
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
    /// Whether the sender of `d` may comment on `t` under `policy`.
    fn may_comment(&self, t: Target, d: &MailDraft, policy: ReplyPolicy) -> bool {
        let (reporter, participants) = match t {
            Target::Existing(i) => (&self.existing[i].reporter, &self.existing[i].participants),
            Target::New(i) => (
                &self.new_tickets[i].draft.reporter,
                &self.new_tickets[i].participants,
            ),
        };
        policy.allows(&d.reporter, reporter, participants)
    }

    #[allow(clippy::too_many_arguments)]
    fn mail(
        &mut self,
        project: &ProjectKey,
        policy: ReplyPolicy,
        own: &[String],
        next: &mut i64,
        ledger_id: i64,
        message_id: Option<&'b String>,
        d: &'b MailDraft,
    ) -> Result<Outcome, StoreError> {
        let name = self.customers.entry(d.reporter.clone()).or_default();
        if d.reporter_name.is_some() {
            name.clone_from(&d.reporter_name);
        }
        let (follows, target) = match self.target(d) {
            Some(t) if !self.may_comment(t, d, policy) => (Some(t), None),
            t => (None, t),
        };
        let (target, outcome) = match target {
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
                    if *p != reporter && !participants.contains(p) && !is_own(own, p) {
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
                    message_id,
                    participants: d
                        .participants
                        .iter()
                        .filter(|p| !is_own(own, p))
                        .cloned()
                        .collect(),
                    follows,
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

/// Whether `addr` is one of the channel's own addresses (`own` is lower case).
fn is_own(own: &[String], addr: &str) -> bool {
    own.iter().any(|o| o.eq_ignore_ascii_case(addr))
}

/// SQLite result codes (extended where it matters) that mean "this data cannot be stored".
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_MISMATCH: i32 = 20;
const SQLITE_CONSTRAINT_CHECK: i32 = 275;
const SQLITE_CONSTRAINT_TRIGGER: i32 = 1811;

impl StoreError {
    /// When the database refused the data itself, its own words (with the SQLSTATE or SQLite
    /// code); `None` for every other failure.
    ///
    /// Data errors are PostgreSQL's class 22 (data exception: a NUL in text, a bad encoding, a
    /// value out of range), class 54 (program limit exceeded: an index row over the btree
    /// maximum, a value too large) and 23514 (a check constraint), and SQLite's TOOBIG,
    /// MISMATCH, CHECK and trigger-raised constraints. Uniqueness is not among them: the ledger's
    /// own UNIQUE keys are claimed with `ON CONFLICT DO NOTHING` and never raise, and any other
    /// uniqueness failure would be Intake's bug, not the message's. Connection, lock and
    /// protocol errors are not either: they fail the batch, so nothing is acknowledged.
    pub fn refused_data(&self) -> Option<String> {
        let clean = |s: String| s.replace('\0', "");
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code()?;
                let refused = if code.len() == 5 {
                    // PostgreSQL SQLSTATE.
                    code.starts_with("22") || code.starts_with("54") || code == "23514"
                } else {
                    // SQLite through sqlx: the extended result code as a number.
                    code.parse::<i32>().is_ok_and(sqlite_refuses)
                };
                refused.then(|| clean(format!("{} (SQLSTATE {code})", e.message())))
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, msg)) => {
                sqlite_refuses(e.extended_code).then(|| {
                    let words = msg.clone().unwrap_or_else(|| e.to_string());
                    clean(format!("{words} (SQLite code {})", e.extended_code))
                })
            }
            _ => None,
        }
    }
}

fn sqlite_refuses(extended: i32) -> bool {
    matches!(
        extended,
        SQLITE_TOOBIG | SQLITE_MISMATCH | SQLITE_CONSTRAINT_CHECK | SQLITE_CONSTRAINT_TRIGGER
    )
}

fn parse_key(k: &str) -> Result<TicketKey, StoreError> {
    k.parse::<TicketKey>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The loop guard's look-back: (sender, time) of the channel's recorded messages whose Date (or,
/// without one, arrival time) is strictly between `from` and `to`. Two ranges on the
/// `ledger_sender (channel, sender, sent_at)` index — dated messages, then the undated ones — so
/// the cost is the rows in the window, not every message the sender ever sent (a
/// `COALESCE(sent_at, received_at)` range cannot use the index and read them all, every batch).
/// (No row is `pending` since ledger rows are written once, with their outcome, at the end of
/// the batch; the filter is kept as a guard.) The arguments are each backend's placeholders;
/// `sender` is the whole condition on the column (`sender = ?2`, `sender IN ($4, …)`).
fn recent_sql(channel: &str, sender: &str, from: &str, to: &str) -> String {
    format!(
        "SELECT sender, sent_at AS t FROM message_ledger
         WHERE channel = {channel} AND {sender} AND sent_at > {from} AND sent_at < {to}
           AND outcome <> 'pending'
         UNION ALL
         SELECT sender, received_at AS t FROM message_ledger
         WHERE channel = {channel} AND {sender} AND sent_at IS NULL
           AND received_at > {from} AND received_at < {to} AND outcome <> 'pending'"
    )
}

/// A ticket row read back for a batch that touches it.
pub(crate) struct TicketRow {
    id: i64,
    key: String,
    reporter: String,
    /// JSON array of addresses.
    participants: String,
}

/// A ledger row to insert: the message, its reserved id and its outcome.
pub(crate) struct LedgerOutcome<'a> {
    id: i64,
    inc: &'a Incoming,
    outcome: Outcome,
    raw_hash: Option<String>,
}

impl LedgerOutcome<'_> {
    /// (kind, ticket key, reason) as stored.
    fn columns(&self) -> (&'static str, Option<String>, Option<&str>) {
        match &self.outcome {
            Outcome::Created(k) | Outcome::Commented(k) => {
                (self.outcome.kind(), Some(k.to_string()), None)
            }
            Outcome::Ignored(r) | Outcome::Quarantined(r) => {
                (self.outcome.kind(), None, Some(r.as_str()))
            }
        }
    }
}

/// An attachment to insert: ticket id, comment id (if on a comment), the attachment.
type AttachmentRow<'a> = (i64, Option<i64>, &'a AttachmentDraft);

/// The statements of one batch transaction on one backend. Every method runs inside the
/// transaction the caller opened; nothing commits here.
pub(crate) trait Writer {
    /// Per message of `batch`: whether the ledger already holds it, by (channel, identity) or
    /// by (channel, Message-ID, content hash). Repeats inside `batch` are the caller's to find.
    async fn recorded(
        &mut self,
        channel: &str,
        batch: &[Incoming],
    ) -> Result<Vec<bool>, StoreError>;
    /// Reserve `n` new ledger row ids, ascending.
    async fn ledger_ids(&mut self, n: usize) -> Result<Vec<i64>, StoreError>;
    /// Insert the ledger rows with their outcomes, `ON CONFLICT DO NOTHING`, in order; returns
    /// how many were inserted (fewer than `rows.len()` when another writer recorded one first).
    async fn insert_ledger(
        &mut self,
        channel: &str,
        rows: &[LedgerOutcome<'_>],
        ts: i64,
    ) -> Result<u64, StoreError>;
    /// (sender, time) of the channel's recorded messages from `senders` strictly between `from`
    /// and `to`.
    async fn recent(
        &mut self,
        channel: &str,
        from: i64,
        to: i64,
        senders: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Lock the project's counter row for this transaction and read the next ticket number.
    async fn lock_counter(&mut self, project: &str) -> Result<Option<i64>, StoreError>;
    async fn set_counter(&mut self, project: &str, next: i64) -> Result<(), StoreError>;
    /// (Message-ID, ticket key) for ledger rows with these Message-IDs that are on a ticket.
    async fn threads(&mut self, refs: &[&str]) -> Result<Vec<(String, String)>, StoreError>;
    async fn tickets(&mut self, keys: &[String]) -> Result<Vec<TicketRow>, StoreError>;
    /// Insert new tickets; returns their ids in order.
    async fn insert_tickets(
        &mut self,
        channel: &str,
        project: &ProjectKey,
        tickets: &[NewTicket<'_>],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError>;
    async fn touch_ticket(
        &mut self,
        id: i64,
        participants: &str,
        ts: i64,
    ) -> Result<(), StoreError>;
    /// Insert comments (ticket id, comment); returns their ids in order.
    async fn insert_comments(
        &mut self,
        comments: &[(i64, &NewComment<'_>)],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError>;
    /// Store blobs with distinct hashes; a hash already stored is left alone.
    async fn put_blobs(&mut self, blobs: &[(&str, &[u8])]) -> Result<(), StoreError>;
    async fn insert_attachments(&mut self, rows: &[AttachmentRow<'_>]) -> Result<(), StoreError>;
    async fn upsert_customers(
        &mut self,
        customers: &HashMap<String, Option<String>>,
        ts: i64,
    ) -> Result<(), StoreError>;
    /// Record that ticket `.0` follows up ticket `.1` (a reply the reply policy did not let
    /// comment).
    async fn insert_links(&mut self, links: &[(i64, i64)], ts: i64) -> Result<(), StoreError>;
    /// How many outbox rows of `event` each recipient got since `since` (recipients with
    /// none may be left out).
    async fn outbox_counts(
        &mut self,
        event: &str,
        recipients: &[&str],
        since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Enqueue outbox rows (state `pending`, due at `ts`), in order.
    async fn insert_outbox(&mut self, rows: &[NewOutbox], ts: i64) -> Result<(), StoreError>;
    /// A retry of a quarantined message ([`crate::retry`]): mark the ledger row `id` as
    /// `retried` and move its identity and content hash aside (`…#retried:<id>`), so that the
    /// message can be claimed again in this transaction. False when `id` is not a quarantined
    /// row (nothing changed).
    async fn set_aside(&mut self, id: i64, ts: i64) -> Result<bool, StoreError>;
    /// The ticket the retried message went to, on the `retried` row `id`.
    async fn settle_retry(&mut self, id: i64, ticket_key: Option<&str>) -> Result<(), StoreError>;
}

impl Store {
    /// Apply a batch of messages for `channel` into `project` under `rules` (a
    /// [`BatchRules`], or a `&LoopGuard` / `&ChannelRules`), in one transaction. Returns one
    /// [`Applied`] per input, in order.
    ///
    /// **Poison isolation.** When the database refuses the batch because of the data itself
    /// ([`StoreError::refused_data`]: a value it cannot store, an index row over its limit, a
    /// check it fails), the batch is bisected: each half is applied in a transaction of its own,
    /// recursively, until the one message the database refuses is alone; that message is
    /// recorded as quarantined, with the database's words as the reason and its raw bytes kept
    /// (when the caller passed them), and everything else commits. Any other error (connection,
    /// lock, a closed store) fails the call, and nothing of the failing transaction committed.
    /// Halves that committed before a later half failed stay committed: re-applying the batch
    /// sees them as duplicates, so each message still has exactly one outcome.
    pub async fn apply_batch(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: impl Into<BatchRules>,
        batch: &[Incoming],
    ) -> Result<Vec<Applied>, StoreError> {
        self.apply_staged(channel, project, rules, batch, None)
            .await
    }

    /// Do the part of a batch's work that does not depend on the batches before it, ahead of
    /// its transaction, so that it overlaps their commits: store its blobs (committed at once),
    /// look its messages up in the ledger and reserve ledger ids for the new ones. Pass the
    /// result to [`Store::apply_staged`] with the same messages (in any order).
    ///
    /// Only PostgreSQL stages (`None` on SQLite, where one writer does everything in-process).
    /// Staging is an optimization: when it fails, the error is logged at `debug` and `None`
    /// comes back, and the batch's transaction does the work itself. A crash between staging
    /// and commit leaves blobs nothing refers to yet; the re-run's batch finds them stored. An
    /// empty batch has nothing to stage.
    pub async fn stage_batch<'a>(
        &self,
        channel: &str,
        batch: impl IntoIterator<Item = &'a Incoming>,
    ) -> Option<Staged> {
        let pg = self.pg.as_ref()?;
        let batch: Vec<&Incoming> = batch.into_iter().collect();
        if batch.is_empty() {
            return None;
        }
        match pg.stage(channel, &batch).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(channel, error = %e, "could not stage a batch; its transaction does that work");
                None
            }
        }
    }

    /// [`Store::apply_batch`], using what [`Store::stage_batch`] did for these messages in its
    /// first transaction.
    pub async fn apply_staged(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: impl Into<BatchRules>,
        batch: &[Incoming],
        staged: Option<Staged>,
    ) -> Result<Vec<Applied>, StoreError> {
        let rules = rules.into();
        self.apply_isolating(channel, project, &rules, batch, staged)
            .await
    }

    /// One transaction on whichever writer this store uses. Every writer is dispatched here and
    /// only here, so [`Store::apply_batch`]'s poison isolation covers each of them.
    async fn apply_once(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: &BatchRules,
        batch: &[Incoming],
        mut staged: Option<Staged>,
    ) -> Result<Vec<Applied>, StoreError> {
        // A race lost to another writer rolled everything back; the next attempt sees that
        // writer's rows as duplicates. More than a few in a row would be a bug, not a race.
        // Only the first attempt uses the staged work (a lost race made its look-up stale).
        let mut attempt = 0;
        loop {
            match self
                .apply_one_transaction(channel, project, rules, batch, staged.take())
                .await
            {
                Err(StoreError::Raced) if attempt < 3 => {
                    attempt += 1;
                    tracing::debug!(
                        channel,
                        attempt,
                        "batch raced another writer; applying it again"
                    );
                }
                other => return other,
            }
        }
    }

    async fn apply_one_transaction(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: &BatchRules,
        batch: &[Incoming],
        staged: Option<Staged>,
    ) -> Result<Vec<Applied>, StoreError> {
        if let Some(native) = &self.native {
            return native.apply(channel, project, rules, batch);
        }
        if let Some(pg) = &self.pg {
            return pg.apply(channel, project, rules, batch, staged).await;
        }
        let mut tx = self.begin_write().await?;
        let out = apply_with(&mut tx, channel, project, rules, batch).await?;
        tx.commit().await?;
        Ok(out)
    }

    fn apply_isolating<'a>(
        &'a self,
        channel: &'a str,
        project: &'a ProjectKey,
        rules: &'a BatchRules,
        batch: &'a [Incoming],
        staged: Option<Staged>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Applied>, StoreError>> + Send + 'a>> {
        Box::pin(async move {
            let err = match self
                .apply_once(channel, project, rules, batch, staged)
                .await
            {
                Ok(out) => return Ok(out),
                Err(e) => e,
            };
            let Some(words) = err.refused_data() else {
                return Err(err);
            };
            if batch.is_empty() {
                return Err(err);
            }
            if let [one] = batch {
                return self
                    .quarantine_refused(channel, project, rules, one, &words)
                    .await
                    .map_err(|_| err);
            }
            tracing::warn!(
                channel,
                messages = batch.len(),
                reason = %words,
                "the database refused a batch; applying it in halves to isolate the message"
            );
            let mid = batch.len() / 2;
            let mut out = self
                .apply_isolating(channel, project, rules, &batch[..mid], None)
                .await?;
            out.extend(
                self.apply_isolating(channel, project, rules, &batch[mid..], None)
                    .await?,
            );
            Ok(out)
        })
    }

    /// Record `inc` as quarantined because the database refused it. The envelope is kept when
    /// the database takes it; if the envelope itself is what it refuses (an over-long sender or
    /// Message-ID from a caller that did not sanitize), they are left out of the ledger row.
    async fn quarantine_refused(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: &BatchRules,
        inc: &Incoming,
        words: &str,
    ) -> Result<Vec<Applied>, StoreError> {
        tracing::warn!(
            channel,
            identity = %inc.identity,
            reason = %words,
            "the database refused a message; it is quarantined"
        );
        let mut q = Incoming {
            identity: inc.identity.clone(),
            prepared: Prepared {
                envelope: inc.prepared.envelope.clone(),
                kind: PreparedKind::Quarantined(QuarantineReason::Refused(match inc.raw {
                    Some(_) => words.to_string(),
                    None => format!(
                        "{words}; the raw message ({} bytes) was not kept",
                        inc.prepared.envelope.size
                    ),
                })),
            },
            raw: inc.raw.clone(),
            received_at: inc.received_at,
        };
        match self
            .apply_once(channel, project, rules, std::slice::from_ref(&q), None)
            .await
        {
            Err(e) if e.refused_data().is_some() => {
                q.prepared.envelope.message_id = None;
                q.prepared.envelope.sender = None;
                self.apply_once(channel, project, rules, std::slice::from_ref(&q), None)
                    .await
            }
            r => r,
        }
    }

    /// Whether the channel's ledger holds any message yet. A first import skips the
    /// [`Store::known_identities`] pre-check, which could only come back empty.
    pub async fn has_messages(&self, channel: &str) -> Result<bool, StoreError> {
        let sql = any::sql_for_sqlite(
            self.backend() == crate::Backend::Sqlite,
            "SELECT COUNT(*) FROM (SELECT 1 FROM message_ledger WHERE channel = $1 LIMIT 1) AS one"
                .to_string(),
        );
        let n: i64 = sqlx::query_scalar(sql)
            .bind(channel)
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }

    /// Which of these identities the channel's ledger already holds (a fast pre-check so a
    /// re-run does not re-parse everything; correctness comes from the claim in
    /// [`Store::apply_batch`]).
    pub async fn known_identities(
        &self,
        channel: &str,
        identities: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut known = HashSet::new();
        for chunk in identities.chunks(any::rows_per_statement(1)) {
            let sql = format!(
                "SELECT identity FROM message_ledger WHERE channel = $1 AND identity IN {}",
                any::placeholders(1, chunk.len(), 1)
            );
            let sql = any::sql_for_sqlite(self.backend() == crate::Backend::Sqlite, sql);
            let mut q = sqlx::query_scalar::<_, String>(sql).bind(channel);
            for id in chunk {
                q = q.bind(id);
            }
            known.extend(q.fetch_all(self.pool()).await?);
        }
        Ok(known)
    }
}

/// The highest ledger id ever used on SQLite (`Writer::ledger_ids`): new ids go above it. Run
/// under the write lock the batch transaction holds; an AUTOINCREMENT table never reuses an id.
pub(crate) const SQLITE_LAST_LEDGER_ID_SQL: &str =
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'message_ledger'), 0),
                COALESCE((SELECT MAX(id) FROM message_ledger), 0))";

/// The statement of [`Writer::set_aside`], with `$1` = the row id and `$2` = the time.
pub(crate) const SET_ASIDE_SQL: &str = "UPDATE message_ledger SET outcome = 'retried',
     identity = identity || '#retried:' || CAST(id AS TEXT),
     content_hash = content_hash || '#retried:' || CAST(id AS TEXT), processed_at = $2
     WHERE id = $1 AND outcome = 'quarantined'";

/// The statement of [`Writer::settle_retry`], with `$1` = the row id and `$2` = the key.
pub(crate) const SETTLE_RETRY_SQL: &str =
    "UPDATE message_ledger SET ticket_key = $2 WHERE id = $1 AND outcome = 'retried'";

/// Retry the quarantined ledger row `id` with `inc` (its raw message prepared again), inside
/// the caller's transaction: the row is set aside ([`Writer::set_aside`]), `inc` is claimed
/// and applied exactly as a batch of one ([`apply_with`]), and the ticket it went to is noted
/// on the set-aside row. `None` when `id` is not quarantined.
pub(crate) async fn retry_with<W: Writer>(
    w: &mut W,
    channel: &str,
    project: &ProjectKey,
    rules: &BatchRules,
    id: i64,
    inc: &Incoming,
) -> Result<Option<Applied>, StoreError> {
    if !w.set_aside(id, now()).await? {
        return Ok(None);
    }
    let applied = apply_with(w, channel, project, rules, std::slice::from_ref(inc))
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a batch of one applied nothing".into()))?;
    if let Applied::Recorded(Outcome::Created(k) | Outcome::Commented(k)) = &applied {
        w.settle_retry(id, Some(&k.to_string())).await?;
    }
    Ok(Some(applied))
}

/// Step 1 of the engine: per message, its reserved ledger id, or `None` for a duplicate —
/// already in the ledger, or a repeat of an earlier message of `batch` by identity or by
/// (Message-ID, content hash), as the ledger's unique keys would have it (a message without a
/// Message-ID repeats only by identity).
async fn claim<W: Writer>(
    w: &mut W,
    channel: &str,
    batch: &[Incoming],
) -> Result<Vec<Option<i64>>, StoreError> {
    let recorded = w.recorded(channel, batch).await?;
    let mut identities: HashSet<&str> = HashSet::with_capacity(batch.len());
    let mut ids_and_hashes: HashSet<(&str, &str)> = HashSet::with_capacity(batch.len());
    let fresh: Vec<bool> = batch
        .iter()
        .zip(recorded)
        .map(|(inc, recorded)| {
            let env = &inc.prepared.envelope;
            let key = env
                .message_id
                .as_deref()
                .map(|m| (m, env.content_hash.as_str()));
            let repeat = identities.contains(inc.identity.as_str())
                || key.is_some_and(|k| ids_and_hashes.contains(&k));
            if recorded || repeat {
                return false;
            }
            identities.insert(&inc.identity);
            ids_and_hashes.extend(key);
            true
        })
        .collect();
    let mut ids = w
        .ledger_ids(fresh.iter().filter(|f| **f).count())
        .await?
        .into_iter();
    Ok(fresh
        .into_iter()
        .map(|f| if f { ids.next() } else { None })
        .collect())
}

/// Claim, decide and write one batch through `w` (inside the caller's transaction).
pub(crate) async fn apply_with<W: Writer>(
    w: &mut W,
    channel: &str,
    project: &ProjectKey,
    rules: &BatchRules,
    batch: &[Incoming],
) -> Result<Vec<Applied>, StoreError> {
    let guard = &rules.loop_guard;
    let ts = now();
    // Lock the project's counter row for this transaction (both backends); new tickets are
    // numbered in memory and the counter is written back once. Taken before the claim, so
    // that on PostgreSQL a concurrent batch of the same project has committed before this
    // one looks its messages up.
    let first = w.lock_counter(project.as_str()).await?;
    let mut next = first.ok_or_else(|| StoreError::NoProject(project.to_string()))?;
    let claims = claim(w, channel, batch).await?;
    let mut loops = load_loop_state(w, channel, guard, batch, &claims).await?;
    let mut plan = Plan::default();
    lookup_targets(w, project, batch, &claims, &mut plan).await?;

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
                    plan.mail(
                        project,
                        rules.reply_policy,
                        &rules.outbox.own,
                        &mut next,
                        ledger_id,
                        env.message_id.as_ref(),
                        d,
                    )?
                }
            }
        };
        // The HTML of a ticket or comment is kept with its effect (see crate::original for
        // what and for how long); it was built and hashed while the message was prepared.
        if let (Outcome::Created(_) | Outcome::Commented(_), PreparedKind::Mail(d)) =
            (&outcome, &inc.prepared.kind)
            && let Some(h) = &d.html
        {
            blobs.push((&h.hash, &h.data));
            raw_hash = Some(h.hash.clone());
        }
        outcomes.push(LedgerOutcome {
            id: ledger_id,
            inc,
            outcome: outcome.clone(),
            raw_hash,
        });
        out.push(Applied::Recorded(outcome));
    }

    let ticket_ids = w
        .insert_tickets(channel, project, &plan.new_tickets, ts)
        .await?;
    let id_of = |t: Target| match t {
        Target::Existing(i) => plan.existing[i].id,
        Target::New(i) => ticket_ids[i],
    };
    for e in plan.existing.iter().filter(|e| e.touched) {
        w.touch_ticket(e.id, &json_list(&e.participants), ts)
            .await?;
    }
    let links: Vec<(i64, i64)> = plan
        .new_tickets
        .iter()
        .zip(&ticket_ids)
        .filter_map(|(n, id)| n.follows.map(|t| (*id, id_of(t))))
        .collect();
    w.insert_links(&links, ts).await?;
    let comments: Vec<(i64, &NewComment<'_>)> =
        plan.comments.iter().map(|c| (id_of(c.target), c)).collect();
    let comment_ids = w.insert_comments(&comments, ts).await?;
    let mut attachments: Vec<AttachmentRow<'_>> = Vec::new();
    for (n, id) in plan.new_tickets.iter().zip(&ticket_ids) {
        attachments.extend(n.draft.attachments.iter().map(|a| (*id, None, a)));
    }
    for ((ticket, c), cid) in comments.iter().zip(&comment_ids) {
        attachments.extend(c.draft.attachments.iter().map(|a| (*ticket, Some(*cid), a)));
    }
    blobs.extend(
        attachments
            .iter()
            .map(|(_, _, a)| (a.hash.as_str(), a.data.as_slice())),
    );
    let mut seen = HashSet::new();
    blobs.retain(|(h, _)| seen.insert(*h));
    w.put_blobs(&blobs).await?;
    w.insert_attachments(&attachments).await?;
    w.set_counter(project.as_str(), next).await?;
    w.upsert_customers(&plan.customers, ts).await?;
    let inserted = w.insert_ledger(channel, &outcomes, ts).await?;
    if inserted != outcomes.len() as u64 {
        return Err(StoreError::Raced);
    }
    let rows = outbox_rows(
        w,
        channel,
        project,
        &rules.outbox,
        &plan,
        &ticket_ids,
        &comments,
        &comment_ids,
        &outcomes,
        ts,
    )
    .await?;
    w.insert_outbox(&rows, ts).await?;
    Ok(out)
}

fn attachment_json(list: &[AttachmentDraft]) -> serde_json::Value {
    list.iter()
        .map(|a| {
            serde_json::json!({
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.data.len(),
                "hash": a.hash,
                "inline": a.inline,
            })
        })
        .collect()
}

/// The outbox rows a batch causes, in the order they must be delivered per ticket: every
/// ticket's `ticket.created` (and acknowledgement) before any comment's `comment.added`.
#[allow(clippy::too_many_arguments)]
async fn outbox_rows<W: Writer>(
    w: &mut W,
    channel: &str,
    project: &ProjectKey,
    rules: &OutboxRules,
    plan: &Plan<'_>,
    ticket_ids: &[i64],
    comments: &[(i64, &NewComment<'_>)],
    comment_ids: &[i64],
    outcomes: &[LedgerOutcome<'_>],
    ts: i64,
) -> Result<Vec<NewOutbox>, StoreError> {
    let mut rows = Vec::new();
    if rules.sinks.is_empty() && rules.acknowledge.is_none() {
        return Ok(rows);
    }
    let sink_rows = |rows: &mut Vec<NewOutbox>,
                     event: &str,
                     key: Option<&str>,
                     id: String,
                     body: &serde_json::Value| {
        for s in rules.sinks.iter().filter(|s| s.takes(event)) {
            rows.push(NewOutbox {
                kind: s.kind,
                target: s.name.clone(),
                ticket_key: key.map(str::to_string),
                event: event.to_string(),
                identity: format!("intake:{}:{event}:{id}", s.name),
                message_id: None,
                recipient: None,
                payload: body.to_string(),
            });
        }
    };
    // Acknowledgements: how many each reporter already got in the last hour.
    let mut acked: HashMap<String, i64> = HashMap::new();
    if let Some(a) = &rules.acknowledge {
        let mut who: Vec<&str> = plan
            .new_tickets
            .iter()
            .map(|n| n.draft.reporter.as_str())
            .collect();
        who.sort_unstable();
        who.dedup();
        if !who.is_empty() && a.max_per_hour > 0 {
            acked.extend(w.outbox_counts("ack", &who, ts - 3600).await?);
        }
    }
    for (n, id) in plan.new_tickets.iter().zip(ticket_ids) {
        let d = n.draft;
        let body = serde_json::json!({
            "event": "ticket.created",
            "key": n.key,
            "project": project.as_str(),
            "ticket": {
                "key": n.key,
                "id": id,
                "summary": d.summary,
                "description": d.description,
                "reporter": d.reporter,
                "reporter_name": d.reporter_name,
                "participants": n.participants,
                "channel": channel,
                "created_at": ts,
                "attachments": attachment_json(&d.attachments),
            },
        });
        sink_rows(
            &mut rows,
            "ticket.created",
            Some(&n.key),
            n.key.clone(),
            &body,
        );
        let Some(a) = &rules.acknowledge else {
            continue;
        };
        if is_own(&rules.own, &d.reporter) {
            continue;
        }
        let count = acked.entry(d.reporter.clone()).or_default();
        if *count >= i64::from(a.max_per_hour) {
            tracing::info!(ticket = %n.key, "acknowledgement not sent: the reporter's hourly limit is reached");
            continue;
        }
        *count += 1;
        let message_id = new_message_id("ack", &n.key, &a.domain);
        // References oldest first, ending with the message being answered.
        let mut references: Vec<String> = d.references.iter().rev().cloned().collect();
        if let Some(m) = n.message_id {
            references.push(m.clone());
        }
        let payload = serde_json::json!({
            "from": a.from,
            "to": [d.reporter],
            "cc": [],
            "subject": render(&a.subject, &n.key, &d.summary, &d.reporter, project.as_str()),
            "body": render(&a.body, &n.key, &d.summary, &d.reporter, project.as_str()),
            "message_id": message_id,
            "in_reply_to": n.message_id,
            "references": references,
            "auto_submitted": true,
        });
        rows.push(NewOutbox {
            kind: OutboxKind::Mail,
            target: a.channel.clone(),
            ticket_key: Some(n.key.clone()),
            event: "ack".into(),
            identity: message_id.clone(),
            message_id: Some(message_id),
            recipient: Some(d.reporter.clone()),
            payload: payload.to_string(),
        });
    }
    for ((ticket, c), cid) in comments.iter().zip(comment_ids) {
        let key = plan.key_of(c.target);
        let body = serde_json::json!({
            "event": "comment.added",
            "key": key,
            "project": project.as_str(),
            "comment": {
                "id": cid,
                "ticket_id": ticket,
                "author": c.draft.reporter,
                "body": c.draft.reply_text,
                "created_at": ts,
                "attachments": attachment_json(&c.draft.attachments),
            },
        });
        sink_rows(
            &mut rows,
            "comment.added",
            Some(key),
            cid.to_string(),
            &body,
        );
    }
    for o in outcomes {
        if let Outcome::Quarantined(reason) = &o.outcome {
            let body = serde_json::json!({
                "event": "ticket.quarantined",
                "key": null,
                "project": project.as_str(),
                "channel": channel,
                "ledger_id": o.id,
                "reason": reason,
            });
            sink_rows(
                &mut rows,
                "ticket.quarantined",
                None,
                o.id.to_string(),
                &body,
            );
        }
    }
    Ok(rows)
}

async fn load_loop_state<W: Writer>(
    w: &mut W,
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
            senders.push(&d.reporter);
        }
    }
    senders.sort_unstable();
    senders.dedup();
    if senders.is_empty() {
        return Ok(state);
    }
    let from = lo.saturating_sub(guard.window_seconds);
    let to = hi.saturating_add(guard.window_seconds);
    for (sender, t) in w.recent(channel, from, to, &senders).await? {
        state.seen.entry(sender).or_default().push(t);
    }
    Ok(state)
}

/// One lookup for every Message-ID referenced and every ticket key named in the batch, both
/// scoped to `project`: a key of another project in a subject, or a Message-ID that is on
/// another project's ticket, never makes a comment there.
async fn lookup_targets<'b, W: Writer>(
    w: &mut W,
    project: &ProjectKey,
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
        keys.extend(
            d.subject_keys
                .iter()
                .filter(|k| k.project == *project)
                .map(|k| k.to_string()),
        );
    }
    let own = |key: &str| {
        key.rsplit_once('-')
            .is_some_and(|(p, _)| p == project.as_str())
    };
    refs.sort_unstable();
    refs.dedup();
    if !refs.is_empty() {
        for (message_id, key) in w.threads(&refs).await? {
            if own(&key) {
                keys.push(key.clone());
                plan.db_threads.insert(message_id, key);
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    for r in w.tickets(&keys).await? {
        if !own(&r.key) {
            continue;
        }
        let participants = serde_json::from_str(&r.participants)
            .map_err(|e| StoreError::Corrupt(format!("participants of {}: {e}", r.key)))?;
        plan.existing_by_key
            .insert(r.key.clone(), plan.existing.len());
        plan.existing.push(Existing {
            id: r.id,
            key: r.key,
            reporter: r.reporter,
            participants,
            touched: false,
        });
    }
    Ok(())
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}
