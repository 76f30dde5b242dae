//! The batch statements on a dedicated rusqlite connection, for SQLite database files.
//!
//! SQLite runs in-process, so the multi-row statements that save round trips on PostgreSQL buy
//! nothing here; what costs is CPU on the single writer. Through sqlx's `Any` driver every text
//! argument was copied twice before SQLite copied it again, every 900-parameter chunk was a new
//! statement to compile, and the work hopped to sqlx's worker thread and back. This connection
//! keeps one cached single-row statement per step and binds in place.
//!
//! The connection is opened on the same file after sqlx has run the migrations, with the same
//! settings (WAL, `synchronous` per the store's `Durability`, `busy_timeout`), and used only for
//! [`Store::apply_batch`](crate::Store::apply_batch). Each batch is one `BEGIN IMMEDIATE`
//! transaction: it takes SQLite's write lock at the start rather than upgrading a read
//! transaction later, so a concurrent writer (another node's process, or the sqlx pool's own
//! connections) waits on `busy_timeout` instead of failing with SQLITE_BUSY.
//!
//! Checkpoints: a thread of its own, on a third connection, runs `PRAGMA wal_checkpoint(PASSIVE)`
//! after commits (requests coalesce while one runs). A passive checkpoint never blocks the
//! writer, so copying the WAL into the database file and its fsync overlap with the next
//! batches instead of landing on the writer (SQLite's automatic checkpoint runs inside the
//! committing call) or all at once when the store closes. The writer keeps SQLite's automatic
//! checkpoint as a backstop if the thread falls behind.
//!
//! Blocking: a batch takes tens of milliseconds of CPU. On a multi-threaded tokio runtime it
//! runs under `block_in_place`, so other tasks move to another worker meanwhile; on a
//! current-thread runtime (tests, `intake ingest`'s committer) it simply runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use intake_core::ProjectKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    Applied, AttachmentRow, BatchRules, Incoming, LedgerOutcome, NewComment, NewTicket, TicketRow,
    Writer, apply_with,
};
use crate::StoreError;

/// The SQLite batch writer shared by all clones of one [`Store`](crate::Store).
#[derive(Clone)]
pub(crate) struct NativeWriter {
    conn: Arc<Mutex<Option<Connection>>>,
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
}

/// The background checkpoint thread and the way to wake it.
struct Checkpointer {
    wake: SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let (wake, rx) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("intake-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { wake, thread })
    }
}

/// Checkpoint once per wake-up until the sender is dropped. Failures (another connection
/// checkpointing at the same moment) only delay the copy: the frames stay in the WAL, which is
/// as durable as the database file, and the next round or the last close copies them.
fn checkpoint_loop(conn: &Connection, wake: &Receiver<()>) {
    while wake.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "background WAL checkpoint did not run");
        }
    }
}

impl std::fmt::Debug for NativeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NativeWriter")
    }
}

