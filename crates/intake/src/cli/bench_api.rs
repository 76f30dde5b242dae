//! `intake bench api`: the latency of `GET /api/tickets` under concurrent clients, on SQLite and
//! on PostgreSQL, as an administrator's browser and scripts would see it.
//!
//! For each database: generate `--tickets` messages that each open a ticket (mailgen, no
//! replies), ingest them into a fresh database, start `intake serve` on it as a separate process
//! (this executable, on a free loopback port), create an administrator and an API token with
//! `intake admin`, then drive the route with [oha](https://crates.io/crates/oha) (a load
//! generator from crates.io: `cargo install oha --locked`) — `--clients` concurrent connections,
//! `--requests` requests per scenario — and report its p50/p99 latency, its rate and every
//! answer that was not a 200. The scenarios are the listing's typical calls: the first page,
//! a deep page of one project and status, a substring search that matches almost every ticket,
//! and a selective one. Results are recorded in docs/BENCHMARKS.md.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use intake_core::{ChannelRules, ProjectKey};
use intake_store::{Durability, Store};
use serde::Serialize;
use sqlx::Connection as _;

use crate::mailgen::{self, GenOptions};
use crate::pipeline::{self, IngestOptions};
use crate::source::local;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Tickets in the database (each generated message opens one).
    #[arg(long, default_value_t = 100_000)]
    pub tickets: usize,
    /// Concurrent clients (oha `-c`).
    #[arg(long, default_value_t = 100)]
    pub clients: u32,
    /// Requests per scenario (oha `-n`).
    #[arg(long, default_value_t = 5_000)]
    pub requests: u32,
    /// PostgreSQL server; a fresh database is created and dropped (as for `bench ingest`).
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
    )]
    pub postgres: String,
    /// Skip PostgreSQL.
    #[arg(long)]
    pub no_postgres: bool,
    /// The load generator to run.
    #[arg(long, default_value = "oha")]
    pub oha: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// One scenario's result on one database.
#[derive(Debug, Serialize)]
struct Measured {
    database: &'static str,
    scenario: &'static str,
    path: String,
    requests: u64,
    clients: u32,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requests_per_second: f64,
    /// Answers other than 200 (and connection errors): must be 0 for the numbers to count.
    not_ok: u64,
}

/// The paths measured: (name, path and query).
fn scenarios() -> Vec<(&'static str, String)> {
    vec![
        ("first page", "/api/tickets?per_page=50".into()),
        (
            "project + status, page 100",
            "/api/tickets?project=BENCH&status=open&page=100&per_page=50".into(),
        ),
        // Every generated body is made of the same 45 words: this matches nearly every ticket.
        (
            "q = common word",
            "/api/tickets?q=printer&per_page=50".into(),
        ),
        // Subjects read "Ticket N: …": this matches a handful.
        (
            "q = selective",
            "/api/tickets?q=Ticket%2042424&per_page=50".into(),
        ),
    ]
}

