//! Command-line interface. Command names, flags and `--json` field names are a public contract
//! (docs/cli.md): scripts depend on them.

mod admin;
pub(crate) mod authorize;
mod bench;
mod config;
pub(crate) mod doctor;
mod folders;
mod ingest;
mod outbox;
mod reply;
pub(crate) mod run;
mod serve;
mod tickets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "intake",
    version,
    about = "Turns mailboxes into tickets, exactly once."
)]
pub struct Cli {
    /// Configuration file (default: ./intake.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default sqlite://intake.db) or postgres://…
    #[arg(long, global = true, value_name = "URL", env = "INTAKE_DATABASE_URL")]
    pub db: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest .eml files, Maildir folders and mbox files into tickets.
    Ingest(ingest::IngestArgs),
    /// List or show tickets.
    #[command(subcommand)]
    Tickets(tickets::TicketsCommand),
    /// Show the mail log (newest first).
    Log(tickets::LogArgs),
    /// Run the server channels of the configuration (`--once`: drain each once and exit).
    Run(run::RunArgs),
    /// Complete an OAuth grant from a terminal (device code, or --browser).
    Authorize(authorize::AuthorizeArgs),
    /// Check (and refresh when due) a stored OAuth token; prints metadata, never the token.
    Token(authorize::TokenArgs),
    /// Staged connection check of the channels: DNS, TCP/proxy, TLS and login, folder, counts.
    /// Counts only; fetches and changes nothing. Exit code 1 when a channel fails.
    Doctor(doctor::DoctorArgs),
    /// The folders of a channel's mailbox with their IDs and well-known roles (IMAP LIST with
    /// SPECIAL-USE, Graph mailFolders): choose `folder` without guessing a display name.
    Folders(folders::FoldersArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Answer a ticket by mail from its channel's mailbox (recorded as an outgoing comment).
    Reply(reply::ReplyArgs),
    /// Outgoing effects (mail, webhook, tracker calls): list, retry, discard.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// The long-running service: REST API, OAuth callback, /healthz, /readyz, /metrics and the
    /// channel workers of `intake run` (docs/deploy.md, docs/api.md).
    Serve(serve::ServeArgs),
    /// The configuration kept in the database (`intake serve`).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Administrators of `intake serve`: create one, or issue an API token.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// Logs go to stderr; level from `INTAKE_LOG` (default `warn`); one JSON object per line when
/// `INTAKE_LOG_FORMAT=json` (`text`, the default, otherwise). Any other format is an error
/// naming the variable.
pub fn init_tracing() -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let json = match std::env::var("INTAKE_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => false,
        Ok("json") => true,
        Ok(other) => {
            return Err(format!("INTAKE_LOG_FORMAT = {other:?}: use json or text"));
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("INTAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(dependency_caps());
    let _ = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    Ok(())
}

/// Dependencies whose debug/trace output can carry secrets or whole messages, and the most
/// verbose level let through for them whatever `INTAKE_LOG` says (defect 6: no level may write
/// a password, token or client secret). async-imap traces every protocol line, `LOGIN`
/// passwords and `AUTHENTICATE` blobs included; hyper/h2/reqwest trace request heads
/// (`Authorization: Bearer …`) and bodies (token requests carry client secrets and refresh
/// tokens); rustls, oauth2 and sqlx are capped for the same reason (handshake and statement
/// details). Documented in docs/configuration.md.
pub const DEPENDENCY_LOG_CAPS: &[(&str, tracing::Level)] = &[
    ("async_imap", tracing::Level::INFO),
    ("imap_proto", tracing::Level::INFO),
    ("hyper", tracing::Level::INFO),
    ("hyper_util", tracing::Level::INFO),
    ("h2", tracing::Level::INFO),
    ("reqwest", tracing::Level::INFO),
    ("rustls", tracing::Level::INFO),
    ("tokio_rustls", tracing::Level::INFO),
    ("oauth2", tracing::Level::INFO),
    ("sqlx", tracing::Level::INFO),
];

/// A filter passing everything except what [`DEPENDENCY_LOG_CAPS`] caps.
fn dependency_caps() -> tracing_subscriber::filter::Targets {
    DEPENDENCY_LOG_CAPS.iter().fold(
        tracing_subscriber::filter::Targets::new()
            .with_default(tracing_subscriber::filter::LevelFilter::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    )
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The whole configuration is resolved and checked here, for every command: a bad value
    // fails at once, naming its key.
    let settings = Settings::load(cli.config.as_deref())?;
    let config = &*settings.config;
    let db = config.database_url(cli.db.as_deref());
    match cli.command {
        Command::Ingest(a) => ingest::run(&settings, &db, a).await,
        Command::Tickets(c) => tickets::run(&db, c).await,
        Command::Log(a) => tickets::log(&db, a).await,
        Command::Run(a) => run::run(&settings, &db, a).await,
        Command::Authorize(a) => authorize::authorize(&settings, &db, a).await,
        Command::Token(a) => authorize::token(&settings, &db, a).await,
        Command::Doctor(a) => doctor::run(&settings, &db, a).await,
        Command::Folders(a) => folders::run(&settings, &db, a).await,
        Command::Bench(c) => bench::run(c).await,
        Command::Outbox(c) => outbox::run(&db, c).await,
        Command::Reply(a) => reply::run(&settings, &db, a).await,
        Command::Serve(a) => serve::run(&settings, cli.config.as_deref(), &db, a).await,
        Command::Admin(c) => admin::run(&db, c).await,
        Command::Config(c) => config::run(&settings, &db, c).await,
    }
}
