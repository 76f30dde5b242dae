//! `intake bench ingest`: generates N realistic messages into a Maildir and measures, in one run,
//! (a) parse only, (b) full ingest into a fresh SQLite file and (c) full ingest into a fresh
//! PostgreSQL database — messages/s and peak RSS of each phase (VmHWM, reset between phases via
//! /proc/self/clear_refs). Results are recorded in docs/BENCHMARKS.md.
//!
//! The phases run `--rounds` times, interleaved (a, b, c, a, b, c, …), each round on a fresh
//! database, and the summary gives each phase's median rate and their ratio. On a shared 2-core
//! VM the parse-only rate of one phase swings by ±20% between back-to-back runs (the SQLite rate
//! by ±5%), so a single pair of phases says little about their ratio; every round is printed
//! too, with the PostgreSQL ÷ SQLite ratio (medians and per round) and the load average at
//! the start and the end (the phases share the machine with whatever else runs on it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use intake_core::{ChannelRules, ProjectKey};
use intake_store::{Durability, Store};
use serde::Serialize;
use sqlx::Connection;

use crate::mailgen::{self, GenOptions};
use crate::pipeline::{self, IngestOptions, Summary};
use crate::source::local;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Generate a Maildir and measure parse-only and full-ingest rates.
    Ingest(BenchArgs),
    /// `GET /api/tickets` latency under concurrent clients (oha), on SQLite and PostgreSQL.
    Api(super::bench_api::ApiArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Number of messages to generate.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Where to generate the Maildir (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL server for the PostgreSQL phase; a fresh database is created and dropped
    /// (the URL's database name is replaced, its `?sslmode=…` and other options are kept).
    /// The default is the local test server without TLS: on loopback TLS protects nothing and
    /// costs the writer about half its rate (docs/decisions.md, "PostgreSQL over TLS").
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
    )]
    pub postgres: String,
    /// Skip the PostgreSQL phase.
    #[arg(long)]
    pub no_postgres: bool,
    /// Messages per transaction.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// How many times to run the phases (interleaved, each on a fresh database); the summary
    /// uses the median of each phase.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Phase {
    name: String,
    /// 1-based round this phase ran in.
    round: u32,
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

