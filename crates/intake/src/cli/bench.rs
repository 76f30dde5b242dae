//! `intake bench ingest`: generates N realistic messages into a Maildir and measures, in one run,
//! (a) parse only, (b) full ingest into a fresh SQLite file and (c) full ingest into a fresh
//! PostgreSQL database — messages/s and peak RSS of each phase (VmHWM, reset between phases via
//! /proc/self/clear_refs). Results are recorded in docs/BENCHMARKS.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use intake_core::{ChannelRules, ProjectKey};
use intake_store::Store;
use serde::Serialize;
use sqlx::Connection;

use crate::mailgen::{self, GenOptions};
use crate::pipeline::{self, IngestOptions, Summary};
use crate::source::local;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Generate a Maildir and measure parse-only and full-ingest rates.
    Ingest(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Number of messages to generate.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Where to generate the Maildir (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL server for the PostgreSQL phase; a fresh database is created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Skip the PostgreSQL phase.
    #[arg(long)]
    pub no_postgres: bool,
    /// Messages per transaction.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Phase {
    name: String,
    messages: u64,
    seconds: f64,
    messages_per_second: f64,
    peak_rss_mib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn phase(name: &str, messages: u64, started: Instant, summary: Option<Summary>) -> Phase {
    let seconds = started.elapsed().as_secs_f64();
    Phase {
        name: name.into(),
        messages,
        seconds,
        messages_per_second: messages as f64 / seconds.max(1e-9),
        peak_rss_mib: peak_rss_mib(),
        summary,
    }
}

/// Flush dirty pages (the generated Maildir, an earlier phase's or an earlier run's database)
/// to disk before a timed phase, untimed. Otherwise the kernel writes them back whenever their
/// 30-second expiry falls, which lands in some phase of some run and moves the ratios by ±0.1
/// between back-to-back runs. Best effort: without a `sync` command the phase simply runs.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

pub async fn run(c: BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Ingest(a) = c;
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().join("maildir"));
    let gen_started = Instant::now();
    let stats = mailgen::write_maildir(
        &dir,
        &GenOptions {
            messages: a.messages,
            ..Default::default()
        },
    )?;
    eprintln!(
        "generated {} messages ({:.1} MiB, {} replies, {} with attachments) in {:.1}s into {}",
        stats.messages,
        stats.bytes as f64 / 1048576.0,
        stats.replies,
        stats.attachments,
        gen_started.elapsed().as_secs_f64(),
        dir.display()
    );
    let origins = local::walk(std::slice::from_ref(&dir))?;
    let rules = ChannelRules::default();
    let project: ProjectKey = "BENCH".parse()?;
    let mut opts = IngestOptions::new("bench", project, rules.clone());
    opts.batch = a.batch;
    let mut phases = Vec::new();

    settle();
    reset_peak_rss();
    let t = Instant::now();
    let n = pipeline::parse_only(origins.clone(), &rules, opts.batch, pipeline::cores()).await?;
    phases.push(phase("parse only", n, t, None));

    let sqlite_url = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let store = Store::connect(&sqlite_url).await?;
    settle();
    reset_peak_rss();
    let t = Instant::now();
    let s = pipeline::ingest(&store, origins.clone(), &opts, None).await?;
    // Closing checkpoints the WAL into the database file: part of the cost, so inside the timing.
    store.close().await;
    phases.push(phase("ingest sqlite", s.total(), t, Some(s)));
    check(&s, &stats)?;

    if !a.no_postgres {
        let name = format!("intake_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&a.postgres).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let base = a
            .postgres
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&a.postgres);
        let store = Store::connect(&format!("{base}/{name}")).await?;
        settle();
        reset_peak_rss();
        let t = Instant::now();
        let res = pipeline::ingest(&store, origins.clone(), &opts, None).await;
        store.close().await;
        let elapsed_end = Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        let s = res?;
        let mut p = phase("ingest postgres", s.total(), t, Some(s));
        p.seconds = (elapsed_end - t).as_secs_f64();
        p.messages_per_second = p.messages as f64 / p.seconds.max(1e-9);
        phases.push(p);
        check(&s, &stats)?;
    }

    if a.json {
        println!("{}", serde_json::to_string_pretty(&phases)?);
    } else {
        println!(
            "{:<16} {:>9} {:>8} {:>10} {:>9}",
            "phase", "messages", "seconds", "msg/s", "peak MiB"
        );
        for p in &phases {
            println!(
                "{:<16} {:>9} {:>8.2} {:>10.0} {:>9.1}",
                p.name, p.messages, p.seconds, p.messages_per_second, p.peak_rss_mib
            );
        }
        if let [parse, sqlite, ..] = phases.as_slice() {
            println!(
                "sqlite ingest / parse-only = {:.2}",
                sqlite.messages_per_second / parse.messages_per_second
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A benchmark that silently lost or duplicated work would be meaningless: check the outcome.
fn check(s: &Summary, g: &mailgen::GenStats) -> anyhow::Result<()> {
    anyhow::ensure!(
        s.created == g.new_tickets && s.commented == g.replies && s.total() == g.messages,
        "unexpected outcome {s:?} for {g:?}"
    );
    Ok(())
}
