//! What one message becomes.
//!
//! `intake-mime` turns raw bytes into a [`Prepared`]: the message's [`Envelope`] (identity facts
//! every outcome needs) plus either a [`MailDraft`] (a ticket or comment to be), or the reason it
//! is ignored or quarantined. `intake-store` then decides create-versus-comment against the tickets
//! it holds and records exactly one [`Outcome`] in the message ledger, in the same transaction as
//! the ticket effect.

use std::fmt;

use crate::ids::TicketKey;

/// Facts about a message that every outcome records in the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Message-ID without angle brackets, if the message has one.
    pub message_id: Option<String>,
    /// Lower-case hex SHA-256 of the raw bytes.
    pub content_hash: String,
    /// Lower-cased sender address (From, or Reply-To by policy), if one could be read.
    pub sender: Option<String>,
    /// The Date header as Unix seconds, if present and plausible.
    pub sent_at: Option<i64>,
    /// Size of the raw message in bytes.
    pub size: u64,
}

/// The result of reading one message, before the store applies it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub envelope: Envelope,
    pub kind: PreparedKind,
}

#[derive(Debug, Clone)]
pub enum PreparedKind {
    /// A readable message from a sender: a new ticket or a comment.
    Mail(Box<MailDraft>),
    /// Not to become a ticket (auto-reply, bounce, list mail, our own mail, …).
    Ignored(IgnoreReason),
    /// Could not be read; the raw bytes are kept for an administrator.
    Quarantined(QuarantineReason),
}

/// A readable message, ready to become a ticket or a comment.
#[derive(Debug, Clone, Default)]
pub struct MailDraft {
    /// Decoded subject, trimmed; `(no subject)` when empty.
    pub summary: String,
    /// Full body as text (HTML converted), for a new ticket's description.
    pub description: String,
    /// Body with quoted reply text and signature removed, for a comment.
    pub reply_text: String,
    /// Reporter address (lower case) and display name.
    pub reporter: String,
    pub reporter_name: Option<String>,
    /// Other addresses on To/Cc, minus the channel's own addresses and the reporter.
    pub participants: Vec<String>,
    /// Candidate ticket keys found in the subject, in order of appearance.
    pub subject_keys: Vec<TicketKey>,
    /// In-Reply-To then References (newest first), without angle brackets.
    pub references: Vec<String>,
    pub attachments: Vec<AttachmentDraft>,
    /// Things the reader should know (an attachment over the limit, an unknown charset, …).
    pub notes: Vec<String>,
    /// The message's HTML, kept with its ticket or comment for the admin UI (which sanitizes it
    /// before showing it); `None` for mail without a declared `text/html` body part, or whose
    /// HTML is over [`KeptHtml::UP_TO`].
    pub html: Option<KeptHtml>,
}

/// The HTML body part of a message as stored: a minimal MIME message
/// (`Content-Type: text/html; charset=utf-8`) holding the part decoded (its charset and transfer
/// encoding undone), and the SHA-256 of those bytes, their content address. Built while the
/// message is prepared, so the database writer only stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptHtml {
    /// Lower-case hex SHA-256 of `data`.
    pub hash: String,
    pub data: Vec<u8>,
}

impl KeptHtml {
    /// HTML parts up to this size are kept (1 MiB).
    pub const UP_TO: usize = 1 << 20;
    /// The header of the stored message, before the HTML.
    pub const HEADER: &'static str = "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
}

/// One attachment or inline part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentDraft {
    pub filename: String,
    pub content_type: String,
    /// Content-ID without angle brackets, kept for inline images (`cid:` references).
    pub content_id: Option<String>,
    pub inline: bool,
    /// Lower-case hex SHA-256 of `data`: the attachment's content address.
    pub hash: String,
    pub data: Vec<u8>,
}

/// Why a message is not turned into a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// `Auto-Submitted` other than `no`.
    AutoSubmitted(String),
    /// Out-of-office / auto-reply markers (X-Autoreply, X-Autorespond, subject prefixes, …).
    AutoReply(String),
    /// Delivery status notification or mailer-daemon sender.
    Bounce(String),
    /// `Precedence: bulk/junk/list` or list headers.
    Bulk(String),
    /// A message Intake itself sent (or one from the channel's own address).
    OwnMessage(String),
    /// More messages from one sender within the window than the loop guard allows.
    MailLoop {
        sender: String,
        count: u32,
        window_seconds: i64,
    },
    /// The channel only accepts some sender domains.
    SenderNotAllowed(String),
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AutoSubmitted(v) => write!(f, "auto-submitted ({v})"),
            Self::AutoReply(v) => write!(f, "auto-reply ({v})"),
            Self::Bounce(v) => write!(f, "bounce ({v})"),
            Self::Bulk(v) => write!(f, "bulk or list mail ({v})"),
            Self::OwnMessage(v) => write!(f, "sent by Intake itself ({v})"),
            Self::MailLoop {
                sender,
                count,
                window_seconds,
            } => write!(
                f,
                "mail loop guard: {sender} sent more than {count} messages within {window_seconds}s"
            ),
            Self::SenderNotAllowed(v) => write!(f, "sender not allowed on this channel ({v})"),
        }
    }
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineReason {
    Empty,
    NotMail(String),
    NoSender,
    TooLarge {
        size: u64,
        limit: u64,
    },
    Unreadable(String),
    /// The reporter's address is longer than an address can be (RFC 5321: 320 bytes).
    AddressTooLong {
        len: usize,
        limit: usize,
    },
    /// The database refused to store the message; the database's own words.
    Refused(String),
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty message (0 bytes)"),
            Self::NotMail(v) => write!(f, "not an email message ({v})"),
            Self::NoSender => f.write_str("no sender address (From is missing or unreadable)"),
            Self::TooLarge { size, limit } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            Self::Unreadable(v) => write!(f, "unreadable message ({v})"),
            Self::AddressTooLong { len, limit } => write!(
                f,
                "sender address of {len} bytes exceeds the limit of {limit} bytes"
            ),
            Self::Refused(v) => write!(f, "the database refused to store this message: {v}"),
        }
    }
}

/// The one outcome a message has on a channel, as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(TicketKey),
    Commented(TicketKey),
    Ignored(String),
    Quarantined(String),
}

impl Outcome {
    /// The ledger's `outcome` column: `created`, `commented`, `ignored` or `quarantined`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Created(_) => "created",
            Self::Commented(_) => "commented",
            Self::Ignored(_) => "ignored",
            Self::Quarantined(_) => "quarantined",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created(k) => write!(f, "created {k}"),
            Self::Commented(k) => write!(f, "commented {k}"),
            Self::Ignored(r) => write!(f, "ignored: {r}"),
            Self::Quarantined(r) => write!(f, "quarantined: {r}"),
        }
    }
}
