//! Mail sources behind one contract, [`MailSource`]: list new messages after a checkpoint, fetch
//! their raw bytes, acknowledge them with the post-action once their tickets are committed, and
//! wait for new mail. Implemented here for IMAP ([`imap`]), POP3 ([`pop3`]) and Microsoft Graph
//! ([`graph`]); the binary implements it for local Maildir and mbox sources. One generic drain
//! loop in the binary runs them all into the same engine and ledger.

pub mod folders;
pub mod graph;
pub mod imap;
pub mod pop3;

use std::future::Future;
use std::time::Duration;

/// The first-sync policy (`start`): what a channel takes while it has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Messages not yet read (IMAP `UNSEEN`, Graph `isRead = false`). POP3 has no read flag:
    /// every message on the server counts as unread.
    Unread,
    /// Everything in the folder.
    All,
    /// Nothing that is there now; only mail arriving from now on.
    Now,
    /// Messages received on or after this date (UTC), `since:YYYY-MM-DD`.
    Since(Date),
}

/// A calendar date, as written in `since:YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// IMAP's `date` form for `SEARCH SINCE` (RFC 3501): `1-Nov-2026`.
    pub fn imap(&self) -> String {
        const M: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}-{}-{}",
            self.day,
            M[usize::from(self.month.clamp(1, 12) - 1)],
            self.year
        )
    }

    /// ISO 8601 `YYYY-MM-DD`, which compares as text with Graph's `receivedDateTime`.
    pub fn iso(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::str::FromStr for Start {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("start = {s:?}: use unread, all, now or since:YYYY-MM-DD");
        Ok(match s.trim() {
            "unread" => Self::Unread,
            "all" => Self::All,
            "now" => Self::Now,
            other => {
                let d = other.strip_prefix("since:").ok_or_else(bad)?;
                let mut it = d.trim().splitn(3, '-');
                let (y, m, dd) = (it.next(), it.next(), it.next());
                let date = Date {
                    year: y.and_then(|v| v.parse().ok()).ok_or_else(bad)?,
                    month: m.and_then(|v| v.parse().ok()).ok_or_else(bad)?,
                    day: dd.and_then(|v| v.parse().ok()).ok_or_else(bad)?,
                };
                let y = date.year;
                let leap = y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
                let days = match date.month {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                if !(1..=12).contains(&date.month) || !(1..=days).contains(&date.day) {
                    return Err(bad());
                }
                Self::Since(date)
            }
        })
    }
}

/// A message a source has listed: its source-specific key (IMAP UID, POP3 message number and
/// UIDL, Graph ID, file) and its ledger identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub identity: String,
    /// The size the server declares before download (IMAP `RFC822.SIZE`, POP3 `LIST`, Graph
    /// `size`, file length), where known: used to bound batches in bytes and to quarantine an
    /// oversized message from its headers without downloading its body.
    pub size: Option<u64>,
}

/// What [`MailSource::list`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// In the order to process them (oldest first where the source knows).
    pub items: Vec<Listed>,
    /// The checkpoint to store once every listed item is committed and acknowledged; `None`
    /// keeps the stored one.
    pub checkpoint: Option<String>,
    /// More is waiting right now (list again without waiting for a change).
    pub more: bool,
}

/// A mail source: where messages come from and where they are acknowledged.
///
/// The caller's loop: [`list`](Self::list) from the stored checkpoint; skip what the ledger
/// already knows; [`fetch`](Self::fetch) the rest in bounded batches; commit each batch;
/// [`acknowledge`](Self::acknowledge) the batch (new and known items alike — known ones are
/// left over from a crash between commit and post-action); store
/// [`checkpoint_after`](Self::checkpoint_after) its last item; at the end store the listing's
/// checkpoint; [`finish`](Self::finish) a round that has nothing more; then
/// [`wait_for_change`](Self::wait_for_change).
pub trait MailSource: Send {
    /// New messages after `checkpoint` (`None`: first sync under `start`), at most about
    /// `limit` where the protocol allows bounding.
    fn list(
        &mut self,
        checkpoint: Option<&str>,
        start: Start,
        limit: usize,
    ) -> impl Future<Output = Result<Listing, SourceError>> + Send;

    /// The raw bytes of listed messages, in the order given. A message that has disappeared
    /// meanwhile is left out.
    fn fetch(
        &mut self,
        items: &[Listed],
    ) -> impl Future<Output = Result<Vec<Fetched>, SourceError>> + Send;

