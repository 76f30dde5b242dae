//! Fuzz target: `prepare` must never panic and always report a well-formed envelope.
//!
//! Calls the unguarded entry point so a panic is a crash libFuzzer reports, not a quarantine.
#![no_main]

use std::sync::LazyLock;

use intake_core::ChannelRules;
use intake_mime::{Reader, prepare_unguarded};
use libfuzzer_sys::fuzz_target;

static READER: LazyLock<Reader> =
    LazyLock::new(|| Reader::new(&ChannelRules::default()).expect("default rules compile"));

fuzz_target!(|data: &[u8]| {
    let p = prepare_unguarded(&READER, data);
    assert_eq!(p.envelope.content_hash.len(), 64);
    assert_eq!(p.envelope.size, data.len() as u64);
});
