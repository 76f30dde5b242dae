//! Recovering what mail-parser leaves damaged in real-world messages.
//!
//! - A part whose boundary is never found (an unterminated final boundary, a nested boundary that
//!   does not match) is handed over by mail-parser still transfer-encoded, flagged as an encoding
//!   problem. [`decode_transfer`] decodes such a part leniently: base64 ignoring anything outside
//!   the alphabet and stopping at a `--boundary` line, quoted-printable keeping malformed escapes.
//!   Such a text part is also demoted to an attachment; [`is_damaged_body_text`] recognises it so
//!   it can serve as the body again.
//! - A `multipart/*` entity whose boundary never occurs in its body is kept by mail-parser as one
//!   text part; [`is_unsplit_multipart`] recognises it so its text can serve as the body.
//! - RFC 2231 parameter continuations (`filename*0*=UTF-8''…; filename*1*=…`) must be joined as
//!   octets before the charset is applied; mail-parser decodes every segment on its own, which
//!   garbles a multi-byte character split across two segments. [`continued_param`] re-reads the
//!   raw header and decodes it as the RFC says.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{HeaderName, MessagePart, MimeHeaders, PartType};

/// A `multipart/*` part that mail-parser could not split (its boundary never occurs): its body is
/// the raw text between the headers and the end of the entity.
pub fn is_unsplit_multipart(part: &MessagePart<'_>) -> bool {
    matches!(part.body, PartType::Text(_))
        && part
            .content_type()
            .is_some_and(|c| c.ctype().eq_ignore_ascii_case("multipart"))
}

/// A text part that mail-parser listed as an attachment only because it was damaged (flagged as
/// an encoding problem, e.g. its boundary never came): declared `text/plain` or `text/html` (or
/// nothing), with no attachment disposition and no file name. It is the message's body.
pub fn is_damaged_body_text(part: &MessagePart<'_>) -> bool {
    part.is_encoding_problem
        && matches!(part.body, PartType::Text(_) | PartType::Html(_))
        && part.content_type().is_none_or(|c| {
            c.ctype().eq_ignore_ascii_case("text")
                && c.subtype().is_none_or(|s| {
                    s.eq_ignore_ascii_case("plain") || s.eq_ignore_ascii_case("html")
                })
        })
        && part
            .content_disposition()
            .is_none_or(|d| !d.is_attachment())
        && part.attachment_name().is_none()
}

/// Whether a part's declared type is `text/html`.
pub fn is_declared_html(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("text")
            && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("html"))
    })
}

/// For a part flagged as an encoding problem, its bytes decoded by the declared
/// Content-Transfer-Encoding, leniently. Returns the bytes and whether the input was clean (only
/// alphabet characters and line breaks), or `None` if the part is not base64 or
/// quoted-printable.
pub fn decode_transfer(part: &MessagePart<'_>, raw: &[u8]) -> Option<(Vec<u8>, bool)> {
    let cte = part
        .content_transfer_encoding()?
        .trim()
        .to_ascii_lowercase();
    match cte.as_str() {
        "base64" => Some(lenient_base64(raw)),
        "quoted-printable" => Some(lenient_quoted_printable(raw)),
        _ => None,
    }
}

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Base64 that skips characters outside the alphabet and stops at padding or at a line that
/// starts with `--` (a MIME boundary: `-` is not in the alphabet, so no data line starts so).
pub fn lenient_base64(input: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut acc, mut n, mut clean) = (0u32, 0u8, true);
    'lines: for line in input.split(|b| *b == b'\n') {
        if line.starts_with(b"--") {
            break;
        }
        for &c in line {
            if c == b'=' {
                break 'lines;
            }
            match b64_value(c) {
                Some(v) => {
                    acc = (acc << 6) | v;
                    n += 1;
                    if n == 4 {
                        out.extend_from_slice(&acc.to_be_bytes()[1..]);
                        (acc, n) = (0, 0);
                    }
                }
                None if c.is_ascii_whitespace() => {}
                None => clean = false,
            }
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&((acc >> 2) as u16).to_be_bytes()),
        0 => {}
        _ => clean = false,
    }
    (out, clean)
}

/// Quoted-printable that keeps malformed escapes as they are and stops at a `--` boundary line.
pub fn lenient_quoted_printable(input: &[u8]) -> (Vec<u8>, bool) {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut clean = true;
    let mut first = true;
    for line in input.split(|b| *b == b'\n') {
        if line.starts_with(b"--") {
            break;
        }
        if !first {
            out.extend_from_slice(b"\r\n");
        }
        first = false;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut i = 0;
        let mut soft = false;
        while i < line.len() {
            let c = line[i];
            if c == b'=' {
                if line[i + 1..].iter().all(|b| *b == b' ' || *b == b'\t') {
                    soft = true;
                    break;
                }
                if let (Some(h), Some(l)) = (
                    line.get(i + 1).and_then(|c| hex(*c)),
                    line.get(i + 2).and_then(|c| hex(*c)),
                ) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                clean = false;
            }
            out.push(c);
            i += 1;
        }
        if soft {
            first = true;
        }
    }
    (out, clean)
}

