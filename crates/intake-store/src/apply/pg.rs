//! The batch statements on sqlx's native PostgreSQL driver, for PostgreSQL databases.
//!
//! What this is for: PostgreSQL is the database several nodes share, and through sqlx's `Any`
//! driver it ingested at a fifth of SQLite's rate. The cost was not PostgreSQL's work but the
//! way statements reached it: multi-row `VALUES` lists of at most 900 parameters, so a
//! 500-message batch was dozens of statements, each with a text that depended on its row count
//! (parsed and planned anew, and cached per text), every argument converted to `Any` values
//! and copied again, and one round trip per existing ticket a batch comments on.
//!
//! Here every step of [`apply_with`] is **one statement per batch with a fixed text**: the rows
//! go as one array parameter per column, `INSERT … SELECT … FROM UNNEST($1::text[], …)`
//! (`UPDATE … FROM UNNEST(…)`, `… = ANY($1)`), so
//! - a batch costs one round trip per step (about a dozen), whatever its size;
//! - each statement is parsed and planned once per connection and then run as a prepared
//!   statement (sqlx's per-connection statement cache);
//! - arguments are encoded once, in PostgreSQL's binary format, straight from the batch.
//!
//! Ticket, comment and ledger ids come back in the `RETURNING` of the statement that inserts
//! them (no extra round trip). Updates of existing tickets a batch touches (participants,
//! `updated_at`) are collected and written by one statement just before commit
//! ([`PgBatch::flush`]); nothing in the batch reads them back in between.
//!
//! Rows that other nodes may lock too (customers, touched tickets) are written in key order, so
//! two nodes committing overlapping batches wait for each other instead of deadlocking. The
//! claim keeps the engine's semantics: a claim row another node inserted but has not committed
//! blocks this statement until that node commits (then it is a conflict: a duplicate) or rolls
//! back (then this node owns it).
//!
//! [`PgWriter::stage`] runs the batch's blob insert, ledger look-up and `nextval` on a
//! connection of its own, outside any transaction, before the batch's turn; [`PgBatch`] then
//! answers `recorded` and `ledger_ids` from it and leaves the staged blobs out of `put_blobs`.
//!
//! The writer's connections set `default_toast_compression = lz4` (where the server has lz4):
//! pglz, the default, compressing ticket descriptions and blobs was more than half of the
//! server's CPU in an ingest.
//!
//! The measured choice between this, `COPY` into a staging table and the old `Any` statements
//! is in docs/decisions.md; the ingest numbers in docs/BENCHMARKS.md.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use intake_core::ProjectKey;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use sqlx::{Row, Transaction};

use super::{
    Applied, AttachmentRow, BatchRules, Incoming, LedgerOutcome, NewComment, NewTicket, Staged,
    TicketRow, Writer, apply_with,
};
use crate::StoreError;

/// Session settings of the writer's connections: `synchronous_commit` back to `on` where the
/// server defaults to `off` (a batch commit must be flushed before Intake deletes or moves the
/// message on the mail server; the store's other connections do the same and warn, see
/// `synchronous_commit_on` in lib.rs), and lz4 TOAST compression where the server supports it.
const SESSION: &str = "DO $$ BEGIN
    IF current_setting('synchronous_commit') = 'off' THEN
        PERFORM set_config('synchronous_commit', 'on', false);
    END IF;
    BEGIN
        PERFORM set_config('default_toast_compression', 'lz4', false);
    EXCEPTION WHEN invalid_parameter_value THEN NULL;
    END;
END $$";

/// Bytes of blob data per `INSERT INTO blobs` statement (a bound on one protocol message).
const BLOB_BYTES_PER_STATEMENT: usize = 32 << 20;

/// The PostgreSQL batch writer shared by all clones of one [`Store`](crate::Store): its own
/// small pool of native connections, next to the `Any` pool that serves every read, and a
/// smaller one for staging, so that staging never makes a batch transaction wait for a
/// connection.
#[derive(Debug, Clone)]
pub(crate) struct PgWriter {
    pool: PgPool,
    stage_pool: PgPool,
}

