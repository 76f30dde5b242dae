//! Command-line interface. Command names, flags and `--json` field names are a public contract
//! (docs/cli.md): scripts depend on them.

mod authorize;
mod bench;
mod doctor;
mod ingest;
mod tickets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

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
    Run(RunArgs),
    /// Complete an OAuth grant from a terminal (device code, or --browser).
    Authorize(authorize::AuthorizeArgs),
    /// Check (and refresh when due) a stored OAuth token; prints metadata, never the token.
    Token(authorize::TokenArgs),
    /// Staged connection check of the channels: DNS, TCP/proxy, TLS and login, folder, counts.
    /// Counts only; fetches and changes nothing. Exit code 1 when a channel fails.
    Doctor(doctor::DoctorArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Logs go to stderr; level from `INTAKE_LOG` (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INTAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    let db = config.database_url(cli.db.as_deref());
    match cli.command {
        Command::Ingest(a) => ingest::run(&config, &db, a).await,
        Command::Tickets(c) => tickets::run(&db, c).await,
        Command::Log(a) => tickets::log(&db, a).await,
        Command::Run(a) => run_channels(&config, &db, a).await,
        Command::Authorize(a) => authorize::authorize(&config, &db, a).await,
        Command::Token(a) => authorize::token(&config, &db, a).await,
        Command::Doctor(a) => doctor::run(&config, &db, a).await,
        Command::Bench(c) => bench::run(c).await,
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Drain each channel once and exit, printing the same summary as `ingest`.
    #[arg(long)]
    pub once: bool,
    /// Print exactly one JSON object: {"created":N,"commented":N,"ignored":N,"quarantined":N,"duplicate":N}
    #[arg(long)]
    pub json: bool,
}

async fn run_channels(config: &Config, db: &str, a: RunArgs) -> anyhow::Result<ExitCode> {
    let store = intake_store::Store::connect(db).await?;
    let _housekeeping = crate::housekeeping::start(config, &store).await;
    let channels: Vec<_> = config
        .channels
        .iter()
        .filter(|c| a.channel.as_ref().is_none_or(|n| *n == c.name))
        .collect();
    anyhow::ensure!(
        !channels.is_empty(),
        "no channel to run in the configuration{}",
        a.channel
            .as_ref()
            .map(|n| format!(" named {n:?}"))
            .unwrap_or_default()
    );
    if !a.once {
        return run_forever(config, store, channels).await;
    }
    let mut total = crate::pipeline::Summary::default();
    let mut failed = 0;
    for c in channels {
        // One failing channel never stops the others (RC12).
        match crate::runner::run_once(config, &store, c).await {
            Ok(None) => eprintln!(
                "channel {}: another node holds its lease and is processing it; skipped",
                c.name
            ),
            Ok(Some(s)) => {
                total.created += s.created;
                total.commented += s.commented;
                total.ignored += s.ignored;
                total.quarantined += s.quarantined;
                total.duplicate += s.duplicate;
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: channel {}: {e:#}", c.name);
                let fields = serde_json::json!({"error": format!("{e:#}")});
                let _ = store
                    .log_event(
                        Some(&c.name),
                        "error",
                        "channel_failed",
                        &format!("{e:#}"),
                        fields,
                    )
                    .await;
            }
        }
    }
    store.close().await;
    if a.json {
        println!("{}", serde_json::to_string(&total)?);
    } else {
        println!(
            "created {}, commented {}, ignored {}, quarantined {}, duplicate {}",
            total.created, total.commented, total.ignored, total.quarantined, total.duplicate
        );
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Every channel in its own task until SIGINT/SIGTERM; each finishes its current batch.
async fn run_forever(
    config: &Config,
    store: intake_store::Store,
    channels: Vec<&crate::config::ChannelConfig>,
) -> anyhow::Result<ExitCode> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // One shared configuration: a clone per task would cost channels² memory.
    let shared = std::sync::Arc::new(config.clone());
    for c in channels {
        let (config, store, c, rx) = (shared.clone(), store.clone(), c.clone(), rx.clone());
        tasks.spawn(async move { crate::runner::run_forever(&config, &store, &c, rx).await });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("stopping: finishing the current batches");
    let _ = tx.send(true);
    while tasks.join_next().await.is_some() {}
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
