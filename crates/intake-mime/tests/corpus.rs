//! Golden tests over the realistic mail corpus in `tests/corpus/`.
//!
//! Every `<folder>/NNN-name.eml` is read with the default channel rules and compared with the
//! expectations in `NNN-name.json` beside it. Both are written by `tests/corpus/generate.py`
//! (which documents the expectation fields); the expectations come from what a service desk
//! should make of each message, not from this crate's output. All mismatches are collected and
//! reported together, each as `folder/file.eml: field: what went wrong`.
//!
//! Also here: the ~10 MB attachment case (built in memory, not committed) and the duplicate
//! Message-ID case.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use intake_core::{ChannelRules, MailDraft, Prepared, PreparedKind};
use intake_mime::Reader;
use serde_json::{Map, Value};

const FOLDERS: &[&str] = &[
    "plain",
    "html",
    "attachments",
    "charsets",
    "replies",
    "loops",
    "malformed",
    "threading",
];

/// Expectation keys the checker knows; anything else in a .json file is a typo and fails.
const KNOWN_KEYS: &[&str] = &[
    "kind",
    "summary",
    "summary_prefix",
    "summary_max_chars",
    "reporter",
    "reporter_name",
    "participants",
    "attachments",
    "description",
    "description_contains",
    "description_not_contains",
    "reply_text_contains",
    "reply_text_not_contains",
    "subject_keys",
    "references",
    "reason_contains",
    "message_id",
    "sent_at",
    "notes_contains",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

/// Every .eml in the corpus folders, sorted by path.
fn corpus_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for folder in FOLDERS {
        let dir = corpus_dir().join(folder);
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "eml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn label(path: &Path) -> String {
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .unwrap_or_default()
        .to_string_lossy();
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    format!("{folder}/{file}")
}

fn reader() -> Reader {
    Reader::new(&ChannelRules::default()).expect("default rules compile")
}

fn kind_name(p: &Prepared) -> &'static str {
    match p.kind {
        PreparedKind::Mail(_) => "mail",
        PreparedKind::Ignored(_) => "ignored",
        PreparedKind::Quarantined(_) => "quarantined",
    }
}

/// Collects mismatches for one file.
struct Checker {
    file: String,
    failures: Vec<String>,
}

impl Checker {
    fn fail(&mut self, field: &str, msg: impl AsRef<str>) {
        self.failures
            .push(format!("{}: {field}: {}", self.file, msg.as_ref()));
    }

    fn strings(&mut self, field: &str, v: &Value) -> Vec<String> {
        match v.as_array() {
            Some(a) => a
                .iter()
                .filter_map(|x| {
                    let s = x.as_str().map(str::to_string);
                    if s.is_none() {
                        self.fail(field, format!("expectation {x} is not a string"));
                    }
                    s
                })
                .collect(),
            None => {
                self.fail(field, format!("expectation {v} is not a list"));
                Vec::new()
            }
        }
    }

    fn eq_str(&mut self, field: &str, want: &Value, got: Option<&str>) {
        let want = want.as_str();
        if want != got {
            self.fail(field, format!("expected {want:?}, got {got:?}"));
        }
    }

    fn eq_list(&mut self, field: &str, want: &Value, got: &[String]) {
        let want = self.strings(field, want);
        if want != got {
            self.fail(field, format!("expected {want:?}, got {got:?}"));
        }
    }

    fn contains(&mut self, field: &str, want: &Value, text: &str, positive: bool) {
        for s in self.strings(field, want) {
            if text.contains(&s) != positive {
                let verb = if positive {
                    "missing"
                } else {
                    "unexpectedly present"
                };
                self.fail(field, format!("{s:?} {verb} in:\n---\n{text}\n---"));
            }
        }
    }

