//! Mail that must never become a ticket: auto-replies, out-of-office notices, bounces and DSNs,
//! mailer-daemon, bulk/list mail, and messages Intake itself sent.
//!
//! Following RFC 3834 (`Auto-Submitted`), RFC 3464 (`multipart/report; report-type=delivery-status`)
//! and the de-facto headers Exchange, Gmail and common autoresponders set. Each verdict names the
//! header or marker that triggered it, so the ledger says *why*.

use hmac::{Hmac, KeyInit, Mac};
use intake_core::IgnoreReason;
use mail_parser::{Message, MimeHeaders};

/// Header Intake puts on every message it sends: `v1=HEX`, the HMAC-SHA256 of the message's
/// Message-ID (without angle brackets) under a key derived from the store's secret key (see
/// [`sent_header_value`]). Mail whose header verifies under one of the channel's keys is
/// Intake's own and never ingested; anyone can add the header, but without the key it does not
/// verify, and such mail is ingested like any other.
pub const OWN_HEADER: &str = "X-Intake-Sent";

type HmacSha256 = Hmac<sha2_hmac::Sha256>;

fn mac(key: &[u8], message_id: &str) -> HmacSha256 {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(message_id.as_bytes());
    m
}

/// The value of [`OWN_HEADER`] for a message with `message_id` (without angle brackets).
pub fn sent_header_value(key: &[u8], message_id: &str) -> String {
    format!(
        "v1={}",
        hex::encode(mac(key, message_id).finalize().into_bytes())
    )
}

/// Whether `value` (an [`OWN_HEADER`] value) is the HMAC of `message_id` under one of `keys`.
/// Compared in constant time.
pub fn sent_header_verifies(keys: &[Vec<u8>], message_id: &str, value: &str) -> bool {
    let Some(hex_mac) = value.trim().strip_prefix("v1=") else {
        return false;
    };
    let Ok(bytes) = hex::decode(hex_mac.trim()) else {
        return false;
    };
    keys.iter()
        .any(|k| mac(k, message_id).verify_slice(&bytes).is_ok())
}

const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "automatic reply:",
    "auto-reply:",
    "autoreply:",
    "auto reply:",
    "out of office:",
    "out of office reply",
    "out of the office",
    "réponse automatique",
    "automatische antwort",
    "abwesenheitsnotiz",
    "respuesta automática",
];

fn raw(m: &Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .or_else(|| {
            // header_raw only knows some names under their canonical key; fall back to a scan.
            m.headers_raw()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_ascii_lowercase())
        })
}