impl PgWriter {
    /// The pools on the same server and database as the store's `url` (connections are opened
    /// when batches need them).
    pub(crate) fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = |max: u32, wait: u64, opts: PgConnectOptions| {
            PgPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(wait))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Durable commits; TOAST compression of the values this connection
                        // writes (ticket descriptions, comment bodies, blobs) with lz4 instead
                        // of the default pglz, which was more than half of the server's CPU in
                        // an ingest. Best effort: a server built without lz4 keeps pglz.
                        sqlx::raw_sql(SESSION).execute(conn).await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(opts)
        };
        Ok(Self {
            pool: pool(4, 30, opts.clone()),
            // Staging is optional: rather than wait long for a connection, the batch's own
            // transaction does the work.
            stage_pool: pool(2, 5, opts),
        })
    }

    /// Apply one batch in one transaction (see [`apply_with`]).
    pub(crate) async fn apply(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: &BatchRules,
        batch: &[Incoming],
        staged: Option<Staged>,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut b = PgBatch {
            tx: self.pool.begin().await?,
            touched: Vec::new(),
            staged,
        };
        let out = apply_with(&mut b, channel, project, rules, batch).await?;
        b.flush().await?;
        b.tx.commit().await?;
        Ok(out)
    }

    /// [`super::retry_with`] in one transaction.
    pub(crate) async fn retry(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: &BatchRules,
        id: i64,
        inc: &Incoming,
    ) -> Result<Option<Applied>, StoreError> {
        let mut b = PgBatch {
            tx: self.pool.begin().await?,
            touched: Vec::new(),
            staged: None,
        };
        let out = super::retry_with(&mut b, channel, project, rules, id, inc).await?;
        b.flush().await?;
        b.tx.commit().await?;
        Ok(out)
    }

    /// [`crate::Store::stage_batch`]: on a connection of its own, outside any batch
    /// transaction, store the batch's blobs (each statement commits), look its messages up in
    /// the ledger and reserve ids for those it does not hold.
    pub(crate) async fn stage(
        &self,
        channel: &str,
        batch: &[&Incoming],
    ) -> Result<Staged, StoreError> {
        let mut conn = self.stage_pool.acquire().await?;
        let blobs = super::stageable_blobs(batch.iter().copied());
        insert_blobs(&mut conn, &blobs).await?;
        let known = recorded(&mut conn, channel, batch).await?;
        let fresh = known.iter().filter(|k| !**k).count();
        let ids = ledger_ids(&mut conn, fresh).await?;
        Ok(Staged {
            channel: channel.to_string(),
            recorded: batch
                .iter()
                .zip(known)
                .map(|(inc, k)| (inc.identity.clone(), k))
                .collect(),
            ids,
            blobs: blobs.iter().map(|b| b.0.to_string()).collect(),
        })
    }

    pub(crate) async fn close(&self) {
        self.stage_pool.close().await;
        self.pool.close().await;
    }
}

/// One batch transaction, with the ticket updates it defers to the end.
pub(crate) struct PgBatch<'c> {
    tx: Transaction<'c, Postgres>,
    /// (ticket id, participants JSON, updated_at) of existing tickets this batch touched.
    touched: Vec<(i64, String, i64)>,
    /// What [`PgWriter::stage`] did for the batch already.
    staged: Option<Staged>,
}

impl PgBatch<'_> {
    /// Write the deferred ticket updates (one statement, in id order).
    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.touched.is_empty() {
            return Ok(());
        }
        self.touched.sort_unstable_by_key(|t| t.0);
        let ids: Vec<i64> = self.touched.iter().map(|t| t.0).collect();
        let participants: Vec<&str> = self.touched.iter().map(|t| t.1.as_str()).collect();
        let ts: Vec<i64> = self.touched.iter().map(|t| t.2).collect();
        sqlx::query(
            "UPDATE tickets SET updated_at = v.ts, participants = v.participants
             FROM UNNEST($1::int8[], $2::text[], $3::int8[]) AS v(id, participants, ts)
             WHERE tickets.id = v.id",
        )
        .bind(&ids)
        .bind(&participants)
        .bind(&ts)
        .execute(&mut *self.tx)
        .await?;
        self.touched.clear();
        Ok(())
    }
}

