//! `Reader::prepare_oversized`: a message left on the server because its declared size is
//! over the limit is quarantined from its header section, with its size and the limit.

use intake_core::{ChannelRules, PreparedKind, QuarantineReason};
use intake_mime::{Reader, content_hash};

#[test]
fn an_oversized_message_is_quarantined_from_its_headers_with_size_and_limit() {
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let headers = b"From: Jane Doe <Jane@Customer.example>\r\nSubject: scan\r\n\
Message-ID: <big-1@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n";
    let p = reader.prepare_oversized(headers, 41_943_040, 26_214_400);
    match &p.kind {
        PreparedKind::Quarantined(r) => {
            assert_eq!(
                *r,
                QuarantineReason::TooLarge {
                    size: 41_943_040,
                    limit: 26_214_400
                }
            );
            let text = r.to_string();
            assert!(
                text.contains("41943040") && text.contains("26214400"),
                "{text}"
            );
        }
        other => panic!("expected a quarantine, got {other:?}"),
    }
    assert_eq!(p.envelope.size, 41_943_040, "the declared size");
    assert_eq!(p.envelope.content_hash, content_hash(headers));
    assert_eq!(
        p.envelope.message_id.as_deref(),
        Some("big-1@customer.example")
    );
    assert_eq!(p.envelope.sender.as_deref(), Some("jane@customer.example"));
    assert!(p.envelope.sent_at.is_some());
}

#[test]
fn unreadable_headers_still_give_a_quarantine() {
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    for junk in [&b""[..], b"\xff\xfe\x00garbage", b"\r\n\r\n"] {
        let p = reader.prepare_oversized(junk, 200, 100);
        assert!(
            matches!(
                p.kind,
                PreparedKind::Quarantined(QuarantineReason::TooLarge {
                    size: 200,
                    limit: 100
                })
            ),
            "{junk:?}"
        );
    }
}
