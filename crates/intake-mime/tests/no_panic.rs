//! `prepare` must never panic, whatever the bytes.
//!
//! These property tests call the *unguarded* entry point ([`intake_mime::prepare_unguarded`]), so
//! a panic anywhere in parsing or mapping fails the test instead of being caught and turned into a
//! quarantine. Inputs are (a) arbitrary byte vectors up to 4 KB and (b) corpus messages mutated
//! the ways real damage happens: truncated, bytes flipped, a hostile header line spliced in.
//! Every result must carry a 64-hex-digit content hash and the input's size, and be storable:
//! no NUL in any text field, every field within its cap (`intake_mime::sanitize`).

use std::fs;
use std::path::Path;
use std::sync::LazyLock;

use intake_core::ChannelRules;
use intake_mime::{Reader, prepare_unguarded};
use proptest::prelude::*;
use proptest::sample::Index;

static READER: LazyLock<Reader> =
    LazyLock::new(|| Reader::new(&ChannelRules::default()).expect("default rules compile"));

/// Every non-empty corpus message, in path order.
static CORPUS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus");
    let mut paths = Vec::new();
    for folder in fs::read_dir(&root).expect("corpus directory") {
        let folder = folder.expect("entry").path();
        if !folder.is_dir() {
            continue;
        }
        for f in fs::read_dir(&folder).expect("corpus folder") {
            let f = f.expect("entry").path();
            if f.extension().is_some_and(|e| e == "eml") {
                paths.push(f);
            }
        }
    }
    paths.sort();
    let msgs: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| fs::read(p).expect("read .eml"))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(
        msgs.len() >= 60,
        "corpus not found or too small: {} messages",
        msgs.len()
    );
    msgs
});

/// Header lines that stress the parser: broken boundaries, encodings, addresses and parameters.
const HOSTILE_HEADERS: &[&str] = &[
    "Content-Type: multipart/mixed; boundary=\"\"",
    "Content-Type: multipart/mixed; boundary=\"--\"",
    "Content-Type: multipart/related; boundary=x; type=\"multipart/alternative\"",
    "Content-Type: message/rfc822",
    "Content-Type: multipart/report; report-type=",
    "Content-Type: text/plain; charset=\"utf-7\"",
    "Content-Type: text/plain; charset=iso-2022-jp",
    "Content-Type: text/html; charset=x-unknown",
    "Content-Transfer-Encoding: base64",
    "Content-Transfer-Encoding: quoted-printable",
    "Content-Disposition: attachment; filename*0*=UTF-8''%D0; filename*1*=%; filename*3=x",
    "Content-Disposition: inline; filename*=''",
    "Content-Disposition: attachment; filename=\"=?UTF-8?B?////?=\"",
    "Subject: =?UTF-8?B?////?= =?ISO-2022-JP?B?GyRC?= =?x?Q?=ZZ?=",
    "Subject: [HELP-99999999999999999999] overflow",
    "From: <>",
    "From: \"unterminated <a@b",
    "From: group:;",
    "To: =?UTF-8?Q?=FF?= <@>, ,,, <a@>",
    "Reply-To: <a@b.c>, <<<>>>",
    "Message-ID: <>",
    "In-Reply-To: <<<<",
    "References: <a@b> <c@d",
    "Date: Mon, 99 Foo 99999 99:99:99 +9999",
    "Auto-Submitted: ",
    "Return-Path: <",
    "List-Id: ",
    "X-Intake-Sent",
    "\u{0}: \u{0}",
    "--boundary",
    "--",
    "=?UTF-8?B?",
    "Subject: =?utf-8?b?AGEAYgA=?=",
    "Content-Disposition: attachment; filename=\"=?utf-8?b?YQBi?=\"",
    "From: =?utf-8?q?N=00ame?= <nul@x.example>",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the message at a point.
    Truncate(Index),
    /// XOR some bytes with non-zero values.
    Flip(Vec<(Index, u8)>),
    /// Insert a header line (a known hostile one or random text) at a line start.
    Splice(Index, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec((any::<Index>(), 1u8..=255), 1..16).prop_map(Mutation::Flip),
        (
            any::<Index>(),
            prop_oneof![
                prop::sample::select(HOSTILE_HEADERS).prop_map(str::to_string),
                "[A-Za-z-]{1,20}: [ -~]{0,60}",
                any::<String>(),
            ]
        )
            .prop_map(|(at, line)| Mutation::Splice(at, line)),
    ]
}

