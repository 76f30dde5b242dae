//! A channel's handler rules: how mail on that channel is read and mapped.
//!
//! Deserialised from the `[[channel]]` / `[defaults]` tables of `intake.toml`; every field has a
//! default an experienced service-desk administrator would pick (see docs/decisions.md).

use serde::Deserialize;

/// Which header names the reporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyToPolicy {
    /// Reporter is From; Reply-To is ignored (Jira's default; safest against spoofed Reply-To).
    #[default]
    Ignore,
    /// Reporter is the first Reply-To address when present (web forms that send as a robot).
    Prefer,
}

/// Per-sender flood limit: more than `max_per_sender` messages whose Date falls within
/// `window_seconds` of each other are ignored as a mail loop.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopGuard {
    pub max_per_sender: u32,
    pub window_seconds: i64,
}

impl Default for LoopGuard {
    fn default() -> Self {
        Self {
            max_per_sender: 20,
            window_seconds: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelRules {
    /// The channel's own addresses: never participants, and mail from them is ignored.
    pub addresses: Vec<String>,
    pub reply_to: ReplyToPolicy,
    /// Attachments larger than this are left out, with a note on the ticket.
    pub max_attachment_bytes: u64,
    /// Messages larger than this are quarantined.
    pub max_message_bytes: u64,
    /// Remove quoted text and signatures from comments.
    pub strip_quotes: bool,
    /// Extra split markers (regular expressions matched against a whole line); text from the
    /// first matching line on is dropped from comments.
    pub split_markers: Vec<String>,
    /// Sender domains allowed to open tickets; empty means everyone.
    pub allowed_domains: Vec<String>,
    /// Accept mail that carries List-Id or `Precedence: list` (e.g. when the help address is a
    /// Google Group that forwards to the mailbox). Off by default: list mail is ignored.
    pub accept_list_mail: bool,
    pub loop_guard: LoopGuard,
}

impl Default for ChannelRules {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            reply_to: ReplyToPolicy::Ignore,
            max_attachment_bytes: 25 * 1024 * 1024,
            max_message_bytes: 100 * 1024 * 1024,
            strip_quotes: true,
            split_markers: Vec::new(),
            allowed_domains: Vec::new(),
            accept_list_mail: false,
            loop_guard: LoopGuard::default(),
        }
    }
}
