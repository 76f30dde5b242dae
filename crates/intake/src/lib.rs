//! The `intake` application: configuration, mail sources, the ingest pipeline and the CLI
//! commands behind the `intake` binary.
//!
//! - [`config`]: `intake.toml` + `INTAKE_*` environment, as written;
//! - [`settings`]: the whole configuration resolved into typed settings once, at load;
//! - [`source`]: where raw messages come from (local `.eml`/Maildir/mbox today);
//! - [`pipeline`]: read → prepare (all cores) → commit batches, exactly once;
//! - [`runner`]: channels (`intake run`): open, drain, leases, doctor;
//! - [`outbox`]: delivering the outbox (acknowledgements, replies, `[[sink]]`s);
//! - [`serve`]: `intake serve`: REST API, health, metrics, channel workers;
//! - [`quarantine`]: retrying a quarantined message through prepare and apply, exactly once;
//! - [`signin`]: after one sign-in: the other resources redeemed, the authorization document;
//! - [`housekeeping`]: mail-log retention and expired OAuth flows, at start and hourly;
//! - [`mailgen`]: deterministic synthetic mail for benchmarks and crash tests;
//! - [`web`]: the admin web UI's pages (mounted by `serve::app`);
//! - [`cli`]: the subcommands (`ingest`, `tickets`, `log`, `bench`).

pub mod cli;
pub mod config;
pub mod housekeeping;
pub mod mailgen;
pub mod oauth;
pub mod outbox;
pub mod pipeline;
pub mod quarantine;
pub mod runner;
pub mod serve;
pub mod settings;
pub mod signin;
pub mod source;
pub mod web;