/// Decide whether a readable message is machine mail to ignore. `sender` is the lower-cased
/// From address; `own` are the channel's own addresses (lower case); `sent_keys` the keys of
/// [`OWN_HEADER`] (none: the header is never trusted).
pub fn classify(
    m: &Message<'_>,
    sender: &str,
    own: &[String],
    sent_keys: &[Vec<u8>],
    accept_list_mail: bool,
) -> Option<IgnoreReason> {
    if !sent_keys.is_empty()
        && let Some(id) = m.message_id().and_then(crate::thread::normalize_id)
        && m.headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(OWN_HEADER))
            .any(|(_, v)| sent_header_verifies(sent_keys, &id, v))
    {
        return Some(IgnoreReason::OwnMessage(format!(
            "{OWN_HEADER} header verified"
        )));
    }
    if own.iter().any(|a| a == sender) {
        return Some(IgnoreReason::OwnMessage(format!(
            "from the channel's own address {sender}"
        )));
    }
    if let Some(ct) = m.root_part().content_type()
        && ct.ctype().eq_ignore_ascii_case("multipart")
        && ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        let kind = ct
            .attribute("report-type")
            .unwrap_or("report")
            .to_ascii_lowercase();
        let what = format!("multipart/report; report-type={kind}");
        // Read receipts (RFC 8098 MDNs) are automatic replies, not delivery failures.
        if kind == "disposition-notification" {
            return Some(IgnoreReason::AutoReply(format!("read receipt, {what}")));
        }
        return Some(IgnoreReason::Bounce(what));
    }
    let local = sender.split('@').next().unwrap_or_default();
    if matches!(
        local,
        "mailer-daemon" | "postmaster" | "mail-daemon" | "mailerdaemon"
    ) {
        return Some(IgnoreReason::Bounce(format!("sender {sender}")));
    }
    if let Some(rp) = raw(m, "Return-Path")
        && rp
            .trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace())
            .is_empty()
        && rp.contains('<')
    {
        return Some(IgnoreReason::Bounce("null Return-Path <>".into()));
    }
    if let Some(v) = raw(m, "Auto-Submitted")
        && v.split(';').next().is_some_and(|v| v.trim() != "no")
    {
        return Some(IgnoreReason::AutoSubmitted(format!("Auto-Submitted: {v}")));
    }
    for h in [
        "X-Autoreply",
        "X-Autorespond",
        "X-Autogenerated",
        "X-AutoReply-From",
    ] {
        if let Some(v) = raw(m, h)
            && v != "no"
        {
            return Some(IgnoreReason::AutoReply(format!("{h}: {v}")));
        }
    }
    if let Some(v) = raw(m, "X-Auto-Response-Suppress")
        && (v.contains("oof") || v == "all")
        && m.subject()
            .is_some_and(|s| s.to_lowercase().starts_with("automatic reply"))
    {
        return Some(IgnoreReason::AutoReply(format!(
            "X-Auto-Response-Suppress: {v}"
        )));
    }
    if let Some(s) = m.subject() {
        let s = s.trim().to_lowercase();
        if let Some(p) = AUTO_REPLY_SUBJECTS.iter().find(|p| s.starts_with(**p)) {
            return Some(IgnoreReason::AutoReply(format!(
                "subject starts with {p:?}"
            )));
        }
    }
    if let Some(v) = raw(m, "Precedence")
        && matches!(v.as_str(), "bulk" | "junk" | "list" | "auto_reply")
    {
        if v == "auto_reply" {
            return Some(IgnoreReason::AutoReply("Precedence: auto_reply".into()));
        }
        if !(v == "list" && accept_list_mail) {
            return Some(IgnoreReason::Bulk(format!("Precedence: {v}")));
        }
    }
    if !accept_list_mail && let Some(v) = raw(m, "List-Id") {
        return Some(IgnoreReason::Bulk(format!("List-Id: {v}")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Message<'_> {
        mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parses")
    }

    #[test]
    fn only_a_header_made_with_the_key_marks_own_mail() {
        let key = vec![7u8; 32];
        let id = "intake.ack.help-1.0011@help.example";
        let good = sent_header_value(&key, id);
        let mail = |v: &str| {
            format!(
                "From: a@customer.example\r\nMessage-ID: <{id}>\r\n{OWN_HEADER}: {v}\r\nSubject: hi\r\n\r\nbody\r\n"
            )
        };
        let keys = [key.clone()];
        let raw = mail(&good);
        assert!(matches!(
            classify(&parse(&raw), "a@customer.example", &[], &keys, false),
            Some(IgnoreReason::OwnMessage(_))
        ));
        // Forged: anything else, the right value for another Message-ID, another key, no key.
        let other = sent_header_value(&key, "other@help.example");
        let wrong_key = sent_header_value(&[8u8; 32], id);
        for v in [
            "1",
            "yes",
            "v1=",
            "v1=zz",
            other.as_str(),
            wrong_key.as_str(),
        ] {
            let raw = mail(v);
            assert_eq!(
                classify(&parse(&raw), "a@customer.example", &[], &keys, false),
                None,
                "{v}"
            );
        }
        assert_eq!(
            classify(&parse(&raw), "a@customer.example", &[], &[], false),
            None
        );
        // An old key still recognises mail sent before a rotation.
        let rotated = [vec![9u8; 32], key];
        assert!(classify(&parse(&raw), "a@customer.example", &[], &rotated, false).is_some());
    }
}
