//! Soak benchmark (issue 10): `intake run` with many IMAP channels on a real Dovecot, mail
//! arriving all the time, and a random fault every few seconds on the connections between them,
//! for ten minutes. Not a timed test: it reports what happened, and the two numbers that must be
//! zero.
//!
//! ```text
//! cargo bench -p intake --bench soak -- --seconds 600 --channels 20 --fault-every-ms 3000 --rate 20
//! ```
//!
//! Set-up: a Dovecot from `intake_testkit` with one user per channel; one
//! [`FaultProxy`](intake_testkit::fault::FaultProxy) in front of its IMAPS port that every
//! channel connects through; the release `intake` binary (`intake --config FILE run`) with a
//! SQLite database in a temporary directory, `after = "mark-read"`, push mode (IDLE re-issued
//! every `--poll-seconds`, default 10), `timeout_seconds = --timeout-seconds` (default 5: a
//! frozen connection, even one in IDLE, is given up within `poll + timeout` seconds). A writer
//! thread APPENDs messages directly to Dovecot (around the proxy) at `--rate` messages per
//! second spread over the channels, each with a unique Message-ID. The proxy's
//! [`chaos`](intake_testkit::fault::FaultProxy::chaos) schedule injects a random fault every
//! `--fault-every-ms` (± half): cut after N bytes either way, stall, drip, reset, refuse, and
//! (unless `--no-freeze`) freeze the open connections, each timed fault lasting 1..`--outage-ms`.
//!
//! After `--seconds`, the faults stop and the writer stops; the channels get `--settle` seconds
//! (default 180) to take what is left. Then it reports: messages delivered; ledger outcomes;
//! **duplicates** (ledger rows beyond one per Message-ID, plus tickets beyond one per
//! subject); **lost** (delivered Message-IDs with no ledger row); messages still unread on the
//! server; faults injected by kind; `channel_failed` events; and the intake process's VmRSS at
//! the start (all channels connected) and at the end (before SIGTERM), plus its VmHWM. Exits
//! non-zero when duplicates or lost are not 0. Results go to docs/BENCHMARKS.md by hand.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use intake_store::{Store, Table};
use intake_testkit::dovecot::{Dovecot, DovecotOptions};
use intake_testkit::fault::FaultProxy;

const PASSWORD: &str = "s3cret";

struct Args {
    seconds: u64,
    channels: usize,
    fault_every_ms: u64,
    outage_ms: u64,
    rate: f64,
    settle: u64,
    freeze: bool,
    seed: u64,
    timeout_seconds: u64,
    poll_seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 600,
        channels: 20,
        fault_every_ms: 3000,
        outage_ms: 4000,
        rate: 20.0,
        settle: 180,
        freeze: true,
        seed: 1,
        timeout_seconds: 5,
        poll_seconds: 10,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = || argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--seconds" => a.seconds = v().parse().expect("--seconds N"),
            "--channels" => a.channels = v().parse().expect("--channels N"),
            "--fault-every-ms" => a.fault_every_ms = v().parse().expect("--fault-every-ms N"),
            "--outage-ms" => a.outage_ms = v().parse().expect("--outage-ms N"),
            "--rate" => a.rate = v().parse().expect("--rate MSGS_PER_S"),
            "--settle" => a.settle = v().parse().expect("--settle SECONDS"),
            "--seed" => a.seed = v().parse().expect("--seed N"),
            "--timeout-seconds" => a.timeout_seconds = v().parse().expect("--timeout-seconds N"),
            "--poll-seconds" => a.poll_seconds = v().parse().expect("--poll-seconds N"),
            "--no-freeze" => {
                a.freeze = false;
                i += 1;
                continue;
            }
            // `cargo bench` passes `--bench`; nothing to filter.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn user(c: usize) -> String {
    format!("soak{c}@example.test")
}

fn message(c: usize, n: u64) -> Vec<u8> {
    format!(
        "From: Customer {n} <customer{n}@soak.example>\r\nTo: {}\r\nSubject: Soak {c}-{n}: printer on floor {} jams\r\n\
         Message-ID: <soak-{c}-{n}@soak.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n\
         The label printer jams after the first page, message {n} of channel {c}.\r\n{}",
        user(c),
        n % 7,
        "Some more text so the message has a realistic size.\r\n".repeat(40)
    )
    .into_bytes()
}

