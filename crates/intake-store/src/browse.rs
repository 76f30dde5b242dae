//! Paged reads for the REST API: ticket search, attachments by id, the mail log with filters,
//! quarantined messages.
//!
//! Ticket search is a case-insensitive substring match over the summary, the description and
//! the comments (`LIKE` on SQLite, `ILIKE` on PostgreSQL), a scan: the trigram indexes of
//! migration 0011 were kept in every ingest transaction and cut the ingest rate to a tenth,
//! so migration 0016 dropped them (docs/decisions.md, "Ticket search"). Listings stay bounded however many tickets there are: newest first by id, paged by
//! `OFFSET` only up to [`MAX_OFFSET`] rows and by keyset (`before`) beyond, and the count stops
//! at [`COUNT_CAP`] (`total_capped` says so). docs/decisions.md has the reasons.

use serde::Serialize;
use sqlx::Row;

use crate::log::LogEvent;
use crate::query::SUMMARY_COLUMNS;
use crate::{Store, StoreError, TicketSummary};

/// One page of a listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Matching rows in all pages (for ticket search: at most [`COUNT_CAP`]).
    pub total: i64,
    /// Ticket search: more than [`COUNT_CAP`] rows match (`total` is the cap).
    pub total_capped: bool,
    /// Ticket search: pass as `before` for the next page (keyset paging); `None` on the last.
    pub next_before: Option<i64>,
    pub page: i64,
    pub per_page: i64,
}

/// Ticket search counts matching rows up to this many.
pub const COUNT_CAP: i64 = 10_000;

/// Ticket search pages by `OFFSET` up to this many rows; deeper pages use `before`.
pub const MAX_OFFSET: i64 = 10_000;

/// A bound argument of a statement built at run time.
enum Bind {
    Text(String),
    Int(i64),
}

/// What `GET /api/tickets` filters on.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub project: Option<String>,
    pub q: Option<String>,
    pub status: Option<String>,
    /// 1-based; ignored with `before`.
    pub page: i64,
    pub per_page: i64,
    /// Keyset paging: only tickets with an internal id below this (the previous page's
    /// `next_before`).
    pub before: Option<i64>,
}

/// An attachment's bytes and how to serve them.
#[derive(Debug, Clone)]
pub struct AttachmentData {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// One attachment of a ticket, with the id the download route takes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttachmentRef {
    pub id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub comment_id: Option<i64>,
    pub inline: bool,
}

/// What `GET /api/log` filters on.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub channel: Option<String>,
    pub level: Option<String>,
    pub kind: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub page: i64,
    pub per_page: i64,
}

/// A quarantined message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Quarantined {
    /// The ledger row's id.
    pub id: i64,
    pub channel: String,
    /// The source's identity of the message (`imap:…`, `sha256:…`, …).
    pub identity: String,
    pub message_id: Option<String>,
    pub sender: Option<String>,
    pub reason: Option<String>,
    pub received_at: i64,
    pub raw_size: Option<i64>,
    /// `quarantined`, or `discarded` once discarded.
    pub outcome: String,
}

