//! An outgoing mail as RFC 5322 bytes: the headers that make an answer thread back
//! (`Message-ID`, `In-Reply-To`, `References`, the ticket key in the subject), Intake's own-mail
//! mark (`X-Intake-Sent`, computed by the caller), `Auto-Submitted` for acknowledgements, a
//! UTF-8 text body (base64) and optional attachments (`multipart/mixed`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// One outgoing mail, as the outbox stores it (JSON payload of a `mail` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMail {
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    pub subject: String,
    pub body: String,
    /// Without angle brackets.
    pub message_id: String,
    #[serde(default)]
    pub in_reply_to: Option<String>,
    /// Oldest first, without angle brackets.
    #[serde(default)]
    pub references: Vec<String>,
    /// `Auto-Submitted: auto-replied` (acknowledgements), so well-behaved autoresponders do not
    /// answer it.
    #[serde(default)]
    pub auto_submitted: bool,
    #[serde(default)]
    pub attachments: Vec<OutgoingAttachment>,
}

/// An attachment: the content is read from the store by its hash when the mail is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingAttachment {
    pub filename: String,
    pub content_type: String,
    pub hash: String,
}

impl OutgoingMail {
    /// Every recipient (To, then Cc), without duplicates, in order.
    pub fn recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in self.to.iter().chain(&self.cc) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
                out.push(a.clone());
            }
        }
        out
    }
}

/// An RFC 2047 encoded-word when `s` is not plain printable ASCII; otherwise `s`.
fn encode_word(s: &str) -> String {
    if s.chars().all(|c| (' '..='~').contains(&c)) {
        return s.to_string();
    }
    // Encoded words of at most 75 characters: split the text on character boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        let mut next = chunk.clone();
        next.push(c);
        if STANDARD.encode(next.as_bytes()).len() > 60 && !chunk.is_empty() {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// Base64 in lines of 76 characters, each ending with CRLF.
fn base64_lines(data: &[u8]) -> String {
    let b64 = STANDARD.encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for line in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// `Date:` value for Unix seconds `t` (UTC), RFC 5322 §3.3.
pub fn rfc5322_date(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        months[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Header values never carry a line break from the data (header injection).
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The mail as bytes. `sent_mark` is the value of `X-Intake-Sent` (see
/// `intake_mime::loops::sent_header_value`); `attachments` are (attachment, bytes) in order.
pub fn render(
    m: &OutgoingMail,
    date: i64,
    sent_mark: &str,
    attachments: &[(&OutgoingAttachment, Vec<u8>)],
) -> Vec<u8> {
    let mut h = String::new();
    let mut header = |name: &str, value: &str| {
        h.push_str(name);
        h.push_str(": ");
        h.push_str(value);
        h.push_str("\r\n");
    };
    header("From", &one_line(&m.from));
    header("To", &one_line(&m.to.join(", ")));
    if !m.cc.is_empty() {
        header("Cc", &one_line(&m.cc.join(", ")));
    }
    header("Subject", &encode_word(&one_line(&m.subject)));
    header("Date", &rfc5322_date(date));
    header("Message-ID", &format!("<{}>", one_line(&m.message_id)));
    if let Some(r) = &m.in_reply_to {
        header("In-Reply-To", &format!("<{}>", one_line(r)));
    }
    if !m.references.is_empty() {
        let refs: Vec<String> = m
            .references
            .iter()
            .map(|r| format!("<{}>", one_line(r)))
            .collect();
        header("References", &refs.join("\r\n "));
    }
    if m.auto_submitted {
        header("Auto-Submitted", "auto-replied");
        header("X-Auto-Response-Suppress", "All");
    }
    header("X-Intake-Sent", sent_mark);
    header("MIME-Version", "1.0");
    let text_part = format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        base64_lines(m.body.as_bytes())
    );
    if attachments.is_empty() {
        h.push_str(&text_part);
        return h.into_bytes();
    }
    let boundary = format!(
        "=_intake_{}",
        crate::send::compose::boundary_token(&m.message_id)
    );
    h.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    ));
    h.push_str(&format!("--{boundary}\r\n{text_part}"));
    for (a, data) in attachments {
        let name = encode_word(&one_line(&a.filename)).replace('"', "'");
        h.push_str(&format!(
            "--{boundary}\r\nContent-Type: {}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            one_line(&a.content_type),
            base64_lines(data)
        ));
    }
    h.push_str(&format!("--{boundary}--\r\n"));
    h.into_bytes()
}

/// A boundary part derived from the Message-ID (unique per mail; never in base64 output,
/// which has no `=_`).
pub(crate) fn boundary_token(message_id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(message_id.as_bytes());
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> OutgoingMail {
        OutgoingMail {
            from: "help@example.com".into(),
            to: vec!["jane@customer.example".into()],
            cc: vec![
                "boss@customer.example".into(),
                "Jane@customer.example".into(),
            ],
            subject: "[HELP-1] Drucker brennt\r\nBcc: evil@x".into(),
            body: "Grüße\nline two".into(),
            message_id: "intake.reply.help-1.1@example.com".into(),
            in_reply_to: Some("a1@customer.example".into()),
            references: vec!["a0@customer.example".into(), "a1@customer.example".into()],
            auto_submitted: false,
            attachments: vec![],
        }
    }

    #[test]
    fn renders_threading_headers_the_mark_and_a_body_a_parser_reads_back() {
        let raw = render(&mail(), 1_793_000_000, "v1=abc", &[]);
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("Message-ID: <intake.reply.help-1.1@example.com>\r\n"));
        assert!(text.contains("In-Reply-To: <a1@customer.example>\r\n"));
        assert!(text.contains("References: <a0@customer.example>\r\n <a1@customer.example>\r\n"));
        assert!(text.contains("X-Intake-Sent: v1=abc\r\n"));
        assert!(!text.contains("\r\nBcc:"), "no header injection: {text}");
        assert_eq!(
            mail().recipients(),
            vec!["jane@customer.example", "boss@customer.example"]
        );
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.subject(), Some("[HELP-1] Drucker brennt  Bcc: evil@x"));
        assert_eq!(
            m.body_text(0).unwrap().replace("\r\n", "\n"),
            "Grüße\nline two"
        );
        assert_eq!(m.message_id(), Some("intake.reply.help-1.1@example.com"));
    }

    #[test]
    fn attachments_go_in_a_multipart_mixed() {
        let a = OutgoingAttachment {
            filename: "log.txt".into(),
            content_type: "text/plain".into(),
            hash: "h".into(),
        };
        let raw = render(&mail(), 0, "v1=abc", &[(&a, b"hello".to_vec())]);
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.attachment_count(), 1);
        assert_eq!(m.attachment(0).unwrap().contents(), b"hello");
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
    }
}