/// `(VmRSS, VmHWM)` of a process in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn config(dir: &Path, proxy_port: u16, ca: &Path, a: &Args) -> std::path::PathBuf {
    let channels = a.channels;
    let mut s = String::new();
    for c in 0..channels {
        s.push_str(&format!(
            "[[channel]]\nname = \"soak{c}\"\nproject = \"S{c}\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {proxy_port}\n\
             tls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{}\"\nauth = \"password:env:IMAP_PW\"\nstart = \"all\"\n\
             after = \"mark-read\"\nbatch = 50\nmode = \"push\"\npoll_seconds = {}\ntimeout_seconds = {}\n\n",
            ca.display(),
            user(c),
            a.poll_seconds,
            a.timeout_seconds
        ));
    }
    let p = dir.join("intake.toml");
    std::fs::write(&p, s).expect("config");
    p
}

fn spawn_intake(cfg: &Path, db: &str, dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("--config")
        .arg(cfg)
        .args(["--db", db, "run"])
        .env("IMAP_PW", PASSWORD)
        .env("INTAKE_LOG", "warn")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("intake.stderr")).expect("stderr file"),
        ))
        .spawn()
        .expect("intake run")
}

fn main() {
    let a = args();
    let users: Vec<(String, String)> = (0..a.channels)
        .map(|c| (user(c), PASSWORD.to_string()))
        .collect();
    let user_refs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    let dc = Dovecot::start(
        &DovecotOptions::with_users(&user_refs).max_connections(a.channels as u32 * 3 + 20),
    )
    .expect("Dovecot (bash scripts/testbed/dovecot.sh install)");
    let proxy = FaultProxy::start(("127.0.0.1", dc.imaps_port)).expect("proxy");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("intake.db").display());
    let cfg = config(dir.path(), proxy.port, &dc.ca_path, &a);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt.block_on(Store::connect(&db)).expect("database");
    eprintln!(
        "soak: {} channels, {} s, a fault every ~{} ms, {} msg/s; proxy 127.0.0.1:{} → Dovecot {}",
        a.channels, a.seconds, a.fault_every_ms, a.rate, proxy.port, dc.imaps_port
    );
    let mut child = spawn_intake(&cfg, &db, dir.path());
    let pid = child.id();
    // Start: every channel connected and idle (its lease taken, nothing to do yet).
    let t0 = Instant::now();
    while proxy.open_connections() < a.channels && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_start = memory(pid);

    // Mail arrives all the time, straight into Dovecot.
    let delivered: Arc<Vec<AtomicU64>> =
        Arc::new((0..a.channels).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (delivered, stop) = (delivered.clone(), stop.clone());
        let mut appenders: Vec<_> = (0..a.channels)
            .map(|c| dc.appender(&user(c)).expect("appender"))
            .collect();
        let gap = Duration::from_secs_f64(1.0 / a.rate.max(0.01));
        std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let c = k % appenders.len();
                let n = delivered[c].load(Ordering::Relaxed);
                appenders[c]
                    .append("INBOX", &message(c, n))
                    .expect("APPEND");
                delivered[c].fetch_add(1, Ordering::Relaxed);
                k += 1;
                next += gap;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        })
    };
    let chaos = proxy.chaos(
        Duration::from_millis(a.fault_every_ms),
        Duration::from_millis(a.outage_ms),
        a.freeze,
        a.seed,
    );
    let started = Instant::now();
    let mut last_report = Instant::now();
    while started.elapsed() < Duration::from_secs(a.seconds) {
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("intake run exited during the soak: {status}");
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let sent: u64 = delivered.iter().map(|d| d.load(Ordering::Relaxed)).sum();
            let ledger = rt.block_on(store.count(Table::Ledger)).unwrap_or(-1);
            eprintln!(
                "{:>5} s: delivered {sent}, ledger {ledger}, RSS {} KiB, proxy {:?}",
                started.elapsed().as_secs(),
                memory(pid).0,
                proxy.stats()
            );
        }
    }
    drop(chaos);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let faults: Vec<String> = proxy
        .log()
        .into_iter()
        .filter_map(|(_, l)| l.strip_prefix("chaos: ").map(str::to_string))
        .filter(|l| l != "over")
        .collect();
    let sent: u64 = delivered.iter().map(|d| d.load(Ordering::Relaxed)).sum();
    eprintln!("faults stopped; {sent} delivered; letting the channels settle");
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(a.settle) {
        if rt.block_on(store.count(Table::Ledger)).unwrap_or(0) >= sent as i64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let settled_in = settle.elapsed();
    // Let the last post-actions go out, then measure and stop.
    std::thread::sleep(Duration::from_secs(3));
    let rss_end = memory(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stop_t = Instant::now();
    while child.try_wait().ok().flatten().is_none() && stop_t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped_in = stop_t.elapsed();
    let _ = child.kill();
    let _ = child.wait();

    // The books.
    let ledger = rt.block_on(store.ledger(None)).expect("ledger");
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_mid: HashMap<String, u64> = HashMap::new();
    for r in &ledger {
        *outcomes.entry(r.outcome.clone()).or_default() += 1;
        if let Some(m) = &r.message_id {
            *per_mid.entry(m.clone()).or_default() += 1;
        }
    }
    let dup_ledger: u64 = per_mid.values().map(|n| n.saturating_sub(1)).sum();
    let tickets = rt.block_on(store.count(Table::Tickets)).unwrap_or(-1);
    let distinct_summaries: i64 = rt
        .block_on(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(DISTINCT summary) FROM tickets")
                .fetch_one(store.pool()),
        )
        .unwrap_or(-1);
    let duplicates = dup_ledger + (tickets - distinct_summaries).max(0) as u64;
    let mut lost = 0u64;
    let mut unread = 0usize;
    for c in 0..a.channels {
        let n = delivered[c].load(Ordering::Relaxed);
        let have: HashSet<&str> = per_mid.keys().map(String::as_str).collect();
        lost += (0..n)
            .filter(|i| {
                !have.contains(format!("<soak-{c}-{i}@soak.example>").as_str())
                    && !have.contains(format!("soak-{c}-{i}@soak.example").as_str())
            })
            .count() as u64;
        let new = dc.maildir(&user(c)).join("new");
        unread += std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0);
        let cur = dc.maildir(&user(c)).join("cur");
        unread += std::fs::read_dir(&cur)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        !name
                            .rsplit_once(":2,")
                            .is_some_and(|(_, f)| f.contains('S'))
                    })
                    .count()
            })
            .unwrap_or(0);
    }
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for f in &faults {
        let kind = f.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let kind = if kind.starts_with("cut") {
            kind
        } else {
            f.split_whitespace().next().unwrap_or("").to_string()
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let failed = rt
        .block_on(store.recent_events(1_000_000))
        .map(|e| e.iter().filter(|e| e.kind == "channel_failed").count())
        .unwrap_or(0);
    println!(
        "\n## soak: {} channels, {} s of faults (every ~{} ms), {} msg/s, timeout_seconds {}, poll_seconds {}",
        a.channels, a.seconds, a.fault_every_ms, a.rate, a.timeout_seconds, a.poll_seconds
    );
    println!("messages delivered     {sent}");
    println!(
        "ledger outcomes        {outcomes:?} (total {})",
        ledger.len()
    );
    println!("tickets                {tickets}");
    println!("duplicates             {duplicates}   (must be 0)");
    println!("lost                   {lost}   (must be 0)");
    println!("unread on the server   {unread}");
    println!("faults injected        {} {kinds:?}", faults.len());
    println!("proxy                  {:?}", proxy.stats());
    println!("channel_failed events  {failed}");
    println!(
        "settled in             {:.1} s after the faults stopped",
        settled_in.as_secs_f64()
    );
    println!(
        "intake RSS             start {} KiB, end {} KiB (peak {} KiB)",
        rss_start.0, rss_end.0, rss_end.1
    );
    println!("SIGTERM → exit         {:.1} s", stopped_in.as_secs_f64());
    if duplicates != 0 || lost != 0 {
        eprintln!(
            "FAILED: duplicates {duplicates}, lost {lost}; intake's log: {}",
            dir.path().join("intake.stderr").display()
        );
        let _ = dir.keep();
        std::process::exit(1);
    }
}
