//! The admin UI's static files, compiled into the binary (no CDN, no build step): htmx (npm
//! `htmx.org`) and its Server-Sent Events extension (npm `htmx-ext-sse`, the live connection
//! test), each vendored unmodified with its licence, and the one stylesheet. Served under
//! `/assets/NAME` with a long cache lifetime: a new file gets a new name.

/// `(name, content type, bytes)`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        HTMX,
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-2.0.11.min.js"),
    ),
    (
        "htmx-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/htmx-LICENSE.txt"),
    ),
    (
        HTMX_SSE,
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-ext-sse-2.2.4.min.js"),
    ),
    (
        "htmx-ext-sse-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/htmx-ext-sse-LICENSE.txt"),
    ),
    (
        STYLESHEET,
        "text/css; charset=utf-8",
        include_bytes!("../../assets/intake.css"),
    ),
];

/// The file name of the vendored htmx.
pub const HTMX: &str = "htmx-2.0.11.min.js";
/// The file name of the vendored htmx SSE extension.
pub const HTMX_SSE: &str = "htmx-ext-sse-2.2.4.min.js";
/// The file name of the stylesheet.
pub const STYLESHEET: &str = "intake-1.css";

/// The asset called `name`.
pub fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, b)| (*ct, *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htmx_its_licence_and_the_stylesheet_are_compiled_in() {
        let (ct, js) = find(HTMX).unwrap();
        assert!(ct.starts_with("text/javascript"));
        assert!(String::from_utf8_lossy(js).contains("htmx"), "not htmx");
        let (_, lic) = find("htmx-LICENSE.txt").unwrap();
        assert!(String::from_utf8_lossy(lic).contains("Zero-Clause BSD"));
        let (ct, sse) = find(HTMX_SSE).unwrap();
        assert!(ct.starts_with("text/javascript"));
        assert!(String::from_utf8_lossy(sse).contains("defineExtension(\"sse\""));
        let (_, lic) = find("htmx-ext-sse-LICENSE.txt").unwrap();
        assert!(String::from_utf8_lossy(lic).contains("BSD Zero Clause License"));
        let (ct, css) = find(STYLESHEET).unwrap();
        assert!(ct.starts_with("text/css") && !css.is_empty());
        assert!(find("../Cargo.toml").is_none());
    }
}