/// A finished phase that took `seconds`; its peak RSS is read now.
fn phase(name: &str, round: u32, messages: u64, seconds: f64, summary: Option<Summary>) -> Phase {
    Phase {
        name: name.into(),
        round,
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

const PARSE: &str = "parse only";
const SQLITE: &str = "ingest sqlite";
const POSTGRES: &str = "ingest postgres";

pub async fn run(c: BenchCommand) -> anyhow::Result<ExitCode> {
    let a = match c {
        BenchCommand::Ingest(a) => a,
        BenchCommand::Api(a) => return super::bench_api::run(a).await,
    };
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
    let sqlite_path = tmp.path().join("bench.db");
    let sqlite_url = format!("sqlite://{}", sqlite_path.display());
    let mut phases = Vec::new();
    let load_before = loadavg();
    for round in 1..=a.rounds {
        settle();
        reset_peak_rss();
        let t = Instant::now();
        let n =
            pipeline::parse_only(origins.clone(), &rules, opts.batch, pipeline::cores()).await?;
        phases.push(phase(PARSE, round, n, t.elapsed().as_secs_f64(), None));

        remove_sqlite(&sqlite_path);
        // The durability `intake ingest` uses (`intake run` commits with FULL: docs/decisions.md).
        let store = Store::connect_with(&sqlite_url, Durability::Process).await?;
        settle();
        reset_peak_rss();
        let t = Instant::now();
        let s = pipeline::ingest(&store, origins.clone(), &opts, None).await?;
        // Closing checkpoints the WAL into the database file: part of the cost, so inside the
        // timing.
        store.close().await;
        phases.push(phase(
            SQLITE,
            round,
            s.total(),
            t.elapsed().as_secs_f64(),
            Some(s),
        ));
        check(&s, &stats)?;

        if !a.no_postgres {
            phases.push(postgres_phase(&a.postgres, round, &origins, &opts, &stats).await?);
        }
    }
    remove_sqlite(&sqlite_path);
    let load_after = loadavg();

    if a.json {
        println!("{}", serde_json::to_string_pretty(&phases)?);
    } else {
        println!(
            "{:<16} {:>5} {:>9} {:>8} {:>10} {:>9}",
            "phase", "round", "messages", "seconds", "msg/s", "peak MiB"
        );
        for p in &phases {
            println!(
                "{:<16} {:>5} {:>9} {:>8.2} {:>10.0} {:>9.1}",
                p.name, p.round, p.messages, p.seconds, p.messages_per_second, p.peak_rss_mib
            );
        }
        let rates = |name: &str| -> Vec<f64> {
            phases
                .iter()
                .filter(|p| p.name == name)
                .map(|p| p.messages_per_second)
                .collect()
        };
        let (parse, sqlite) = (rates(PARSE), rates(SQLITE));
        let ratios: Vec<f64> = parse.iter().zip(&sqlite).map(|(p, s)| s / p).collect();
        println!(
            "median of {} rounds: parse only {:.0} msg/s, ingest sqlite {:.0} msg/s{}",
            a.rounds,
            median(&parse),
            median(&sqlite),
            if a.no_postgres {
                String::new()
            } else {
                format!(", ingest postgres {:.0} msg/s", median(&rates(POSTGRES)))
            }
        );
        println!(
            "sqlite ingest / parse-only = {:.2} (medians); per round: {}",
            median(&sqlite) / median(&parse),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if !a.no_postgres {
            let postgres = rates(POSTGRES);
            println!(
                "postgres ingest / sqlite ingest = {:.2} (medians; goal >= 0.5); per round: {}",
                median(&postgres) / median(&sqlite),
                postgres
                    .iter()
                    .zip(&sqlite)
                    .map(|(p, s)| format!("{:.2}", p / s))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        // The allocator keeps what earlier rounds freed, so only round 1's peaks are the
        // phases' own.
        println!(
            "peak RSS of round 1 (later rounds start with what earlier ones left allocated): {}",
            phases
                .iter()
                .filter(|p| p.round == 1)
                .map(|p| format!("{} {:.0} MiB", p.name, p.peak_rss_mib))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !a.no_postgres {
            println!(
                "postgres server: {} (a fresh database per round)",
                super::ingest::redact(&a.postgres)
            );
        }
        println!("load average (1, 5, 15 min): before {load_before}, after {load_after}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One PostgreSQL ingest into a database created for it (and dropped after).
async fn postgres_phase(
    server: &str,
    round: u32,
    origins: &[local::Origin],
    opts: &IngestOptions,
    stats: &mailgen::GenStats,
) -> anyhow::Result<Phase> {
    let name = format!("intake_bench_{}_{round}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let store = Store::connect(&with_database(server, &name)).await?;
    settle();
    reset_peak_rss();
    let t = Instant::now();
    let res = pipeline::ingest(&store, origins.to_vec(), opts, None).await;
    store.close().await;
    let seconds = t.elapsed().as_secs_f64();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    let s = res?;
    check(&s, stats)?;
    Ok(phase(POSTGRES, round, s.total(), seconds, Some(s)))
}

/// `url` naming database `name` instead of its own, keeping its options (`?sslmode=…`).
pub(super) fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let server = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, _)) => format!("{scheme}://{authority}"),
            None => base.to_string(),
        },
        None => base.to_string(),
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// The 1-, 5- and 15-minute load averages, as the kernel prints them.
pub(super) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Removes a SQLite database file with its WAL and shared-memory files (a fresh one per round).
fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// The median of `v` (the mean of the middle two for an even count); 0 when empty.
#[must_use]
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A benchmark that silently lost or duplicated work would be meaningless: check the outcome.
fn check(s: &Summary, g: &mailgen::GenStats) -> anyhow::Result<()> {
    anyhow::ensure!(
        s.created == g.new_tickets && s.commented == g.replies && s.total() == g.messages,
        "unexpected outcome {s:?} for {g:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{median, with_database};

    #[test]
    fn the_fresh_database_keeps_the_urls_options() {
        assert_eq!(
            with_database(
                "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
                "b1"
            ),
            "postgres://postgres@127.0.0.1:5432/b1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h/test", "b1"),
            "postgres://u@h/b1"
        );
        assert_eq!(with_database("postgres://u@h", "b1"), "postgres://u@h/b1");
        assert_eq!(
            with_database("postgres://u@h?sslmode=require", "b1"),
            "postgres://u@h/b1?sslmode=require"
        );
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(median(&[]), 0.0);
    }
}
