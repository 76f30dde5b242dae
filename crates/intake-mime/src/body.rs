//! Message bodies as ticket text: HTML → text, and quoted replies and signatures cut from comments.
//!
//! HTML is converted with html2text (capped in size; a cheap fallback beyond the cap). Reply
//! stripping works on text lines and knows the reply headers of Outlook (`-----Original
//! Message-----`, `From:/Sent:` blocks, underscore rules), Gmail and Thunderbird (`On … wrote:`,
//! also wrapped over two lines), Apple Mail (`On …, at …, X wrote:`), their common translations,
//! `>` quoting, the `-- ` signature delimiter and mobile signatures. Administrators add their own
//! split markers as regular expressions. If stripping would leave nothing, the full text is kept:
//! losing what the customer wrote is worse than a long comment.

use std::sync::LazyLock;

use regex::Regex;

/// HTML above this size is converted with the cheap converter instead of html2text.
const HTML_RICH_LIMIT: usize = 512 * 1024;

/// HTML to readable text. Never fails: falls back to mail-parser's simple converter.
pub fn html_to_text(html: &str) -> String {
    if html.len() <= HTML_RICH_LIMIT
        && let Ok(t) = html2text::config::plain()
            .no_link_wrapping()
            .allow_width_overflow()
            .string_from_read(html.as_bytes(), 200)
    {
        return tidy(&t);
    }
    tidy(&mail_parser::decoders::html::html_to_text(html))
}

/// Normalise line ends, drop trailing spaces and collapse runs of blank lines.
pub fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_matches('\n').to_string()
}

static REPLY_HEADER: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"^-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|Messaggio originale|Oorspronkelijk bericht)\s*-{2,}\s*$",
        r"^_{20,}\s*$",
        r"^On .{4,200}\bwrote:\s*$",
        r"^Le .{4,200} a écrit\s?:\s*$",
        r"^Am .{4,200} schrieb .{1,200}:\s*$",
        r"^El .{4,200} escribió:\s*$",
        r"^Op .{4,200} schreef .{1,200}:\s*$",
        r"^-{2,}\s*Reply above this line\s*-{2,}\s*$",
    ]
    .iter()
    .map(|r| Regex::new(&format!("(?i){r}")).expect("static regex"))
    .collect()
});

static OUTLOOK_FROM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\*?(From|Von|De|Van|Da)\s?:\*?\s").expect("static regex"));
static OUTLOOK_SENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\*?(Sent|Date|Gesendet|Envoyé|Enviado|Verzonden|Inviato)\s?:\*?\s")
        .expect("static regex")
});
static SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(-- ?|Sent from my (iPhone|iPad|Android|mobile device|Galaxy).*|Get Outlook for (iOS|Android).*|Sent from (Mail|Outlook) for Windows.*|Von meinem iPhone gesendet|Envoyé de mon iPhone)\s*$",
    )
    .expect("static regex")
});

/// The new text of a reply: everything above the first reply header, signature or split marker,
/// with `>`-quoted lines removed. Returns the whole text if nothing would remain.
pub fn strip_reply(text: &str, markers: &[Regex]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut cut = lines.len();
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        let two = lines.get(i + 1).map(|n| format!("{line} {}", n.trim()));
        let header = REPLY_HEADER.iter().any(|r| r.is_match(line))
            // Gmail wraps "On Mon, 3 Nov 2026 at 10:00, Name <addr> wrote:" over two lines.
            || (line.starts_with("On ")
                && two.as_deref().is_some_and(|t| REPLY_HEADER[2].is_match(t)))
            || (OUTLOOK_FROM.is_match(line)
                && lines[i + 1..].iter().take(3).any(|n| OUTLOOK_SENT.is_match(n.trim())))
            || SIGNATURE.is_match(raw.trim_end_matches('\r'))
            || markers.iter().any(|r| r.is_match(line));
        if header {
            cut = i;
            break;
        }
    }
    let kept: Vec<&str> = lines[..cut]
        .iter()
        .copied()
        .filter(|l| !l.trim_start().starts_with('>'))
        .collect();
    let out = tidy(&kept.join("\n"));
    if out.trim().is_empty() {
        tidy(text)
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_gmail_wrapped_header_and_quotes() {
        let t = "Thanks, that fixed it.\n\nOn Mon, 3 Nov 2026 at 10:00, Help Desk <help@example.com>\nwrote:\n> old text\n> more\n";
        assert_eq!(strip_reply(t, &[]), "Thanks, that fixed it.");
    }

    #[test]
    fn strips_outlook_block_and_signature() {
        let t = "Still broken.\n\n-- \nJane\n\nFrom: Help Desk <help@example.com>\nSent: Monday\nTo: Jane\nSubject: x\n\nold";
        assert_eq!(strip_reply(t, &[]), "Still broken.");
        let t = "New info.\n\n________________________________\nFrom: Help\nSent: Monday\n";
        assert_eq!(strip_reply(t, &[]), "New info.");
        let t = "Yes.\n\nFrom: Bob <b@x>\nSent: Tuesday, 4 November 2026 09:12\nTo: Help\n";
        assert_eq!(strip_reply(t, &[]), "Yes.");
    }

    #[test]
    fn keeps_text_when_everything_is_quoted_and_honours_custom_markers() {
        let t = "> only quoted\n> text";
        assert_eq!(strip_reply(t, &[]), t);
        let m = vec![Regex::new("^=== reply above ===$").unwrap()];
        assert_eq!(strip_reply("ok\n=== reply above ===\nold", &m), "ok");
    }

    #[test]
    fn converts_html() {
        let t = html_to_text("<p>Hello <b>world</b></p><p>Line&nbsp;two</p>");
        assert!(t.contains("Hello world"), "{t}");
        assert!(t.contains("Line\u{a0}two") || t.contains("Line two"), "{t}");
    }
}
