//! Sending outgoing effects: webhook calls ([`webhook`]), mail over SMTP submission
//! ([`smtp`], composed by [`compose`]), Graph `sendMail` ([`graph`]), Jira calls ([`jira`]), and
//! the look-up of a sent mail's copy in the mailbox's Sent folder ([`sent`]) that makes mail
//! exactly once across a crash.
//!
//! Every transport answers with a [`SendError`] that says whether trying again can help: the
//! delivery loop (the `intake` crate's `outbox` module) retries [`SendError::Transient`] with
//! back-off and keeps [`SendError::Permanent`] as a failure with its diagnosis.

pub mod compose;
pub mod graph;
pub mod jira;
pub mod sent;
pub mod smtp;
pub mod webhook;

use std::time::Duration;

/// What a failed final step means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with a refusal, or the request never reached it: the message
    /// was not accepted.
    NotSent,
    /// No answer (the connection broke or timed out after the data went out): the message
    /// may have been accepted.
    Unknown,
}

/// Why a send did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another try: a 5xx, 408 or 429 answer, a refused or cut connection, a timeout.
    /// `retry_after`: what the receiver asked for (`Retry-After`), if anything.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will not succeed by trying again as is (a 4xx answer that names a problem of the request
    /// or the configuration); kept with this diagnosis.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Classify an HTTP failure status: 408, 425, 429 and 5xx are transient, every other status
/// permanent.
pub fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || (500..600).contains(&status)
}

/// A `reqwest` error (no answer at all) as a transient [`SendError`], naming what was tried but
/// not the URL's query (which may hold a secret).
pub fn request_failed(what: &str, e: reqwest::Error) -> SendError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    SendError::transient(format!("{what} {kind}: {}", e.without_url()))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the receivers we talk to).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
