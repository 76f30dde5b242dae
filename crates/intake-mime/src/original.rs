//! The HTML part of a kept original message, for the admin UI to sanitize and show. Never
//! panics: a message mail-parser cannot read, or one without a declared `text/html` body part,
//! has no HTML.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{MessageParser, PartType};

use crate::repair;

/// The message's first `text/html` body part, decoded to text (its charset and transfer
/// encoding undone). The HTML is as the sender wrote it: sanitize it before showing it.
pub fn html_part(raw: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| {
        let m = MessageParser::default().parse(raw)?;
        m.html_body.iter().find_map(|id| {
            let part = m.parts.get(*id as usize)?;
            match &part.body {
                PartType::Html(h) if repair::is_declared_html(part) => Some(h.to_string()),
                _ => None,
            }
        })
    }))
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_html_part_of_an_alternative_and_none_for_plain_text() {
        let alt = b"From: a@example.com\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--x\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
<p>caf=E9</p>\r\n--x--\r\n";
        assert_eq!(
            html_part(alt).as_deref().map(str::trim),
            Some("<p>café</p>")
        );
        let plain = b"From: a@example.com\r\nContent-Type: text/plain\r\n\r\n<p>not html</p>\r\n";
        assert_eq!(html_part(plain), None);
        assert_eq!(html_part(b""), None);
    }
}