impl NativeWriter {
    /// Open the writer on an existing, migrated SQLite file, with `synchronous` (`FULL` or
    /// `NORMAL`, from the store's [`Durability`](crate::Durability)).
    pub(crate) fn open(path: &Path, synchronous: &str) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // The same settings as the sqlx pool's connections (see `Store::connect`); WAL is a
        // property of the file and already on. The page cache is smaller (16 MiB, not 64): it
        // fills with the pages this connection writes, mostly mail bodies it never reads again,
        // and at 64 MiB it was a third of a 10,000-message import's peak RSS
        // (docs/decisions.md, "The batch writer's page cache").
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous={synchronous};
             PRAGMA cache_size=-16384;
             PRAGMA wal_autocheckpoint=8192;
             PRAGMA temp_store=MEMORY;
             PRAGMA foreign_keys=ON;"
        ))?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(Self {
            conn: Arc::new(Mutex::new(Some(conn))),
            checkpointer: Arc::new(Mutex::new(Some(Checkpointer::start(path)?))),
        })
    }

    /// Apply one batch in one transaction (see [`apply_with`]).
    pub(crate) fn apply(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: &BatchRules,
        batch: &[Incoming],
    ) -> Result<Vec<Applied>, StoreError> {
        let run = || {
            // A panic inside a batch rolled its transaction back when it unwound, so the
            // connection behind a poisoned lock is still usable.
            let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            let conn = slot.as_mut().ok_or(StoreError::Closed)?;
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Every `Writer` method of a rusqlite transaction is synchronous, so this future
            // never waits on anything outside this thread.
            let out =
                futures_executor::block_on(apply_with(&mut tx, channel, project, rules, batch))?;
            tx.commit()?;
            drop(slot);
            self.request_checkpoint();
            Ok(out)
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    /// [`super::retry_with`] in one `BEGIN IMMEDIATE` transaction on this connection.
    pub(crate) fn retry(
        &self,
        channel: &str,
        project: &ProjectKey,
        rules: &BatchRules,
        id: i64,
        inc: &Incoming,
    ) -> Result<Option<Applied>, StoreError> {
        let run = || {
            let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            let conn = slot.as_mut().ok_or(StoreError::Closed)?;
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = futures_executor::block_on(super::retry_with(
                &mut tx, channel, project, rules, id, inc,
            ))?;
            tx.commit()?;
            drop(slot);
            self.request_checkpoint();
            Ok(out)
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    /// The connection's `synchronous` setting, read back from SQLite.
    pub(crate) fn synchronous(&self) -> Result<i64, StoreError> {
        let slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = slot.as_ref().ok_or(StoreError::Closed)?;
        Ok(conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?)
    }

    /// Wake the checkpoint thread; a wake-up already pending covers this one too.
    fn request_checkpoint(&self) {
        let cp = self.checkpointer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cp) = cp.as_ref()
            && let Err(TrySendError::Disconnected(())) = cp.wake.try_send(())
        {
            tracing::debug!("checkpoint thread has stopped");
        }
    }

    /// Stop the checkpoint thread and close the connection (the last connection to close on
    /// the file checkpoints what is left of the WAL).
    pub(crate) fn close(&self) {
        let cp = self
            .checkpointer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(Checkpointer { wake, thread }) = cp {
            drop(wake);
            if thread.join().is_err() {
                tracing::warn!("the checkpoint thread panicked");
            }
        }
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(conn);
    }
}

impl Writer for rusqlite::Transaction<'_> {
    async fn recorded(
        &mut self,
        channel: &str,
        batch: &[Incoming],
    ) -> Result<Vec<bool>, StoreError> {
        let mut by_identity = self.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM message_ledger WHERE channel = ?1 AND identity = ?2)",
        )?;
        let mut by_message_id = self.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM message_ledger
                 WHERE channel = ?1 AND message_id = ?2 AND content_hash = ?3)",
        )?;
        let mut out = Vec::with_capacity(batch.len());
        for inc in batch {
            let env = &inc.prepared.envelope;
            let mut known: bool =
                by_identity.query_row(params![channel, inc.identity], |r| r.get(0))?;
            if !known && let Some(m) = &env.message_id {
                known =
                    by_message_id.query_row(params![channel, m, env.content_hash], |r| r.get(0))?;
            }
            out.push(known);
        }
        Ok(out)
    }

    async fn ledger_ids(&mut self, n: usize) -> Result<Vec<i64>, StoreError> {
        let base: i64 = self
            .prepare_cached(super::SQLITE_LAST_LEDGER_ID_SQL)?
            .query_row([], |r| r.get(0))?;
        Ok((1..=n as i64).map(|i| base + i).collect())
    }

    async fn insert_ledger(
        &mut self,
        channel: &str,
        rows: &[LedgerOutcome<'_>],
        ts: i64,
    ) -> Result<u64, StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO message_ledger (id, channel, identity, message_id, content_hash, sender,
                 sent_at, outcome, ticket_key, reason, raw_hash, received_at, processed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT DO NOTHING",
        )?;
        let mut inserted = 0;
        for o in rows {
            let env = &o.inc.prepared.envelope;
            let (kind, key, reason) = o.columns();
            inserted += st.execute(params![
                o.id,
                channel,
                o.inc.identity,
                env.message_id,
                env.content_hash,
                env.sender,
                env.sent_at,
                kind,
                key,
                reason,
                o.raw_hash,
                o.inc.received_at,
                ts
            ])? as u64;
        }
        Ok(inserted)
    }

    async fn recent(
        &mut self,
        channel: &str,
        from: i64,
        to: i64,
        senders: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut st = self.prepare_cached(&super::recent_sql("?1", "sender = ?2", "?3", "?4"))?;
        let mut out = Vec::new();
        for s in senders {
            let rows = st.query_map(params![channel, s, from, to], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            for r in rows {
                out.push(r?);
            }
        }
        Ok(out)
    }

    async fn lock_counter(&mut self, project: &str) -> Result<Option<i64>, StoreError> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        let mut st = self.prepare_cached("SELECT next_number FROM projects WHERE key = ?1")?;
        Ok(st.query_row([project], |r| r.get(0)).optional()?)
    }

    async fn set_counter(&mut self, project: &str, next: i64) -> Result<(), StoreError> {
        self.prepare_cached("UPDATE projects SET next_number = ?1 WHERE key = ?2")?
            .execute(params![next, project])?;
        Ok(())
    }

    async fn threads(&mut self, refs: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self.prepare_cached(
            "SELECT message_id, ticket_key FROM message_ledger
             WHERE message_id = ?1 AND ticket_key IS NOT NULL",
        )?;
        let mut out = Vec::new();
        for m in refs {
            for r in st.query_map([m], |r| Ok((r.get(0)?, r.get(1)?)))? {
                out.push(r?);
            }
        }
        // Intake's own mail (acknowledgements, replies): an answer to it threads back too.
        let mut st = self.prepare_cached(
            "SELECT message_id, ticket_key FROM outbox
             WHERE message_id = ?1 AND kind = 'mail' AND ticket_key IS NOT NULL",
        )?;
        for m in refs {
            for r in st.query_map([m], |r| Ok((r.get(0)?, r.get(1)?)))? {
                out.push(r?);
            }
        }
        Ok(out)
    }

    async fn tickets(&mut self, keys: &[String]) -> Result<Vec<TicketRow>, StoreError> {
        let mut st = self
            .prepare_cached("SELECT id, key, reporter, participants FROM tickets WHERE key = ?1")?;
        let mut out = Vec::new();
        for k in keys {
            let row = st
                .query_row([k], |r| {
                    Ok(TicketRow {
                        id: r.get(0)?,
                        key: r.get(1)?,
                        reporter: r.get(2)?,
                        participants: r.get(3)?,
                    })
                })
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    async fn insert_tickets(
        &mut self,
        channel: &str,
        project: &ProjectKey,
        tickets: &[NewTicket<'_>],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO tickets (project_key, number, key, summary, description, reporter,
                 participants, status, channel, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9, ?9)",
        )?;
        let mut ids = Vec::with_capacity(tickets.len());
        for t in tickets {
            st.execute(params![
                project.as_str(),
                t.number,
                t.key,
                t.draft.summary,
                t.draft.description,
                t.draft.reporter,
                super::json_list(&t.participants),
                channel,
                ts
            ])?;
            ids.push(self.last_insert_rowid());
        }
        Ok(ids)
    }

    async fn touch_ticket(
        &mut self,
        id: i64,
        participants: &str,
        ts: i64,
    ) -> Result<(), StoreError> {
        self.prepare_cached("UPDATE tickets SET updated_at = ?1, participants = ?2 WHERE id = ?3")?
            .execute(params![ts, participants, id])?;
        Ok(())
    }

    async fn insert_comments(
        &mut self,
        comments: &[(i64, &NewComment<'_>)],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO comments (ticket_id, author, body, ledger_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut ids = Vec::with_capacity(comments.len());
        for (ticket, c) in comments {
            st.execute(params![
                ticket,
                c.draft.reporter,
                c.draft.reply_text,
                c.ledger_id,
                ts
            ])?;
            ids.push(self.last_insert_rowid());
        }
        Ok(ids)
    }

    async fn put_blobs(&mut self, blobs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO blobs (hash, size, data) VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO NOTHING",
        )?;
        for (hash, data) in blobs {
            st.execute(params![hash, data.len() as i64, data])?;
        }
        Ok(())
    }

    async fn insert_attachments(&mut self, rows: &[AttachmentRow<'_>]) -> Result<(), StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO attachments (ticket_id, comment_id, filename, content_type, content_id,
                 inline, size, blob_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (ticket, comment, a) in rows {
            st.execute(params![
                ticket,
                comment,
                a.filename,
                a.content_type,
                a.content_id,
                i64::from(a.inline),
                a.data.len() as i64,
                a.hash
            ])?;
        }
        Ok(())
    }

    async fn upsert_customers(
        &mut self,
        customers: &HashMap<String, Option<String>>,
        ts: i64,
    ) -> Result<(), StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO customers (address, display_name, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (address) DO UPDATE SET last_seen = excluded.last_seen,
                 display_name = COALESCE(excluded.display_name, customers.display_name)",
        )?;
        for (address, name) in customers {
            st.execute(params![address, name, ts])?;
        }
        Ok(())
    }

    async fn insert_links(&mut self, links: &[(i64, i64)], ts: i64) -> Result<(), StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO ticket_links (ticket_id, related_id, relation, created_at)
             VALUES (?1, ?2, 'follows', ?3)",
        )?;
        for (ticket, related) in links {
            st.execute(params![ticket, related, ts])?;
        }
        Ok(())
    }

    async fn outbox_counts(
        &mut self,
        event: &str,
        recipients: &[&str],
        since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut st = self.prepare_cached(
            "SELECT COUNT(*) FROM outbox WHERE recipient = ?1 AND event = ?2 AND created_at > ?3",
        )?;
        let mut out = Vec::new();
        for r in recipients {
            let n: i64 = st.query_row(params![r, event, since], |r| r.get(0))?;
            out.push(((*r).to_string(), n));
        }
        Ok(out)
    }

    async fn insert_outbox(
        &mut self,
        rows: &[crate::outbox::NewOutbox],
        ts: i64,
    ) -> Result<(), StoreError> {
        let mut st = self.prepare_cached(
            "INSERT INTO outbox (kind, target, ticket_key, event, identity, message_id, recipient,
                 payload, state, attempts, next_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 0, ?9, ?9)",
        )?;
        for r in rows {
            st.execute(params![
                r.kind.as_str(),
                r.target,
                r.ticket_key,
                r.event,
                r.identity,
                r.message_id,
                r.recipient,
                r.payload,
                ts
            ])?;
        }
        Ok(())
    }

    async fn set_aside(&mut self, id: i64, ts: i64) -> Result<bool, StoreError> {
        Ok(self.execute(&super::SET_ASIDE_SQL.replace('$', "?"), params![id, ts])? == 1)
    }

    async fn settle_retry(&mut self, id: i64, ticket_key: Option<&str>) -> Result<(), StoreError> {
        self.execute(
            &super::SETTLE_RETRY_SQL.replace('$', "?"),
            params![id, ticket_key],
        )?;
        Ok(())
    }
}
