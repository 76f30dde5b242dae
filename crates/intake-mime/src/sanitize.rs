//! Every text field a [`Prepared`] carries into the store, made storable on both databases.
//!
//! One pass, [`prepared`], runs at the end of [`Reader::prepare`](crate::Reader::prepare) over
//! every stored text field (subject, bodies, addresses, display names, attachment filenames and
//! content types, Content-IDs, Message-ID, References, notes, and the reasons of ignored and
//! quarantined messages):
//! - **NUL is removed.** PostgreSQL `text` refuses U+0000 (SQLSTATE 22021), so one decoded NUL
//!   (`=?utf-8?b?AA==?=` in a subject, `=00` in a quoted-printable body) would fail the whole
//!   batch's commit. Nothing else needs stripping: a Rust `String` is valid UTF-8, so it cannot
//!   hold an unpaired surrogate, and both databases accept every other scalar value, including
//!   control characters (tabs, CR and LF stay; other controls are kept as sent).
//! - **Lengths are capped** ([`Caps`]), on character boundaries, so no value can exceed an index
//!   row (PostgreSQL's btree limit is about 2,700 bytes) or grow without bound. Free text is
//!   clipped with `…`; an identifier is never clipped (a clipped Message-ID would name another
//!   message): a Message-ID, Reference or Content-ID over its cap is dropped. A reporter
//!   address over its cap quarantines the message (a clipped address would be another person);
//!   a To/Cc address over the cap is left out of the participants, with a note.

use std::borrow::Cow;

use intake_core::{IgnoreReason, Prepared, PreparedKind, QuarantineReason};

/// Stored field caps, in bytes of UTF-8 (cut on a character boundary).
#[derive(Debug, Clone, Copy)]
pub struct Caps;

impl Caps {
    /// An email address: 64 (local part) + 1 + 255 (domain), RFC 5321 §4.5.3.1.
    pub const ADDRESS: usize = 320;
    /// A display name.
    pub const NAME: usize = 256;
    /// A ticket summary (the decoded subject). The reader already clips it to 250 characters;
    /// this is the byte bound behind that.
    pub const SUMMARY: usize = 1_000;
    /// Message-ID, each Reference, Content-ID: RFC 5322's line limit.
    pub const ID: usize = 998;
    /// An attachment filename.
    pub const FILENAME: usize = 255;
    /// A MIME content type.
    pub const CONTENT_TYPE: usize = 255;
    /// Bodies (description, comment text): bounded by `max_message_bytes` already; this cap
    /// only keeps one value far below both databases' 1 GB field limit.
    pub const BODY: usize = 64 << 20;
    /// A reason or note (contains header values).
    pub const REASON: usize = 2_000;
}

