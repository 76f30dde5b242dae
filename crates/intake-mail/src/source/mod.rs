//! Mail sources on servers, behind one contract: list new messages after a checkpoint, fetch
//! their raw bytes, acknowledge them with the post-action once their tickets are committed.
//!
//! Only IMAP exists so far ([`imap`]); POP3 and Graph are to follow the same shape.

pub mod graph;
pub mod imap;
pub mod pop3;

/// One fetched message.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Stable identity for the ledger, e.g. `imap:<uidvalidity>:<uid>`.
    pub identity: String,
    pub raw: Vec<u8>,
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
