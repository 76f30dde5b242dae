//! Reading the store back: ticket lists and details (the `intake tickets` JSON contract), the
//! ledger, and row counts for checks.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{Store, StoreError};

/// One row of `intake tickets list --json`. Field names are a public contract.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TicketSummary {
    pub key: String,
    pub summary: String,
    pub reporter: String,
    pub status: String,
    pub participants: Vec<String>,
    pub comments: i64,
    pub attachments: i64,
    pub channel: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The ticket's key in an external tracker (a Jira sink), if any.
    pub external_key: Option<String>,
}

/// `intake tickets show KEY --json`. Field names are a public contract.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TicketDetail {
    pub key: String,
    pub summary: String,
    pub description: String,
    pub reporter: String,
    pub status: String,
    pub participants: Vec<String>,
    pub channel: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The ticket's key in an external tracker (a Jira sink), if any.
    pub external_key: Option<String>,
    pub comments: Vec<CommentInfo>,
    pub attachments: Vec<AttachmentInfo>,
    /// Tickets linked to this one: a reply the channel's `reply_policy` did not let comment
    /// became a new ticket that `follows` the one it answered; the answered ticket lists it as
    /// `followed_by`.
    pub related: Vec<RelatedTicket>,
}

/// One link of [`TicketDetail::related`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RelatedTicket {
    pub key: String,
    /// `follows` (this ticket answered `key`) or `followed_by` (`key` answered this ticket).
    pub relation: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommentInfo {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub created_at: i64,
    /// Sent by Intake (a reply from the ticket), not received by mail.
    pub outgoing: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub content_id: Option<String>,
    pub inline: bool,
    /// The comment the attachment came with; `None` for the ticket's first message.
    pub comment_id: Option<i64>,
    pub sha256: String,
}

/// One ledger row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerRow {
    pub channel: String,
    pub identity: String,
    pub message_id: Option<String>,
    pub content_hash: String,
    pub outcome: String,
    pub ticket_key: Option<String>,
    pub reason: Option<String>,
    pub raw_hash: Option<String>,
}

/// The columns [`TicketSummary::from_row`] reads, for a query over `tickets t`.
pub(crate) const SUMMARY_COLUMNS: &str =
    "t.key, t.summary, t.reporter, t.status, t.participants, t.channel, t.created_at,
     t.updated_at, t.external_key,
     (SELECT COUNT(*) FROM comments c WHERE c.ticket_id = t.id) AS comments,
     (SELECT COUNT(*) FROM attachments a WHERE a.ticket_id = t.id) AS attachments";

impl TicketSummary {
    /// One row selected with [`SUMMARY_COLUMNS`].
    pub(crate) fn from_row(r: &AnyRow) -> Result<TicketSummary, StoreError> {
        Ok(TicketSummary {
            key: r.try_get("key")?,
            summary: r.try_get("summary")?,
            reporter: r.try_get("reporter")?,
            status: r.try_get("status")?,
            participants: participants(r)?,
            comments: r.try_get("comments")?,
            attachments: r.try_get("attachments")?,
            channel: r.try_get("channel")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            external_key: r.try_get("external_key")?,
        })
    }
}

fn participants(r: &AnyRow) -> Result<Vec<String>, StoreError> {
    let p: String = r.try_get("participants")?;
    serde_json::from_str(&p).map_err(|e| StoreError::Corrupt(format!("participants: {e}")))
}

impl Store {
    /// Tickets in creation order, optionally of one project.
    pub async fn list_tickets(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<TicketSummary>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}
             FROM tickets t WHERE ($1 = '' OR t.project_key = $1) ORDER BY t.id"
        )))
        .bind(project.map(|p| p.to_ascii_uppercase()).unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(TicketSummary::from_row).collect()
    }

    /// One ticket with its comments and attachments.
    pub async fn ticket(&self, key: &str) -> Result<Option<TicketDetail>, StoreError> {
        let key = key.trim().to_ascii_uppercase();
        let Some(t) = sqlx::query(
            "SELECT id, key, summary, description, reporter, status, participants, channel, created_at,
                    updated_at, external_key FROM tickets WHERE key = $1",
        )
        .bind(&key)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let id: i64 = t.try_get("id")?;
        let comments = sqlx::query(
            "SELECT id, author, body, created_at, outgoing FROM comments WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(CommentInfo {
                id: r.try_get("id")?,
                author: r.try_get("author")?,
                body: r.try_get("body")?,
                created_at: r.try_get("created_at")?,
                outgoing: r.try_get::<i64, _>("outgoing")? != 0,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let attachments = sqlx::query(
            "SELECT filename, content_type, size, content_id, inline, comment_id, blob_hash
             FROM attachments WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(AttachmentInfo {
                filename: r.try_get("filename")?,
                content_type: r.try_get("content_type")?,
                size: r.try_get("size")?,
                content_id: r.try_get("content_id")?,
                inline: r.try_get::<i64, _>("inline")? != 0,
                comment_id: r.try_get("comment_id")?,
                sha256: r.try_get("blob_hash")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let related = sqlx::query(
            "SELECT t.key, l.relation AS relation, l.id FROM ticket_links l
                 JOIN tickets t ON t.id = l.related_id WHERE l.ticket_id = $1
             UNION ALL
             SELECT t.key, 'followed_by' AS relation, l.id FROM ticket_links l
                 JOIN tickets t ON t.id = l.ticket_id WHERE l.related_id = $1
             ORDER BY 3",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(RelatedTicket {
                key: r.try_get("key")?,
                relation: r.try_get("relation")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(TicketDetail {
            key: t.try_get("key")?,
            summary: t.try_get("summary")?,
            description: t.try_get("description")?,
            reporter: t.try_get("reporter")?,
            status: t.try_get("status")?,
            participants: participants(&t)?,
            channel: t.try_get("channel")?,
            created_at: t.try_get("created_at")?,
            updated_at: t.try_get("updated_at")?,
            external_key: t.try_get("external_key")?,
            comments,
            attachments,
            related,
        }))
    }

    /// The ledger in processing order, optionally for one channel.
    pub async fn ledger(&self, channel: Option<&str>) -> Result<Vec<LedgerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, identity, message_id, content_hash, outcome, ticket_key, reason, raw_hash
             FROM message_ledger WHERE ($1 = '' OR channel = $1) ORDER BY id",
        )
        .bind(channel.unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerRow {
                    channel: r.try_get("channel")?,
                    identity: r.try_get("identity")?,
                    message_id: r.try_get("message_id")?,
                    content_hash: r.try_get("content_hash")?,
                    outcome: r.try_get("outcome")?,
                    ticket_key: r.try_get("ticket_key")?,
                    reason: r.try_get("reason")?,
                    raw_hash: r.try_get("raw_hash")?,
                })
            })
            .collect()
    }

    /// The stored bytes of a blob (attachment or quarantined raw message).
    pub async fn blob(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT data FROM blobs WHERE hash = $1")
            .bind(hash)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Number of rows in one of the store's tables (for checks and the CLI summary).
    pub async fn count(&self, table: Table) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name());
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(self.pool())
            .await?)
    }
}

/// Tables whose rows can be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Tickets,
    Comments,
    Attachments,
    Ledger,
    Customers,
    Blobs,
    MailLog,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Tickets => "tickets",
            Self::Comments => "comments",
            Self::Attachments => "attachments",
            Self::Ledger => "message_ledger",
            Self::Customers => "customers",
            Self::Blobs => "blobs",
            Self::MailLog => "mail_log",
        }
    }
}
