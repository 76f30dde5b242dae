//! Every entry of the catalogue (intake-core `catalogue.rs`) that a live decoder understands is
//! decoded to the catalogue's most likely cause: mail-server answers by `diagnose_login`,
//! AADSTS errors by `aadsts::classify`, Graph errors by the Graph source's `diagnose`. A
//! decoder and the catalogue can therefore not drift apart.

use intake_core::OwnCode;
use intake_core::aadsts::{TokenEndpointError, classify};
use intake_core::catalogue::{CATALOGUE, Code, Decoder};
use intake_mail::check::{diagnose_login, password_refused};
use intake_mail::source::graph::diagnose;

#[test]
fn every_decoded_entry_decodes_to_the_catalogues_first_cause() {
    let mut checked = 0;
    for e in CATALOGUE {
        let Code::Root(first) = e.causes[0].0 else {
            if e.decoder == Decoder::Password {
                // A password login's refusal; the same words after an OAuth login are the
                // entry's OAuth cause.
                assert_eq!(
                    e.causes[0].0,
                    Code::Own(OwnCode::PasswordRefused),
                    "{:?}",
                    e.key
                );
                assert!(password_refused(e.text), "{:?} is not refused", e.text);
                let oauth = diagnose_login(e.text, true).map(|c| c.id);
                assert!(
                    e.causes.iter().any(|(c, _)| Some(c.id()) == oauth),
                    "{:?}: with OAuth {oauth:?} is not among its causes",
                    e.key
                );
                checked += 1;
            } else {
                assert_eq!(e.decoder, Decoder::Catalogue, "{:?}", e.key);
            }
            continue;
        };
        let got = match e.decoder {
            Decoder::Catalogue => continue,
            Decoder::Password => unreachable!("a password entry's first cause is PASSWORD_REFUSED"),
            Decoder::Login => diagnose_login(e.text, true).map(|c| c.id),
            Decoder::Aadsts => {
                let code: u32 = e
                    .text
                    .trim_start_matches("AADSTS")
                    .split(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("an AADSTS entry starts with its code");
                let raw = TokenEndpointError {
                    error: "invalid_request".into(),
                    error_description: Some(e.text.to_string()),
                    error_codes: vec![code],
                    ..Default::default()
                };
                classify(&raw).cause.map(|c| c.id())
            }
            Decoder::Graph(status, code) => {
                diagnose(status, code, e.text, true).cause.map(|c| c.id())
            }
        };
        assert_eq!(got, Some(first.id()), "{:?} ({:?})", e.text, e.decoder);
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} entries have a live decoder");
}
