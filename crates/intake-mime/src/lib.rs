//! Raw RFC 5322 bytes → one [`Prepared`]: a ticket/comment draft, or the reason the message is
//! ignored or quarantined.
//!
//! Pure and synchronous (no I/O, no runtime), so it can run on any thread and be fuzzed. Parsing
//! is mail-parser's (lenient, RFC 2045–2049/2047/2231, every charset encoding_rs knows); this
//! crate adds what a service desk needs on top:
//! - [`loops`]: auto-replies, bounces, list mail and our own mail are recognised and ignored;
//! - [`thread`]: ticket keys in the subject and In-Reply-To/References, for commenting;
//! - [`body`]: HTML → text, quoted-reply and signature stripping with configurable split markers;
//! - [`map`]: addresses, attachments and limits → [`MailDraft`](intake_core::MailDraft);
//! - [`original`]: the HTML part of a kept original message (for the admin UI to sanitize);
//! - [`repair`]: recovering what damaged MIME still holds (lost boundaries, split RFC 2231
//!   filenames).
//!
//! [`Reader::prepare`] never panics: besides the property tests and the fuzz target, a panic in a
//! dependency is caught and the message is quarantined with the reason.

pub mod body;
pub mod loops;
pub mod map;
pub mod original;
pub mod repair;
pub mod sanitize;
pub mod thread;

use intake_core::{ChannelRules, Prepared};

pub use map::{Reader, RulesError, content_hash};

/// Hidden entry point without the panic guard, for property tests and the fuzz target.
#[doc(hidden)]
pub fn prepare_unguarded(reader: &Reader, raw: &[u8]) -> Prepared {
    sanitize::prepared(reader.prepare_inner(raw, content_hash(raw)))
}

/// Convenience for one-off use: default-compiled rules.
pub fn prepare(raw: &[u8], rules: &ChannelRules) -> Result<Prepared, RulesError> {
    Ok(Reader::new(rules)?.prepare(raw))
}