pub async fn run(a: ApiArgs) -> anyhow::Result<ExitCode> {
    let oha_version = Command::new(&a.oha)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .with_context(|| {
            format!(
                "the load generator {} is not installed: cargo install oha --locked",
                a.oha.display()
            )
        })?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("maildir");
    let started = Instant::now();
    let stats = mailgen::write_maildir(
        &dir,
        &GenOptions {
            messages: a.tickets,
            reply_percent: 0,
            ..Default::default()
        },
    )?;
    eprintln!(
        "generated {} messages ({:.0} MiB) in {:.0} s",
        stats.messages,
        stats.bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let origins = local::walk(std::slice::from_ref(&dir))?;
    let mut opts = IngestOptions::new(
        "bench",
        "BENCH".parse::<ProjectKey>()?,
        ChannelRules::default(),
    );
    opts.batch = 500;

    let mut results = Vec::new();
    let sqlite_url = format!("sqlite://{}", tmp.path().join("api.db").display());
    let store = Store::connect_with(&sqlite_url, Durability::Process).await?;
    results.extend(
        measure(
            "sqlite",
            &store,
            &sqlite_url,
            &origins,
            &opts,
            &a,
            tmp.path(),
        )
        .await?,
    );
    if !a.no_postgres {
        let name = format!("intake_bench_api_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&a.postgres).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let url = super::bench::with_database(&a.postgres, &name);
        let res = async {
            let store = Store::connect(&url).await?;
            measure("postgres", &store, &url, &origins, &opts, &a, tmp.path()).await
        }
        .await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        results.extend(res?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!(
            "{:<9} {:<28} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7}",
            "database", "scenario", "requests", "clients", "p50 ms", "p99 ms", "req/s", "not 200"
        );
        for m in &results {
            println!(
                "{:<9} {:<28} {:>8} {:>8} {:>9.1} {:>9.1} {:>9.0} {:>7}",
                m.database,
                m.scenario,
                m.requests,
                m.clients,
                m.p50_ms,
                m.p99_ms,
                m.requests_per_second,
                m.not_ok
            );
        }
        println!(
            "{} tickets per database; load generator {oha_version}",
            a.tickets
        );
        println!(
            "load average (1, 5, 15 min) at the end: {}",
            super::bench::loadavg()
        );
    }
    let failed = results.iter().any(|m| m.not_ok > 0);
    Ok(if failed {
        eprintln!("some answers were not 200: the latencies above do not count");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Ingest, serve, load, stop — on one database.
async fn measure(
    database: &'static str,
    store: &Store,
    url: &str,
    origins: &[local::Origin],
    opts: &IngestOptions,
    a: &ApiArgs,
    work: &Path,
) -> anyhow::Result<Vec<Measured>> {
    let t = Instant::now();
    let s = pipeline::ingest(store, origins.to_vec(), opts, None).await?;
    let tickets = store.count(intake_store::Table::Tickets).await?;
    store.close().await;
    anyhow::ensure!(
        tickets as usize == a.tickets,
        "{database}: {tickets} tickets after ingesting {} messages ({} created)",
        a.tickets,
        s.created
    );
    eprintln!(
        "{database}: {tickets} tickets ingested in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let intake = |args: &[&str]| {
        let mut c = Command::new(&exe);
        c.current_dir(work)
            .arg("--db")
            .arg(url)
            .args(args)
            .env_remove("INTAKE_LOG_FORMAT");
        c
    };
    let mut create = intake(&["admin", "create", "bench"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    create
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"bench-password-not-secret\n")?;
    anyhow::ensure!(create.wait()?.success(), "intake admin create failed");
    let out = intake(&["admin", "token", "bench"]).output()?;
    anyhow::ensure!(out.status.success(), "intake admin token failed");
    let token = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .context("no token printed")?
        .to_string();
    let mut server = Server(
        intake(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().context("stdout")?).read_line(&mut line)?;
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("intake serve printed {line:?}"))?
        .to_string();
    let mut out = Vec::new();
    for (scenario, path) in scenarios() {
        // A short warm-up (page cache, prepared statements), not measured.
        oha(a, &token, &base, &path, 200.min(a.requests))?;
        let r = oha(a, &token, &base, &path, a.requests)?;
        out.push(Measured {
            database,
            scenario,
            path,
            requests: u64::from(a.requests),
            clients: a.clients,
            ..r
        });
    }
    drop(server);
    Ok(out)
}

/// `intake serve`, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One oha run; its JSON summary read into a [`Measured`] (database and scenario left empty).
fn oha(a: &ApiArgs, token: &str, base: &str, path: &str, n: u32) -> anyhow::Result<Measured> {
    let out = Command::new(&a.oha)
        .args(["--no-tui", "--output-format", "json", "-n"])
        .arg(n.to_string())
        .arg("-c")
        .arg(a.clients.min(n).to_string())
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{base}{path}"))
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "oha failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("oha's output: {}", String::from_utf8_lossy(&out.stdout)))?;
    let ms = |p: &str| v.pointer(p).and_then(|x| x.as_f64()).unwrap_or(f64::NAN) * 1000.0;
    let ok = v
        .pointer("/statusCodeDistribution/200")
        .and_then(|x| x.as_u64())
        .unwrap_or(0);
    Ok(Measured {
        database: "",
        scenario: "",
        path: String::new(),
        requests: u64::from(n),
        clients: a.clients,
        p50_ms: ms("/latencyPercentiles/p50"),
        p99_ms: ms("/latencyPercentiles/p99"),
        max_ms: ms("/summary/slowest"),
        requests_per_second: v
            .pointer("/summary/requestsPerSec")
            .and_then(|x| x.as_f64())
            .unwrap_or(f64::NAN),
        not_ok: u64::from(n).saturating_sub(ok),
    })
}