impl Writer for PgBatch<'_> {
    async fn recorded(
        &mut self,
        channel: &str,
        batch: &[Incoming],
    ) -> Result<Vec<bool>, StoreError> {
        if let Some(known) = self
            .staged
            .as_ref()
            .and_then(|s| s.recorded(channel, batch))
        {
            return Ok(known);
        }
        let batch: Vec<&Incoming> = batch.iter().collect();
        recorded(&mut self.tx, channel, &batch).await
    }

    async fn ledger_ids(&mut self, n: usize) -> Result<Vec<i64>, StoreError> {
        if let Some(ids) = self.staged.as_mut().and_then(|s| s.take_ids(n)) {
            return Ok(ids);
        }
        ledger_ids(&mut self.tx, n).await
    }

    async fn insert_ledger(
        &mut self,
        channel: &str,
        rows: &[LedgerOutcome<'_>],
        ts: i64,
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let mut id = Vec::with_capacity(n);
        let mut identity = Vec::with_capacity(n);
        let mut message_id = Vec::with_capacity(n);
        let mut hash = Vec::with_capacity(n);
        let mut sender = Vec::with_capacity(n);
        let mut sent_at = Vec::with_capacity(n);
        let mut kind = Vec::with_capacity(n);
        let mut key = Vec::with_capacity(n);
        let mut reason = Vec::with_capacity(n);
        let mut raw_hash = Vec::with_capacity(n);
        let mut received_at = Vec::with_capacity(n);
        for o in rows {
            let env = &o.inc.prepared.envelope;
            let (k, t, r) = o.columns();
            id.push(o.id);
            identity.push(o.inc.identity.as_str());
            message_id.push(env.message_id.as_deref());
            hash.push(env.content_hash.as_str());
            sender.push(env.sender.as_deref());
            sent_at.push(env.sent_at);
            kind.push(k);
            key.push(t);
            reason.push(r);
            raw_hash.push(o.raw_hash.as_deref());
            received_at.push(o.inc.received_at);
        }
        // `ORDER BY ord` keeps the batch's order, so rows meet other writers' rows in one
        // order (the ids ascend with it).
        let done = sqlx::query(
            "INSERT INTO message_ledger (id, channel, identity, message_id, content_hash, sender,
                 sent_at, outcome, ticket_key, reason, raw_hash, received_at, processed_at)
             SELECT v.id, $1, v.identity, v.message_id, v.content_hash, v.sender, v.sent_at,
                 v.outcome, v.ticket_key, v.reason, v.raw_hash, v.received_at, $2
             FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[],
                         $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[])
                 WITH ORDINALITY AS v(id, identity, message_id, content_hash, sender, sent_at,
                     outcome, ticket_key, reason, raw_hash, received_at, ord)
             ORDER BY v.ord
             ON CONFLICT DO NOTHING",
        )
        .bind(channel)
        .bind(ts)
        .bind(&id)
        .bind(&identity)
        .bind(&message_id)
        .bind(&hash)
        .bind(&sender)
        .bind(&sent_at)
        .bind(&kind)
        .bind(&key)
        .bind(&reason)
        .bind(&raw_hash)
        .bind(&received_at)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        Ok(done)
    }

    async fn recent(
        &mut self,
        channel: &str,
        from: i64,
        to: i64,
        senders: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = super::recent_sql("$1", "sender = ANY($4::text[])", "$2", "$3");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(channel)
            .bind(from)
            .bind(to)
            .bind(senders)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn lock_counter(&mut self, project: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT next_number FROM projects WHERE key = $1 FOR UPDATE")
                .bind(project)
                .fetch_optional(&mut *self.tx)
                .await?,
        )
    }

    async fn set_counter(&mut self, project: &str, next: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET next_number = $1 WHERE key = $2")
            .bind(next)
            .bind(project)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn threads(&mut self, refs: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT message_id, ticket_key FROM message_ledger
             WHERE ticket_key IS NOT NULL AND message_id = ANY($1::text[])
             UNION ALL
             SELECT message_id, ticket_key FROM outbox
             WHERE kind = 'mail' AND ticket_key IS NOT NULL AND message_id = ANY($1::text[])",
        )
        .bind(refs)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn tickets(&mut self, keys: &[String]) -> Result<Vec<TicketRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, key, reporter, participants FROM tickets WHERE key = ANY($1::text[])",
        )
        .bind(keys)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TicketRow {
                    id: r.try_get(0)?,
                    key: r.try_get(1)?,
                    reporter: r.try_get(2)?,
                    participants: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn insert_tickets(
        &mut self,
        channel: &str,
        project: &ProjectKey,
        tickets: &[NewTicket<'_>],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError> {
        if tickets.is_empty() {
            return Ok(Vec::new());
        }
        let n = tickets.len();
        let (mut number, mut key, mut summary, mut description, mut reporter, mut participants) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for t in tickets {
            number.push(t.number);
            key.push(t.key.as_str());
            summary.push(t.draft.summary.as_str());
            description.push(t.draft.description.as_str());
            reporter.push(t.draft.reporter.as_str());
            participants.push(super::json_list(&t.participants));
        }
        let rows = sqlx::query(
            "INSERT INTO tickets (project_key, number, key, summary, description, reporter,
                 participants, status, channel, created_at, updated_at)
             SELECT $1, v.number, v.key, v.summary, v.description, v.reporter, v.participants,
                 'open', $2, $3, $3
             FROM UNNEST($4::int8[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                 AS v(number, key, summary, description, reporter, participants)
             RETURNING id, number",
        )
        .bind(project.as_str())
        .bind(channel)
        .bind(ts)
        .bind(&number)
        .bind(&key)
        .bind(&summary)
        .bind(&description)
        .bind(&reporter)
        .bind(&participants)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut by_number: HashMap<i64, i64> = HashMap::with_capacity(rows.len());
        for row in rows {
            by_number.insert(row.try_get(1)?, row.try_get(0)?);
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

    async fn touch_ticket(
        &mut self,
        id: i64,
        participants: &str,
        ts: i64,
    ) -> Result<(), StoreError> {
        // Written by `flush` before commit, with the batch's other touches.
        self.touched.push((id, participants.to_string(), ts));
        Ok(())
    }

    async fn insert_comments(
        &mut self,
        comments: &[(i64, &NewComment<'_>)],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError> {
        if comments.is_empty() {
            return Ok(Vec::new());
        }
        let n = comments.len();
        let (mut ticket, mut author, mut body, mut ledger) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (t, c) in comments {
            ticket.push(*t);
            author.push(c.draft.reporter.as_str());
            body.push(c.draft.reply_text.as_str());
            ledger.push(c.ledger_id);
        }
        let rows = sqlx::query(
            "INSERT INTO comments (ticket_id, author, body, ledger_id, created_at)
             SELECT v.ticket_id, v.author, v.body, v.ledger_id, $1
             FROM UNNEST($2::int8[], $3::text[], $4::text[], $5::int8[])
                 WITH ORDINALITY AS v(ticket_id, author, body, ledger_id, ord)
             ORDER BY v.ord
             RETURNING id, ledger_id",
        )
        .bind(ts)
        .bind(&ticket)
        .bind(&author)
        .bind(&body)
        .bind(&ledger)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut by_ledger: HashMap<i64, i64> = HashMap::with_capacity(rows.len());
        for row in rows {
            by_ledger.insert(row.try_get(1)?, row.try_get(0)?);
        }
        comments
            .iter()
            .map(|(_, c)| {
                by_ledger
                    .get(&c.ledger_id)
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt("comment without id".into()))
            })
            .collect()
    }

    async fn put_blobs(&mut self, blobs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        match &self.staged {
            Some(staged) => {
                let rest: Vec<(&str, &[u8])> = blobs
                    .iter()
                    .filter(|b| !staged.blobs.contains(b.0))
                    .copied()
                    .collect();
                insert_blobs(&mut self.tx, &rest).await
            }
            None => insert_blobs(&mut self.tx, blobs).await,
        }
    }

    async fn insert_attachments(&mut self, rows: &[AttachmentRow<'_>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let (mut ticket, mut comment, mut filename, mut content_type) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut content_id, mut inline, mut size, mut hash) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (t, c, a) in rows {
            ticket.push(*t);
            comment.push(*c);
            filename.push(a.filename.as_str());
            content_type.push(a.content_type.as_str());
            content_id.push(a.content_id.as_deref());
            inline.push(i64::from(a.inline));
            size.push(a.data.len() as i64);
            hash.push(a.hash.as_str());
        }
        sqlx::query(
            "INSERT INTO attachments (ticket_id, comment_id, filename, content_type, content_id,
                 inline, size, blob_hash)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
                 $6::int8[], $7::int8[], $8::text[])",
        )
        .bind(&ticket)
        .bind(&comment)
        .bind(&filename)
        .bind(&content_type)
        .bind(&content_id)
        .bind(&inline)
        .bind(&size)
        .bind(&hash)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn upsert_customers(
        &mut self,
        customers: &HashMap<String, Option<String>>,
        ts: i64,
    ) -> Result<(), StoreError> {
        if customers.is_empty() {
            return Ok(());
        }
        // Key order: two nodes upserting the same customers lock them in the same order.
        let mut all: Vec<(&String, &Option<String>)> = customers.iter().collect();
        all.sort_unstable_by_key(|c| c.0);
        let address: Vec<&str> = all.iter().map(|c| c.0.as_str()).collect();
        let name: Vec<Option<&str>> = all.iter().map(|c| c.1.as_deref()).collect();
        sqlx::query(
            "INSERT INTO customers (address, display_name, first_seen, last_seen)
             SELECT v.address, v.display_name, $1, $1
             FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS v(address, display_name, ord)
             ORDER BY v.ord
             ON CONFLICT (address) DO UPDATE SET last_seen = excluded.last_seen,
                 display_name = COALESCE(excluded.display_name, customers.display_name)",
        )
        .bind(ts)
        .bind(&address)
        .bind(&name)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn insert_links(&mut self, links: &[(i64, i64)], ts: i64) -> Result<(), StoreError> {
        if links.is_empty() {
            return Ok(());
        }
        let ticket: Vec<i64> = links.iter().map(|l| l.0).collect();
        let related: Vec<i64> = links.iter().map(|l| l.1).collect();
        sqlx::query(
            "INSERT INTO ticket_links (ticket_id, related_id, relation, created_at)
             SELECT v.ticket_id, v.related_id, 'follows', $1
             FROM UNNEST($2::int8[], $3::int8[]) AS v(ticket_id, related_id)",
        )
        .bind(ts)
        .bind(&ticket)
        .bind(&related)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn outbox_counts(
        &mut self,
        event: &str,
        recipients: &[&str],
        since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT recipient, COUNT(*) FROM outbox
             WHERE recipient = ANY($1::text[]) AND event = $2 AND created_at > $3
             GROUP BY recipient",
        )
        .bind(recipients)
        .bind(event)
        .bind(since)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn insert_outbox(
        &mut self,
        rows: &[crate::outbox::NewOutbox],
        ts: i64,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let kind: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let target: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
        let key: Vec<Option<&str>> = rows.iter().map(|r| r.ticket_key.as_deref()).collect();
        let event: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
        let identity: Vec<&str> = rows.iter().map(|r| r.identity.as_str()).collect();
        let mid: Vec<Option<&str>> = rows.iter().map(|r| r.message_id.as_deref()).collect();
        let rcpt: Vec<Option<&str>> = rows.iter().map(|r| r.recipient.as_deref()).collect();
        let payload: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
        sqlx::query(
            "INSERT INTO outbox (kind, target, ticket_key, event, identity, message_id, recipient,
                 payload, state, attempts, next_at, created_at)
             SELECT v.kind, v.target, v.ticket_key, v.event, v.identity, v.message_id,
                 v.recipient, v.payload, 'pending', 0, $1, $1
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                 $8::text[], $9::text[]) WITH ORDINALITY
                 AS v(kind, target, ticket_key, event, identity, message_id, recipient, payload, n)
             ORDER BY v.n",
        )
        .bind(ts)
        .bind(&kind)
        .bind(&target)
        .bind(&key)
        .bind(&event)
        .bind(&identity)
        .bind(&mid)
        .bind(&rcpt)
        .bind(&payload)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn set_aside(&mut self, id: i64, ts: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(super::SET_ASIDE_SQL)
            .bind(id)
            .bind(ts)
            .execute(&mut *self.tx)
            .await?
            .rows_affected()
            == 1)
    }

    async fn settle_retry(&mut self, id: i64, ticket_key: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(super::SETTLE_RETRY_SQL)
            .bind(id)
            .bind(ticket_key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

/// [`Writer::recorded`] on `conn`.
async fn recorded(
    conn: &mut PgConnection,
    channel: &str,
    batch: &[&Incoming],
) -> Result<Vec<bool>, StoreError> {
    let n = batch.len();
    let (mut identity, mut message_id, mut hash) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for inc in batch {
        let env = &inc.prepared.envelope;
        identity.push(inc.identity.as_str());
        message_id.push(env.message_id.as_deref());
        hash.push(env.content_hash.as_str());
    }
    // Each branch is a look-up in one of the ledger's two unique indexes.
    let known: Vec<i64> = sqlx::query_scalar(
        "SELECT v.ord FROM UNNEST($2::text[], $3::text[], $4::text[]) WITH ORDINALITY
             AS v(identity, message_id, content_hash, ord)
         WHERE EXISTS (SELECT 1 FROM message_ledger l
                       WHERE l.channel = $1 AND l.identity = v.identity)
            OR EXISTS (SELECT 1 FROM message_ledger l
                       WHERE l.channel = $1 AND l.message_id = v.message_id
                         AND l.content_hash = v.content_hash)",
    )
    .bind(channel)
    .bind(&identity)
    .bind(&message_id)
    .bind(&hash)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = vec![false; n];
    for ord in known {
        if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = true;
        }
    }
    Ok(out)
}

/// [`Writer::ledger_ids`] on `conn`.
async fn ledger_ids(conn: &mut PgConnection, n: usize) -> Result<Vec<i64>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('message_ledger', 'id'))
         FROM generate_series(1, $1::int8)",
    )
    .bind(n as i64)
    .fetch_all(&mut *conn)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// [`Writer::put_blobs`] on `conn`: in the batch's transaction, or, when staging, outside any
/// (each statement commits).
async fn insert_blobs(conn: &mut PgConnection, blobs: &[(&str, &[u8])]) -> Result<(), StoreError> {
    let mut rest = blobs;
    while !rest.is_empty() {
        // At least one blob per statement, then as many as fit the byte budget.
        let mut end = 1;
        let mut bytes = rest[0].1.len();
        while end < rest.len() && bytes + rest[end].1.len() <= BLOB_BYTES_PER_STATEMENT {
            bytes += rest[end].1.len();
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        let hash: Vec<&str> = chunk.iter().map(|b| b.0).collect();
        let size: Vec<i64> = chunk.iter().map(|b| b.1.len() as i64).collect();
        let data: Vec<&[u8]> = chunk.iter().map(|b| b.1).collect();
        sqlx::query(
            "INSERT INTO blobs (hash, size, data)
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::bytea[])
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&hash)
        .bind(&size)
        .bind(&data)
        .execute(&mut *conn)
        .await?;
        rest = tail;
    }
    Ok(())
}