    fn mail(&mut self, exp: &Map<String, Value>, d: &MailDraft) {
        for (key, want) in exp {
            match key.as_str() {
                "summary" => self.eq_str(key, want, Some(&d.summary)),
                "summary_prefix" => {
                    let p = want.as_str().unwrap_or_default();
                    if !d.summary.starts_with(p) {
                        self.fail(key, format!("{:?} does not start with {p:?}", d.summary));
                    }
                }
                "summary_max_chars" => {
                    let max = want.as_u64().unwrap_or_default() as usize;
                    let n = d.summary.chars().count();
                    if n > max {
                        self.fail(key, format!("summary has {n} characters, more than {max}"));
                    }
                }
                "reporter" => self.eq_str(key, want, Some(&d.reporter)),
                "reporter_name" => self.eq_str(key, want, d.reporter_name.as_deref()),
                "participants" => self.eq_list(key, want, &d.participants),
                "description" => self.eq_str(key, want, Some(&d.description)),
                "description_contains" => self.contains(key, want, &d.description, true),
                "description_not_contains" => self.contains(key, want, &d.description, false),
                "reply_text_contains" => self.contains(key, want, &d.reply_text, true),
                "reply_text_not_contains" => self.contains(key, want, &d.reply_text, false),
                "notes_contains" => self.contains(key, want, &d.notes.join("\n"), true),
                "subject_keys" => {
                    let got: Vec<String> = d.subject_keys.iter().map(|k| k.to_string()).collect();
                    self.eq_list(key, want, &got);
                }
                "references" => self.eq_list(key, want, &d.references),
                "attachments" => self.attachments(want, d),
                _ => {}
            }
        }
    }

    fn attachments(&mut self, want: &Value, d: &MailDraft) {
        let Some(want) = want.as_array() else {
            return self.fail("attachments", "expectation is not a list");
        };
        let got: Vec<String> = d
            .attachments
            .iter()
            .map(|a| {
                format!(
                    "{:?} ({}, {} bytes)",
                    a.filename,
                    a.content_type,
                    a.data.len()
                )
            })
            .collect();
        if want.len() != d.attachments.len() {
            return self.fail(
                "attachments",
                format!(
                    "expected {} attachments, got {}: {got:?}",
                    want.len(),
                    got.len()
                ),
            );
        }
        for (i, (w, a)) in want.iter().zip(&d.attachments).enumerate() {
            let f = format!("attachments[{i}]");
            if let Some(name) = w.get("filename")
                && name.as_str() != Some(a.filename.as_str())
            {
                self.fail(
                    &format!("{f}.filename"),
                    format!("expected {name}, got {:?}", a.filename),
                );
            }
            if let Some(ct) = w.get("content_type")
                && ct.as_str() != Some(a.content_type.as_str())
            {
                self.fail(
                    &format!("{f}.content_type"),
                    format!("expected {ct}, got {:?}", a.content_type),
                );
            }
            if let Some(inline) = w.get("inline")
                && inline.as_bool() != Some(a.inline)
            {
                self.fail(
                    &format!("{f}.inline"),
                    format!("expected {inline}, got {}", a.inline),
                );
            }
            if let Some(cid) = w.get("content_id")
                && cid.as_str() != a.content_id.as_deref()
            {
                self.fail(
                    &format!("{f}.content_id"),
                    format!("expected {cid}, got {:?}", a.content_id),
                );
            }
            if let Some(size) = w.get("size")
                && size.as_u64() != Some(a.data.len() as u64)
            {
                self.fail(
                    &format!("{f}.size"),
                    format!("expected {size}, got {}", a.data.len()),
                );
            }
        }
    }
}

fn check_file(reader: &Reader, path: &Path) -> Vec<String> {
    let mut c = Checker {
        file: label(path),
        failures: Vec::new(),
    };
    let raw = fs::read(path).expect("read .eml");
    let json_path = path.with_extension("json");
    let exp: Map<String, Value> = match fs::read_to_string(&json_path) {
        Ok(t) => match serde_json::from_str(&t) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) => {
                c.fail(
                    "json",
                    format!("{} is not a JSON object", json_path.display()),
                );
                return c.failures;
            }
        },
        Err(e) => {
            c.fail(
                "json",
                format!("no expectation file {}: {e}", json_path.display()),
            );
            return c.failures;
        }
    };
    for key in exp.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            c.fail(key, "unknown expectation field");
        }
    }
    let p = reader.prepare(&raw);

    if p.envelope.content_hash.len() != 64 {
        c.fail(
            "content_hash",
            format!("{:?} is not 64 hex chars", p.envelope.content_hash),
        );
    }
    if p.envelope.size != raw.len() as u64 {
        c.fail(
            "size",
            format!("envelope size {} != {} bytes", p.envelope.size, raw.len()),
        );
    }
    if let Some(want) = exp.get("message_id") {
        c.eq_str("message_id", want, p.envelope.message_id.as_deref());
    }
    if let Some(want) = exp.get("sent_at")
        && want.as_i64() != p.envelope.sent_at
    {
        c.fail(
            "sent_at",
            format!("expected {want}, got {:?}", p.envelope.sent_at),
        );
    }

    let kind = kind_name(&p);
    let want_kind = exp
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("(missing)");
    if want_kind != kind {
        let detail = match &p.kind {
            PreparedKind::Mail(d) => format!("summary {:?}", d.summary),
            PreparedKind::Ignored(r) => r.to_string(),
            PreparedKind::Quarantined(r) => r.to_string(),
        };
        c.fail(
            "kind",
            format!("expected {want_kind}, got {kind} ({detail})"),
        );
        return c.failures;
    }
    match &p.kind {
        PreparedKind::Mail(d) => c.mail(&exp, d),
        PreparedKind::Ignored(_) | PreparedKind::Quarantined(_) => {
            let reason = match &p.kind {
                PreparedKind::Ignored(r) => r.to_string(),
                PreparedKind::Quarantined(r) => r.to_string(),
                PreparedKind::Mail(_) => unreachable!(),
            };
            if let Some(want) = exp.get("reason_contains").and_then(Value::as_str)
                && !reason.to_lowercase().contains(&want.to_lowercase())
            {
                c.fail(
                    "reason_contains",
                    format!("{want:?} not in reason {reason:?}"),
                );
            }
            for key in exp.keys() {
                let envelope_only =
                    ["kind", "reason_contains", "message_id", "sent_at"].contains(&key.as_str());
                if !envelope_only {
                    c.fail(
                        key,
                        format!("field cannot be checked on a message that is {kind}"),
                    );
                }
            }
        }
    }
    c.failures
}

