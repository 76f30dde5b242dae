//! Mail HTML made safe to show inside an admin page: an allow-list sanitizer (ammonia) that
//! keeps text structure, drops scripts, event handlers, styles, forms, frames and every URL
//! scheme but http(s)/mailto, refuses relative URLs (they would reach this service with the
//! administrator's cookie), and, unless the administrator asked for them, removes remote image
//! sources so that opening a message makes no request anywhere (no tracking pixels).
//!
//! The page that shows the result also sends a Content-Security-Policy without remote images
//! and without inline scripts ([`super::csp`]), so a sanitizer miss still could not run a
//! script or load a remote image.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether remote images keep their source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    /// `<img src="http…">` loses its source (the default).
    Blocked,
    /// The administrator asked to see them.
    Shown,
}

/// Sanitized HTML, safe to insert into a page as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeHtml {
    pub html: String,
    /// How many remote images lost their source.
    pub blocked_images: usize,
}

fn is_remote(url: &str) -> bool {
    let u = url.trim_start().to_ascii_lowercase();
    u.starts_with("http:") || u.starts_with("https:") || u.starts_with("//")
}

/// Clean `html` from a mail message.
pub fn mail_html(html: &str, images: Images) -> SafeHtml {
    let blocked = Arc::new(AtomicUsize::new(0));
    let counter = blocked.clone();
    let html = ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"))
        .strip_comments(true)
        .attribute_filter(move |element, attribute, value| {
            if element == "img" && attribute == "src" && images == Images::Blocked {
                if is_remote(value) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                return None;
            }
            Some(Cow::Borrowed(value))
        })
        .clean(html)
        .to_string();
    SafeHtml {
        html: alt_for_every_image(&html),
        blocked_images: blocked.load(Ordering::Relaxed),
    }
}

/// Give every `<img>` without an `alt` an empty one (a decorative image to a screen reader), so
/// that a sender's markup does not make the page fail an accessibility audit; an image with its
/// own `alt` keeps it. `html` must be ammonia's output (html5ever's serializer): there a `<`
/// outside a tag is always `&lt;`, and attribute values are always double-quoted.
fn alt_for_every_image(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 16);
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // The end of this tag: the first `>` outside a double-quoted value.
        let mut quoted = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                '"' => quoted = !quoted,
                '>' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let tag = &rest[..end];
        let is_img = tag.get(1..4).is_some_and(|n| n.eq_ignore_ascii_case("img"))
            && (tag.len() == 4 || tag[4..].starts_with([' ', '/']));
        if is_img && !has_attribute(tag, "alt") {
            out.push_str("<img alt=\"\"");
            out.push_str(&tag[4..]);
        } else {
            out.push_str(tag);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether the tag text `tag` (from `<` to before `>`) has an attribute `name`, looking only
/// outside double-quoted values.
fn has_attribute(tag: &str, name: &str) -> bool {
    let mut quoted = false;
    let bytes = tag.as_bytes();
    for (i, c) in tag.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted
            && c == ' '
            && tag[i + 1..]
                .get(..name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && matches!(bytes.get(i + 1 + name.len()), Some(b'=' | b' ') | None)
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = r#"<p>Hello <b>there</b></p>
<script>document.title='pwned'</script>
<img src="https://tracker.example/pixel.gif?u=1" onerror="alert(1)" alt="pixel">
<img src="cid:logo@x" alt="logo">
<img src="/api/session" alt="relative">
<a href="javascript:alert(1)">click</a> <a href="https://example.org/x">ok</a>
<div style="background:url(https://tracker.example/bg)" onclick="alert(2)">decorated</div>
<style>body{background:url(https://tracker.example/css)}</style>
<iframe src="https://evil.example/"></iframe><form action="https://evil.example/"><input name=a></form>
<svg onload="alert(3)"><image href="https://tracker.example/svg"/></svg>"#;

    #[test]
    fn scripts_handlers_styles_frames_and_remote_images_are_gone() {
        let s = mail_html(HOSTILE, Images::Blocked);
        let h = s.html.to_ascii_lowercase();
        for bad in [
            "<script",
            "alert(",
            "onerror",
            "onclick",
            "onload",
            "javascript:",
            "style",
            "<iframe",
            "<form",
            "<input",
            "<svg",
            "tracker.example",
            "cid:",
            "/api/session",
            "evil.example",
        ] {
            assert!(!h.contains(bad), "{bad:?} survived in {}", s.html);
        }
        assert!(s.html.contains("<b>there</b>"), "{}", s.html);
        assert!(
            s.html.contains(r#"href="https://example.org/x""#),
            "{}",
            s.html
        );
        assert!(
            s.html.contains("noopener noreferrer nofollow"),
            "{}",
            s.html
        );
        // One remote image (the tracker); the cid: and relative ones are not remote.
        assert_eq!(s.blocked_images, 1);
    }

    #[test]
    fn remote_images_load_only_when_asked_and_nothing_else_changes() {
        let s = mail_html(HOSTILE, Images::Shown);
        assert!(
            s.html
                .contains(r#"src="https://tracker.example/pixel.gif?u=1""#),
            "{}",
            s.html
        );
        assert_eq!(s.blocked_images, 0);
        let h = s.html.to_ascii_lowercase();
        for bad in [
            "<script",
            "onerror",
            "javascript:",
            "cid:",
            "/api/session",
            "style",
        ] {
            assert!(!h.contains(bad), "{bad:?} survived in {}", s.html);
        }
    }

    #[test]
    fn protocol_relative_and_odd_case_sources_are_removed_too() {
        let s = mail_html(
            r#"<img src="//tracker.example/a"><img src=" HTTPS://tracker.example/b">"#,
            Images::Blocked,
        );
        assert!(!s.html.contains("tracker"), "{}", s.html);
        // `//host` is a relative URL to the parser and goes with the other relative URLs; the
        // upper-case absolute one is counted as a blocked remote image.
        assert_eq!(s.blocked_images, 1);
    }

    #[test]
    fn every_image_gets_an_alt_and_one_it_had_is_kept() {
        let s = mail_html(
            r#"<p title="<img x>">a</p><img src="https://h.example/a.png"><img alt="Logo" src="https://h.example/b.png">"#,
            Images::Shown,
        );
        assert!(
            s.html
                .contains(r#"<img alt="" src="https://h.example/a.png">"#),
            "{}",
            s.html
        );
        assert!(s.html.contains(r#"alt="Logo""#), "{}", s.html);
        assert!(!s.html.contains(r#"alt="" alt"#), "{}", s.html);
        assert!(s.html.contains(r#"title="&lt;img x&gt;""#), "{}", s.html);
        let blocked = mail_html(r#"<img src="https://h.example/a.png">"#, Images::Blocked);
        assert_eq!(blocked.html, r#"<img alt="">"#);
    }
}
