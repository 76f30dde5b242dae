//! Threading hints: which existing ticket a message may answer.
//!
//! Two kinds of evidence, checked by the store in this order against tickets that exist:
//! ticket keys written in the subject (`[HELP-12]`, `HELP-12`, `Re: … (HELP-12)`), then the
//! Message-IDs in In-Reply-To and References (newest first).

use std::sync::LazyLock;

use intake_core::TicketKey;
use mail_parser::Message;
use regex::Regex;

static KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^A-Za-z0-9_-])([A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,15})(?:$|[^A-Za-z0-9_-])")
        .expect("static regex")
});

/// Candidate ticket keys in a subject, in order of appearance, without repeats.
pub fn subject_keys(subject: &str) -> Vec<TicketKey> {
    let mut out: Vec<TicketKey> = Vec::new();
    let mut at = 0;
    while let Some(c) = KEY.captures_at(subject, at) {
        let m = c.get(1).expect("group 1");
        if let Ok(k) = m.as_str().parse::<TicketKey>()
            && !out.contains(&k)
        {
            out.push(k);
        }
        at = m.end();
    }
    out
}

/// Strip angle brackets and whitespace from a Message-ID.
pub fn normalize_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty() && id.len() <= 998).then(|| id.to_string())
}

/// In-Reply-To, then References newest first, de-duplicated.
pub fn references(m: &Message<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let irt = m
        .in_reply_to()
        .as_text_list()
        .map(|l| l.to_vec())
        .unwrap_or_default();
    let refs = m
        .references()
        .as_text_list()
        .map(|l| l.to_vec())
        .unwrap_or_default();
    for id in irt.iter().chain(refs.iter().rev()) {
        if let Some(id) = normalize_id(id)
            && !out.contains(&id)
        {
            out.push(id);
        }
        if out.len() >= 50 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> Vec<String> {
        subject_keys(s).iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn finds_keys_in_the_forms_people_write() {
        assert_eq!(keys("[HELP-12] Printer on fire"), ["HELP-12"]);
        assert_eq!(keys("Re: Printer on fire (HELP-12)"), ["HELP-12"]);
        assert_eq!(
            keys("RE: HELP-12: still broken, see OPS-3"),
            ["HELP-12", "OPS-3"]
        );
        assert_eq!(keys("HELP-12"), ["HELP-12"]);
    }

    #[test]
    fn ignores_things_that_only_look_like_keys() {
        assert!(keys("COVID-19 office rules").len() == 1); // a candidate; the store checks existence
        assert!(keys("help-12 lower case").is_empty());
        assert!(keys("ABC-0 and X-1 and ABC-12x and MY_ABC-3").is_empty());
        assert!(keys("utf-8 text").is_empty());
    }
}