#[test]
fn corpus_matches_expectations() {
    let reader = reader();
    let files = corpus_files();
    let failures: Vec<String> = files.iter().flat_map(|f| check_file(&reader, f)).collect();
    if !failures.is_empty() {
        let mut report = format!("{} corpus expectation(s) failed:\n", failures.len());
        for f in &failures {
            let _ = writeln!(report, "\n- {f}");
        }
        panic!("{report}");
    }
}

#[test]
fn corpus_is_big_enough_and_every_message_has_expectations() {
    let files = corpus_files();
    assert!(
        files.len() >= 60,
        "the corpus has only {} messages; at least 60 expected",
        files.len()
    );
    for folder in FOLDERS {
        let n = files
            .iter()
            .filter(|f| f.parent().is_some_and(|p| p.ends_with(folder)))
            .count();
        assert!(n >= 3, "corpus folder {folder} has only {n} messages");
    }
    for f in &files {
        assert!(
            f.with_extension("json").is_file(),
            "{}: no .json expectation beside it",
            label(f)
        );
    }
    // And no orphaned expectations.
    for folder in FOLDERS {
        for entry in fs::read_dir(corpus_dir().join(folder)).expect("read folder") {
            let p = entry.expect("entry").path();
            if p.extension().is_some_and(|e| e == "json") {
                assert!(
                    p.with_extension("eml").is_file(),
                    "{}: no .eml for it",
                    label(&p)
                );
            }
        }
    }
}

#[test]
fn same_message_id_different_content_gives_different_hashes() {
    let dir = corpus_dir().join("threading");
    let a = fs::read(dir.join("123-duplicate-id-first.eml")).expect("first copy");
    let b = fs::read(dir.join("124-duplicate-id-second.eml")).expect("second copy");
    let reader = reader();
    let (pa, pb) = (reader.prepare(&a), reader.prepare(&b));
    assert_eq!(
        pa.envelope.message_id.as_deref(),
        Some("duplicate-7f3a@acme.example")
    );
    assert_eq!(
        pa.envelope.message_id, pb.envelope.message_id,
        "same Message-ID expected"
    );
    assert_ne!(
        pa.envelope.content_hash, pb.envelope.content_hash,
        "different content, same hash"
    );
    for h in [&pa.envelope.content_hash, &pb.envelope.content_hash] {
        assert!(
            h.len() == 64
                && h.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
    // The same bytes always hash the same.
    assert_eq!(
        reader.prepare(&a).envelope.content_hash,
        pa.envelope.content_hash
    );
}

// ---------------------------------------------------------------------------------------------
// The ~10 MB attachment, built at run time so no large file is committed.

const BIG_NAME: &str = "big-scan.pdf";
const BIG_SIZE: usize = 10 * 1024 * 1024 + 12_345;

fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut flat = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                flat.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                flat.push(b'=');
            }
        }
    }
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 * 2 + 2);
    for line in flat.chunks(76) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push_str("\r\n");
    }
    out
}

/// A PDF-looking payload of `size` bytes: a PDF header, then deterministic pseudo-random bytes.
fn big_pdf(size: usize) -> Vec<u8> {
    let mut data = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    data
}

