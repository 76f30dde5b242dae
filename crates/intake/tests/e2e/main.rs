//! End-to-end tests of the `intake` binary, one test binary with a module per area.

/// Channels through `intake run --once`: IMAP first-sync policies and UIDVALIDITY changes, POP3
/// `start = "now"` (real Dovecot), local Maildir and mbox channels with their post-actions.
mod channels;
/// The CLI contract: commands, flags and JSON shapes scripts rely on.
mod cli;
/// SIGKILL in the middle of large imports, on SQLite and PostgreSQL: nothing lost or doubled.
mod crash;
/// Tokens per resource (one sign-in for Graph and IMAP) and the doctor's findings per root
/// cause (docs/troubleshooting.md).
mod diagnose;
/// `intake doctor`: staged check that only counts (RC15) and names the failing stage (RC7).
mod doctor;
/// Durable before destructive (the runner refuses post-actions after non-durable commits) and
/// housekeeping at the start of `intake ingest` / `intake run`.
mod durable;
/// Faults injected on real connections (cut, stall, drip, reset, refuse; IdP and Graph
/// outages; a hung server): each message still ends with exactly one outcome.
mod faults;
/// `intake folders`: IMAP SPECIAL-USE roles on Dovecot, Graph well-known names on a fake with
/// German display names; a folder chosen from the listing passes the doctor (RC5).
mod folders;
/// A hung mail server: `run --once` fails in time naming the stage; SIGTERM ends `run` in 10 s.
mod hang;
/// OAuth against a real OAuth/OIDC server (oidc-provider, installed by scripts/testbed/idp.sh).
mod idp;
/// IMAP channels against a real Dovecot (scripts/testbed/dovecot.sh).
mod imap;
/// Helpers shared by the doctor's tests (diagnose.rs, rootcause.rs): Graph and token
/// endpoint fakes, proxies, `intake doctor --json` and its findings.
mod kit;
/// One node per mailbox: two `intake run` processes on PostgreSQL, failover after SIGKILL.
mod nodes;
/// OAuth: single-flight refresh across processes, decoded errors, device code, certificates.
mod oauth;
/// The outbox: webhook sink (signature, retries, idempotency, order, 4xx), SIGKILL while
/// sending, the own-mail header that cannot be forged.
mod outbox;
/// One test per root cause of the doctor (RC2, RC3, RC4, RC6, RC10, RC11, G2, a certificate for
/// the wrong host, a silent proxy), tokens of the wrong audience, the run-time pre-flight,
/// the diagnosis once per change of cause, and healthy configurations without an error.
mod rootcause;
/// Mail out: Dovecot submission with XOAUTH2 (acknowledgement, reply, threading), Graph
/// sendMail against a fake, the doctor's outgoing check.
mod send;
/// `intake serve`: health, authentication (tokens, sessions + CSRF, rate limit), audit, JSON
/// logs, SIGTERM.
mod serve;
/// The admin web UI in headless Chromium (playwright-core + axe-core, tests/browser/).
mod web;

use std::path::Path;
use std::process::{Command, Output};

pub fn intake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_intake"));
    c.env_remove("INTAKE_DATABASE_URL")
        .env_remove("INTAKE_PROJECT")
        .current_dir(std::env::temp_dir());
    c
}

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "intake failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}