/// A parameter (`filename` of Content-Disposition, else `name` of Content-Type) given as RFC 2231
/// continuations, joined and decoded from the raw header. `None` if the parameter is not split
/// into numbered segments (mail-parser's reading is right then).
pub fn continued_filename(part: &MessagePart<'_>, raw: &[u8]) -> Option<String> {
    let header = |name: HeaderName<'static>| {
        let h = part.headers.iter().find(|h| h.name == name)?;
        raw.get(h.offset_start as usize..h.offset_end as usize)
    };
    header(HeaderName::ContentDisposition)
        .and_then(|v| continued_param(v, "filename"))
        .or_else(|| header(HeaderName::ContentType).and_then(|v| continued_param(v, "name")))
}

/// Split a header value into `;`-separated parameters, respecting quoted strings.
fn split_params(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let (mut quoted, mut escaped) = (false, false);
    for &c in value {
        if c == b'\r' || c == b'\n' {
            continue;
        }
        if escaped {
            cur.push(c);
            escaped = false;
        } else if quoted && c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            quoted = !quoted;
        } else if c == b';' && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && let (Some(h), Some(l)) = (
                v.get(i + 1).and_then(|c| hex(*c)),
                v.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

/// The RFC 2231 continued parameter `name` (`name*0*=charset'lang'…; name*1*=…; name*2=…`) of a
/// raw header value, or `None` if it has no numbered segments.
pub fn continued_param(value: &[u8], name: &str) -> Option<String> {
    let mut segments: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    for p in split_params(value) {
        let Some(eq) = p.iter().position(|b| *b == b'=') else {
            continue;
        };
        let key = String::from_utf8_lossy(&p[..eq])
            .trim()
            .to_ascii_lowercase();
        let Some(rest) = key.strip_prefix(name).and_then(|r| r.strip_prefix('*')) else {
            continue;
        };
        let (digits, encoded) = match rest.strip_suffix('*') {
            Some(d) => (d, true),
            None => (rest, false),
        };
        let Ok(index) = digits.parse::<u32>() else {
            continue;
        };
        let val = p[eq + 1..].trim_ascii().to_vec();
        if !segments.iter().any(|(i, ..)| *i == index) {
            segments.push((index, encoded, val));
        }
    }
    if segments.is_empty() {
        return None;
    }
    segments.sort_by_key(|(i, ..)| *i);
    let mut charset: Option<Vec<u8>> = None;
    let mut bytes = Vec::new();
    for (n, (index, encoded, val)) in segments.iter().enumerate() {
        if *index as usize != n {
            break; // a gap: later segments cannot be placed
        }
        let mut val = val.as_slice();
        if n == 0 && *encoded {
            let mut parts = val.splitn(3, |b| *b == b'\'');
            if let (Some(cs), Some(_lang), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                charset = Some(cs.to_vec());
                val = v;
            }
        }
        if *encoded {
            bytes.extend(percent_decode(val));
        } else {
            bytes.extend_from_slice(val);
        }
    }
    let decoder = charset
        .as_deref()
        .filter(|c| !c.is_empty())
        .and_then(charset_decoder);
    Some(match decoder {
        Some(d) => d(&bytes),
        None => String::from_utf8_lossy(&bytes).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_decoded_leniently() {
        assert_eq!(
            lenient_base64(b"aGVs\r\nbG8=\r\n--b--\r\n"),
            (b"hello".to_vec(), true)
        );
        assert_eq!(
            lenient_base64(b"aGVsbG8\r\n--b\r\nQUJD"),
            (b"hello".to_vec(), true)
        );
        let (d, clean) = lenient_base64(b"aGV!sbG8=");
        assert_eq!((d.as_slice(), clean), (b"hello".as_slice(), false));
    }

    #[test]
    fn quoted_printable_is_decoded_leniently() {
        let (d, clean) = lenient_quoted_printable(b"caf=C3=A9 =\r\nau lait\r\nnext\r\n--b");
        assert_eq!(
            (String::from_utf8(d).unwrap().as_str(), clean),
            ("café au lait\r\nnext", true)
        );
        assert_eq!(
            lenient_quoted_printable(b"a=ZZb"),
            (b"a=ZZb".to_vec(), false)
        );
    }

    #[test]
    fn continuations_join_octets_before_the_charset() {
        // "и" (D0 B8) split across two segments.
        let v = b" attachment;\r\n filename*0*=UTF-8''%D0%BF%D0;\r\n filename*1*=%B8.txt";
        assert_eq!(continued_param(v, "filename").as_deref(), Some("пи.txt"));
        let v = b"attachment; filename*1=\"b.pdf\"; filename*0*=iso-8859-1''%FC";
        assert_eq!(continued_param(v, "filename").as_deref(), Some("üb.pdf"));
        assert_eq!(
            continued_param(b"attachment; filename=\"a;b.pdf\"", "filename"),
            None
        );
        assert_eq!(
            continued_param(b"attachment; filename*=UTF-8''a.pdf", "filename"),
            None
        );
    }
}