fn big_message(pdf: &[u8]) -> Vec<u8> {
    let boundary = "------------BigAttachment0123456789";
    let mut m = String::new();
    m.push_str("Received: from mail.acme.example (mail.acme.example [198.51.100.17])\r\n");
    m.push_str("\tby mx1.intake.example (Postfix) with ESMTPS id 4Q2kLmBIG0pz9;\r\n");
    m.push_str("\tWed, 04 Nov 2026 08:00:02 +0000 (UTC)\r\n");
    m.push_str("Message-ID: <b16b16b1-0000-4000-8000-000000000001@acme.example>\r\n");
    m.push_str("Date: Wed, 04 Nov 2026 08:00:00 +0000\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("User-Agent: Mozilla Thunderbird\r\n");
    m.push_str("From: Anna Schmidt <anna.schmidt@acme.example>\r\n");
    m.push_str("To: help@intake.example\r\n");
    m.push_str("Subject: Scanned contract (large)\r\n");
    let _ = write!(
        m,
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    );
    m.push_str("This is a multi-part message in MIME format.\r\n");
    let _ = write!(m, "--{boundary}\r\n");
    m.push_str("Content-Type: text/plain; charset=UTF-8; format=flowed\r\n");
    m.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
    m.push_str("The signed contract is attached (scanned, sorry for the size).\r\n\r\n");
    let _ = write!(m, "--{boundary}\r\n");
    let _ = write!(m, "Content-Type: application/pdf; name=\"{BIG_NAME}\"\r\n");
    let _ = write!(
        m,
        "Content-Disposition: attachment; filename=\"{BIG_NAME}\"\r\n"
    );
    m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    m.push_str(&base64_lines(pdf));
    let _ = write!(m, "\r\n--{boundary}--\r\n");
    m.into_bytes()
}

#[test]
fn base64_helper_matches_known_vectors() {
    assert_eq!(base64_lines(b""), "");
    assert_eq!(base64_lines(b"f"), "Zg==\r\n");
    assert_eq!(base64_lines(b"fo"), "Zm8=\r\n");
    assert_eq!(base64_lines(b"foobar"), "Zm9vYmFy\r\n");
    let long = base64_lines(&[0u8; 120]);
    assert!(long.lines().all(|l| l.len() <= 76), "{long}");
    assert_eq!(long.lines().next().map(str::len), Some(76));
}

#[test]
fn ten_megabyte_attachment_is_kept_whole_or_left_out_with_a_note() {
    let pdf = big_pdf(BIG_SIZE);
    let raw = big_message(&pdf);
    assert!(
        raw.len() > 13 * 1024 * 1024,
        "base64 message should be ~14 MB, is {}",
        raw.len()
    );

    // (a) Default rules (25 MiB per attachment): a mail with the attachment, byte for byte.
    let p = reader().prepare(&raw);
    let PreparedKind::Mail(d) = &p.kind else {
        panic!("expected mail with default rules, got {:?}", p.kind);
    };
    assert!(
        d.description.contains("The signed contract is attached"),
        "{}",
        d.description
    );
    assert_eq!(d.attachments.len(), 1, "one attachment expected");
    let a = &d.attachments[0];
    assert_eq!(a.filename, BIG_NAME);
    assert_eq!(a.content_type, "application/pdf");
    assert!(!a.inline);
    assert_eq!(a.data.len(), pdf.len(), "decoded attachment length");
    assert!(
        a.data == pdf,
        "decoded attachment differs from the original bytes"
    );
    assert!(d.notes.is_empty(), "no notes expected: {:?}", d.notes);

    // (b) max_attachment_bytes = 1_000_000: the attachment is left out, with a note.
    let rules = ChannelRules {
        max_attachment_bytes: 1_000_000,
        ..ChannelRules::default()
    };
    let p = Reader::new(&rules).expect("rules").prepare(&raw);
    let PreparedKind::Mail(d) = &p.kind else {
        panic!(
            "expected mail with a 1 MB attachment limit, got {:?}",
            p.kind
        );
    };
    assert!(
        d.attachments.is_empty(),
        "the attachment should be left out: {:?}",
        d.attachments
    );
    assert!(
        !d.notes.is_empty(),
        "a note about the left-out attachment is expected"
    );
    for needle in [BIG_NAME, "1000000", &pdf.len().to_string()] {
        assert!(
            d.description.contains(needle),
            "{needle:?} not in description:\n{}",
            d.description
        );
    }
    assert!(
        d.description.contains("The signed contract is attached"),
        "{}",
        d.description
    );
}
