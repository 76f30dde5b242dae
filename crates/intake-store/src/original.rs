//! The HTML of a ticket's messages, kept so that the admin UI can show it (sanitized there)
//! next to the text the ticket holds. The rows keep the name "originals" (`raw_hash`,
//! [`Store::originals`]).
//!
//! - **What is kept**: for a message that became a ticket or a comment, its first declared
//!   `text/html` body part, decoded, as a minimal MIME message (`intake_core::KeptHtml`,
//!   built while the message is prepared), when the part is at most `KeptHtml::UP_TO` bytes.
//!   Plain-text mail keeps nothing: the ticket's text is all of it. Until issue 15 the whole raw
//!   message was kept, text part, headers and base64 attachments included: for the ingest
//!   benchmark's mail 29 MB of a 130 MB database, written by the single database writer
//!   (docs/decisions.md, "Kept originals: the HTML part only").
//! - **Where**: in `blobs` (content-addressed by the SHA-256 of the stored bytes, shared with
//!   attachments), pointed to by the ledger row's `raw_hash`, written by the apply engine in the
//!   same transaction as the ticket effect — so a message has its HTML kept exactly when it has
//!   its effect. (A quarantined message's `raw_hash` points to its whole raw bytes instead.)
//! - **Retention**: as long as the ticket, like attachments (nothing deletes tickets). The
//!   mail-log retention does not touch it.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Store, StoreError};

/// The kept originals of one ticket's messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Originals {
    /// The message that created the ticket.
    pub first: Option<Vec<u8>>,
    /// By comment id: the messages that became comments.
    pub comments: HashMap<i64, Vec<u8>>,
}

impl Store {
    /// The kept originals of the ticket `key` (see the module documentation).
    pub async fn originals(&self, key: &str) -> Result<Originals, StoreError> {
        let rows = sqlx::query(
            "SELECT l.outcome, c.id AS comment_id, b.data
             FROM message_ledger l
             JOIN blobs b ON b.hash = l.raw_hash
             LEFT JOIN comments c ON c.ledger_id = l.id
             WHERE l.ticket_key = $1 AND l.outcome IN ('created', 'commented')",
        )
        .bind(key)
        .fetch_all(self.pool())
        .await?;
        let mut out = Originals::default();
        for r in rows {
            let outcome: String = r.try_get("outcome")?;
            let data: Vec<u8> = r.try_get("data")?;
            match (outcome.as_str(), r.try_get::<Option<i64>, _>("comment_id")?) {
                ("created", _) => out.first = Some(data),
                (_, Some(id)) => {
                    out.comments.insert(id, data);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