fn apply(msg: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = msg.to_vec();
    match m {
        Mutation::Truncate(at) => out.truncate(at.index(msg.len() + 1)),
        Mutation::Flip(flips) => {
            for (at, x) in flips.iter().filter(|_| !msg.is_empty()) {
                let i = at.index(out.len());
                out[i] ^= x;
            }
        }
        Mutation::Splice(at, line) => {
            // Insert after the end of the line the chosen point falls in.
            let i = at.index(out.len() + 1);
            let pos = out[i..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(out.len(), |p| i + p + 1);
            let mut ins = line.as_bytes().to_vec();
            ins.extend_from_slice(b"\r\n");
            out.splice(pos..pos, ins);
        }
    }
    out
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let p = prepare_unguarded(&READER, bytes);
    let h = &p.envelope.content_hash;
    prop_assert_eq!(h.len(), 64, "content hash {:?}", h);
    prop_assert!(
        h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
        "content hash {:?}",
        h
    );
    prop_assert_eq!(p.envelope.size, bytes.len() as u64);
    storable(&p)
}

/// Every stored text field is free of NUL and within its cap.
fn storable(p: &intake_core::Prepared) -> Result<(), TestCaseError> {
    use intake_mime::sanitize::Caps;
    let ok = |s: &str, cap: usize| !s.contains('\0') && s.len() <= cap;
    let e = &p.envelope;
    prop_assert!(e.message_id.as_deref().is_none_or(|m| ok(m, Caps::ID)));
    prop_assert!(e.sender.as_deref().is_none_or(|m| ok(m, Caps::ADDRESS)));
    match &p.kind {
        intake_core::PreparedKind::Mail(d) => {
            prop_assert!(ok(&d.summary, Caps::SUMMARY), "{:?}", d.summary);
            prop_assert!(ok(&d.description, Caps::BODY) && ok(&d.reply_text, Caps::BODY));
            prop_assert!(ok(&d.reporter, Caps::ADDRESS));
            prop_assert!(d.reporter_name.as_deref().is_none_or(|n| ok(n, Caps::NAME)));
            prop_assert!(d.participants.iter().all(|a| ok(a, Caps::ADDRESS)));
            prop_assert!(d.references.iter().all(|r| ok(r, Caps::ID)));
            for a in &d.attachments {
                prop_assert!(ok(&a.filename, Caps::FILENAME), "{:?}", a.filename);
                prop_assert!(ok(&a.content_type, Caps::CONTENT_TYPE));
                prop_assert!(a.content_id.as_deref().is_none_or(|c| ok(c, Caps::ID)));
            }
        }
        intake_core::PreparedKind::Ignored(r) => {
            prop_assert!(!r.to_string().contains('\0'))
        }
        intake_core::PreparedKind::Quarantined(r) => {
            prop_assert!(!r.to_string().contains('\0'))
        }
    }
    Ok(())
}

#[test]
fn nul_in_a_decoded_subject_name_filename_and_body_is_removed() {
    let raw = b"From: =?utf-8?q?Ja=00ne?= <jane@x.example>\r\nSubject: =?utf-8?b?UHJpbnRlcgAgb24gZmlyZQ==?=\r\n\
                Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\
                Content-Transfer-Encoding: quoted-printable\r\n\r\nsmoke=00 everywhere\r\n--B\r\n\
                Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"=?utf-8?b?cmVwAG9ydC5wZGY=?=\"\r\n\r\n\
                data\r\n--B--\r\n";
    let p = READER.prepare(raw);
    let intake_core::PreparedKind::Mail(d) = &p.kind else {
        panic!("{:?}", p.kind);
    };
    assert_eq!(d.summary, "Printer on fire");
    assert_eq!(d.description, "smoke everywhere");
    assert_eq!(d.reporter_name.as_deref(), Some("Jane"));
    assert!(
        !d.attachments[0].filename.contains('\0'),
        "{:?}",
        d.attachments[0].filename
    );
    storable(&p).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes)?;
    }

    #[test]
    fn mutated_corpus_messages_never_panic(which in any::<Index>(), muts in prop::collection::vec(mutation(), 1..4)) {
        let original = &CORPUS[which.index(CORPUS.len())];
        let mut msg = original.clone();
        for m in &muts {
            msg = apply(&msg, m);
        }
        check(&msg)?;
    }
}

#[test]
fn every_corpus_message_and_every_prefix_of_a_few_never_panic() {
    for m in CORPUS.iter() {
        check(m).expect("corpus message");
    }
    // Every truncation point of three structurally rich messages.
    for m in CORPUS
        .iter()
        .filter(|m| m.windows(9).any(|w| w == b"multipart"))
        .take(3)
    {
        for cut in 0..=m.len() {
            check(&m[..cut]).expect("truncated corpus message");
        }
    }
}

/// Found by the cargo-fuzz target (see fuzz/README.md): mail-parser 0.11.9 trips a
/// `debug_assert!` ("Invalid part ID, could not find multipart.", parsers/message.rs:485) on a
/// message/rfc822 part that holds nothing but another, empty, message/rfc822. Builds without debug
/// assertions carry on parsing; with them, the guarded [`Reader::prepare`] must turn the panic
/// into a quarantine instead of unwinding into the caller.
#[test]
fn nested_empty_rfc822_is_survived_by_the_guarded_entry_point() {
    let raw = b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\n\
                Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822; b\r\n\r\n\r\n--B--";
    let p = READER.prepare(raw);
    match &p.kind {
        intake_core::PreparedKind::Mail(d) => assert_eq!(d.reporter, "a@b.example"),
        intake_core::PreparedKind::Quarantined(r) => {
            assert!(r.to_string().contains("MIME parser failed"), "{r}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.envelope.content_hash.len(), 64);
}