/// `s` without NUL characters.
pub fn strip(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', ""))
    } else {
        Cow::Borrowed(s)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Free text: NUL removed, clipped to `max` bytes (the `…` counted) on a character boundary.
pub fn text(s: &mut String, max: usize) {
    if s.contains('\0') {
        s.retain(|c| c != '\0');
    }
    if s.len() > max {
        let keep = prefix(s, max.saturating_sub('…'.len_utf8())).len();
        s.truncate(keep);
        s.push('…');
    }
}

/// An identifier: NUL removed; `None` when over `max` bytes or empty.
pub fn id(s: &str, max: usize) -> Option<String> {
    let s = strip(s);
    (!s.is_empty() && s.len() <= max).then(|| s.into_owned())
}

/// Make every stored text field of `p` storable (see the module documentation).
pub fn prepared(mut p: Prepared) -> Prepared {
    let env = &mut p.envelope;
    env.message_id = env.message_id.as_deref().and_then(|m| id(m, Caps::ID));
    env.sender = env.sender.as_deref().and_then(|s| id(s, Caps::ADDRESS));
    p.kind = match p.kind {
        PreparedKind::Mail(mut d) => {
            let len = d.reporter.len();
            if strip(&d.reporter).len() > Caps::ADDRESS {
                PreparedKind::Quarantined(QuarantineReason::AddressTooLong {
                    len,
                    limit: Caps::ADDRESS,
                })
            } else {
                d.reporter = strip(&d.reporter).into_owned();
                if let Some(n) = d.reporter_name.as_mut() {
                    text(n, Caps::NAME);
                }
                d.reporter_name = d.reporter_name.filter(|n| !n.trim().is_empty());
                let before = d.participants.len();
                d.participants = d
                    .participants
                    .iter()
                    .filter_map(|a| id(a, Caps::ADDRESS))
                    .collect();
                if d.participants.len() < before {
                    let n = before - d.participants.len();
                    let note = format!(
                        "{n} To/Cc address(es) longer than {} bytes were left out",
                        Caps::ADDRESS
                    );
                    d.description.push_str(&format!("\n\n[Intake: {note}]"));
                    d.reply_text.push_str(&format!("\n\n[Intake: {note}]"));
                    d.notes.push(note);
                }
                text(&mut d.summary, Caps::SUMMARY);
                text(&mut d.description, Caps::BODY);
                text(&mut d.reply_text, Caps::BODY);
                d.references = d
                    .references
                    .iter()
                    .filter_map(|r| id(r, Caps::ID))
                    .collect();
                for n in &mut d.notes {
                    text(n, Caps::REASON);
                }
                for a in &mut d.attachments {
                    text(&mut a.filename, Caps::FILENAME);
                    if a.filename.is_empty() {
                        a.filename = "attachment".into();
                    }
                    text(&mut a.content_type, Caps::CONTENT_TYPE);
                    a.content_id = a.content_id.as_deref().and_then(|c| id(c, Caps::ID));
                }
                PreparedKind::Mail(d)
            }
        }
        PreparedKind::Ignored(r) => PreparedKind::Ignored(ignore_reason(r)),
        PreparedKind::Quarantined(r) => PreparedKind::Quarantined(quarantine_reason(r)),
    };
    p
}

fn reason(mut s: String) -> String {
    text(&mut s, Caps::REASON);
    s
}

fn ignore_reason(r: IgnoreReason) -> IgnoreReason {
    use IgnoreReason as R;
    match r {
        R::AutoSubmitted(v) => R::AutoSubmitted(reason(v)),
        R::AutoReply(v) => R::AutoReply(reason(v)),
        R::Bounce(v) => R::Bounce(reason(v)),
        R::Bulk(v) => R::Bulk(reason(v)),
        R::OwnMessage(v) => R::OwnMessage(reason(v)),
        R::MailLoop {
            sender,
            count,
            window_seconds,
        } => R::MailLoop {
            sender: reason(sender),
            count,
            window_seconds,
        },
        R::SenderNotAllowed(v) => R::SenderNotAllowed(reason(v)),
    }
}

fn quarantine_reason(r: QuarantineReason) -> QuarantineReason {
    use QuarantineReason as R;
    match r {
        R::NotMail(v) => R::NotMail(reason(v)),
        R::Unreadable(v) => R::Unreadable(reason(v)),
        R::Refused(v) => R::Refused(reason(v)),
        r @ (R::Empty | R::NoSender | R::TooLarge { .. } | R::AddressTooLong { .. }) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_strips_nul_and_clips_on_a_char_boundary() {
        let mut s = "a\0b".to_string();
        text(&mut s, 100);
        assert_eq!(s, "ab");
        let mut s = "ééééé".to_string(); // 10 bytes
        text(&mut s, 6);
        assert!(s.len() <= 6, "{s:?}");
        assert_eq!(s, "é…");
        let mut s = "\t\r\n\u{1}ok".to_string();
        text(&mut s, 100);
        assert_eq!(s, "\t\r\n\u{1}ok", "other control characters are kept");
    }

    #[test]
    fn ids_over_the_cap_are_dropped_not_clipped() {
        assert_eq!(id("a@b\0", 998).as_deref(), Some("a@b"));
        assert_eq!(id(&"x".repeat(999), 998), None);
        assert_eq!(id("\0", 998), None);
        assert_eq!(prefix("aé", 2), "a");
    }
}
