//! Message bodies as ticket text: HTML → text, and quoted replies and signatures cut from comments.
//!
//! HTML is converted with html2text (capped in size; a cheap fallback beyond the cap). Reply
//! stripping works on text lines and knows the reply headers of Outlook (`-----Original
//! Message-----`, `From:/Sent:` blocks, underscore rules), Gmail and Thunderbird (`On … wrote:`,
//! also wrapped over two lines), Apple Mail (`On …, at …, X wrote:`), their common translations,
//! `>` quoting, the `-- ` signature delimiter and mobile signatures. Administrators add their own
//! split markers as regular expressions. A reply that starts with an attribution line (`On … wrote:`)
//! and answers between the quoted lines (inline or bottom posting) keeps its unquoted lines. If
//! stripping would leave nothing, the full text is kept: losing what the customer wrote is worse
//! than a long comment.
//!
//! HTML becomes plain text without Markdown-style decoration (no `**bold**`), so that reply headers
//! Outlook writes in bold (`<b>From:</b>`) are still recognised; links keep their URL as a
//! numbered footnote.

use std::sync::LazyLock;

use regex::Regex;

/// HTML above this size is converted with the cheap converter instead of html2text.
const HTML_RICH_LIMIT: usize = 512 * 1024;

/// HTML to readable text. Never fails: falls back to mail-parser's simple converter.
pub fn html_to_text(html: &str) -> String {
    if html.len() <= HTML_RICH_LIMIT
        && let Ok(t) = html2text::config::plain_no_decorate()
            .link_footnotes(true)
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

/// Separator lines that start the quoted original (Outlook and friends).
static SEPARATOR: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"^-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|Messaggio originale|Oorspronkelijk bericht)\s*-{2,}\s*$",
        r"^_{20,}\s*$",
        r"^-{2,}\s*Reply above this line\s*-{2,}\s*$",
    ]
    .iter()
    .map(|r| Regex::new(&format!("(?i){r}")).expect("static regex"))
    .collect()
});

/// Attribution lines (`On … wrote:` and translations) that introduce `>`-quoted text.
static ATTRIBUTION: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"^On .{4,200}\bwrote:\s*$",
        r"^Le .{4,200} a écrit\s?:\s*$",
        r"^Am .{4,200} schrieb .{1,200}:\s*$",
        r"^El .{4,200} escribió:\s*$",
        r"^Op .{4,200} schreef .{1,200}:\s*$",
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

/// What kind of line starts the quoted part of a reply.
enum Cut {
    /// An attribution line spanning this many lines (Gmail wraps it over two).
    Attribution(usize),
    /// Anything else: a separator, an Outlook header block, a signature or a custom marker.
    Other,
}

/// Cheap first-character tests before any regex runs: almost every line of a mail body is
/// ordinary text, and the regexes (shared by all worker threads) are the expensive part.
fn may_be_attribution(line: &str) -> bool {
    let head: String = line.chars().take(3).flat_map(char::to_lowercase).collect();
    matches!(head.as_str(), "on " | "le " | "am " | "el " | "op ")
}

fn may_be_other(line: &str) -> bool {
    line.starts_with([
        '-', '_', '*', 'F', 'f', 'V', 'v', 'D', 'd', 'S', 's', 'G', 'g', 'E', 'e',
    ])
}

fn find_cut(lines: &[&str], markers: &[Regex]) -> Option<(usize, Cut)> {
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if may_be_attribution(line) {
            if ATTRIBUTION.iter().any(|r| r.is_match(line)) {
                return Some((i, Cut::Attribution(1)));
            }
            // Gmail wraps "On Mon, 3 Nov 2026 at 10:00, Name <addr> wrote:" over two lines.
            if let Some(next) = lines.get(i + 1) {
                let joined = format!("{line} {}", next.trim());
                if ATTRIBUTION.iter().any(|r| r.is_match(&joined)) {
                    return Some((i, Cut::Attribution(2)));
                }
            }
        }
        let other = (may_be_other(line)
            && (SEPARATOR.iter().any(|r| r.is_match(line))
                || (OUTLOOK_FROM.is_match(line)
                    && lines[i + 1..]
                        .iter()
                        .take(3)
                        .any(|n| OUTLOOK_SENT.is_match(n.trim())))
                || SIGNATURE.is_match(raw.trim_end_matches('\r'))))
            || markers.iter().any(|r| r.is_match(line));
        if other {
            return Some((i, Cut::Other));
        }
    }
    None
}

/// The unquoted text above the first cut; below a leading attribution line, the unquoted text
/// between the quotes (inline and bottom posting). `None` if nothing would remain.
fn strip_lines(lines: &[&str], markers: &[Regex]) -> Option<String> {
    let (cut, kind) = find_cut(lines, markers).unwrap_or((lines.len(), Cut::Other));
    let kept: Vec<&str> = lines[..cut]
        .iter()
        .copied()
        .filter(|l| !l.trim_start().starts_with('>'))
        .collect();
    let out = tidy(&kept.join("\n"));
    if !out.trim().is_empty() {
        return Some(out);
    }
    match kind {
        Cut::Attribution(span) => strip_lines(&lines[cut + span..], markers),
        Cut::Other => None,
    }
}

/// The new text of a reply: everything above the first reply header, signature or split marker,
/// with `>`-quoted lines removed. Returns the whole text if nothing would remain.
pub fn strip_reply(text: &str, markers: &[Regex]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    strip_lines(&lines, markers).unwrap_or_else(|| tidy(text))
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
    fn keeps_inline_answers_below_a_leading_attribution() {
        let t = "On 03.11.26 10:00, Help Desk wrote:\n> Which version?\n\n5.1.3\n\n> Wi-Fi or cable?\n\nWi-Fi only.\n\n-- \nLukas";
        assert_eq!(strip_reply(t, &[]), "5.1.3\n\nWi-Fi only.");
        let t = "On Mon, 3 Nov 2026 at 10:00, Help Desk <help@example.com>\nwrote:\n> old\n\nBottom-posted answer.";
        assert_eq!(strip_reply(t, &[]), "Bottom-posted answer.");
    }

    #[test]
    fn strips_bold_outlook_headers_from_html() {
        let h = "<div>New text.</div><hr><div><b>From:</b> Help &lt;h@x&gt;<br><b>Sent:</b> Monday<br>\
                 <b>To:</b> Bob</div><div>old text</div>";
        let t = html_to_text(h);
        assert!(!t.contains("**"), "{t}");
        assert_eq!(strip_reply(&t, &[]), "New text.");
    }

    #[test]
    fn converts_html() {
        let t = html_to_text("<p>Hello <b>world</b></p><p>Line&nbsp;two</p>");
        assert!(t.contains("Hello world"), "{t}");
        assert!(t.contains("Line\u{a0}two") || t.contains("Line two"), "{t}");
    }
}
