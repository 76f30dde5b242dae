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

/// Who may comment on an existing ticket by mail. Threading itself (a ticket key in the
/// subject, a Message-ID in In-Reply-To/References) only ever finds tickets of the channel's own
/// project; this policy decides what a reply found that way does when its sender is neither the
/// ticket's reporter nor one of its participants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyPolicy {
    /// Only the reporter and the participants comment; anyone else's reply becomes a new ticket
    /// that links the one it answered (the default: a guessed key or a leaked Message-ID cannot
    /// put text on someone else's ticket).
    #[default]
    Participants,
    /// Also anyone whose address has the same domain as the reporter's or a participant's.
    Domain,
    /// Anyone who threads onto the ticket comments (the behaviour before this setting existed).
    Anyone,
}

impl ReplyPolicy {
    /// Whether `sender` may comment on a ticket with this reporter and participants.
    pub fn allows(self, sender: &str, reporter: &str, participants: &[String]) -> bool {
        let sender = sender.to_ascii_lowercase();
        let same = |a: &str| a.eq_ignore_ascii_case(&sender);
        if same(reporter) || participants.iter().any(|p| same(p)) {
            return true;
        }
        match self {
            Self::Participants => false,
            Self::Anyone => true,
            Self::Domain => {
                let domain = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
                let Some(mine) = domain(&sender).filter(|d| !d.is_empty()) else {
                    return false;
                };
                std::iter::once(reporter)
                    .chain(participants.iter().map(String::as_str))
                    .any(|a| domain(a).as_deref() == Some(mine.as_str()))
            }
        }
    }
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
    /// What a reply from someone who is neither the reporter nor a participant does
    /// (`participants`, `domain`, `anyone`).
    pub reply_policy: ReplyPolicy,
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
            reply_policy: ReplyPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_policy_decides_who_comments() {
        let parts = vec!["bob@partner.example".to_string()];
        let r = "jane@customer.example";
        for p in [
            ReplyPolicy::Participants,
            ReplyPolicy::Domain,
            ReplyPolicy::Anyone,
        ] {
            assert!(p.allows("Jane@Customer.example", r, &parts), "{p:?}");
            assert!(p.allows("bob@partner.example", r, &parts), "{p:?}");
        }
        assert!(!ReplyPolicy::Participants.allows("kim@customer.example", r, &parts));
        assert!(ReplyPolicy::Domain.allows("kim@customer.example", r, &parts));
        assert!(ReplyPolicy::Domain.allows("al@partner.example", r, &parts));
        assert!(!ReplyPolicy::Domain.allows("eve@evil.example", r, &parts));
        assert!(!ReplyPolicy::Domain.allows("eve@sub.customer.example", r, &parts));
        assert!(ReplyPolicy::Anyone.allows("eve@evil.example", r, &parts));
    }

    #[derive(Debug, Deserialize)]
    struct Wrap {
        #[allow(dead_code)]
        rules: ChannelRules,
    }

    #[test]
    fn reply_policy_values_are_checked_when_read() {
        let ok: Result<ChannelRules, _> = serde_json::from_str(r#"{"reply_policy": "domain"}"#);
        assert_eq!(ok.unwrap().reply_policy, ReplyPolicy::Domain);
        let bad = serde_json::from_str::<Wrap>(r#"{"rules": {"reply_policy": "everyone"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("everyone") && bad.contains("participants"),
            "{bad}"
        );
    }
}
