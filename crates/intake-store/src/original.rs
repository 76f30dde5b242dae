//! The original message of a ticket or comment, kept so that the admin UI can show its HTML
//! (sanitized there) next to the text the ticket holds.
//!
//! - **What is kept**: the raw bytes of a message that became a ticket or a comment, when it has
//!   an HTML part ([`keeps`]: `text/html` appears in it) and is at most [`ORIGINAL_UP_TO`] bytes.
//!   Plain-text mail is not kept: the ticket's text is all of it. Larger mail is not kept either:
//!   its text and attachments are in the ticket, and the page says the original was not kept.
//! - **Where**: in `blobs` (content-addressed, shared with attachments), pointed to by the
//!   ledger row's `raw_hash`, written by the apply engine in the same transaction as the ticket
//!   effect — so a message has its original exactly when it has its effect.
//! - **Retention**: as long as the ticket, like attachments (nothing deletes tickets). The
//!   mail-log retention does not touch it.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Store, StoreError};

/// Originals up to this size are kept (1 MiB).
pub const ORIGINAL_UP_TO: usize = 1 << 20;

/// Whether the raw message `raw` is kept as an original: at most [`ORIGINAL_UP_TO`] bytes, with
/// an HTML part (`text/html` in any case anywhere in it — a false positive only costs space).
/// It runs on the database writer for every new ticket and comment: each `/` is found with a
/// SIMD search and only its neighbours are compared (a byte-by-byte window over every message
/// was 13 % of the writer's time in `intake ingest`, measured with `perf`).
pub fn keeps(raw: &[u8]) -> bool {
    raw.len() <= ORIGINAL_UP_TO
        && memchr::memchr_iter(b'/', raw).any(|i| {
            i >= 4
                && raw[i - 4..i].eq_ignore_ascii_case(b"text")
                && raw
                    .get(i + 1..i + 5)
                    .is_some_and(|h| h.eq_ignore_ascii_case(b"html"))
        })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_html_mail_within_the_bound_is_kept() {
        assert!(keeps(
            b"Content-Type: TEXT/HTML; charset=utf-8\r\n\r\n<p>x</p>"
        ));
        assert!(!keeps(b"Content-Type: text/plain\r\n\r\nplain text"));
        assert!(keeps(b"text/html"), "at both ends");
        assert!(keeps(b"a/b/ Text/HtMl"), "after other slashes");
        assert!(!keeps(b"text/htm"), "cut short");
        assert!(!keeps(b"/html ext/html text html text/ html"));
        let mut big = b"Content-Type: text/html\r\n\r\n".to_vec();
        big.resize(ORIGINAL_UP_TO + 1, b'x');
        assert!(!keeps(&big));
        big.truncate(ORIGINAL_UP_TO);
        assert!(keeps(&big));
    }
}