    /// Apply the post-action to committed messages.
    fn acknowledge(
        &mut self,
        items: &[Listed],
        action: &PostAction,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Whether this source can apply `action`; checked before anything is fetched or
    /// committed, so an impossible post-action never leaves committed but unacknowledged mail.
    fn supports(&self, _action: &PostAction) -> Result<(), SourceError> {
        Ok(())
    }

    /// The checkpoint once everything up to and including `item` is committed and
    /// acknowledged, where the protocol has one per message (IMAP); `None` otherwise.
    fn checkpoint_after(&self, item: &Listed) -> Option<String>;

    /// End a round in which nothing more was waiting (POP3: `QUIT`, which is when `DELE`
    /// takes effect, and a new session next time to see new mail).
    fn finish(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send {
        async { Ok(()) }
    }

    /// Wait until the server reports new mail (IMAP IDLE), `timeout` passes, or `stop`
    /// completes. Sources without push just wait. Returns whether a change was reported.
    fn wait_for_change(
        &mut self,
        timeout: Duration,
        stop: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = Result<bool, SourceError>> + Send {
        async move {
            tokio::select! {
                () = tokio::time::sleep(timeout) => {}
                () = stop => {}
            }
            Ok(false)
        }
    }

    /// Log out (best effort).
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// One fetched message.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Stable identity for the ledger, e.g. `imap:<uidvalidity>:<uid>`.
    pub identity: String,
    /// The whole message; only its header section when `oversized` is set.
    pub raw: Vec<u8>,
    /// Set when the declared size is over the channel's limit: the body was not downloaded and
    /// the message is quarantined from its headers with this size and limit.
    pub oversized: Option<Oversized>,
}

/// A message left on the server because it is larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// Declared size in bytes.
    pub size: u64,
    /// The limit it exceeds, in bytes.
    pub limit: u64,
}

/// What to do with a message on the server once its ticket effect is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostAction {
    MarkRead,
    Move(String),
    Delete,
}

/// Errors from a mail server, keeping the server's own words for diagnosis.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("TLS with {addr} failed: {message}")]
    Tls { addr: String, message: String },
    #[error("{mechanism} authentication failed: {server}{}", .challenge.as_ref().map(|c| format!(" (server said: {c})")).unwrap_or_default())]
    Auth {
        mechanism: String,
        server: String,
        challenge: Option<String>,
    },
    #[error("the server refused {command}: {server}")]
    Refused { command: String, server: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A network operation got no answer (or no further bytes) within its deadline
    /// ([`crate::transport::Timeouts`]).
    #[error("{operation} on {addr} timed out after {}", crate::transport::secs(*.after))]
    Timeout {
        /// What was waited for: `connect`, `TLS handshake`, `greeting`, `LOGIN`, `UID FETCH`…
        operation: String,
        /// `host:port` of the server (not the proxy).
        addr: String,
        after: Duration,
    },
    /// The server sent more than a bound allows (a POP3 line, a message over the size limit
    /// plus slack, an HTTP body).
    #[error("{0}")]
    TooLarge(String),
    /// Microsoft Graph's own error, with its diagnosis.
    #[error(transparent)]
    Graph(Box<graph::GraphError>),
    /// A local mail file or folder.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The channel's settings ask for something this source cannot do.
    #[error("{0}")]
    Unsupported(String),
}

impl From<graph::GraphError> for SourceError {
    fn from(e: graph::GraphError) -> Self {
        Self::Graph(Box::new(e))
    }
}

/// How to log in to a mail server (IMAP and POP3 alike). `Debug` never shows the secret.
#[derive(Clone)]
pub enum MailAuth {
    /// IMAP `LOGIN` / POP3 `USER`+`PASS`.
    Password {
        user: String,
        password: secrecy::SecretString,
    },
    /// SASL `XOAUTH2` or `OAUTHBEARER` with a bearer token.
    OAuth {
        mechanism: crate::sasl::Mechanism,
        user: String,
        token: secrecy::SecretString,
    },
}

impl MailAuth {
    /// Whether this is an OAuth bearer login (whose rejections have their own root causes).
    pub fn is_oauth(&self) -> bool {
        matches!(self, Self::OAuth { .. })
    }
}

impl std::fmt::Debug for MailAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password { user, .. } => write!(f, "Password({user})"),
            Self::OAuth {
                mechanism, user, ..
            } => write!(f, "{}({user})", mechanism.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Date, Start};

    #[test]
    fn start_parses_every_form() {
        assert_eq!("unread".parse::<Start>(), Ok(Start::Unread));
        assert_eq!("all".parse::<Start>(), Ok(Start::All));
        assert_eq!(" now ".parse::<Start>(), Ok(Start::Now));
        assert_eq!(
            "since:2026-11-01".parse::<Start>(),
            Ok(Start::Since(Date {
                year: 2026,
                month: 11,
                day: 1
            }))
        );
        assert_eq!(
            "since:2024-02-29".parse::<Start>(),
            Ok(Start::Since(Date {
                year: 2024,
                month: 2,
                day: 29
            }))
        );
    }

    #[test]
    fn start_rejects_what_it_does_not_know() {
        for bad in [
            "soon",
            "",
            "Unread",
            "since:",
            "since:2026-13-01",
            "since:2026-02-31",
            "since:2026-02-29",
            "since:2026-00-10",
            "since:2026-11-00",
            "since:2026-11-32",
            "since:2026-11",
            "since:2026/11/01",
            "since:2026-11-01x",
            "since:yesterday",
            "2026-11-01",
        ] {
            let err = bad
                .parse::<Start>()
                .expect_err(&format!("{bad:?} must be refused"));
            assert!(
                err.contains("unread, all, now or since:YYYY-MM-DD"),
                "{bad:?}: the error says what is allowed: {err}"
            );
        }
    }

    #[test]
    fn dates_in_imap_and_iso_form() {
        let d = Date {
            year: 2026,
            month: 11,
            day: 1,
        };
        assert_eq!(d.imap(), "1-Nov-2026");
        assert_eq!(d.iso(), "2026-11-01");
        let d = Date {
            year: 2025,
            month: 1,
            day: 31,
        };
        assert_eq!(d.imap(), "31-Jan-2025");
        assert_eq!(d.iso(), "2025-01-31");
        let Ok(Start::Since(d)) = "since:2026-12-09".parse::<Start>() else {
            panic!("since: parses");
        };
        assert_eq!(d.imap(), "9-Dec-2026");
    }
}