fn like(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl Store {
    /// Tickets matching `q`, newest first, one page (see the module documentation for how
    /// the search, the paging and the count stay bounded).
    pub async fn search_tickets(&self, q: &TicketQuery) -> Result<Page<TicketSummary>, StoreError> {
        let per_page = q.per_page.clamp(1, 500);
        let page = q.page.max(1);
        if q.before.is_none() && (page - 1) * per_page > MAX_OFFSET {
            return Err(StoreError::Invalid(format!(
                "page {page} of {per_page} skips more than {MAX_OFFSET} tickets: page on with \
                 before=<next_before of the previous page> instead"
            )));
        }
        let mut conds: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let arg = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if let Some(p) = q.project.as_deref().filter(|p| !p.is_empty()) {
            let n = arg(Bind::Text(p.to_ascii_uppercase()), &mut binds);
            // SQLite: `+` keeps the planner on the id order instead of the (project_key,
            // number) index, which made it sort every ticket of the project for each page
            // (p99 14.5 s over 100,000 tickets; docs/BENCHMARKS.md).
            let unary = if self.backend() == crate::Backend::Sqlite {
                "+"
            } else {
                ""
            };
            conds.push(format!("{unary}t.project_key = {n}"));
        }
        if let Some(st) = q.status.as_deref().filter(|s| !s.is_empty()) {
            let n = arg(Bind::Text(st.to_string()), &mut binds);
            conds.push(format!("t.status = {n}"));
        }
        if let Some(b) = q.before {
            let n = arg(Bind::Int(b), &mut binds);
            conds.push(format!("t.id < {n}"));
        }
        if let Some(words) = q.q.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
            conds.push(self.text_condition(words, &mut |b| arg(b, &mut binds)));
        }
        let filter = if conds.is_empty() {
            "FROM tickets t".to_string()
        } else {
            format!("FROM tickets t WHERE {}", conds.join(" AND "))
        };
        let bind_all = |sql: String, binds: &[Bind]| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in binds {
                query = match b {
                    Bind::Text(t) => query.bind(t.clone()),
                    Bind::Int(i) => query.bind(*i),
                };
            }
            query
        };
        let offset = if q.before.is_some() {
            0
        } else {
            (page - 1) * per_page
        };
        let rows = bind_all(
            format!(
                "SELECT t.id, {SUMMARY_COLUMNS} {filter} ORDER BY t.id DESC LIMIT {per_page} OFFSET {offset}"
            ),
            &binds,
        )
        .fetch_all(self.pool())
        .await?;
        let mut last_id = None;
        let items = rows
            .iter()
            .map(|r| {
                last_id = Some(r.try_get::<i64, _>("id")?);
                TicketSummary::from_row(r)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let full = items.len() as i64 == per_page;
        // A short page is the last one: the total is known without counting. Otherwise it is
        // counted up to COUNT_CAP + 1 rows (past the cap the total is not worth a scan). A
        // search that matches less than a page — the selective one, which has to read every
        // ticket — so scans once, not twice.
        let counted: i64 = if !full && (offset == 0 || !items.is_empty()) {
            offset + items.len() as i64
        } else {
            bind_all(
                format!(
                    "SELECT COUNT(*) AS n FROM (SELECT 1 {filter} LIMIT {}) AS c",
                    COUNT_CAP + 1
                ),
                &binds,
            )
            .fetch_one(self.pool())
            .await?
            .try_get("n")?
        };
        Ok(Page {
            total: counted.min(COUNT_CAP),
            total_capped: counted > COUNT_CAP,
            next_before: if full { last_id } else { None },
            items,
            page: if q.before.is_some() { 1 } else { page },
            per_page,
        })
    }

    /// The condition of a search for `words` (a case-insensitive substring of the summary, the
    /// description or a comment), binding its arguments through `arg`.
    fn text_condition(&self, words: &str, arg: &mut dyn FnMut(Bind) -> String) -> String {
        match self.backend() {
            crate::Backend::Sqlite => {
                let p = like(words);
                let (a, b, c) = (
                    arg(Bind::Text(p.clone())),
                    arg(Bind::Text(p.clone())),
                    arg(Bind::Text(p)),
                );
                // SQLite's LIKE folds ASCII case itself, exactly as its LOWER() does (neither
                // folds other letters): the same matches without a lowered copy of every text
                // (0.41 s instead of 0.63–0.74 s for 100,000 tickets of 1 KB, measured with
                // Python's sqlite3 on this machine).
                format!(
                    "(t.summary LIKE {a} ESCAPE '\\' OR t.description LIKE {b} ESCAPE '\\'
                      OR t.id IN (SELECT c.ticket_id FROM comments c WHERE c.body LIKE {c} ESCAPE '\\'))"
                )
            }
            // A scan, as on SQLite (migration 0016). `lower(x) LIKE` (the pattern is lowered
            // already) instead of ILIKE: the same folding, half the time (0.75 s instead of
            // 1.5 s for 100,000 tickets of 1 KB, measured with psql on this machine).
            crate::Backend::Postgres => {
                let p = like(words);
                let (a, b, c) = (
                    arg(Bind::Text(p.clone())),
                    arg(Bind::Text(p.clone())),
                    arg(Bind::Text(p)),
                );
                format!(
                    "(lower(t.summary) LIKE {a} ESCAPE '\\' OR lower(t.description) LIKE {b} ESCAPE '\\'
                      OR t.id IN (SELECT c.ticket_id FROM comments c WHERE lower(c.body) LIKE {c} ESCAPE '\\'))"
                )
            }
        }
    }

    /// A ticket's attachments with their ids, in order.
    pub async fn attachment_refs(&self, key: &str) -> Result<Vec<AttachmentRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.filename, a.content_type, a.size, a.comment_id, a.inline
             FROM attachments a JOIN tickets t ON t.id = a.ticket_id
             WHERE t.key = $1 ORDER BY a.id",
        )
        .bind(key)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttachmentRef {
                    id: r.try_get("id")?,
                    filename: r.try_get("filename")?,
                    content_type: r.try_get("content_type")?,
                    size: r.try_get("size")?,
                    comment_id: r.try_get("comment_id")?,
                    inline: r.try_get::<i64, _>("inline")? != 0,
                })
            })
            .collect()
    }

    /// One attachment of ticket `key` with its bytes.
    pub async fn attachment(
        &self,
        key: &str,
        id: i64,
    ) -> Result<Option<AttachmentData>, StoreError> {
        let r = sqlx::query(
            "SELECT a.filename, a.content_type, b.data
             FROM attachments a JOIN tickets t ON t.id = a.ticket_id
             JOIN blobs b ON b.hash = a.blob_hash
             WHERE t.key = $1 AND a.id = $2",
        )
        .bind(key)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| {
            Ok(AttachmentData {
                filename: r.try_get("filename")?,
                content_type: r.try_get("content_type")?,
                data: r.try_get("data")?,
            })
        })
        .transpose()
    }

    /// Mail-log events matching `q`, newest first, one page.
    pub async fn log_page(&self, q: &LogQuery) -> Result<Page<LogEvent>, StoreError> {
        let per_page = q.per_page.clamp(1, 1000);
        let page = q.page.max(1);
        let filter = "FROM mail_log WHERE ($1 = '' OR channel = $1) AND ($2 = '' OR level = $2)
             AND ($3 = '' OR kind = $3) AND at >= $4 AND at <= $5";
        let bind = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(q.channel.clone().unwrap_or_default())
                .bind(q.level.clone().unwrap_or_default())
                .bind(q.kind.clone().unwrap_or_default())
                .bind(q.since.unwrap_or(0))
                .bind(q.until.unwrap_or(i64::MAX))
        };
        let total: i64 = bind(format!("SELECT COUNT(*) AS n {filter}"))
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let rows = bind(format!(
            "SELECT at, channel, level, kind, message, fields {filter} ORDER BY id DESC LIMIT $6 OFFSET $7"
        ))
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(self.pool())
        .await?;
        let items = rows
            .iter()
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
            .collect::<Result<_, StoreError>>()?;
        Ok(Page {
            items,
            total,
            total_capped: false,
            next_before: None,
            page,
            per_page,
        })
    }

    /// Quarantined messages, newest first, one page.
    pub async fn quarantine_page(
        &self,
        page: i64,
        per_page: i64,
    ) -> Result<Page<Quarantined>, StoreError> {
        let per_page = per_page.clamp(1, 500);
        let page = page.max(1);
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM message_ledger WHERE outcome = 'quarantined'")
                .fetch_one(self.pool())
                .await?
                .try_get("n")?;
        let rows = sqlx::query(
            "SELECT l.id, l.channel, l.identity, l.message_id, l.sender, l.reason, l.received_at, l.outcome,
                    b.size AS raw_size
             FROM message_ledger l LEFT JOIN blobs b ON b.hash = l.raw_hash
             WHERE l.outcome = 'quarantined' ORDER BY l.id DESC LIMIT $1 OFFSET $2",
        )
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(self.pool())
        .await?;
        let items = rows
            .iter()
            .map(quarantined)
            .collect::<Result<_, StoreError>>()?;
        Ok(Page {
            items,
            total,
            total_capped: false,
            next_before: None,
            page,
            per_page,
        })
    }

    /// One quarantined message and its raw bytes.
    pub async fn quarantined(&self, id: i64) -> Result<Option<(Quarantined, Vec<u8>)>, StoreError> {
        let r = sqlx::query(
            "SELECT l.id, l.channel, l.identity, l.message_id, l.sender, l.reason, l.received_at, l.outcome,
                    b.size AS raw_size, b.data
             FROM message_ledger l JOIN blobs b ON b.hash = l.raw_hash
             WHERE l.id = $1 AND l.outcome = 'quarantined'",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| Ok((quarantined(&r)?, r.try_get("data")?)))
            .transpose()
    }
}

impl Store {
    /// Discard a quarantined message: its ledger row's outcome becomes `discarded` (the message
    /// keeps its one outcome, so it is never ingested again) and the reason records who and
    /// why. The raw bytes stay. Returns false when `id` is not a quarantined message.
    pub async fn discard_quarantined(&self, id: i64, reason: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE message_ledger SET outcome = 'discarded', reason = $1
             WHERE id = $2 AND outcome = 'quarantined'",
        )
        .bind(reason)
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }
}

fn quarantined(r: &sqlx::any::AnyRow) -> Result<Quarantined, StoreError> {
    Ok(Quarantined {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        identity: r.try_get("identity")?,
        message_id: r.try_get("message_id")?,
        sender: r.try_get("sender")?,
        reason: r.try_get("reason")?,
        received_at: r.try_get("received_at")?,
        raw_size: r.try_get("raw_size")?,
        outcome: r.try_get("outcome")?,
    })
}
