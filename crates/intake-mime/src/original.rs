//! The HTML of a message, kept with its ticket or comment for the admin UI to sanitize and
//! show: [`kept`] builds what is stored while the message is prepared (only the HTML part, not
//! the whole message: the text is in the ticket and the attachments beside it), [`html_part`]
//! reads it back. Never panics: a message mail-parser cannot read, or one without a declared
//! `text/html` body part, has no HTML.

use std::panic::{AssertUnwindSafe, catch_unwind};

use intake_core::KeptHtml;
use mail_parser::{Message, MessageParser, PartType};

use crate::repair;

/// The message's first `text/html` body part, decoded to text (its charset and transfer
/// encoding undone). The HTML is as the sender wrote it: sanitize it before showing it.
pub fn html_part(raw: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| {
        let m = MessageParser::default().parse(raw)?;
        html_of(&m).map(str::to_string)
    }))
    .ok()
    .flatten()
}

/// The first declared `text/html` body part of a parsed message, decoded.
pub(crate) fn html_of<'m>(m: &'m Message<'_>) -> Option<&'m str> {
    m.html_body.iter().find_map(|id| {
        let part = m.parts.get(*id as usize)?;
        match &part.body {
            PartType::Html(h) if repair::is_declared_html(part) => Some(h.as_ref()),
            _ => None,
        }
    })
}

/// What is stored of a message's HTML ([`KeptHtml`]): its first declared `text/html` body
/// part, decoded, as a minimal MIME message that [`html_part`] reads back; `None` without one
/// or when it is over [`KeptHtml::UP_TO`].
pub(crate) fn kept(m: &Message<'_>) -> Option<KeptHtml> {
    let html = html_of(m)?;
    if html.len() > KeptHtml::UP_TO {
        return None;
    }
    let mut data = Vec::with_capacity(KeptHtml::HEADER.len() + html.len());
    data.extend_from_slice(KeptHtml::HEADER.as_bytes());
    data.extend_from_slice(html.as_bytes());
    Some(KeptHtml {
        hash: crate::content_hash(&data),
        data,
    })
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

        // What is kept reads back as the same HTML, and is smaller than the message.
        let parsed = MessageParser::default().parse(alt.as_slice()).unwrap();
        let k = kept(&parsed).unwrap();
        assert_eq!(html_part(&k.data), html_part(alt));
        assert_eq!(k.hash, crate::content_hash(&k.data));
        assert!(
            !k.data.windows(5).any(|w| w == b"plain"),
            "the text part is not kept"
        );
        let plain = MessageParser::default().parse(plain.as_slice()).unwrap();
        assert_eq!(kept(&plain), None);
    }

    #[test]
    fn html_over_the_bound_is_not_kept() {
        let mail = |n: usize| {
            format!(
                "From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}",
                "x".repeat(n)
            )
            .into_bytes()
        };
        let at = mail(KeptHtml::UP_TO);
        let over = mail(KeptHtml::UP_TO + 1);
        let at = MessageParser::default().parse(at.as_slice()).unwrap();
        let over = MessageParser::default().parse(over.as_slice()).unwrap();
        assert_eq!(html_of(&at).map(str::len), Some(KeptHtml::UP_TO));
        assert!(kept(&at).is_some());
        assert_eq!(kept(&over), None);
    }
}
